"""Per-op lowering rules: how each op type computes one element (or a whole kernel).

Each op declares its kind on its OpDef (``OpDef.kind``, read through ``op_kind``); the rules
here are registered by op type, and ``KINDS`` records the kind each registered rule
implements (tests/test_op_facts.py checks the two agree). The kinds:
  * ``source``: no kernel (feeds, constants, variable reads) - buffers or inlined constants;
  * ``elementwise``: ``VALUE[op](g, node, ix)`` gives the element at index ``ix`` of the
    output from elements of the inputs (``g.value(ref, ix)``): OpDef.scalar bodies,
    generators (fill, range, random), identities and variable assignments;
  * ``index``: like elementwise, but reads inputs at remapped indices (transpose, slice,
    pad, concat, gather, broadcast, reshape...): fusing an expensive producer into one may
    recompute it per output element;
  * ``reduction``: ``REDUCTIONS[op](node, shapes)`` -> ReductionSpec (row reductions);
  * ``gemm`` / ``conv``: a library GEMM plus fused epilogue;
  * ``opaque``: ``OPAQUE[op](kb, node)`` emits a whole kernel body (scans, dynamic
    reductions) and is never fused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import dtypes as _dt
from ..expr import Arg, Call, Cast, Const, Load, Math, i64
from ..ops.registry import REGISTRY
from . import sym
from .builder import Ix, reshaped_index
from .ir import RNG_BUFFER, STATUS_BUFFER, If, Let, Store

KINDS: dict = {}
VALUE: dict = {}
REDUCTIONS: dict = {}
OPAQUE: dict = {}
READS: dict = {}  # value rule -> how it reads its operands (see reads_at)
#: op types whose value is expensive per element (never duplicated or recomputed by fusion)
EXPENSIVE_MATH = {
    Math.EXP, Math.EXPM1, Math.LOG, Math.LOG1P, Math.SIN, Math.COS, Math.TAN, Math.TANH,
    Math.SIGMOID, Math.ERF, Math.POW, Math.SQRT, Math.RSQRT, Math.DIV,
}  # fmt: skip


def value_rule(kind, *types, reads=None):
    """Register ``fn`` as the value rule of op ``types`` (lowering kind ``kind``). ``reads``:
    how the rule reads its operands, when it is one of the index maps fusion's legality
    analysis follows (``READS``); None: at indices only the rule knows."""

    def deco(fn):
        for t in types:
            KINDS[t] = kind
            VALUE[t] = fn
        if reads is not None:
            READS[fn] = reads
        return fn

    return deco


def reads_at(node) -> str | None:
    """How ``node``'s value rule reads its operands: "broadcast" (each operand at the output
    index broadcast to its shape: every elementwise op), "same" (its one operand at the
    output index itself), "flat" (its one operand at the same flat index, as
    ``builder.reshaped_index`` writes it: reshapes), "scalar" (its one operand, a scalar:
    fill), "none" (no operand's value: zeros_like, size, shape) or None (somewhere else:
    transposes, slices, gathers, ...)."""
    return READS.get(value_fn(node))


def op_kind(node) -> str | None:
    """The lowering kind of a Program node, as its OpDef declares it for the node's output
    dtypes (None: no lowering: a host op)."""
    kind = REGISTRY[node.op].lowered_kind(node.outs)  # (hot: fusion asks for every probe)
    return None if kind == "host" else kind


def opaque_fn(node):
    """The whole-kernel lowering of an opaque node (None: not lowerable)."""
    return OPAQUE.get(node.op_def.opaque_lowering or node.op)


def value_fn(node):
    fn = VALUE.get(node.op)
    if fn is None and getattr(REGISTRY.get(node.op), "elementwise", False):
        return scalar_body
    return fn


def is_expensive(node) -> bool:
    """Transcendental/division bodies and random generators: worth storing, not recomputing."""
    if node.op_def.expensive:
        return True
    if KINDS.get(node.op, "elementwise") != "elementwise" or node.op not in REGISTRY:
        return False
    op_def = REGISTRY[node.op]
    scalar = getattr(op_def, "scalar", None)
    if scalar is None or not getattr(op_def, "elementwise", False):
        return False
    try:
        body = scalar([Arg(i) for i in range(len(node.inputs))], node.attrs)
    except Exception:  # noqa: BLE001 - an op whose body needs more context: assume cheap
        return False
    return _uses(body, EXPENSIVE_MATH)


def _uses(e, fns) -> bool:
    if isinstance(e, Call):
        return e.fn in fns or any(_uses(a, fns) for a in e.args)
    if isinstance(e, Cast):
        return _uses(e.x, fns)
    return False


# -- elementwise -------------------------------------------------------------------------------


def scalar_body(g, node, ix):
    """OpDef.scalar with each operand loaded at its broadcast index."""
    args = [g.value(ref, g.broadcast_ix(ix, ref)) for ref in node.inputs]
    op_def = REGISTRY[node.op]
    dt = g.lw.program.spec(tuple(node.inputs[0])).dtype if node.inputs else None
    if dt is not None and dt.is_integer:
        integer_error = getattr(op_def, "integer_error", None)
        error = integer_error(args, dt) if integer_error else None
        if error is not None:
            # TF refuses integer division by zero (and negative integer powers) at run time:
            # flag it in the status buffer; the runtime raises InvalidArgumentError after the run.
            bad, message = error
            slot = g.lw.plain_check(node, f"{node.op} '{node.name}': {message}")
            g.emit(If(bad, (Store(STATUS_BUFFER, i64(slot), Const(1, _dt.int32)),)))
            g.writes.add(STATUS_BUFFER)
    return op_def.scalar(args, node.attrs)


READS[scalar_body] = "broadcast"


@value_rule(
    "elementwise", "Identity", "StopGradient", "PlaceholderWithDefault", "Assign", reads="same"
)
def _identity(g, node, ix):
    return g.value(node.inputs[0], ix)


@value_rule("elementwise", "CheckNumerics", reads="same")
def _check_numerics(g, node, ix):
    """The input's value, flagged in the status buffer where it is NaN or Inf."""
    v = g.bind(g.value(node.inputs[0], ix), node.outs[0].dtype)
    g.check_numerics(node, v)
    return v


