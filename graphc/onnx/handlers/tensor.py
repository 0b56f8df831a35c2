"""ONNX ops that move, select or make values: shapes, slices, gathers, scatters, constants."""

from __future__ import annotations

import numpy as np

from ...ops import constant as gconst
from ...ops import cumulative
from ...ops import elementwise as ew
from ...ops import gather_scatter as gs
from ...ops import indexing as gidx
from ...ops import linalg as glin
from ...ops import reduce as gred
from ...ops import shape as gshape
from ...ops import sorting as gsort
from .. import types as _ty
from .base import handler


def static_shape(ctx, x, what="input"):
    """``x``'s shape as ints; UnimplementedError when a dimension is unknown at import."""
    if x.shape is None or any(d is None for d in x.shape):
        ctx.fail(f"{what} {x.name} needs a static shape here, got {x.shape}")
    return tuple(int(d) for d in x.shape)


def _rank(ctx, x):
    if x.shape is None:
        ctx.fail(f"input {x.name} needs a known rank")
    return len(x.shape)


def _axes_norm(axes, rank):
    return [a + rank if a < 0 else a for a in axes]


@handler("Constant")
def _constant(ctx):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if ctx.has_attr(key):
            v = ctx.attr(key)
            if key == "value_float" or key == "value_floats":
                return np.asarray(v, np.float32)
            if key in ("value_int", "value_ints"):
                return np.asarray(v, np.int64)
            return np.asarray(v)
    if ctx.has_attr("sparse_value"):
        ctx.fail("sparse constants are not supported")
    ctx.fail("string constants are not supported")


@handler("ConstantOfShape")
def _constant_of_shape(ctx):
    shape = ctx.const_ints(0, "shape")
    value = ctx.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


@handler("Shape")
def _shape(ctx):
    x = ctx.input(0)
    shape = static_shape(ctx, x)
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    return np.asarray(shape[slice(start, end)], np.int64)


@handler("Size")
def _size(ctx):
    return np.asarray(int(np.prod(static_shape(ctx, ctx.input(0)))), np.int64)


@handler("Reshape")
def _reshape(ctx):
    x = ctx.input(0)
    shape = ctx.const_ints(1, "shape") if ctx.opset >= 5 else list(ctx.attr("shape"))
    allowzero = ctx.attr("allowzero", 0)
    if not allowzero:
        if 0 in shape:
            src = static_shape(ctx, x)
            shape = [src[i] if d == 0 else d for i, d in enumerate(shape)]
    elif 0 in shape and -1 in shape:
        ctx.fail("allowzero=1 with both 0 and -1 in the shape is invalid")
    return gshape.reshape(x, shape)


@handler("Flatten")
def _flatten(ctx):
    x = ctx.input(0)
    shape = static_shape(ctx, x)
    axis = ctx.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    return gshape.reshape(x, [outer, int(np.prod(shape[axis:], dtype=np.int64))])


def _axes_arg(ctx, i=1, attr="axes"):
    if ctx.opset >= 13 or (attr == "axes" and ctx.op_type.startswith("Reduce")
                           and ctx.opset >= 18):  # fmt: skip
        return ctx.const_ints(i, attr)
    v = ctx.attr(attr)
    return None if v is None else list(v)


@handler("Squeeze")
def _squeeze(ctx):
    x = ctx.input(0)
    axes = _axes_arg(ctx)
    if axes is None:
        shape = static_shape(ctx, x)
        axes = [i for i, d in enumerate(shape) if d == 1]
    return gshape.squeeze(x, _axes_norm(axes, _rank(ctx, x))) if axes else x


@handler("Unsqueeze")
def _unsqueeze(ctx):
    x = ctx.input(0)
    axes = _axes_arg(ctx)
    out_rank = _rank(ctx, x) + len(axes)
    shape = list(static_shape(ctx, x))
    for a in sorted(_axes_norm(axes, out_rank)):
        shape.insert(a, 1)
    return gshape.reshape(x, shape)


@handler("Transpose")
def _transpose(ctx):
    x = ctx.input(0)
    perm = ctx.attr("perm")
    if perm is None:
        perm = list(range(_rank(ctx, x)))[::-1]
    return gshape.transpose(x, list(perm))


@handler("Concat")
def _concat(ctx):
    xs = [x for x in ctx.inputs() if x is not None]
    axis = ctx.attr("axis")
    xs = [x for x in xs if x.shape is None or len(x.shape) == 0 or 0 not in x.shape] or xs[:1]
    if len(xs) == 1:
        return xs[0]
    return gshape.concat(xs, axis)


