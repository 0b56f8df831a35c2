"""2-D pooling (``max_pool2d``, ``avg_pool2d``) and its gradients: max pooling routes the
gradient to the first maximum of each window (TF's choice), average pooling divides SAME and
explicit padding by the real inputs covered. Each gradient op's gradient is another op of the
family, so second-order gradients work."""

from __future__ import annotations

import numpy as np

from ..registry import DTypeError, Example, OpDef, ShapeError, apply1, convert_to_tensor, register
from ..shape_util import located
from .common import _rng, _sample
from .window import (
    _data_format,
    _float_same,
    _from_nhwc,
    _merge,
    _padding,
    _pair,
    _rank4,
    _to_nhwc,
    _Window,
    _window_out,
)


class _Pool(OpDef):
    def infer(self, specs, attrs):
        x = specs[0]
        if not x.dtype.is_floating:
            raise DTypeError(f"{x.dtype.name} is not supported (floating types only)")
        n, h, w, c = _rank4(x, "input")
        oh, ow = _window_out(h, w, *attrs["ksize"], attrs)
        return [((n, oh, ow, c), x.dtype)]

    def window(self, x, attrs):
        return _Window(x.shape[1], x.shape[2], *attrs["ksize"], attrs)


def _pool_examples(build):
    x = _sample(2, 5, 6, 3)
    return [
        Example(lambda t: build(t, 2, 2, "VALID"), [x]),
        Example(lambda t: build(t, 3, 2, "SAME"), [x]),
        Example(lambda t: build(t, (2, 3), (1, 2), "SAME"), [x]),
        Example(lambda t: build(t, 3, 1, "VALID"), [_sample(1, 4, 4, 2)]),
        Example(lambda t: build(t, 3, 2, [[0, 0], [1, 0], [2, 1], [0, 0]]), [x]),
        Example(lambda t: build(t, 2, 2, [[0, 0], [0, 1], [1, 0], [0, 0]]), [x]),
    ]


def _max_mask(win, x):
    """One-hot [N, OH, OW, KH*KW, C] of the first maximum in each window (TF's choice)."""
    cols = win.patches(win.pad(x, -np.inf))
    first = np.argmax(cols, axis=3)
    return np.arange(cols.shape[3])[None, None, None, :, None] == first[:, :, :, None, :]


