"""Unary elementwise ops (neg, abs, exp, log, sqrt, the trigonometric and rounding functions,
is_nan, logical_not...): one ``Unary`` class per op, most made by ``_unary`` from a ``Math``
function and a gradient, and one builder each."""

from __future__ import annotations

import numpy as np

from ...expr import Math
from ..registry import Example, apply1, convert_to_tensor, register
from .base import Unary

# -- unary -------------------------------------------------------------------------------------


def _unary(type_name, math, vjp=None, domain=(-2.0, 2.0), kinds="f", differentiable=True):
    attrs = {"type": type_name, "math": math, "domain": domain, "kinds": kinds,
             "differentiable": differentiable}  # fmt: skip
    if vjp is not None:
        attrs["vjp"] = lambda self, op, grads: [None if grads[0] is None else vjp(op, grads[0])]
    return register(type(type_name, (Unary,), attrs))


def _x(op):
    return op.inputs[0]


def _y(op):
    return op.outputs[0]


_unary("Neg", Math.NEG, lambda op, g: negative(g), kinds="fi")
_unary("Abs", Math.ABS, lambda op, g: g * sign(_x(op)), kinds="fi")
_unary("Sign", Math.SIGN, kinds="fi", differentiable=False)
_unary("Exp", Math.EXP, lambda op, g: g * _y(op))
_unary("Expm1", Math.EXPM1, lambda op, g: g * (_y(op) + 1))
_unary("Log", Math.LOG, lambda op, g: g / _x(op), domain=(0.2, 3.0))
_unary("Log1p", Math.LOG1P, lambda op, g: g / (_x(op) + 1), domain=(-0.5, 3.0))
_unary("Sqrt", Math.SQRT, lambda op, g: g * 0.5 / _y(op), domain=(0.2, 3.0))
_unary("Rsqrt", Math.RSQRT, lambda op, g: g * -0.5 * _y(op) * _y(op) * _y(op), domain=(0.2, 3.0))
_unary("Reciprocal", Math.RECIP, lambda op, g: negative(g) * _y(op) * _y(op), domain=(0.3, 3.0))
_unary("Sin", Math.SIN, lambda op, g: g * cos(_x(op)))
_unary("Cos", Math.COS, lambda op, g: negative(g) * sin(_x(op)))
_unary("Tan", Math.TAN, lambda op, g: g * (1 + _y(op) * _y(op)), domain=(-1.2, 1.2))
_unary("Tanh", Math.TANH, lambda op, g: g * (1 - _y(op) * _y(op)))
_unary("Sigmoid", Math.SIGMOID, lambda op, g: g * _y(op) * (1 - _y(op)), domain=(-6.0, 6.0))
_unary("Erf", Math.ERF, lambda op, g: g * (2 / np.sqrt(np.pi)) * exp(negative(square(_x(op)))))
_unary("Floor", Math.FLOOR, differentiable=False)
_unary("Ceil", Math.CEIL, differentiable=False)
_unary("Round", Math.ROUND, differentiable=False)


@register
class Square(Unary):
    kinds = "fi"

    def scalar(self, args, attrs):
        return Math.MUL(args[0], args[0])

    def vjp(self, op, grads):
        return [grads[0] * 2 * op.inputs[0]]


class _BoolUnary(Unary):
    differentiable = False
    out_bool = True

    def examples(self):
        x = np.array([1.0, np.nan, np.inf, -np.inf, 0.0])
        return [Example(self._builder, [x], grad=False)]


register(type("IsNan", (_BoolUnary,), {"type": "IsNan", "math": Math.ISNAN}))
register(type("IsFinite", (_BoolUnary,), {"type": "IsFinite", "math": Math.ISFINITE}))


@register
class LogicalNot(Unary):
    math = Math.NOT
    kinds = "b"
    differentiable = False
    out_bool = True

    def examples(self):
        return [Example(self._builder, [np.array([True, False])], grad=False)]


def logical_not(x, name=None):
    """Elementwise not of bools."""
    return apply1("LogicalNot", [convert_to_tensor(x)], None, name)


def _unary_builder(type_name, doc):
    def fn(x, name=None):
        return apply1(type_name, [convert_to_tensor(x)], None, name)

    fn.__doc__ = doc
    fn.__name__ = type_name.lower()
    return fn


negative = _unary_builder("Neg", "-x.")
abs = _unary_builder("Abs", "|x|.")  # noqa: A001 - TF name
sign = _unary_builder("Sign", "-1, 0 or 1 by the sign of x.")
exp = _unary_builder("Exp", "e ** x.")
expm1 = _unary_builder("Expm1", "e ** x - 1, accurate near 0.")
log = _unary_builder("Log", "Natural logarithm.")
log1p = _unary_builder("Log1p", "log(1 + x), accurate near 0.")
sqrt = _unary_builder("Sqrt", "Square root.")
rsqrt = _unary_builder("Rsqrt", "1 / sqrt(x).")
square = _unary_builder("Square", "x * x.")
reciprocal = _unary_builder("Reciprocal", "1 / x.")
sin = _unary_builder("Sin", "Sine.")
cos = _unary_builder("Cos", "Cosine.")
tan = _unary_builder("Tan", "Tangent.")
tanh = _unary_builder("Tanh", "Hyperbolic tangent.")
sigmoid = _unary_builder("Sigmoid", "1 / (1 + exp(-x)), stable in both tails.")
erf = _unary_builder("Erf", "The error function.")
floor = _unary_builder("Floor", "Largest integer <= x.")
ceil = _unary_builder("Ceil", "Smallest integer >= x.")
round = _unary_builder("Round", "Round half to even, like numpy and TF.")  # noqa: A001
is_nan = _unary_builder("IsNan", "True where x is NaN.")
is_finite = _unary_builder("IsFinite", "True where x is neither NaN nor infinite.")