@handler("Split")
def _split(ctx):
    x = ctx.input(0)
    axis = ctx.attr("axis", 0)
    shape = static_shape(ctx, x)
    n = len(ctx.node.output)
    if ctx.opset >= 13 and ctx.has(1):
        sizes = ctx.const_ints(1, "split")
    elif ctx.opset < 13 and ctx.attr("split") is not None:
        sizes = list(ctx.attr("split"))
    else:
        dim = shape[axis]
        num = ctx.attr("num_outputs", n)
        chunk = -(-dim // num)
        sizes = [min(chunk, dim - i * chunk) for i in range(num)]
    return gshape.split(x, sizes, axis=axis)


def _slice_key(shape, starts, ends, axes, steps):
    key = [slice(None)] * len(shape)
    for s, e, a, st in zip(starts, ends, axes, steps):
        s, e, st = slice(s, e, st).indices(shape[a])
        key[a] = slice(s, e if e >= 0 else None, st)
    return tuple(key)


@handler("Slice")
def _slice(ctx):
    x = ctx.input(0)
    shape = static_shape(ctx, x)
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes = ctx.attr("axes")
        steps = None
    else:
        starts, ends = ctx.const_ints(1, "starts"), ctx.const_ints(2, "ends")
        axes, steps = ctx.const_ints(3, "axes"), ctx.const_ints(4, "steps")
    axes = list(range(len(starts))) if axes is None else _axes_norm(list(axes), len(shape))
    steps = [1] * len(starts) if steps is None else steps
    return x[_slice_key(shape, starts, ends, axes, steps)]


def _wrap_index(ctx, idx, dim):
    """Negative indices count from the end (ONNX); graphc's gathers want [0, dim)."""
    zero = np.asarray(0, idx.dtype.np)
    return ew.where(ew.less(idx, zero), ew.add(idx, np.asarray(dim, idx.dtype.np)), idx)


@handler("Gather")
def _gather(ctx):
    x, idx = ctx.input(0), ctx.input(1)
    axis = ctx.attr("axis", 0)
    shape = static_shape(ctx, x)
    axis = axis + len(shape) if axis < 0 else axis
    return gidx.gather(x, _wrap_index(ctx, idx, shape[axis]), axis=axis)


@handler("GatherElements")
def _gather_elements(ctx):
    return gs.gather_elements(ctx.input(0), ctx.input(1), axis=ctx.attr("axis", 0))


@handler("ScatterElements", "Scatter")
def _scatter_elements(ctx):
    red = ctx.attr("reduction", "none")
    return gs.scatter_elements(ctx.input(0), ctx.input(1), ctx.input(2),
                               axis=ctx.attr("axis", 0), reduction=red)  # fmt: skip


@handler("ScatterND")
def _scatter_nd(ctx):
    red = ctx.attr("reduction", "none")
    return gs.tensor_scatter_nd_update(ctx.input(0), ctx.input(1), ctx.input(2), reduction=red)


@handler("GatherND")
def _gather_nd(ctx):
    x, idx = ctx.input(0), ctx.input(1)
    bd = ctx.attr("batch_dims", 0)
    shape = static_shape(ctx, x)
    k = static_shape(ctx, idx, "indices")[-1]
    dims = np.asarray(shape[bd : bd + k], idx.dtype.np)
    zero = np.asarray(0, idx.dtype.np)
    idx = ew.where(ew.less(idx, zero), ew.add(idx, dims), idx)
    return gidx.gather_nd(x, idx, batch_dims=bd)


@handler("Expand")
def _expand(ctx):
    x = ctx.input(0)
    shape = ctx.const_ints(1, "shape")
    out = np.broadcast_shapes(static_shape(ctx, x), tuple(shape))
    return gshape.broadcast_to(x, list(out))


@handler("Tile")
def _tile(ctx):
    return gshape.tile(ctx.input(0), ctx.const_ints(1, "repeats"))


@handler("Pad")
def _pad(ctx):
    x = ctx.input(0)
    rank = _rank(ctx, x)
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads, value = list(ctx.attr("pads")), ctx.attr("value", 0.0)
        axes = list(range(rank))
    else:
        pads = ctx.const_ints(1, "pads")
        value = ctx.const(2, "constant_value")
        value = 0 if value is None else np.asarray(value).reshape(-1)[0]
        axes = ctx.const_ints(3, "axes") if ctx.has(3) else list(range(rank))
    axes = _axes_norm(axes, rank)
    n = len(axes)
    widths = [[0, 0] for _ in range(rank)]
    for j, a in enumerate(axes):
        widths[a] = [pads[j], pads[j + n]]
    # negative pads crop
    shape = static_shape(ctx, x)
    if any(w < 0 for pair in widths for w in pair):
        key = tuple(slice(-lo if lo < 0 else 0, d + hi if hi < 0 else d)
                    for (lo, hi), d in zip(widths, shape))  # fmt: skip
        x = x[key]
        widths = [[max(lo, 0), max(hi, 0)] for lo, hi in widths]
    if not any(w for pair in widths for w in pair):
        return x
    modes = {"constant": "CONSTANT", "reflect": "REFLECT", "edge": "EDGE", "wrap": "WRAP"}
    if mode not in modes:
        ctx.fail(f"pad mode {mode!r} is not supported")
    if modes[mode] in ("EDGE", "WRAP"):
        return _pad_by_gather(ctx, x, widths, modes[mode])
    if modes[mode] == "CONSTANT":
        return gshape.pad(x, widths, constant_values=np.asarray(value).astype(x.dtype.np).item())
    return gshape.pad(x, widths, mode=modes[mode])


def _pad_by_gather(ctx, x, widths, mode):
    """Edge and wrap padding: a gather per padded axis with static indices."""
    shape = static_shape(ctx, x)
    for a, (lo, hi) in enumerate(widths):
        if not lo and not hi:
            continue
        n = shape[a]
        pos = np.arange(-lo, n + hi)
        idx = np.clip(pos, 0, n - 1) if mode == "EDGE" else np.mod(pos, n)
        x = gidx.gather(x, idx.astype(np.int64), axis=a)
    return x


@handler("Range")
def _range(ctx):
    # scalars; a one-element tensor is read as its element (as ONNX's reference does)
    start, limit, delta = (np.asarray(ctx.const(i, "range bound")).reshape(-1)[0]
                           for i in range(3))  # fmt: skip
    n = max(int(np.ceil((limit - start) / delta)), 0)
    return (start + np.arange(n) * delta).astype(start.dtype)


@handler("OneHot")
def _one_hot(ctx):
    idx = ctx.input(0)
    depth = int(np.asarray(ctx.const(1, "depth")).reshape(-1)[0])
    values = ctx.input(2)
    axis = ctx.attr("axis", -1)
    if idx.dtype.is_floating:
        idx = ew.cast(idx, np.int64)
    idx = _wrap_index(ctx, idx, depth)
    hot = gidx.one_hot(idx, depth, on_value=1, off_value=0, axis=axis, dtype=np.int32)
    off, on = values[0], values[1]
    return ew.where(ew.cast(hot, bool), on, off)


@handler("Einsum")
def _einsum(ctx):
    eq = ctx.attr("equation").replace(" ", "")
    return glin.einsum(eq, *[x for x in ctx.inputs() if x is not None])


@handler("CumSum")
def _cumsum(ctx):
    axis = int(np.asarray(ctx.const(1, "axis")).reshape(-1)[0])
    return gred.cumsum(ctx.input(0), axis, exclusive=bool(ctx.attr("exclusive", 0)),
                       reverse=bool(ctx.attr("reverse", 0)))  # fmt: skip


@handler("CumProd")
def _cumprod(ctx):
    axis = int(np.asarray(ctx.const(1, "axis")).reshape(-1)[0])
    return cumulative.cumprod(ctx.input(0), axis, exclusive=bool(ctx.attr("exclusive", 0)),
                              reverse=bool(ctx.attr("reverse", 0)))  # fmt: skip


@handler("TopK")
def _topk(ctx):
    x = ctx.input(0)
    k = int(np.asarray(ctx.const(1, "k")).reshape(-1)[0]) if ctx.opset >= 10 else ctx.attr("k")
    v, i = gsort.top_k(x, k, axis=ctx.attr("axis", -1), largest=bool(ctx.attr("largest", 1)))
    return [v, i]


@handler("EyeLike")
def _eye_like(ctx):
    x = ctx.input(0)
    n, m = static_shape(ctx, x)
    et = ctx.attr("dtype", ctx.in_type(0))
    return np.eye(n, m, k=ctx.attr("k", 0), dtype=_ty.numpy_dtype(et))


@handler("Trilu")
def _trilu(ctx):
    x = ctx.input(0)
    shape = static_shape(ctx, x)
    k = int(np.asarray(ctx.const(1, "k")).reshape(-1)[0]) if ctx.has(1) else 0
    n, m = shape[-2:]
    # upper: keep j - i >= k; lower: keep j - i <= k
    keep = ~np.tri(n, m, k - 1, dtype=bool) if ctx.attr("upper", 1) else np.tri(n, m, k, dtype=bool)
    zero = gconst.zeros_like(x)
    return ew.where(keep, x, zero)


@handler("ReverseSequence")
def _reverse_sequence(ctx):
    """Reverse the first ``sequence_lens[b]`` steps of each batch row: a gather_elements
    along the time axis with static indices (the lengths must be known at import)."""
    x = ctx.input(0)
    shape = static_shape(ctx, x)
    lens = ctx.const_ints(1, "sequence_lens")
    b_ax, t_ax = ctx.attr("batch_axis", 1), ctx.attr("time_axis", 0)
    t = np.arange(shape[t_ax])
    rows = [np.where(t < n, n - 1 - t, t) for n in lens]  # (batch, time)
    idx = np.stack(rows) if b_ax < t_ax else np.stack(rows, axis=1)
    view = [1] * len(shape)
    view[b_ax], view[t_ax] = shape[b_ax], shape[t_ax]
    idx = np.broadcast_to(idx.reshape(view), shape).astype(np.int64)
    return gs.gather_elements(x, np.ascontiguousarray(idx), axis=t_ax)


@handler("Compress")
def _compress(ctx):
    """The slices where ``condition`` is true (it must be known at import: the output's
    shape depends on it)."""
    x = ctx.input(0)
    cond = np.asarray(ctx.const(1, "condition")).astype(bool).reshape(-1)
    axis = ctx.attr("axis")
    if axis is None:
        x = gshape.reshape(x, [-1])
        axis = 0
    n = static_shape(ctx, x)[axis]
    picked = np.nonzero(cond[:n])[0].astype(np.int64)
    return gidx.gather(x, picked, axis=axis)


@handler("NonZero")
def _nonzero(ctx):
    """Coordinates of the non-zero elements, for an input known at import (the output's
    shape depends on its values)."""
    v = np.asarray(ctx.const(0, "input of NonZero"))
    return np.asarray(np.nonzero(v), np.int64).reshape(v.ndim, -1)


@handler("Unique")
def _unique(ctx):
    """Unique values (or slices along ``axis``) of an input known at import, with their
    first indices, the inverse map and the counts (ONNX's order: sorted, or of first
    occurrence with ``sorted=0``)."""
    v = np.asarray(ctx.const(0, "input of Unique"))
    axis = ctx.attr("axis")
    y, first, inverse, counts = np.unique(v if axis is not None else v.reshape(-1),
                                          return_index=True, return_inverse=True,
                                          return_counts=True, axis=axis)  # fmt: skip
    inverse = np.asarray(inverse).reshape(-1)
    if not ctx.attr("sorted", 1):
        order = np.argsort(first, kind="stable")
        rank = np.argsort(order, kind="stable")
        y = np.take(y, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    return [y, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)]


@handler("DepthToSpace")
def _depth_to_space(ctx):
    x = ctx.input(0)
    b, c, h, w = static_shape(ctx, x)
    bs = ctx.attr("blocksize")
    if ctx.attr("mode", "DCR") == "DCR":
        t = gshape.reshape(x, [b, bs, bs, c // (bs * bs), h, w])
        t = gshape.transpose(t, [0, 3, 4, 1, 5, 2])
    else:
        t = gshape.reshape(x, [b, c // (bs * bs), bs, bs, h, w])
        t = gshape.transpose(t, [0, 1, 4, 2, 5, 3])
    return gshape.reshape(t, [b, c // (bs * bs), h * bs, w * bs])


@handler("SpaceToDepth")
def _space_to_depth(ctx):
    x = ctx.input(0)
    b, c, h, w = static_shape(ctx, x)
    bs = ctx.attr("blocksize")
    t = gshape.reshape(x, [b, c, h // bs, bs, w // bs, bs])
    if ctx.attr("mode", "DCR") == "CRD":
        t = gshape.transpose(t, [0, 1, 3, 5, 2, 4])
    else:
        t = gshape.transpose(t, [0, 3, 5, 1, 2, 4])
    return gshape.reshape(t, [b, c * bs * bs, h // bs, w // bs])
