"""Scalar expressions of the Kernel IR and the ``Math`` enum of scalar functions.

Elementwise OpDefs describe their body with these (``OpDef.scalar``); fused kernels are
trees of them. Every backend has a math table with one entry per ``Math`` member, and
``eval_expr`` here is the numpy meaning of each.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from . import dtypes as _dt


class Math(enum.Enum):
    """Scalar functions. ``Math.EXP(x)`` builds a ``Call`` expression."""

    ADD = 2
    SUB = 2
    MUL = 2
    DIV = 2
    FLOORDIV = 2
    MOD = 2
    POW = 2
    MAX = 2
    MIN = 2
    EQ = 2
    NE = 2
    LT = 2
    LE = 2
    GT = 2
    GE = 2
    AND = 2
    OR = 2
    XOR = 2
    NEG = 1
    ABS = 1
    SIGN = 1
    EXP = 1
    EXPM1 = 1
    LOG = 1
    LOG1P = 1
    SQRT = 1
    RSQRT = 1
    RECIP = 1
    SIN = 1
    COS = 1
    TAN = 1
    TANH = 1
    SIGMOID = 1
    ERF = 1
    FLOOR = 1
    CEIL = 1
    ROUND = 1
    NOT = 1
    ISNAN = 1
    ISFINITE = 1
    SELECT = 3
    # Bit operations on int64 words (the counter-based random generator): BITXOR is the
    # bitwise exclusive or, SHR the *logical* right shift (the word taken as uint64).
    # Integer ADD/MUL wrap modulo 2**64.
    BITXOR = 2
    SHR = 2
    # Bitwise ops on int32/int64 (tf.bitwise): and, or, not, and the shifts with every count
    # defined as numpy's ops do it: SHL gives 0 and LSHR (logical: the word read as unsigned
    # of its own width) gives 0 for a count outside [0, width); SAR (arithmetic) then fills
    # with the sign bit (0 or -1).
    BITAND = 2
    BITOR = 2
    BITNOT = 1
    SHL = 2
    SAR = 2
    LSHR = 2

    def __new__(cls, arity):
        obj = object.__new__(cls)
        obj._value_ = len(cls.__members__) + 1
        obj.arity = arity
        return obj

    def __call__(self, *args: Expr) -> Call:
        if len(args) != self.arity:
            raise TypeError(f"Math.{self.name} takes {self.arity} operands, got {len(args)}")
        return Call(self, tuple(args))


class Expr:
    """Base of scalar expressions."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Arg(Expr):
    """The i-th input of the elementwise op (already loaded and broadcast)."""

    index: int


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: float | int | bool
    dtype: _dt.DType


@dataclass(frozen=True, slots=True)
class Call(Expr):
    fn: Math
    args: tuple


@dataclass(frozen=True, slots=True)
class Cast(Expr):
    x: Expr
    dtype: _dt.DType