@value_rule("elementwise", "AssignAdd", reads="same")
def _assign_add(g, node, ix):
    v = g.value(node.inputs[0], ix)
    return Math.ADD(g.var_before(node, ix), v)


@value_rule("elementwise", "AssignSub", reads="same")
def _assign_sub(g, node, ix):
    v = g.value(node.inputs[0], ix)
    return Math.SUB(g.var_before(node, ix), v)


@value_rule("elementwise", "Cast", reads="same")
def _cast(g, node, ix):
    return Cast(g.value(node.inputs[0], ix), node.attrs["dtype"])


@value_rule("elementwise", "ZerosLike", reads="none")
def _zeros_like(g, node, ix):
    dt = node.outs[0].dtype
    return Const(dt.np.type(node.attrs["value"]).item(), dt)


@value_rule("elementwise", "Fill", reads="scalar")
def _fill(g, node, ix):
    return g.value(node.inputs[0], g.scalar_ix())


@value_rule("elementwise", "Range")
def _range(g, node, ix):
    a = node.attrs
    dt = a["dtype"]
    i = ix.flat()
    if dt.is_integer:
        return Cast(sym.add(sym.mul(i, int(a["delta"])), int(a["start"])), dt)
    # numpy arange: start + i * delta in float64, then cast
    f64 = _dt.float64
    v = Math.ADD(
        Const(float(a["start"]), f64), Math.MUL(Cast(i, f64), Const(float(a["delta"]), f64))
    )
    return Cast(v, dt)


@value_rule("elementwise", "Size", reads="none")
def _size(g, node, ix):
    return Cast(sym.product(g.shape(node.inputs[0])), node.outs[0].dtype)