@register
class MaxPool(_Pool):
    """Maximum over each window; SAME padding never wins (it is -inf)."""

    kind = "opaque"

    def ref(self, xs, attrs):
        x = xs[0]
        win = self.window(x, attrs)
        return np.ascontiguousarray(win.patches(win.pad(x, -np.inf)).max(axis=3), dtype=x.dtype)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None]
        return [apply1("MaxPoolGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        return _pool_examples(max_pool2d)


class _PoolGrad(_Pool):
    """Inputs (x or a tensor shaped like it, g pooled-shaped): the output has x's shape."""

    def infer(self, specs, attrs):
        (pooled, dtype), = _Pool.infer(self, specs[:1], attrs)  # fmt: skip
        _float_same(specs)
        _check_pooled(specs[1].shape, pooled)
        return [(specs[0].shape, dtype)]


@register
class MaxPoolGrad(_PoolGrad):
    """Inputs (x, g): g routed to the first maximum of each window of x, summed."""

    kind = "opaque"

    def ref(self, xs, attrs):
        x, g = xs
        win = self.window(x, attrs)
        cols = _max_mask(win, x) * g[:, :, :, None, :]
        return np.ascontiguousarray(win.scatter(cols, x.shape[0], x.shape[3], x.dtype))

    def vjp(self, op, grads):
        # linear in g, piecewise constant in x
        if grads[0] is None:
            return [None, None]
        return [None, apply1("MaxPoolGradGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        def mpg(ksize, strides, padding):
            a = _pool_attrs(ksize, strides, padding)
            return lambda x, g: apply1("MaxPoolGrad", [x, g], a)

        x = _distinct(2, 5, 6, 3)
        return [
            Example(mpg(2, 2, "VALID"), [x, _sample(2, 2, 3, 3)]),
            Example(mpg(3, 2, "SAME"), [x, _sample(2, 3, 3, 3)]),
            Example(mpg(3, 2, [[0, 0], [1, 0], [2, 1], [0, 0]]), [x, _sample(2, 2, 4, 3)]),
            Example(mpg(2, 2, [[0, 0], [0, 1], [1, 0], [0, 0]]), [x, _sample(2, 3, 3, 3)]),
        ]


@register
class MaxPoolGradGrad(_Pool):
    """Inputs (x, d): d picked at the first maximum of each window of x (adjoint of
    MaxPoolGrad in its gradient input)."""

    kind = "opaque"

    def infer(self, specs, attrs):
        out = _Pool.infer(self, specs[:1], attrs)
        _float_same(specs)
        if specs[0].shape is not None and specs[1].shape is not None:
            for a, b in zip(specs[0].shape, specs[1].shape):
                _merge(a, b, f"d must have the shape of x {specs[0].shape}, got {specs[1].shape}")
        return out

    def ref(self, xs, attrs):
        x, d = xs
        win = self.window(x, attrs)
        picked = np.where(_max_mask(win, x), win.patches(win.pad(d)), 0).sum(axis=3)
        return np.ascontiguousarray(picked, dtype=x.dtype)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None, None]
        return [None, apply1("MaxPoolGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        def mpgg(padding):
            a = _pool_attrs(3, 2, padding)
            return lambda x, d: apply1("MaxPoolGradGrad", [x, d], a)

        x = _distinct(2, 5, 6, 3)
        return [
            Example(mpgg("SAME"), [x, _sample(2, 5, 6, 3)]),
            Example(mpgg([[0, 0], [1, 0], [2, 1], [0, 0]]), [x, _sample(2, 5, 6, 3)]),
        ]


def _distinct(*shape):
    """Values with no ties (central differences of max pooling need a unique maximum)."""
    n = int(np.prod(shape))
    return (_rng.permutation(n).reshape(shape) / n * 4 - 2).astype(np.float64)


def _check_pooled(gshape, pooled):
    if gshape is None or pooled is None:
        return
    if len(gshape) != 4:
        raise ShapeError(f"gradient must be rank 4, got {gshape}")
    for a, b in zip(gshape, pooled):
        _merge(a, b, f"gradient shape {gshape} does not fit the pooled shape {pooled}")


def _avg_counts(win):
    """[OH, OW]: how many real (unpadded) inputs each window covers (TF's SAME divisor)."""
    ones = win.pad(np.ones((1, win.h, win.w, 1)))
    return win.patches(ones).sum(axis=3)[0, :, :, 0]


@register
class AvgPool(_Pool):
    """Mean over each window; SAME divides by the number of real inputs, as TF."""

    kind = "opaque"

    def ref(self, xs, attrs):
        x = xs[0]
        win = self.window(x, attrs)
        s = win.patches(win.pad(x)).sum(axis=3)
        return np.ascontiguousarray(s / _avg_counts(win)[None, :, :, None], dtype=x.dtype)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None]
        return [apply1("AvgPoolGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        return _pool_examples(avg_pool2d)


@register
class AvgPoolGrad(_PoolGrad):
    """Inputs (like, g): each g spread evenly over its window; only like's shape is read."""

    kind = "opaque"

    def ref(self, xs, attrs):
        like, g = xs
        win = self.window(like, attrs)
        share = g / _avg_counts(win)[None, :, :, None]
        cols = np.broadcast_to(share[:, :, :, None, :], (*g.shape[:3], win.kh * win.kw, g.shape[3]))
        return np.ascontiguousarray(win.scatter(cols, g.shape[0], g.shape[3], g.dtype))

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None, None]
        return [None, apply1("AvgPool", [grads[0]], op.attrs)]

    def examples(self):
        def apg(ksize, strides, padding):
            a = _pool_attrs(ksize, strides, padding)
            return lambda x, g: apply1("AvgPoolGrad", [x, g], a)

        x = _sample(2, 5, 6, 3)
        return [
            Example(apg(2, 2, "VALID"), [x, _sample(2, 2, 3, 3)]),
            Example(apg(3, 2, "SAME"), [x, _sample(2, 3, 3, 3)]),
            Example(apg(3, 2, [[0, 0], [1, 0], [2, 1], [0, 0]]), [x, _sample(2, 2, 4, 3)]),
        ]


def _pool_attrs(ksize, strides, padding, data_format="NHWC"):
    return {
        "ksize": _pair(ksize, "ksize", data_format=data_format),
        "strides": _pair(strides, "strides", data_format=data_format),
        "padding": _padding(padding, data_format),
    }


def _pool(type_name, what, input, ksize, strides, padding, data_format, name):  # noqa: A002
    data_format = _data_format(data_format, what)
    x = convert_to_tensor(input)
    attrs = _pool_attrs(ksize, strides, padding, data_format)
    if data_format == "NHWC":
        return apply1(type_name, [x], attrs, name)
    y = apply1(type_name, [_to_nhwc(x, data_format, what)], attrs)
    return _from_nhwc(y, data_format, name)


@located("max_pool2d")
def max_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):  # noqa: A002
    """Max over ksize windows of ``input`` (NHWC, or NCHW with ``data_format="NCHW"``;
    ksize/strides: int, [h, w] or a 4-list in the data format's order); ``padding`` as
    conv2d's (explicit padding never wins: it reads as -inf)."""
    return _pool("MaxPool", "max_pool2d", input, ksize, strides, padding, data_format, name)


@located("avg_pool2d")
def avg_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):  # noqa: A002
    """Mean over ksize windows of ``input`` (NHWC or NCHW); SAME and explicit padding divide
    by the real inputs covered."""
    return _pool("AvgPool", "avg_pool2d", input, ksize, strides, padding, data_format, name)


max_pool = max_pool2d
avg_pool = avg_pool2d