def _np_math():
    def ignore(fn):
        def wrapped(*a):
            with np.errstate(all="ignore"):
                return fn(*a)

        return wrapped

    def sign(x):
        return np.sign(x)

    def floordiv(a, b):
        if np.asarray(a).dtype.kind in "iu":
            with np.errstate(all="ignore"):
                return np.floor_divide(a, np.where(b == 0, 1, b))
        return np.floor_divide(a, b)

    def mod(a, b):
        if np.asarray(a).dtype.kind in "iu":
            with np.errstate(all="ignore"):
                return np.mod(a, np.where(b == 0, 1, b))
        return np.mod(a, b)

    def sigmoid(x):
        # Stable in both tails: exp of a non-positive number only.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)

    def erf(x):
        return _erf(x)

    def div(a, b):
        if np.asarray(a).dtype.kind in "iu":
            return floordiv(a, b)
        return np.true_divide(a, b)

    def power(a, b):
        if np.asarray(a).dtype.kind in "iu":
            return np.power(a, np.maximum(b, 0))
        return np.power(a, b)

    table = {
        Math.ADD: np.add, Math.SUB: np.subtract, Math.MUL: np.multiply, Math.DIV: div,
        Math.FLOORDIV: floordiv, Math.MOD: mod, Math.POW: power, Math.MAX: np.maximum,
        Math.MIN: np.minimum, Math.EQ: np.equal, Math.NE: np.not_equal, Math.LT: np.less,
        Math.LE: np.less_equal, Math.GT: np.greater, Math.GE: np.greater_equal,
        Math.AND: np.logical_and, Math.OR: np.logical_or, Math.XOR: np.logical_xor,
        Math.NEG: np.negative, Math.ABS: np.abs, Math.SIGN: sign, Math.EXP: np.exp,
        Math.EXPM1: np.expm1, Math.LOG: np.log, Math.LOG1P: np.log1p, Math.SQRT: np.sqrt,
        Math.RSQRT: lambda x: 1 / np.sqrt(x), Math.RECIP: lambda x: 1 / x, Math.SIN: np.sin,
        Math.COS: np.cos, Math.TAN: np.tan, Math.TANH: np.tanh, Math.SIGMOID: sigmoid,
        Math.ERF: erf, Math.FLOOR: np.floor, Math.CEIL: np.ceil, Math.ROUND: np.rint,
        Math.NOT: np.logical_not, Math.ISNAN: np.isnan, Math.ISFINITE: np.isfinite,
        Math.SELECT: np.where, Math.BITXOR: np.bitwise_xor, Math.SHR: _shr,
        Math.BITAND: np.bitwise_and, Math.BITOR: np.bitwise_or, Math.BITNOT: np.invert,
        Math.SHL: _shl, Math.SAR: _sar, Math.LSHR: _lshr,
    }  # fmt: skip
    return {k: ignore(v) for k, v in table.items()}


def _shr(a, b):
    """Logical right shift of int64 words (as uint64), result as int64."""
    a = np.asarray(a, dtype=np.int64).astype(np.uint64)
    return np.right_shift(a, np.asarray(b).astype(np.uint64)).astype(np.int64)


def _shift_parts(a, b):
    """(a, count, count outside [0, width), width, unsigned dtype of a's width)."""
    a, b = np.asarray(a), np.asarray(b)
    width = a.dtype.itemsize * 8
    big = (b < 0) | (b >= width)
    return a, np.where(big, 0, b), big, width, np.dtype(f"u{a.dtype.itemsize}")


def _shl(a, b):
    """``a << b`` in a's width (bits shifted out are lost); 0 for a count outside [0, width)."""
    a, n, big, _, u = _shift_parts(a, b)
    out = np.left_shift(a.astype(u), n.astype(u))
    return np.where(big, 0, out).astype(u).astype(a.dtype)


def _sar(a, b):
    """Arithmetic ``a >> b``; a count outside [0, width) shifts every bit out (0 or -1)."""
    a, n, big, width, _ = _shift_parts(a, b)
    return np.right_shift(a, np.where(big, width - 1, n).astype(a.dtype))


def _lshr(a, b):
    """Logical ``a >> b`` (a read as unsigned of its width); 0 for a count outside [0, width)."""
    a, n, big, _, u = _shift_parts(a, b)
    out = np.right_shift(a.astype(u), n.astype(u))
    return np.where(big, 0, out).astype(u).astype(a.dtype)


def _erf(x):
    """erf without scipy: Abramowitz-Stegun 7.1.26 is too coarse, so use a series/continued
    fraction pair evaluated in float64 (max abs error ~1e-15)."""
    x64 = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x64)
    a = np.abs(x64)
    small = a < 2.5
    # Maclaurin series for |x| < 2.5
    xs = x64[small]
    term = xs.copy()
    total = xs.copy()
    x2 = xs * xs
    for n in range(1, 60):
        term = term * (-x2) / n
        total = total + term / (2 * n + 1)
    out[small] = total * (2 / np.sqrt(np.pi))
    # Continued fraction for erfc at |x| >= 2.5
    xl = a[~small]
    if xl.size:
        f = np.zeros_like(xl)
        for k in range(60, 0, -1):
            f = (k / 2) / (xl + f)
        erfc = np.exp(-xl * xl) / np.sqrt(np.pi) / (xl + f)
        out[~small] = np.sign(x64[~small]) * (1 - erfc)
    return out.astype(np.asarray(x).dtype) if np.asarray(x).dtype.kind == "f" else out