@value_rule("elementwise", "Shape", reads="none")
def _shape(g, node, ix):
    dims = g.shape(node.inputs[0])
    k = ix.flat()
    out = i64(0)
    for j in reversed(range(len(dims))):
        out = sym.select(sym.eq(k, j), dims[j], out)
    return Cast(out, node.outs[0].dtype)


# -- random (counter-based splitmix64, bit-exact with graphc/ops/random.py) --------------------


def _u64(x: int) -> Const:
    return i64(int(np.uint64(x).view(np.int64)))


GOLDEN = _u64(0x9E3779B97F4A7C15)
M1 = _u64(0xBF58476D1CE4E5B9)
M2 = _u64(0x94D049BB133111EB)


def mix64(z):
    z = Math.MUL(Math.BITXOR(z, Math.SHR(z, i64(30))), M1)
    z = Math.MUL(Math.BITXOR(z, Math.SHR(z, i64(27))), M2)
    return Math.BITXOR(z, Math.SHR(z, i64(31)))


def _bits(g, key, word):
    return g.bind(mix64(Math.ADD(key, Math.MUL(sym.add(word, 1), GOLDEN))), _dt.int64)


def _uniform64(g, key, word):
    b = _bits(g, key, word)
    return Math.MUL(Cast(Math.SHR(b, i64(11)), _dt.float64), Const(2.0**-53, _dt.float64))


def _normal64(g, key, i):
    f64 = _dt.float64
    u1 = g.bind(_uniform64(g, key, sym.mul(i, 2)), f64)
    u2 = g.bind(_uniform64(g, key, sym.add(sym.mul(i, 2), 1)), f64)
    r = Math.SQRT(Math.MUL(Const(-2.0, f64), Math.LOG1P(Math.NEG(u1))))
    return Math.MUL(r, Math.COS(Math.MUL(Const(2.0 * math.pi, f64), u2)))


def _rng_key(g, node):
    return g.bind(Load(RNG_BUFFER, i64(g.rng_slot(node)), _dt.int64), _dt.int64)


@value_rule("elementwise", "RandomUniform")
def _random_uniform(g, node, ix):
    key = _rng_key(g, node)
    i = ix.flat()
    dt = node.outs[0].dtype
    if dt == _dt.float64:
        return _uniform64(g, key, i)
    b = _bits(g, key, i)
    u = Math.MUL(Cast(Math.SHR(b, i64(40)), _dt.float64), Const(2.0**-24, _dt.float64))
    return Cast(u, dt)


@value_rule("elementwise", "RandomStandardNormal")
def _random_normal(g, node, ix):
    return Cast(_normal64(g, _rng_key(g, node), ix.flat()), node.outs[0].dtype)


@value_rule("elementwise", "TruncatedNormal")
def _truncated_normal(g, node, ix):
    key = _rng_key(g, node)
    i = ix.flat()
    dt = node.outs[0].dtype
    f64 = _dt.float64
    out = g.bind(Const(float("nan"), f64), f64)
    for r in range(16):
        k = g.bind(mix64(Math.ADD(key, i64(r + 1))), _dt.int64)
        z = g.bind(_normal64(g, k, i), f64)
        take = Math.AND(Math.ISNAN(out), Math.LT(Math.ABS(z), Const(2.0, f64)))
        out = g.bind(Math.SELECT(take, z, out), f64)
    return Cast(Math.SELECT(Math.ISNAN(out), Const(0.0, f64), out), dt)


# -- index ops ---------------------------------------------------------------------------------


@value_rule("index", "Reshape", "ReshapeLike", "ExpandDims", "Squeeze", reads="flat")
def _bitcast(g, node, ix):
    """Same row-major order: the element at the same flat index (``builder.reshaped_index``:
    trailing dims the reshape keeps keep their index)."""
    return g.value(node.inputs[0], reshaped_index(g, ix, tuple(g.shape(node.inputs[0]))))


@value_rule("index", "BroadcastLike", "BroadcastTo", reads="broadcast")
def _broadcast_to(g, node, ix):
    return g.value(node.inputs[0], g.broadcast_ix(ix, node.inputs[0]))


