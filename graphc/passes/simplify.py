"""Algebraic simplification: a table of documented rewrite rules ``lhs -> rhs``.

Every rule keeps what the program computes (bit for bit, or within rounding where its doc
says so) wherever the left-hand side is finite. A rule that would change the shape of the
result by dropping a broadcast does not fire (see ``Rewriter.fits``). ``RULES.describe()``
lists them all; ``simplify`` is the pass.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..expr import Math
from ..ops.registry import REGISTRY
from ..program import Program
from .rewrite import Replace, RuleTable, fully_known

RULES = RuleTable("simplify")


def simplify(program: Program) -> Program:
    """One sweep of the algebraic rules over ``program``."""
    return RULES.apply(program)


def _neutral_operand(n, rw, value, positions=(0, 1)):
    """The other operand of binary ``n`` when operand i (in ``positions``) is a splat
    ``value`` that does not enlarge the result by broadcasting."""
    for i in positions:
        c, x = n.inputs[i], n.inputs[1 - i]
        v = rw.splat(c)
        if v is not None and v == value and rw.fits(c, x):
            return x
    return None


def _producer_op(rw, ref, op):
    p = rw.producer(ref)
    return p if p.op == op else None


def _computes(node, fn: Math) -> bool:
    """``node`` applies the scalar function ``fn`` to its operands (its op's declared
    ``math``: ``Math.DIV`` for a / b, ``Math.RECIP`` for 1 / x)."""
    return getattr(node.op_def, "math", None) is fn


def _producer_computing(rw, ref, fn: Math):
    """The producer of ``ref`` when it applies the scalar function ``fn``, else None."""
    p = rw.producer(ref)
    return p if _computes(p, fn) else None


def _producer_same_op(rw, n):
    """The producer of ``n``'s input 0 when it is an op of ``n``'s type (a rule composing an
    op with itself: cast of a cast, transpose of a transpose), else None."""
    p = rw.producer(n.inputs[0])
    return p if p.op == n.op else None


# -- arithmetic identities -----------------------------------------------------------------------


@RULES.rule("Mul")
def mul_one(n, rw):
    """x * 1 -> x;  1 * x -> x  (also ones_like/fill/broadcast of 1 that do not widen x)."""
    return _neutral_operand(n, rw, 1)


@RULES.rule("Add")
def add_zero(n, rw):
    """x + 0 -> x;  0 + x -> x  (the sign of a zero x may change: -0 + 0 is +0)."""
    return _neutral_operand(n, rw, 0)


@RULES.rule("Sub")
def sub_zero(n, rw):
    """x - 0 -> x."""
    return _neutral_operand(n, rw, 0, positions=(1,))


@RULES.rule("RealDiv")
def div_one(n, rw):
    """x / 1 -> x."""
    return _neutral_operand(n, rw, 1, positions=(1,))


@RULES.rule("FloorDiv")
def floordiv_one(n, rw):
    """x // 1 -> x for integers (floor of a float x is not x: floats excluded)."""
    if not rw.dtype(n.inputs[0]).is_integer:
        return None
    return _neutral_operand(n, rw, 1, positions=(1,))


@RULES.rule("Pow")
def pow_small(n, rw):
    """x ** 1 -> x;  x ** 2 -> square(x);  x ** -1 -> reciprocal(x) (floats); x ** 0.5 stays."""
    x, e = n.inputs
    v = rw.splat(e)
    if v is None or not rw.fits(e, x):
        return None
    if v == 1:
        return x
    if v == 2:
        return Replace("Square", (x,), {})
    if v == -1 and rw.dtype(x).is_floating:
        return Replace("Reciprocal", (x,), {})
    return None


@RULES.rule("RealDiv")
def div_by_constant(n, rw):
    """x / c -> x * (1/c) for a float32/float64 constant c with a finite, non-zero reciprocal.

    Within one rounding of the quotient; float16 keeps its division (its reciprocal is too
    coarse).
    """
    x, c = n.inputs
    value = rw.const(c)
    if value is None or value.dtype not in (np.float32, np.float64) or value.size == 0:
        return None
    with np.errstate(all="ignore"):
        recip = (np.asarray(1, value.dtype) / value).astype(value.dtype)
    if not (np.all(value != 0) and np.all(np.isfinite(recip))):
        return None
    return Replace("Mul", (x, rw.const_node(recip, "reciprocal")), {})


@RULES.rule("Mul")
def mul_reciprocal(n, rw):
    """x * (1/d) -> x / d;  (1/d) * x -> x / d  (also reciprocal(d); floats), when 1/d has no
    other use. Within rounding: one rounding instead of two, and one operation less (W1's
    ``x * (1 / (1 + exp(-a)))``)."""
    for i in (0, 1):
        x, r = n.inputs[1 - i], n.inputs[i]
        p = rw.producer(r)
        if _computes(p, Math.RECIP):
            d = p.inputs[0]
        elif _computes(p, Math.DIV) and rw.splat(p.inputs[0]) == 1 and rw.fits(*p.inputs):
            d = p.inputs[1]
        else:
            continue
        if not rw.dtype(d).is_floating or p.control or rw.src_uses(r) != 1:
            continue
        return Replace("RealDiv", (x, d), {})
    return None


