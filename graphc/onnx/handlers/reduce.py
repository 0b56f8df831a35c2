"""ONNX reductions (ReduceSum, ReduceL2, ArgMax...)."""

from __future__ import annotations

import numpy as np

from ...ops import elementwise as ew
from ...ops import reduce as gred
from ...ops import shape as gshape
from .base import handler
from .tensor import static_shape


def _axes(ctx):
    """The reduced axes (None: all) per the op's opset rules."""
    takes_input = ctx.opset >= 18 or (ctx.op_type == "ReduceSum" and ctx.opset >= 13)
    axes = (ctx.const_ints(1, "axes") if ctx.has(1) else None) if takes_input else ctx.attr("axes")
    if axes is not None and len(axes) == 0:
        axes = None
    if axes is None and ctx.attr("noop_with_empty_axes", 0):
        return "noop"
    return None if axes is None else [int(a) for a in axes]


def _reducer(fn, pre=None, post=None):
    def convert(ctx):
        x = ctx.input(0)
        axes = _axes(ctx)
        keep = bool(ctx.attr("keepdims", 1))
        if axes == "noop":
            # the input is not reduced; the elementwise part of the reduction still applies
            t = pre(x) if pre else x
            return post(t) if post else t
        rank = len(static_shape(ctx, x))
        axes_all = list(range(rank)) if axes is None else axes
        shape = static_shape(ctx, x)
        if any(shape[a] == 0 for a in axes_all) and ctx.op_type in ("ReduceMax", "ReduceMin"):
            # ONNX: an empty reduction gives the identity (-inf / +inf, or the int extremes)
            out_shape = [1 if (i in [a % rank for a in axes_all]) else d
                         for i, d in enumerate(shape)]  # fmt: skip
            if not keep:
                out_shape = [
                    d for i, d in enumerate(shape) if i not in [a % rank for a in axes_all]
                ]
            if x.dtype.is_bool:
                return np.full(out_shape, ctx.op_type == "ReduceMin", bool)
            info = np.finfo(x.dtype.np) if x.dtype.is_floating else np.iinfo(x.dtype.np)
            big = np.inf if x.dtype.is_floating else info.max
            v = -big if ctx.op_type == "ReduceMax" else big
            if not x.dtype.is_floating:
                v = info.min if ctx.op_type == "ReduceMax" else info.max
            return np.full(out_shape, v, x.dtype.np)
        t = pre(x) if pre else x
        if t.dtype.is_bool and ctx.op_type in ("ReduceMax", "ReduceMin"):
            any_all = gred.reduce_any if ctx.op_type == "ReduceMax" else gred.reduce_all
            return any_all(t, axis=axes_all, keepdims=keep)
        y = fn(t, axis=axes_all, keepdims=keep)
        return post(y) if post else y

    return convert


handler("ReduceSum")(_reducer(gred.reduce_sum))
handler("ReduceMean")(_reducer(gred.reduce_mean))
handler("ReduceMax")(_reducer(gred.reduce_max))
handler("ReduceMin")(_reducer(gred.reduce_min))
handler("ReduceProd")(_reducer(gred.reduce_prod))
handler("ReduceLogSumExp")(_reducer(gred.reduce_logsumexp))
handler("ReduceL1")(_reducer(gred.reduce_sum, pre=ew.abs))
handler("ReduceSumSquare")(_reducer(gred.reduce_sum, pre=lambda x: ew.multiply(x, x)))
handler("ReduceL2")(_reducer(gred.reduce_sum, pre=lambda x: ew.multiply(x, x), post=ew.sqrt))
handler("ReduceLogSum")(_reducer(gred.reduce_sum, post=ew.log))


def _arg(fn):
    def convert(ctx):
        x = ctx.input(0)
        shape = static_shape(ctx, x)
        axis = ctx.attr("axis", 0)
        axis = axis + len(shape) if axis < 0 else axis
        if ctx.attr("select_last_index", 0):
            flipped = gshape.reverse(x, [axis])
            idx = fn(flipped, axis=axis)
            idx = ew.subtract(np.asarray(shape[axis] - 1, idx.dtype.np), idx)
        else:
            idx = fn(x, axis=axis)
        if ctx.attr("keepdims", 1):
            idx = gshape.expand_dims(idx, axis)
        return idx

    return convert


handler("ArgMax")(_arg(gred.argmax))
handler("ArgMin")(_arg(gred.argmin))
