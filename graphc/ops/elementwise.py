"""Elementwise ops: arithmetic, comparisons, logic, transcendental functions, where, cast.

Each op class gives its numpy meaning through its ``Math`` scalar body (``scalar``), so the
reference interpreter, fused kernels and both backends agree on one definition.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..expr import Arg, Const, Math, cast_values, eval_expr
from ..expr import Cast as CastExpr
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    _is_weak_numpy_scalar,
    _is_weak_scalar,
    apply1,
    broadcast_shapes,
    convert_args,
    convert_to_tensor,
    register,
)
from .shape_util import located

__all__ = [
    "add", "subtract", "multiply", "divide", "truediv", "floordiv", "mod", "pow", "maximum",
    "minimum", "negative", "abs", "sign", "exp", "expm1", "log", "log1p", "sqrt", "rsqrt",
    "square", "reciprocal", "sin", "cos", "tan", "tanh", "sigmoid", "erf", "floor", "ceil",
    "round", "where", "cast", "equal", "not_equal", "less", "less_equal", "greater",
    "greater_equal", "logical_and", "logical_or", "logical_not", "logical_xor",
    "clip_by_value", "is_nan", "is_finite", "squared_difference", "sum_to_shape",
    "broadcast_like",
]  # fmt: skip

_rng = np.random.default_rng(0)


def _sample(shape, low=-2.0, high=2.0, dtype="f8"):
    return _rng.uniform(low, high, size=shape).astype(dtype)


# -- base classes ------------------------------------------------------------------------------


class Elementwise(OpDef):
    """Output = scalar body applied to the broadcast inputs."""

    elementwise = True
    math: Math | None = None
    #: allowed input kinds: "f" float, "i" int, "b" bool
    kinds = "fi"
    out_bool = False

    def scalar(self, args, attrs):
        return self.math(*args)

    def integer_error(self, args, dtype):
        """For integer operands of ``dtype``: ``(bad, message)``, ``bad`` a bool Expr over the
        operand Exprs ``args`` true for an element TF refuses (division by zero...), or None.
        The reference raises; the kernels report it through the status buffer."""
        return None

    def ref(self, xs, attrs):
        if xs and xs[0].dtype.kind in "iu":
            error = self.integer_error([Arg(i) for i in range(len(xs))], _dt.as_dtype(xs[0].dtype))
            if error is not None and np.any(eval_expr(error[0], list(xs))):
                raise ArithmeticError(error[1])
        out = eval_expr(self.scalar([Arg(i) for i in range(len(xs))], attrs), list(xs))
        dtype = _dt.bool_.np if self.out_bool else xs[0].dtype
        return np.asarray(out).astype(dtype, copy=False)

    def infer(self, specs, attrs):
        dtypes = {s.dtype for s in specs}
        if len(dtypes) != 1:
            names = " and ".join(s.dtype.name for s in specs)
            raise DTypeError(f"operands must have one dtype, got {names}")
        dtype = specs[0].dtype
        if dtype.np.kind.replace("u", "i") not in self.kinds:
            raise DTypeError(f"{dtype.name} is not supported (operands must be {self._kinds()})")
        shape = broadcast_shapes(*[s.shape for s in specs])
        return [(shape, _dt.bool_ if self.out_bool else dtype)]

    def _kinds(self):
        return " or ".join({"f": "floating", "i": "integer", "b": "bool"}[k] for k in self.kinds)


class Unary(Elementwise):
    domain = (-2.0, 2.0)

    def examples(self):
        lo, hi = self.domain
        grad = self.differentiable
        return [
            Example(self._builder, [_sample((3, 4), lo, hi)], grad=grad),
            Example(self._builder, [_sample((), lo, hi)], grad=grad),
            Example(self._builder, [_sample((0, 3), lo, hi)], grad=False),
        ]

    def _builder(self, x):
        return apply1(self.type, [x])


class Binary(Elementwise):
    domain = ((-2.0, 2.0), (-2.0, 2.0))

    def examples(self):
        (la, ha), (lb, hb) = self.domain
        grad = self.differentiable
        build = self._builder
        return [
            Example(build, [_sample((3, 4), la, ha), _sample((3, 4), lb, hb)], grad=grad),
            Example(build, [_sample((2, 1, 3), la, ha), _sample((4, 1), lb, hb)], grad=grad),
            Example(build, [_sample((), la, ha), _sample((5,), lb, hb)], grad=grad),
        ]

    def _builder(self, a, b):
        return apply1(self.type, [a, b])


def _integer_examples(build, nonzero):
    """int32/int64 cases (negative operands included) for ops with an integer error check:
    divisors are non-zero (``nonzero``) or exponents small and non-negative."""
    a = np.array([[7, -7, 0], [13, -1, 5]])
    b = np.array([2, -3, 4]) if nonzero else np.array([0, 3, 2])
    return [
        Example(build, [a.astype(np.int32), b.astype(np.int32)], grad=False),
        Example(build, [a.astype(np.int64), b[:1].astype(np.int64)], grad=False),
    ]


def _unbroadcast(g, x):
    """Sum gradient ``g`` down to the shape of input ``x`` (no-op when shapes are equal)."""
    if g is None:
        return None
    if g.shape is not None and x.shape is not None and g.shape == x.shape and None not in x.shape:
        return g
    return sum_to_shape(g, x)


# -- binary arithmetic -------------------------------------------------------------------------


@register
class Add(Binary):
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
    math = Math.MAX

    def vjp(self, op, grads):
        return _minmax_vjp(op, grads, greater_equal)


@register
class Minimum(Binary):
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
    register(type(_name, (Compare,), {"type": _name, "math": _math}))


class Logical(Binary):
    differentiable = False
    kinds = "b"
    out_bool = True

    def examples(self):
        a = np.array([[True, False], [True, True]])
        b = np.array([False, True])
        return [Example(self._builder, [a, b], grad=False)]


for _name, _math in [("LogicalAnd", Math.AND), ("LogicalOr", Math.OR), ("LogicalXor", Math.XOR)]:
    register(type(_name, (Logical,), {"type": _name, "math": _math}))


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


_CAST_EDGES = np.array([
    np.nan, np.inf, -np.inf, 3e9, -3e9, 1e19, -1e19, 1e30, -1e30, 2.7, -2.7, 0.5, -0.5,
    2147483520.0, -2147483648.0, 9.2e18, -9.2e18,
])  # fmt: skip


@register
class Cast(Unary):
    """Convert to ``attrs['dtype']``.

    Floating -> int32/int64 truncates toward zero and *saturates*, the same on every target
    (XLA's and JAX's convert): NaN -> 0, +inf and values above the range -> the dtype's
    maximum, -inf and values below it -> its minimum (numpy and TF leave those undefined).
    """

    kinds = "fib"

    def infer(self, specs, attrs):
        return [(specs[0].shape, attrs["dtype"])]

    def scalar(self, args, attrs):
        return CastExpr(args[0], attrs["dtype"])

    def ref(self, xs, attrs):
        return cast_values(xs[0], attrs["dtype"].np)

    def vjp(self, op, grads):
        x = op.inputs[0]
        if not (x.dtype.is_floating and op.outputs[0].dtype.is_floating) or grads[0] is None:
            return [None]
        return [cast(grads[0], x.dtype)]

    def examples(self):
        x = _sample((3, 4), -3, 3)
        return [
            Example(lambda t: cast(t, _dt.float32), [x], grad=False),
            Example(lambda t: cast(t, _dt.float64), [x.astype("f4")], float64=False, grad_tol=1e-2),
            Example(lambda t: cast(t, _dt.int32), [x], grad=False),
            Example(lambda t: cast(t > 0, _dt.float64), [x], grad=False),
            # saturating: NaN -> 0, out of range -> the int range's ends, truncation
            Example(lambda t: cast(t, _dt.int32), [_CAST_EDGES.astype("f4")], grad=False),
            Example(lambda t: cast(t, _dt.int64), [_CAST_EDGES], grad=False),
            Example(lambda t: cast(t, _dt.int64), [_CAST_EDGES.astype("f4")], grad=False),
        ]


@register
class Select(Elementwise):
    """Elementwise choice, broadcasting all three inputs (numpy rules). ``where`` builds it,
    reshaping a rank-1 condition first to select rows (TF1)."""

    math = Math.SELECT

    def infer(self, specs, attrs):
        cond, x, y = specs
        if not cond.dtype.is_bool:
            raise DTypeError(f"condition must be bool, got {cond.dtype.name}")
        if x.dtype != y.dtype:
            raise DTypeError(f"x and y must have one dtype, got {x.dtype.name} and {y.dtype.name}")
        return [(broadcast_shapes(cond.shape, x.shape, y.shape), x.dtype)]

    def ref(self, xs, attrs):
        return np.where(xs[0], xs[1], xs[2]).astype(xs[1].dtype)

    def vjp(self, op, grads):
        g = grads[0]
        c, x, y = op.inputs
        z = zeros_like_(g)
        return [None, _unbroadcast(where(c, g, z), x), _unbroadcast(where(c, z, g), y)]

    def examples(self):
        c = np.array([[True, False, True]])
        rows = np.array([True, False, True])
        return [
            Example(lambda c, x, y: where(c, x, y), [c, _sample((2, 3)), _sample((2, 1))]),
            # TF1: a rank-1 condition picks whole rows of higher-rank values
            Example(lambda c, x, y: where(c, x, y), [rows, _sample((3, 2)), _sample((3, 2))]),
            Example(lambda c, x, y: where(c, x, y), [rows, _sample((3, 2, 2)), _sample((2,))]),
        ]


# -- gradient helpers: reduce to / broadcast to another tensor's runtime shape -----------------


def _sum_to(g: np.ndarray, shape) -> np.ndarray:
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(shape) if d == 1 and g.shape[i + lead] != 1
    )
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


@register
class SumToShape(OpDef):
    """Sum input 0 over the dims broadcasting added, to the runtime shape of input 1."""

    def infer(self, specs, attrs):
        g, like = specs
        if like.shape is not None and g.shape is not None:
            broadcast_shapes(g.shape, like.shape)
            if len(like.shape) > len(g.shape):
                raise ShapeError(f"cannot sum {g.shape} to a higher-rank shape {like.shape}")
        return [(like.shape, g.dtype)]

    def ref(self, xs, attrs):
        return _sum_to(xs[0], xs[1].shape)

    def vjp(self, op, grads):
        return [broadcast_like(grads[0], op.inputs[0]), None]

    def examples(self):
        return [Example(lambda g, x: sum_to_shape(g, x), [_sample((2, 3, 4)), _sample((3, 1))])]


@register
class BroadcastLike(OpDef):
    """Broadcast input 0 to the runtime shape of input 1 (numpy rules)."""

    def infer(self, specs, attrs):
        x, like = specs
        if x.dtype != like.dtype and not like.dtype.is_bool:
            pass
        shape = broadcast_shapes(x.shape, like.shape)
        if shape is not None and like.shape is not None and len(shape) != len(like.shape):
            raise ShapeError(f"cannot broadcast {x.shape} to lower-rank {like.shape}")
        return [(like.shape if like.shape is not None else shape, x.dtype)]

    def ref(self, xs, attrs):
        return np.array(np.broadcast_to(xs[0], xs[1].shape), order="C")

    def vjp(self, op, grads):
        return [sum_to_shape(grads[0], op.inputs[0]), None]

    def examples(self):
        return [Example(lambda x, l: broadcast_like(x, l), [_sample((3, 1)), _sample((2, 3, 4))])]


def sum_to_shape(g, like, name=None):
    """Sum ``g`` over broadcast dims so it takes the (runtime) shape of ``like``."""
    return apply1("SumToShape", [g, like], None, name)


def broadcast_like(x, like, name=None):
    """Broadcast ``x`` to the (runtime) shape of ``like``."""
    return apply1("BroadcastLike", [x, like], None, name)


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


@located("cast")
def cast(x, dtype, name=None):
    """Convert ``x`` to ``dtype``; a no-op when it already has it.

    Floating -> integer truncates toward zero and saturates (NaN -> 0, out-of-range values
    and infinities -> the integer type's minimum or maximum), on every target.
    """
    x = convert_to_tensor(x)
    dtype = _dt.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply1("Cast", [x], {"dtype": dtype}, name)


@located("where")
def where(condition, x=None, y=None, name=None):
    """TF1's ``tf.where``.

    ``where(condition, x, y)``: ``x`` where ``condition`` is true, else ``y``. A condition of
    the shape of ``x`` selects elements (condition, x and y also broadcast like numpy); a
    rank-1 condition with ``x``/``y`` of higher rank selects *rows*, as TF1: its length is
    the first dimension of ``x``, and ``condition[i]`` picks ``x[i]`` or ``y[i]`` whole.

    ``where(condition)``: the coordinates of the true (non-zero) elements of ``condition``,
    an int64 tensor of shape ``(num_true, rank(condition))`` in row-major order. Its size
    depends on the values: the cpu target runs it on the host (``host_fallback:``).
    """
    c = convert_to_tensor(condition)
    if x is None and y is None:
        return apply1("Where", [c], None, name)
    if x is None or y is None:
        raise ValueError("give both x and y, or neither (where(condition): coordinates)")
    a, b = convert_args([x, y])
    if a.dtype != b.dtype:
        dt = _dt.result_type(a.dtype, b.dtype)
        a, b = cast(a, dt), cast(b, dt)
    if c.shape is not None and len(c.shape) == 1:
        c = _rows_condition(c, broadcast_shapes(a.shape, b.shape))
    return apply1("Select", [c, a, b], None, name)


def _rows_condition(c, shape):
    """A rank-1 condition reshaped to pick whole rows of values of ``shape`` (TF1's where)."""
    if shape is None:
        raise ValueError(
            "a rank-1 condition needs x and y of known rank (it selects rows when they have "
            "rank > 1, elements when rank 1)"
        )
    if len(shape) <= 1:
        return c
    n, rows = c.shape[0], shape[0]
    if n is not None and rows is not None and n != rows:
        raise ValueError(
            f"a rank-1 condition selects rows: its length {n} must equal the first "
            f"dimension of x and y, {rows}"
        )
    from .shape import reshape

    return reshape(c, (-1,) + (1,) * (len(shape) - 1))


@register
class Where(OpDef):
    """``where(condition)``: int64 coordinates ``(num_true, rank)`` of the non-zero elements.

    The output size depends on the condition's values; the compiled targets cannot size
    such a buffer before the run, so the cpu target runs it on the host (labelled)."""

    differentiable = False
    no_examples_reason = (
        "data-dependent output size (num_true, rank): static inputs do not give a static "
        "shape; tested on the reference and cpu targets in tests/ops/test_semantics_tf1.py"
    )

    def infer(self, specs, attrs):
        (c,) = specs
        return [((None, None if c.shape is None else len(c.shape)), _dt.int64)]

    def ref(self, xs, attrs):
        return np.argwhere(xs[0]).astype(np.int64)


@located("clip_by_value")
def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """Clamp ``t`` to [clip_value_min, clip_value_max]."""
    return minimum(maximum(t, clip_value_min), clip_value_max, name=name)


def zeros_like_(x):
    from .constant import zeros_like

    return zeros_like(x)


def ones_like_(x):
    from .constant import ones_like

    return ones_like(x)


# Const used by simplification passes to build scalar bodies
_ = Const