@value_rule("index", "Transpose")
def _transpose(g, node, ix):
    perm = node.attrs["perm"]
    dims = ix.dims()
    in_dims = [None] * len(perm)
    for out_axis, in_axis in enumerate(perm):
        in_dims[in_axis] = dims[out_axis]
    return g.value(node.inputs[0], g.ix(g.shape(node.inputs[0]), dims=tuple(in_dims)))


# -- reductions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReductionSpec:
    """A row reduction of input ``ref`` over ``axes`` of its shape.

    ``op``: sum | mean | max | min | prod | any | all | argmax | argmin.
    """

    op: str
    axes: tuple
    ref: tuple


def _std_reduction(node, shapes):
    x = shapes[node.inputs[0]]
    axes = node.attrs["axes"]
    axes = tuple(range(len(x))) if axes is None else tuple(axes)
    return ReductionSpec(node.op.lower(), axes, tuple(node.inputs[0]))


for _t in ("Sum", "Mean", "Max", "Min", "Prod", "Any", "All"):
    KINDS[_t] = "reduction"
    REDUCTIONS[_t] = _std_reduction


def _arg_reduction(node, shapes):
    x = shapes[node.inputs[0]]
    return ReductionSpec(node.op.lower(), (node.attrs["axis"] % len(x),), tuple(node.inputs[0]))


for _t in ("ArgMax", "ArgMin"):
    KINDS[_t] = "reduction"
    REDUCTIONS[_t] = _arg_reduction


def sum_to_shape_axes(node, shapes):
    """Static axes a SumToShape reduces over, or None when only the run time can tell."""
    g, like = shapes[node.inputs[0]], shapes[node.inputs[1]]
    lead = len(g) - len(like)
    axes = list(range(lead))
    for k, d in enumerate(like):
        gd = g[lead + k]
        if d == gd:
            continue
        if sym.const_value(d) == 1 and sym.const_value(gd) is not None:
            axes.append(lead + k)
        elif sym.const_value(d) == 1 and sym.const_value(gd) is None:
            return None  # gd may be 1 or not at run time
        elif sym.const_value(gd) == 1 and sym.const_value(d) is None:
            return None  # like's dim must be 1 at run time (checked): not the row shape
        elif sym.const_value(gd) == 1:
            continue  # g broadcast along a dim like has: shapes were checked
        else:
            return None
    return tuple(axes)


def _sum_to_shape(node, shapes):
    axes = sum_to_shape_axes(node, shapes)
    return None if axes is None else ReductionSpec("sum", axes, tuple(node.inputs[0]))


KINDS["SumToShape"] = "reduction"
REDUCTIONS["SumToShape"] = _sum_to_shape

KINDS["MatMul"] = "gemm"


# -- opaque kernels ----------------------------------------------------------------------------


def opaque(*types):
    def deco(fn):
        for t in types:
            KINDS[t] = "opaque"
            OPAQUE[t] = fn
        return fn

    return deco


def emit_scan(kb, node, identity, combine):
    """A sequential scan along ``node``'s axis (Cumsum, Cumprod): ``acc = combine(acc, x)``
    from ``identity``, in the reference's order (reverse, exclusive as its attributes say);
    the other dims are independent (parallel)."""
    x = kb.shape(node.inputs[0])
    axis = node.attrs["axis"] % len(x)
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    outer = [d for i, d in enumerate(x) if i != axis]
    with kb.nest(outer) as oidx:
        acc = kb.new_var("acc")
        kb.emit(Let(acc, dt, Const(dt.np.type(identity).item(), dt)))
        n = x[axis]
        with kb.loop(n, parallel=False) as j:
            jj = sym.sub(sym.sub(n, 1), j) if node.attrs["reverse"] else j
            dims = list(oidx)
            dims.insert(axis, jj)
            flat = sym.flat_index(dims, x)
            v = kb.bind(kb.load(node.inputs[0], flat), dt)
            accv = kb.var(acc, dt)
            if node.attrs["exclusive"]:
                kb.emit(Store(out, flat, accv))
                kb.emit(Let(acc, dt, combine(accv, v)))
            else:
                kb.emit(Let(acc, dt, combine(accv, v)))
                kb.emit(Store(out, flat, kb.var(acc, dt)))


