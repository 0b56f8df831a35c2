"""Elementwise ops: arithmetic, comparisons, logic, transcendental functions, where, cast, one
module per family; this package gathers their builders.

Each op class gives its numpy meaning through its ``Math`` scalar body (``scalar``), so the
reference interpreter, fused kernels and both backends agree on one definition.

* ``base.py``: the ``Elementwise``, ``Unary`` and ``Binary`` base classes.
* ``arithmetic.py``: binary arithmetic, comparisons and logic; ``unary.py``: one-input
  functions; ``cast_where.py``: cast and where.
* ``broadcast.py``: sum_to_shape and broadcast_like, the gradients' shape helpers.
"""

from .arithmetic import (
    add,
    clip_by_value,
    divide,
    equal,
    floordiv,
    greater,
    greater_equal,
    less,
    less_equal,
    logical_and,
    logical_or,
    logical_xor,
    maximum,
    minimum,
    mod,
    multiply,
    not_equal,
    pow,
    squared_difference,
    subtract,
    truediv,
)
from .base import Binary, Elementwise, Unary, ones_like_, zeros_like_
from .broadcast import broadcast_like, sum_to_shape
from .cast_where import cast, where
from .unary import (
    abs,
    ceil,
    cos,
    erf,
    exp,
    expm1,
    floor,
    is_finite,
    is_nan,
    log,
    log1p,
    logical_not,
    negative,
    reciprocal,
    round,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    tan,
    tanh,
)

__all__ = [
    "add", "subtract", "multiply", "divide", "truediv", "floordiv", "mod", "pow", "maximum",
    "minimum", "negative", "abs", "sign", "exp", "expm1", "log", "log1p", "sqrt", "rsqrt",
    "square", "reciprocal", "sin", "cos", "tan", "tanh", "sigmoid", "erf", "floor", "ceil",
    "round", "where", "cast", "equal", "not_equal", "less", "less_equal", "greater",
    "greater_equal", "logical_and", "logical_or", "logical_not", "logical_xor",
    "clip_by_value", "is_nan", "is_finite", "squared_difference", "sum_to_shape",
    "broadcast_like",
]  # fmt: skip
