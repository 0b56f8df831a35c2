"""Binary elementwise ops: arithmetic (add ... pow, maximum, minimum, with integer error
checks for division by zero and negative powers), comparisons and logic, with their
gradients and builders; numpy promotion between tensors, a weak Python scalar taking the
tensor's dtype."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from ...expr import Const, Math
from ..registry import (
    Example,
    _is_weak_numpy_scalar,
    _is_weak_scalar,
    apply1,
    convert_args,
    register,
)
from ..shape_util import located
from .base import Binary, _integer_examples, ones_like_, zeros_like_
from .broadcast import _unbroadcast
from .cast_where import cast, where
from .unary import log, negative, square

# -- binary arithmetic -------------------------------------------------------------------------


@register
class Add(Binary):
    commutative = True

    math = Math.ADD

    def vjp(self, op, grads):
        g = grads[0]
        return [_unbroadcast(g, op.inputs[0]), _unbroadcast(g, op.inputs[1])]


@register
class Sub(Binary):
    math = Math.SUB

    def vjp(self, op, grads):
        g = grads[0]
        return [_unbroadcast(g, op.inputs[0]), _unbroadcast(negative(g), op.inputs[1])]


@register
class Mul(Binary):
    commutative = True

    math = Math.MUL

    def vjp(self, op, grads):
        g = grads[0]
        a, b = op.inputs
        return [_unbroadcast(g * b, a), _unbroadcast(g * a, b)]


@register
class RealDiv(Binary):
    math = Math.DIV

    def integer_error(self, args, dtype):
        return Math.EQ(args[1], Const(0, dtype)), "Integer division by zero"

    def examples(self):
        return super().examples() + _integer_examples(self._builder, nonzero=True)

    domain = ((-2.0, 2.0), (0.5, 2.0))

    def vjp(self, op, grads):
        g = grads[0]
        a, b = op.inputs
        return [_unbroadcast(g / b, a), _unbroadcast(negative(g) * op.outputs[0] / b, b)]


@register
class FloorDiv(Binary):
    math = Math.FLOORDIV

    def integer_error(self, args, dtype):
        return Math.EQ(args[1], Const(0, dtype)), "Integer division by zero"

    def examples(self):
        return super().examples() + _integer_examples(self._builder, nonzero=True)

    differentiable = False
    domain = ((-5.0, 5.0), (0.5, 2.0))


@register
class FloorMod(Binary):
    math = Math.MOD

    def integer_error(self, args, dtype):
        return Math.EQ(args[1], Const(0, dtype)), "Integer division by zero"

    domain = ((-5.0, 5.0), (0.5, 2.0))

    def vjp(self, op, grads):
        g = grads[0]
        a, b = op.inputs
        return [_unbroadcast(g, a), _unbroadcast(negative(g) * floordiv(a, b), b)]

    def examples(self):
        # keep away from the jumps of mod so central differences are valid
        a = np.array([[0.3, 1.2, -0.7], [2.2, -1.6, 0.9]])
        b = np.array([1.5, 1.7, 1.9])
        return [Example(self._builder, [a, b], grad=True)] + _integer_examples(
            self._builder, nonzero=True
        )


@register
class Pow(Binary):
    math = Math.POW

    def integer_error(self, args, dtype):
        message = "Integers to negative integer powers are not allowed"
        return Math.LT(args[1], Const(0, dtype)), message

    def examples(self):
        return super().examples() + _integer_examples(self._builder, nonzero=False)

    domain = ((0.5, 2.0), (-2.0, 2.0))

    def vjp(self, op, grads):
        g = grads[0]
        a, b = op.inputs
        y = op.outputs[0]
        ga = g * b * pow(a, b - 1)
        safe_a = where(a > 0, a, ones_like_(a))
        gb = g * y * where(a > 0, log(safe_a), zeros_like_(a))
        return [_unbroadcast(ga, a), _unbroadcast(gb, b)]


def _minmax_vjp(op, grads, pick_first):
    g = grads[0]
    a, b = op.inputs
    # Ties split the gradient evenly, as TF does for reduce_max; for maximum TF gives the
    # gradient to the first operand: follow TF.
    mask = cast(pick_first(a, b), g.dtype)
    return [_unbroadcast(g * mask, a), _unbroadcast(g * (1 - mask), b)]


@register
class Maximum(Binary):
    commutative = True

    math = Math.MAX

    def vjp(self, op, grads):
        return _minmax_vjp(op, grads, greater_equal)


@register
class Minimum(Binary):
    commutative = True

    math = Math.MIN

    def vjp(self, op, grads):
        return _minmax_vjp(op, grads, less_equal)


class Compare(Binary):
    differentiable = False
    out_bool = True
    kinds = "fib"


for _name, _math in [
    ("Equal", Math.EQ), ("NotEqual", Math.NE), ("Less", Math.LT), ("LessEqual", Math.LE),
    ("Greater", Math.GT), ("GreaterEqual", Math.GE),
]:  # fmt: skip
    _commutative = _math in (Math.EQ, Math.NE)
    register(type(_name, (Compare,), {"type": _name, "math": _math, "commutative": _commutative}))


class Logical(Binary):
    commutative = True  # and, or, xor
    differentiable = False
    kinds = "b"
    out_bool = True

    def examples(self):
        a = np.array([[True, False], [True, True]])
        b = np.array([False, True])
        return [Example(self._builder, [a, b], grad=False)]


for _name, _math in [("LogicalAnd", Math.AND), ("LogicalOr", Math.OR), ("LogicalXor", Math.XOR)]:
    register(type(_name, (Logical,), {"type": _name, "math": _math}))

# -- public builders ---------------------------------------------------------------------------


def _binary(type_name, x, y, name):
    a, b = convert_args([x, y])
    if a.dtype != b.dtype:
        # A weak float scalar with an integer tensor gives float32 (as JAX), not numpy's
        # float64; two tensors follow numpy promotion.
        if _is_weak_scalar(x) or _is_weak_numpy_scalar(x, b.dtype):
            dt = a.dtype
        elif _is_weak_scalar(y) or _is_weak_numpy_scalar(y, a.dtype):
            dt = b.dtype
        else:
            dt = _dt.result_type(a.dtype, b.dtype)
        a, b = cast(a, dt), cast(b, dt)
    return apply1(type_name, [a, b], None, name)


def add(x, y, name=None):
    """x + y, broadcasting."""
    return _binary("Add", x, y, name)


def subtract(x, y, name=None):
    """x - y, broadcasting."""
    return _binary("Sub", x, y, name)


def multiply(x, y, name=None):
    """x * y, broadcasting."""
    return _binary("Mul", x, y, name)


def divide(x, y, name=None):
    """x / y (true division: integer operands give float64, as numpy does)."""
    a, b = convert_args([x, y])
    if a.dtype == b.dtype and not a.dtype.is_floating:
        a, b = cast(a, _dt.float64), cast(b, _dt.float64)
    return _binary("RealDiv", a, b, name)


truediv = divide


def floordiv(x, y, name=None):
    """Floor of x / y (integer division rounds toward minus infinity)."""
    return _binary("FloorDiv", x, y, name)


def mod(x, y, name=None):
    """x - floordiv(x, y) * y: the result has the sign of y, as in Python/numpy."""
    return _binary("FloorMod", x, y, name)


def pow(x, y, name=None):  # noqa: A001 - TF name
    """x ** y."""
    return _binary("Pow", x, y, name)


def maximum(x, y, name=None):
    """Elementwise maximum."""
    return _binary("Maximum", x, y, name)


def minimum(x, y, name=None):
    """Elementwise minimum."""
    return _binary("Minimum", x, y, name)


def squared_difference(x, y, name=None):
    """(x - y) ** 2."""
    return square(subtract(x, y), name=name)


def _compare(type_name, x, y, name):
    return _binary(type_name, x, y, name)


def equal(x, y, name=None):
    """Elementwise x == y (bool)."""
    return _compare("Equal", x, y, name)


def not_equal(x, y, name=None):
    """Elementwise x != y (bool)."""
    return _compare("NotEqual", x, y, name)


def less(x, y, name=None):
    """Elementwise x < y (bool)."""
    return _compare("Less", x, y, name)


def less_equal(x, y, name=None):
    """Elementwise x <= y (bool)."""
    return _compare("LessEqual", x, y, name)


def greater(x, y, name=None):
    """Elementwise x > y (bool)."""
    return _compare("Greater", x, y, name)


def greater_equal(x, y, name=None):
    """Elementwise x >= y (bool)."""
    return _compare("GreaterEqual", x, y, name)


def logical_and(x, y, name=None):
    """Elementwise and of bools."""
    return _binary("LogicalAnd", x, y, name)


def logical_or(x, y, name=None):
    """Elementwise or of bools."""
    return _binary("LogicalOr", x, y, name)


def logical_xor(x, y, name=None):
    """Elementwise exclusive or of bools."""
    return _binary("LogicalXor", x, y, name)


@located("clip_by_value")
def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """Clamp ``t`` to [clip_value_min, clip_value_max]."""
    return minimum(maximum(t, clip_value_min), clip_value_max, name=name)