@RULES.rule("Neg")
def neg_neg(n, rw):
    """-(-x) -> x."""
    p = _producer_computing(rw, n.inputs[0], Math.NEG)
    return p.inputs[0] if p is not None else None


@RULES.rule("Add")
def add_neg(n, rw):
    """x + (-y) -> x - y;  (-x) + y -> y - x  (exact: IEEE subtraction is addition of -y)."""
    a, b = n.inputs
    p = _producer_computing(rw, b, Math.NEG)
    if p is not None:
        return Replace("Sub", (a, p.inputs[0]), {})
    p = _producer_computing(rw, a, Math.NEG)
    if p is not None:
        return Replace("Sub", (b, p.inputs[0]), {})
    return None


@RULES.rule("Sub")
def sub_neg(n, rw):
    """x - (-y) -> x + y."""
    p = _producer_computing(rw, n.inputs[1], Math.NEG)
    return Replace("Add", (n.inputs[0], p.inputs[0]), {}) if p is not None else None


@RULES.rule("LogicalNot")
def not_not(n, rw):
    """not(not(x)) -> x."""
    p = _producer_computing(rw, n.inputs[0], Math.NOT)
    return p.inputs[0] if p is not None else None


# -- transcendental pairs --------------------------------------------------------------------


@RULES.rule("Exp")
def exp_log(n, rw):
    """exp(log(x)) -> x  (for x > 0; where log(x) is NaN the result becomes x)."""
    p = _producer_computing(rw, n.inputs[0], Math.LOG)
    return p.inputs[0] if p is not None else None


@RULES.rule("Log")
def log_exp(n, rw):
    """log(exp(x)) -> x  (within rounding where exp(x) does not overflow)."""
    p = _producer_computing(rw, n.inputs[0], Math.EXP)
    return p.inputs[0] if p is not None else None


@RULES.rule("Log")
def log_softmax(n, rw):
    """log(softmax(z)) -> log_softmax(z):  log(exp(z) / reduce_sum(exp(z), axes, keepdims))
    -> z - log(reduce_sum(exp(z), axes, keepdims))  (gc.nn.softmax's composite form; also a
    Softmax op, should one be registered). Stable: no log of an underflowed 0.
    """
    p = rw.producer(n.inputs[0])
    if p.op == "Softmax" and "LogSoftmax" in REGISTRY:
        return Replace("LogSoftmax", tuple(p.inputs), dict(p.attrs))
    if not _computes(p, Math.DIV):
        return None
    e, s = p.inputs
    exp = _producer_computing(rw, e, Math.EXP)
    total = _producer_op(rw, s, "Sum")
    if exp is None or total is None or not total.attrs["keepdims"]:
        return None
    if rw.resolve(total.inputs[0]) != rw.resolve(e):
        return None
    return Replace("Sub", (exp.inputs[0], rw.add("Log", (s,), suffix="log_sum")), {})


# -- casts, identities -----------------------------------------------------------------------

#: (from, via) pairs where casting from -> via -> from gives back every value exactly
_LOSSLESS = {
    ("float16", "float32"), ("float16", "float64"), ("float32", "float64"),
    ("int32", "int64"), ("int32", "float64"),
    ("bool", "int32"), ("bool", "int64"), ("bool", "float16"), ("bool", "float32"),
    ("bool", "float64"),
}  # fmt: skip


@RULES.rule("Cast")
def cast_same(n, rw):
    """cast(x, dtype(x)) -> x."""
    x = n.inputs[0]
    return x if rw.dtype(x) == n.attrs["dtype"] else None


@RULES.rule("Cast")
def cast_roundtrip(n, rw):
    """cast(cast(x, wide), dtype(x)) -> x  when ``wide`` holds every value of dtype(x)."""
    p = _producer_same_op(rw, n)
    if p is None:
        return None
    x = p.inputs[0]
    src, via = rw.dtype(x), p.attrs["dtype"]
    if src == n.attrs["dtype"] and (src.name, _dt.as_dtype(via).name) in _LOSSLESS:
        return x
    return None


@RULES.rule("Identity", "StopGradient", "PlaceholderWithDefault")
def identity(n, rw):
    """identity(x) -> x;  stop_gradient(x) -> x;  placeholder_with_default(x) -> x (unfed).

    Not when the node carries control dependencies (the Rewriter never aliases those).
    """
    return n.inputs[0]