@opaque("Cumsum")
def _cumsum(kb, node):
    """Running sum along the axis (``emit_scan``)."""
    emit_scan(kb, node, 0, Math.ADD)


@opaque("MatMul_loops")
def _matmul_loops(kb, node):
    """Integer matmul (no BLAS): out[b, i, j] = sum_k a[b, i, k] * b[b, k, j]."""
    a_ref, b_ref = node.inputs
    a_s, b_s = kb.shape(a_ref), kb.shape(b_ref)
    c_s = kb.shape((node.id, 0))
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    k_dim = a_s[-2] if ta else a_s[-1]
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    batch = c_s[:-2]

    def operand_batch(op_s, bidx):
        r, t = len(batch), len(op_s) - 2
        return [sym.ZERO if sym.const_value(op_s[j]) == 1 else
                sym.select(sym.eq(op_s[j], 1), 0, bidx[r - t + j]) for j in range(t)]  # fmt: skip

    with kb.nest(c_s) as idx:
        bidx, i, j = idx[:-2], idx[-2], idx[-1]
        acc = kb.new_var("acc")
        kb.emit(Let(acc, dt, Const(0, dt)))
        with kb.loop(k_dim) as k:
            ab = operand_batch(a_s, bidx)
            bb = operand_batch(b_s, bidx)
            ai = [*ab, k, i] if ta else [*ab, i, k]
            bi = [*bb, j, k] if tb else [*bb, k, j]
            av = kb.load(a_ref, Ix(kb, a_s, dims=ai).flat())
            bv = kb.load(b_ref, Ix(kb, b_s, dims=bi).flat())
            kb.emit(Let(acc, dt, Math.ADD(kb.var(acc, dt), Math.MUL(av, bv)), reduce=True))
        kb.emit(Store(out, sym.flat_index(idx, c_s), kb.var(acc, dt)))


@opaque("SumToShape_dynamic")
def _sum_to_shape_dynamic(kb, node):
    """Sum g to like's runtime shape when only the run time knows which dims broadcast.

    Two loops, of which the run time's dims leave one with work: where g has like's shape
    (the usual case: the gradient of ``out - y`` for two ``None``-batch placeholders, whose
    batch symbols the compiler cannot prove equal), a flat copy that vectorises; else the
    generic sum, one output element at a time over its broadcast extents."""
    g, like = kb.shape(node.inputs[0]), kb.shape(node.inputs[1])
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    lead = len(g) - len(like)
    same = Const(lead == 0, _dt.bool_)
    if lead == 0:
        for gd, ld in zip(g, like):
            same = sym.logical_and(same, sym.eq(gd, ld))
    if not (isinstance(same, Const) and not same.value):
        with kb.loop(sym.select(same, sym.product(like), 0), parallel=True) as i:
            kb.emit(Store(out, i, kb.load(node.inputs[0], i)))
    if isinstance(same, Const) and same.value:
        return
    like_ext = list(like)
    if like_ext:
        like_ext[0] = sym.select(same, 0, like_ext[0])
    with kb.nest(like_ext) as oidx:
        acc = kb.new_var("acc")
        kb.emit(Let(acc, dt, Const(dt.np.type(0).item(), dt)))
        extents = list(g[:lead]) + [
            sym.select(sym.eq(like[k], 1), g[lead + k], 1) for k in range(len(like))
        ]
        with kb.nest(extents, parallel=False) as jidx:
            dims = list(jidx[:lead]) + [
                sym.ZERO if sym.const_value(g[lead + k]) == 1 else sym.add(oidx[k], jidx[lead + k])
                for k in range(len(like))
            ]
            v = kb.load(node.inputs[0], sym.flat_index(dims, g))
            kb.emit(Let(acc, dt, Math.ADD(kb.var(acc, dt), v), reduce=True))
        kb.emit(Store(out, sym.flat_index(oidx, like), kb.var(acc, dt)))
