"""ONNX Resize and Upsample: separable interpolation with static coefficients.

Shapes are static at import, so each resized axis gets its interpolation as a constant
(out x in) matrix, built exactly as ONNX defines the 1-D interpolation (coordinate
transformation, nearest rounding, linear and cubic kernels with antialiasing, edge
neighbours, ``exclude_outside``, ``tf_crop_and_resize`` extrapolation). A float tensor is
multiplied by it along the axis (a matmul); nearest resizing of any dtype is a gather.
"""

from __future__ import annotations

import math

import numpy as np

from ...ops import elementwise as ew
from ...ops import indexing as gidx
from ...ops import linalg as glin
from ...ops import shape as gshape
from .base import handler
from .tensor import static_shape


def _nearest(mode):
    def coeffs(ratio, scale):
        if float(ratio).is_integer():
            return np.array([0.0, 1.0])
        if mode == "round_prefer_floor":
            return np.array([ratio <= 0.5, ratio > 0.5], float)
        if mode == "round_prefer_ceil":
            return np.array([ratio < 0.5, ratio >= 0.5], float)
        if mode == "floor":
            return np.array([1.0, 0.0])
        return np.array([0.0, 1.0])  # ceil

    return coeffs


def _linear(antialias):
    def coeffs(ratio, scale):
        if not antialias:
            return np.array([1 - ratio, ratio])
        scale = min(scale, 1.0)
        start = int(np.floor(-1 / scale) + 1)
        args = (np.arange(start, start + 2 - 2 * start) - ratio) * scale
        c = np.clip(1 - np.abs(args), 0, 1)
        return c / c.sum()

    return coeffs


def _cubic(a, antialias):
    def coeffs(ratio, scale):
        if not antialias:
            r = ratio
            return np.array([
                ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                ((a + 2) * r - (a + 3)) * r * r + 1,
                ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
                ((a * ((1 - r) + 1) - 5 * a) * ((1 - r) + 1) + 8 * a) * ((1 - r) + 1) - 4 * a,
            ])  # fmt: skip
        scale = min(scale, 1.0)

        def k(x):
            x = abs(x)
            if x <= 1:
                return (a + 2) * x**3 - (a + 3) * x**2 + 1
            if x < 2:
                return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
            return 0.0

        i0 = int(np.floor(-2 / scale) + 1)
        c = np.array([k(scale * (i - ratio)) for i in range(i0, 2 - i0)])
        return c / c.sum()

    return coeffs


def _source(mode, x, scale, n_in, out_float, out_int, roi):
    if mode == "align_corners":
        return 0.0 if out_float == 1 else x * (n_in - 1) / (out_float - 1)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_crop_and_resize":
        if out_float == 1:
            v = (roi[1] - roi[0]) * (n_in - 1) / 2
        else:
            v = x * (roi[1] - roi[0]) * (n_in - 1) / (out_float - 1)
        return v + roi[0] * (n_in - 1)
    if mode == "pytorch_half_pixel":
        return -0.5 if out_float == 1 else (x + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - out_int / out_float)
        return offset + (x + 0.5) / scale - 0.5
    raise ValueError(f"coordinate_transformation_mode {mode!r} is not supported")


def _neighbours(x, n, limit):
    """The ``n`` indexes of [0, limit) nearest to x, ties to the smaller (ONNX's rule)."""
    lo = int(math.floor(x)) - n - 1
    cand = [i for i in range(lo, lo + 2 * n + 4) if 0 <= i < limit]
    return sorted(sorted(cand, key=lambda i: (abs(x - i), i))[:n])


def interpolation_matrix(n_in, n_out, scale, coeffs, coord_mode, roi=None,
                         exclude_outside=False):  # fmt: skip
    """(W, extrapolated rows) of one axis: ``out = W @ in`` (ONNX's 1-D interpolation)."""
    w = np.zeros((n_out, n_in))
    outside = np.zeros(n_out, bool)
    out_float = scale * n_in
    for x in range(n_out):
        src = _source(coord_mode, x, scale, n_in, out_float, n_out, roi)
        if coord_mode == "tf_crop_and_resize" and (src < 0 or src > n_in - 1):
            outside[x] = True
            continue
        base = math.floor(src)
        ratio = 1.0 if float(src).is_integer() else src - base
        c = np.array(coeffs(ratio, scale), float)
        pad = int(math.ceil(len(c) / 2))
        idx = np.array(_neighbours(src + pad, len(c), n_in + 2 * pad)) - pad
        if exclude_outside:
            c = np.where((idx < 0) | (idx >= n_in), 0.0, c)
            c = c / c.sum()
        for ci, i in zip(c, np.clip(idx, 0, n_in - 1)):
            w[x, i] += ci
    return w, outside


