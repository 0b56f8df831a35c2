"""Elementwise ONNX ops: arithmetic, comparisons, logic, activations, casts."""

from __future__ import annotations

import functools

import numpy as np
from onnx import TensorProto

from ... import dtypes as _dt
from ...ops import bitwise as _bw
from ...ops import elementwise as ew
from ...ops import nn as gnn
from ...ops import trig
from .. import types as _ty
from .base import handler


def _c(x, value):
    """A constant ``value`` of tensor ``x``'s dtype."""
    return np.asarray(value, dtype=x.dtype.np)


# -- binary arithmetic ---------------------------------------------------------------------


def _binary(fn):
    def convert(ctx):
        a, b = ctx.input(0), ctx.input(1)
        return fn(a, b)

    return convert


handler("Add")(_binary(ew.add))
handler("Sub")(_binary(ew.subtract))
handler("Mul")(_binary(ew.multiply))
handler("And")(_binary(ew.logical_and))
handler("Or")(_binary(ew.logical_or))
handler("Xor")(_binary(ew.logical_xor))
handler("Equal")(_binary(ew.equal))
handler("Less")(_binary(ew.less))
handler("LessOrEqual")(_binary(ew.less_equal))
handler("Greater")(_binary(ew.greater))
handler("GreaterOrEqual")(_binary(ew.greater_equal))
handler("BitwiseAnd")(_binary(_bw.bitwise_and))
handler("BitwiseOr")(_binary(_bw.bitwise_or))
handler("BitwiseXor")(_binary(_bw.bitwise_xor))


def trunc_div(a, b):
    """Integer division rounding toward zero (C, ONNX), from floor division."""
    q = ew.floordiv(a, b)
    rem = ew.not_equal(ew.mod(a, b), _c(a, 0))
    signs_differ = ew.not_equal(ew.less(a, _c(a, 0)), ew.less(b, _c(b, 0)))
    return ew.where(ew.logical_and(rem, signs_differ), ew.add(q, _c(q, 1)), q)