@RULES.rule("Select")
def select_known(n, rw):
    """where(True, x, y) -> x;  where(False, x, y) -> y;  where(c, x, x) -> x  (no widening)."""
    c, x, y = n.inputs
    v = rw.splat(c)
    if v is not None:
        pick, other = (x, y) if bool(v) else (y, x)
        if rw.fits(c, pick) and rw.fits(other, pick):
            return pick
        return None
    if rw.resolve(x) == rw.resolve(y) and rw.fits(c, x):
        return x
    return None


# -- shapes: reshape chains, transposes --------------------------------------------------------


def _is_view(n) -> bool:
    """Reshape, expand_dims, squeeze, reshape_like: ops that re-view their input
    (``OpDef.view``)."""
    return n.op_def.view


def _reshape_target(shape):
    """Reshape attrs for a static output shape (one unknown dim becomes -1), or None."""
    if shape is None or sum(d is None for d in shape) > 1:
        return None
    return tuple(-1 if d is None else int(d) for d in shape)


@RULES.rule(match=_is_view)
def reshape_noop(n, rw):
    """reshape(x, shape(x)) -> x  (also expand_dims/squeeze/reshape_like to x's own shape)."""
    x = n.inputs[0]
    if n.op_def.symbolic_dims == "squeeze" and not n.attrs["axes"]:
        return x
    out, shape = n.outs[0].shape, rw.shape(x)
    if fully_known(out) and fully_known(shape) and tuple(out) == tuple(shape):
        return x
    if n.op_def.symbolic_dims == "input1" and rw.same_runtime_shape(n.inputs[1], x):
        return x
    return None


@RULES.rule(match=_is_view)
def reshape_chain(n, rw):
    """reshape(reshape(x, s1), s2) -> reshape(x, s2)  (any chain of reshape/expand_dims/squeeze)."""
    p = rw.producer(n.inputs[0])
    if not _is_view(p):
        return None
    target = _reshape_target(n.outs[0].shape)
    if target is None:
        return None
    return Replace("Reshape", (p.inputs[0],), {"shape": target})


def _is_identity(perm) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


@RULES.rule("Transpose")
def transpose_identity(n, rw):
    """transpose(x, (0, 1, ..., r-1)) -> x."""
    return n.inputs[0] if _is_identity(n.attrs["perm"]) else None


@RULES.rule("Transpose")
def transpose_transpose(n, rw):
    """transpose(transpose(x, p), q) -> transpose(x, p[q])  (-> x when p[q] is the identity)."""
    p = _producer_same_op(rw, n)
    if p is None:
        return None
    inner, outer = p.attrs["perm"], n.attrs["perm"]
    perm = tuple(int(inner[q]) for q in outer)
    if _is_identity(perm):
        return p.inputs[0]
    return Replace("Transpose", (p.inputs[0],), {"perm": perm})


def _swaps_last_two(perm) -> bool:
    r = len(perm)
    return r >= 2 and tuple(perm) == tuple(range(r - 2)) + (r - 1, r - 2)


@RULES.rule("MatMul")
def matmul_transpose(n, rw):
    """matmul(transpose(a), b) -> matmul(a, b, transpose_a=True)  (and likewise for b), when
    the transpose swaps only the last two dims."""
    attrs = dict(n.attrs)
    inputs = list(n.inputs)
    changed = False
    for i, flag in ((0, "transpose_a"), (1, "transpose_b")):
        p = rw.producer(inputs[i])  # a transpose (OpDef.symbolic_dims) of the last two dims
        if p.op_def.symbolic_dims == "transpose" and _swaps_last_two(p.attrs["perm"]):
            inputs[i] = p.inputs[0]
            attrs[flag] = not attrs.get(flag, False)
            changed = True
    return Replace("MatMul", tuple(inputs), attrs) if changed else None


# -- reductions ------------------------------------------------------------------------------


def _reduces_axes(n) -> bool:
    """sum, mean, max, min, prod, any, all: ops that reduce ``attrs["axes"]`` of input 0
    (``OpDef.symbolic_dims == "reduce"``)."""
    return n.op_def.symbolic_dims == "reduce"


@RULES.rule(match=_reduces_axes)
def reduce_trivial(n, rw):
    """reduce(x, axes=()) -> x;  reduce over dims of static size 1 -> reshape(x)."""
    x = n.inputs[0]
    axes = n.attrs["axes"]
    shape = rw.shape(x)
    if axes is not None and len(axes) == 0:
        return x
    if shape is None:
        return None
    axes = range(len(shape)) if axes is None else axes
    if all(shape[a] == 1 for a in axes):
        if fully_known(n.outs[0].shape) and tuple(n.outs[0].shape) == tuple(shape):
            return x
        target = _reshape_target(n.outs[0].shape)
        if target is not None:
            return Replace("Reshape", (x,), {"shape": target})
    return None