def _resize(ctx, x, scales, sizes, roi, mode, coord_mode, nearest_mode, cubic_a,
            exclude_outside, extrapolation, antialias, axes, policy):  # fmt: skip
    shape = static_shape(ctx, x)
    rank = len(shape)
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    if sizes is not None:
        scale_f = [sizes[i] / shape[a] for i, a in enumerate(axes)]
        out = list(sizes)
        if policy != "stretch":
            s = min(scale_f) if policy == "not_larger" else max(scale_f)
            scale_f = [s] * len(axes)
            out = [int(s * shape[a] + 0.5) for a in axes]
    else:
        scale_f = [float(s) for s in scales]
        out = [int(s * shape[a]) for s, a in zip(scale_f, axes)]
    if mode == "nearest":
        if antialias:
            ctx.fail("antialias with nearest mode is not defined")
        coeffs = _nearest(nearest_mode)
    elif mode == "linear":
        coeffs = _linear(antialias)
    elif mode == "cubic":
        coeffs = _cubic(cubic_a, antialias)
    else:
        ctx.fail(f"Resize mode {mode!r} is not supported")
    y = x
    for i, a in enumerate(axes):
        ax_roi = None if roi is None else [roi[i], roi[i + len(axes)]]
        full_roi = ax_roi is None or (math.isclose(ax_roi[0], 0) and math.isclose(ax_roi[1], 1))
        identity = math.isclose(scale_f[i], 1.0) and out[i] == shape[a] and full_roi
        if identity:
            continue
        w, outside = interpolation_matrix(shape[a], out[i], scale_f[i], coeffs, coord_mode,
                                          ax_roi, exclude_outside)  # fmt: skip
        y = _apply(ctx, y, a, w, mode)
        if outside.any():
            mask_shape = [1] * rank
            mask_shape[a] = out[i]
            fill = np.asarray(extrapolation, y.dtype.np)
            y = ew.where(outside.reshape(mask_shape), fill, y)
    return y


def _apply(ctx, y, axis, w, mode):
    if mode == "nearest" or not y.dtype.is_floating:
        rows = (w != 0).sum(axis=1)
        if mode != "nearest" and (rows > 1).any():
            ctx.fail(f"Resize of {y.dtype.name} values needs nearest mode")
        idx = np.argmax(w != 0, axis=1).astype(np.int64)
        return gidx.gather(y, idx, axis=axis)
    rank = len(y.shape)
    perm = [d for d in range(rank) if d != axis] + [axis]
    moved = gshape.transpose(y, perm) if axis != rank - 1 else y
    z = glin.matmul(moved, np.ascontiguousarray(w.T).astype(y.dtype.np))
    if axis == rank - 1:
        return z
    back = list(np.argsort(perm))
    return gshape.transpose(z, back)


@handler("Resize")
def _resize_op(ctx):
    x = ctx.input(0)
    if ctx.opset < 11:
        scales = [float(s) for s in np.asarray(ctx.const(1, "scales")).reshape(-1)]
        mode = ctx.attr("mode", "nearest")
        return _resize(ctx, x, scales, None, None, mode, "asymmetric", "floor", -0.75,
                       False, 0.0, False, None, "stretch")  # fmt: skip
    roi = ctx.const(1, "roi") if ctx.has(1) else None
    scales = ctx.const(2, "scales") if ctx.has(2) else None
    sizes = ctx.const_ints(3, "sizes") if ctx.has(3) else None
    if scales is not None and np.asarray(scales).size == 0:
        scales = None
    if sizes is None and scales is None:
        ctx.fail("Resize needs scales or sizes")
    scales = None if scales is None else [float(s) for s in np.asarray(scales).reshape(-1)]
    roi = None if roi is None or np.asarray(roi).size == 0 else np.asarray(roi, float).reshape(-1)
    coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if roi is not None and coord != "tf_crop_and_resize":
        roi = None
    return _resize(
        ctx, x, scales, sizes, roi, ctx.attr("mode", "nearest"), coord,
        ctx.attr("nearest_mode", "round_prefer_floor"), ctx.attr("cubic_coeff_a", -0.75),
        bool(ctx.attr("exclude_outside", 0)), ctx.attr("extrapolation_value", 0.0),
        bool(ctx.attr("antialias", 0)), ctx.attr("axes"),
        ctx.attr("keep_aspect_ratio_policy", "stretch"),
    )  # fmt: skip


@handler("Upsample")
def _upsample(ctx):
    x = ctx.input(0)
    scales = ctx.attr("scales") if ctx.opset < 9 else ctx.const(1, "scales")
    scales = [float(s) for s in np.asarray(scales).reshape(-1)]
    mode = ctx.attr("mode", "nearest")
    return _resize(ctx, x, scales, None, None, mode, "asymmetric", "floor", -0.75, False, 0.0,
                   False, None, "stretch")  # fmt: skip
