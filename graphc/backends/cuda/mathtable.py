"""CUDA C spellings of Kernel IR scalars: C types, constants, casts and the ``Math`` table.

Every ``graphc.expr.Math`` member has one entry in ``MATH`` (a registry test checks
this). Entries are format strings over the rendered operands ``{0} {1} {2}`` and ``{T}``
(the C type of the result), one spelling per operand class:

* ``f``: float32, and float16 (computed in float, rounded back to half by the renderer),
* ``d``: float64,
* ``i``: int32, int64 and bool.

``None`` in the ``i`` column means "compute in double and cast back" (numpy gives a float
there; graphc's typed IR wants the operand's type); in the float columns it marks integer-only
functions. Integer ADD/SUB/MUL wrap (the renderer spells them through unsigned types unless
they are index arithmetic that cannot overflow). The meanings follow ``eval_expr``:
integer division floors and ``x // 0 == x``, ``max``/``min`` propagate NaN, ``sigmoid`` is
stable in both tails. Helpers named ``gc_*`` live in ``kernels/cuda/prelude.cuh``.
"""

from __future__ import annotations

import math

import numpy as np

from ... import dtypes as _dt
from ...expr import Math

#: C type of a buffer element.
STORAGE_TYPE = {
    "float16": "__half",
    "float32": "float",
    "float64": "double",
    "int32": "int",
    "int64": "gc_i64",
    "bool": "bool",
}

#: C type of a scalar value in registers (float16 values are carried as float).
VALUE_TYPE = {**STORAGE_TYPE, "float16": "float"}

_BIN = "({0} %s {1})"

MATH: dict = {
    Math.ADD: (_BIN % "+",) * 3,
    Math.SUB: (_BIN % "-",) * 3,
    Math.MUL: (_BIN % "*",) * 3,
    Math.DIV: (_BIN % "/", _BIN % "/", "gc_floordiv_i<{T}>({0}, {1})"),
    Math.FLOORDIV: ("gc_floordiv_f<float>({0}, {1})", "gc_floordiv_f<double>({0}, {1})",
                    "gc_floordiv_i<{T}>({0}, {1})"),
    Math.MOD: ("gc_fmod_py<float>({0}, {1})", "gc_fmod_py<double>({0}, {1})",
               "gc_mod_i<{T}>({0}, {1})"),
    Math.POW: ("powf({0}, {1})", "pow({0}, {1})", "gc_pow_i<{T}>({0}, {1})"),
    Math.MAX: ("gc_max<float>({0}, {1})", "gc_max<double>({0}, {1})", "gc_max<{T}>({0}, {1})"),
    Math.MIN: ("gc_min<float>({0}, {1})", "gc_min<double>({0}, {1})", "gc_min<{T}>({0}, {1})"),
    Math.EQ: (_BIN % "==",) * 3,
    Math.NE: (_BIN % "!=",) * 3,
    Math.LT: (_BIN % "<",) * 3,
    Math.LE: (_BIN % "<=",) * 3,
    Math.GT: (_BIN % ">",) * 3,
    Math.GE: (_BIN % ">=",) * 3,
    Math.AND: ("((bool)({0}) && (bool)({1}))",) * 3,
    Math.OR: ("((bool)({0}) || (bool)({1}))",) * 3,
    Math.XOR: ("((bool)({0}) != (bool)({1}))",) * 3,
    Math.NEG: ("(-{0})",) * 3,
    Math.ABS: ("fabsf({0})", "fabs({0})", "gc_abs_i<{T}>({0})"),
    Math.SIGN: ("gc_sign<float>({0})", "gc_sign<double>({0})", "gc_sign<{T}>({0})"),
    Math.EXP: ("expf({0})", "exp({0})", None),
    Math.EXPM1: ("expm1f({0})", "expm1({0})", None),
    Math.LOG: ("logf({0})", "log({0})", None),
    Math.LOG1P: ("log1pf({0})", "log1p({0})", None),
    Math.SQRT: ("sqrtf({0})", "sqrt({0})", None),
    Math.RSQRT: ("(1.0f / sqrtf({0}))", "(1.0 / sqrt({0}))", None),
    Math.RECIP: ("(1.0f / {0})", "(1.0 / {0})", None),
    Math.SIN: ("sinf({0})", "sin({0})", None),
    Math.COS: ("cosf({0})", "cos({0})", None),
    Math.TAN: ("tanf({0})", "tan({0})", None),
    Math.TANH: ("tanhf({0})", "tanh({0})", None),
    Math.SIGMOID: ("gc_sigmoid_f({0})", "gc_sigmoid_d({0})", None),
    Math.ERF: ("erff({0})", "erf({0})", None),
    Math.FLOOR: ("floorf({0})", "floor({0})", "{0}"),
    Math.CEIL: ("ceilf({0})", "ceil({0})", "{0}"),
    Math.ROUND: ("rintf({0})", "rint({0})", "{0}"),
    Math.NOT: ("(!({0}))",) * 3,
    Math.ISNAN: ("isnan({0})", "isnan({0})", "false"),
    Math.ISFINITE: ("isfinite({0})", "isfinite({0})", "true"),
    Math.SELECT: ("({0} ? {1} : {2})",) * 3,
    # bit operations on int64 words (the counter-based random generator)
    Math.BITXOR: (None, None, "({0} ^ {1})"),
    Math.SHR: (None, None, "gc_shr<{T}>({0}, {1})"),
    # tf.bitwise (int32, int64); the shifts define every count as numpy does (prelude.cuh)
    Math.BITAND: (None, None, "({0} & {1})"),
    Math.BITOR: (None, None, "({0} | {1})"),
    Math.BITNOT: (None, None, "(~{0})"),
    Math.SHL: (None, None, "gc_shl<{T}>({0}, {1})"),
    Math.SAR: (None, None, "gc_sar<{T}>({0}, {1})"),
    Math.LSHR: (None, None, "gc_lshr<{T}>({0}, {1})"),
}  # fmt: skip