@handler("Div")
def _div(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype.is_integer:
        return trunc_div(a, b)
    return ew.divide(a, b)


@handler("Mod")
def _mod(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if ctx.attr("fmod", 0) == 0:
        return ew.mod(a, b)  # the sign of the divisor (Python's %)
    if a.dtype.is_integer:
        return ew.subtract(a, ew.multiply(trunc_div(a, b), b))
    # C fmod: the remainder has the sign of the dividend
    r = ew.mod(ew.abs(a), ew.abs(b))
    return ew.where(ew.less(a, _c(a, 0)), ew.negative(r), r)


@handler("Pow")
def _pow(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if b.dtype != a.dtype:
        b = ew.cast(b, a.dtype)
    return ew.pow(a, b)


@handler("BitShift")
def _bitshift(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if ctx.attr("direction") == "LEFT":
        return _bw.left_shift(a, b)
    return _bw.right_shift(a, b)


@handler("BitwiseNot")
def _bitwise_not(ctx):
    return _bw.invert(ctx.input(0))


def _variadic(fn):
    def convert(ctx):
        xs = [x for x in ctx.inputs() if x is not None]
        return functools.reduce(fn, xs)

    return convert


handler("Max")(_variadic(ew.maximum))
handler("Min")(_variadic(ew.minimum))
handler("Sum")(_variadic(ew.add))


@handler("Mean")
def _mean(ctx):
    xs = [x for x in ctx.inputs() if x is not None]
    total = functools.reduce(ew.add, xs)
    return ew.divide(total, _c(total, len(xs)))


# -- unary ---------------------------------------------------------------------------------


def _unary(fn):
    def convert(ctx):
        return fn(ctx.input(0))

    return convert


for _name, _fn in {
    "Abs": ew.abs, "Neg": ew.negative, "Exp": ew.exp, "Log": ew.log, "Sqrt": ew.sqrt,
    "Floor": ew.floor, "Ceil": ew.ceil, "Round": ew.round, "Sigmoid": ew.sigmoid,
    "Tanh": ew.tanh, "Erf": ew.erf, "Sin": ew.sin, "Cos": ew.cos, "Tan": ew.tan,
    "Sign": ew.sign, "Not": ew.logical_not, "IsNaN": ew.is_nan, "Relu": gnn.relu,
    "Softsign": gnn.softsign, "Identity": lambda x: x, "Asin": trig.asin, "Acos": trig.acos,
    "Atan": trig.atan, "Sinh": trig.sinh, "Cosh": trig.cosh, "Asinh": trig.asinh,
    "Acosh": trig.acosh, "Atanh": trig.atanh,
}.items():  # fmt: skip
    handler(_name)(_unary(_fn))


@handler("Reciprocal")
def _reciprocal(ctx):
    x = ctx.input(0)
    return ew.divide(_c(x, 1), x)


@handler("Softplus")
def _softplus(ctx):
    return gnn.softplus(ctx.input(0))


@handler("IsInf")
def _isinf(ctx):
    x = ctx.input(0)
    pos, neg = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    inf = ew.logical_and(ew.logical_not(ew.is_finite(x)), ew.logical_not(ew.is_nan(x)))
    if pos and neg:
        return inf
    if pos:
        return ew.logical_and(inf, ew.greater(x, _c(x, 0)))
    if neg:
        return ew.logical_and(inf, ew.less(x, _c(x, 0)))
    return ew.logical_and(inf, ew.logical_not(inf))


@handler("Elu")
def _elu(ctx):
    x, alpha = ctx.input(0), ctx.attr("alpha", 1.0)
    return ew.where(ew.greater(x, _c(x, 0)), x, ew.multiply(_c(x, alpha), ew.expm1(x)))


@handler("Celu")
def _celu(ctx):
    x, alpha = ctx.input(0), ctx.attr("alpha", 1.0)
    neg = ew.multiply(_c(x, alpha), ew.expm1(ew.divide(x, _c(x, alpha))))
    return ew.add(ew.maximum(x, _c(x, 0)), ew.minimum(_c(x, 0), neg))


@handler("Selu")
def _selu(ctx):
    x = ctx.input(0)
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    neg = ew.multiply(_c(x, alpha), ew.expm1(x))
    return ew.multiply(_c(x, gamma), ew.where(ew.greater(x, _c(x, 0)), x, neg))


@handler("LeakyRelu")
def _leaky(ctx):
    x, alpha = ctx.input(0), ctx.attr("alpha", 0.01)
    return ew.where(ew.less(x, _c(x, 0)), ew.multiply(x, _c(x, alpha)), x)


@handler("PRelu")
def _prelu(ctx):
    x, slope = ctx.input(0), ctx.input(1)
    return ew.where(ew.less(x, _c(x, 0)), ew.multiply(x, slope), x)


@handler("ThresholdedRelu")
def _thresholded(ctx):
    x, alpha = ctx.input(0), ctx.attr("alpha", 1.0)
    return ew.where(ew.greater(x, _c(x, alpha)), x, _c(x, 0))


@handler("HardSigmoid")
def _hard_sigmoid(ctx):
    x = ctx.input(0)
    alpha, beta = ctx.attr("alpha", 0.2), ctx.attr("beta", 0.5)
    y = ew.add(ew.multiply(x, _c(x, alpha)), _c(x, beta))
    return ew.clip_by_value(y, _c(x, 0), _c(x, 1))


@handler("HardSwish")
def _hard_swish(ctx):
    x = ctx.input(0)
    y = ew.add(ew.multiply(x, _c(x, 1 / 6)), _c(x, 0.5))
    return ew.multiply(x, ew.clip_by_value(y, _c(x, 0), _c(x, 1)))


@handler("Mish")
def _mish(ctx):
    x = ctx.input(0)
    return ew.multiply(x, ew.tanh(gnn.softplus(x)))


@handler("Swish")
def _swish(ctx):
    x, alpha = ctx.input(0), ctx.attr("alpha", 1.0)
    return ew.multiply(x, ew.sigmoid(ew.multiply(x, _c(x, alpha))))


@handler("Gelu")
def _gelu(ctx):
    return gnn.gelu(ctx.input(0), approximate=ctx.attr("approximate", "none") == "tanh")


@handler("Shrink")
def _shrink(ctx):
    x = ctx.input(0)
    bias, lambd = ctx.attr("bias", 0.0), ctx.attr("lambd", 0.5)
    lo = ew.add(x, _c(x, bias))
    hi = ew.subtract(x, _c(x, bias))
    zero = ew.multiply(x, _c(x, 0))
    return ew.where(ew.less(x, _c(x, -lambd)), lo, ew.where(ew.greater(x, _c(x, lambd)), hi, zero))


@handler("Clip")
def _clip(ctx):
    x = ctx.input(0)
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
    else:
        lo, hi = ctx.input(1), ctx.input(2)
    if lo is not None:
        x = ew.maximum(x, lo if hasattr(lo, "dtype") and not isinstance(lo, float) else _c(x, lo))
    if hi is not None:
        x = ew.minimum(x, hi if hasattr(hi, "dtype") and not isinstance(hi, float) else _c(x, hi))
    return x


@handler("Where")
def _where(ctx):
    return ew.where(ctx.input(0), ctx.input(1), ctx.input(2))


# -- casts ---------------------------------------------------------------------------------


def cast_to(ctx, x, src: int, dst: int):
    """ONNX Cast from ``src`` to ``dst`` element type on carrier tensor ``x``."""
    want = _ty.carrier(dst)
    if src == TensorProto.UINT64 and dst != TensorProto.UINT64:
        ctx.fail("casts from uint64 are not supported (graphc carries it in int64)")
    y = x
    src_float = _ty.carrier(src).is_floating
    if src_float and want.is_integer:
        # ONNX (like C) truncates toward zero; graphc's cast does too
        y = ew.cast(x, _dt.int64 if dst in (TensorProto.UINT32, TensorProto.UINT64) else want)
    elif x.dtype != want:
        y = ew.cast(x, want)
    if y.dtype != want:
        y = ew.cast(y, want)
    return y


@handler("Cast")
def _cast(ctx):
    dst = ctx.attr("to")
    if not _ty.supported(dst):
        ctx.fail(f"cast to {_ty.type_name(dst)} is not supported")
    return cast_to(ctx, ctx.input(0), ctx.in_type(0), dst)


@handler("CastLike")
def _cast_like(ctx):
    dst = ctx.in_type(1)
    if not _ty.supported(dst):
        ctx.fail(f"cast to {_ty.type_name(dst)} is not supported")
    return cast_to(ctx, ctx.input(0), ctx.in_type(0), dst)