NUMPY_MATH = _np_math()


def cast_values(x, dtype) -> np.ndarray:
    """``x`` converted to numpy dtype ``dtype``: the meaning of ``Cast`` on every target.

    Floating -> integer is a *saturating* conversion (as XLA's convert and LLVM's
    ``fptosi.sat``): NaN gives 0, values beyond the integer range give its minimum or
    maximum, the rest truncate toward zero. numpy's ``astype`` leaves out-of-range values
    undefined (it gives INT_MIN on x86), hence this function. Other conversions are numpy's
    (integers wrap, float -> bool is ``x != 0``).
    """
    x = np.asarray(x)
    dtype = np.dtype(dtype)
    if x.dtype.kind != "f" or dtype.kind not in "iu":
        with np.errstate(all="ignore"):
            return x.astype(dtype)
    info = np.iinfo(dtype)
    # the bounds as floats are powers of two (max + 1 and min), exact in every float type
    hi, lo = float(info.max) + 1.0, float(info.min)
    with np.errstate(all="ignore"):
        inside = (x < hi) & (x >= lo)  # False for NaN
        out = np.where(inside, x, 0).astype(dtype)
        out = np.where(x >= hi, dtype.type(info.max), out)
        out = np.where(x < lo, dtype.type(info.min), out)
    return np.asarray(out, dtype=dtype)


def eval_expr(expr: Expr, args: list[np.ndarray]) -> np.ndarray:
    """numpy meaning of a scalar expression applied elementwise to broadcastable arrays."""
    if isinstance(expr, Arg):
        return args[expr.index]
    if isinstance(expr, Const):
        return np.asarray(expr.value, dtype=expr.dtype.np)
    if isinstance(expr, Cast):
        return cast_values(eval_expr(expr.x, args), expr.dtype.np)
    if isinstance(expr, Call):
        vals = [eval_expr(a, args) for a in expr.args]
        return NUMPY_MATH[expr.fn](*vals)
    raise TypeError(f"not an expression: {expr!r}")


# -- loop-nest expressions (used inside Kernel IR bodies) --------------------------------------


@dataclass(frozen=True, slots=True)
class Var(Expr):
    """A loop variable or scalar local (``Let``); ``dtype`` is int64 for loop variables."""

    name: str
    dtype: _dt.DType


@dataclass(frozen=True, slots=True)
class Dim(Expr):
    """The runtime size of a ``None`` dimension: an int64 argument of the generated code."""

    name: str


@dataclass(frozen=True, slots=True)
class Load(Expr):
    """Element ``index`` (int64 flat, row-major, in elements) of buffer ``buffer``."""

    buffer: str
    index: Expr
    dtype: _dt.DType


def expr_dtype(e: Expr, arg_dtypes=()) -> _dt.DType:
    """dtype of an expression (comparisons and logic give bool)."""
    if isinstance(e, Const | Var | Load | Cast):
        return e.dtype
    if isinstance(e, Dim):
        return _dt.int64
    if isinstance(e, Arg):
        return arg_dtypes[e.index]
    if isinstance(e, Call):
        if e.fn in _BOOL_RESULT:
            return _dt.bool_
        if e.fn is Math.SELECT:
            return expr_dtype(e.args[1], arg_dtypes)
        return expr_dtype(e.args[0], arg_dtypes)
    raise TypeError(f"not an expression: {e!r}")


_BOOL_RESULT = {
    Math.EQ, Math.NE, Math.LT, Math.LE, Math.GT, Math.GE, Math.AND, Math.OR, Math.XOR,
    Math.NOT, Math.ISNAN, Math.ISFINITE,
}  # fmt: skip


def sub_exprs(e: Expr):
    """``e`` and every expression inside it (Call arguments, Cast operands, Load indices),
    parents before children: the one walk analyses of kernel bodies share."""
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        if isinstance(x, Call):
            stack.extend(reversed(x.args))
        elif isinstance(x, Cast):
            stack.append(x.x)
        elif isinstance(x, Load):
            stack.append(x.index)


def i64(value: int) -> Const:
    """An int64 constant (index arithmetic)."""
    return Const(int(value), _dt.int64)