#: Functions whose result is bool whatever the operands.
BOOL_RESULT = frozenset(
    {Math.EQ, Math.NE, Math.LT, Math.LE, Math.GT, Math.GE, Math.AND, Math.OR, Math.XOR,
     Math.NOT, Math.ISNAN, Math.ISFINITE}
)  # fmt: skip


def operand_class(dtype: _dt.DType) -> int:
    """Column of ``MATH`` for operands of ``dtype``: 0 float/half, 1 double, 2 int/bool."""
    if dtype == _dt.float64:
        return 1
    if dtype.is_floating:
        return 0
    return 2


def render_call(fn: Math, args: list, operand_dtype: _dt.DType, result_dtype: _dt.DType) -> str:
    """C expression for ``fn(*args)`` (args already rendered)."""
    col = operand_class(operand_dtype)
    template = MATH[fn][col]
    if template is None and col != 2:
        raise TypeError(f"Math.{fn.name} is defined on integers only, got {operand_dtype.name}")
    ctype = VALUE_TYPE[result_dtype.name]
    if template is None:  # float function of an integer: via double, as numpy would
        dargs = [f"(double)({a})" for a in args]
        return f"(({ctype})({MATH[fn][1].format(*dargs)}))"
    code = template.format(*args, T=ctype)
    if fn in BOOL_RESULT:
        return code
    if result_dtype == _dt.float16:
        return f"gc_rh({code})"
    if result_dtype in (_dt.bool_, _dt.int32) and col == 2:
        # C promotes bool/int arithmetic to int (or wider): restate the IR's type.
        return f"(({ctype}){code})"
    return code


def render_wrapping(fn: Math, args: list, dtype: _dt.DType) -> str:
    """Integer ADD/SUB/MUL that wrap modulo 2**bits (signed overflow is undefined in C)."""
    op = {Math.ADD: "+", Math.SUB: "-", Math.MUL: "*"}[fn]
    u = "unsigned long long" if dtype == _dt.int64 else "unsigned int"
    return f"(({VALUE_TYPE[dtype.name]})(({u})({args[0]}) {op} ({u})({args[1]})))"


def render_const(value, dtype: _dt.DType) -> str:
    """C literal for a constant of ``dtype`` (exact: floats print their round-trip repr)."""
    if dtype.is_bool:
        return "true" if bool(value) else "false"
    if dtype.is_integer:
        v = int(value)
        if dtype == _dt.int32:
            return "(-2147483647 - 1)" if v == -(2**31) else f"{v}" if v >= 0 else f"({v})"
        if v == -(2**63):
            return "(-9223372036854775807LL - 1)"
        return f"{v}LL" if v >= 0 else f"({v}LL)"
    if dtype == _dt.float64:
        v = float(value)
        suffix, inf, nan = "", "GC_INF_D", "GC_NAN_D"
    else:
        v = float(np.float32(np.float16(value)) if dtype == _dt.float16 else np.float32(value))
        suffix, inf, nan = "f", "GC_INF_F", "GC_NAN_F"
    if math.isnan(v):
        return nan
    if math.isinf(v):
        return inf if v > 0 else f"(-{inf})"
    text = repr(v) + suffix
    return f"({text})" if v < 0 or text.startswith("-") else text


def render_cast(code: str, src: _dt.DType, dst: _dt.DType) -> str:
    """C expression converting a value of ``src`` (rendered ``code``) to ``dst``."""
    if src == dst:
        return code
    if dst.is_bool:
        return f"(({code}) != 0)"
    if dst == _dt.float16:
        if src == _dt.float64:
            return f"gc_rh_d({code})"
        return f"gc_rh((float)({code}))"
    if src.is_floating and dst.is_integer:
        # saturating, NaN -> 0 (cast_values): a C cast is undefined out of range
        return f"gc_f2i<{VALUE_TYPE[dst.name]}, {VALUE_TYPE[src.name]}>({code})"
    return f"(({VALUE_TYPE[dst.name]})({code}))"
