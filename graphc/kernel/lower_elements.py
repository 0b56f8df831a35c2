"""Element-wise gathers and scatters along one axis, and scatter-updates by index tuples:
GatherElements, ScatterElements, TensorScatterNdUpdate (``graphc/ops/gather_scatter.py``).

Indices may be negative (counted from the end of the dimension, as the reference); one out of
``[-dim, dim)`` raises the op's status flag (InvalidArgumentError after the run, the message
naming the op) and is never used to address memory: gathers read a clamped position,
scatters skip the write.

GatherElements is an ``index`` rule (one output element from one input element; it fuses like
GatherV2). The scatters are opaque kernels: a parallel copy of ``data`` into the output, then
the updates in the reference's order (row-major over the indices), so a repeated index keeps
the last write (reduction "none") or combines in the same order as ``np.<op>.at`` (floating
sums are bit-identical). ScatterElements' writes along ``axis`` only collide between index
positions that share their leading dims (those before ``axis``), so a loop over those is
parallel and the rest sequential; TensorScatterNdUpdate's index tuples may hit any row, so its
loop over them is sequential (only the copy of each updated row is vectorisable).
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Cast, Const, Load, Math, i64
from . import sym
from .ir import STATUS_BUFFER, If, Store
from .lower_index import index_depth
from .lower_sort import block
from .lowerings import opaque, value_rule
from .shapes import require, require_eq, rule


def _flag_stmt(lw, node, message):
    slot = lw.plain_check(node, message)
    return Store(STATUS_BUFFER, i64(slot), Const(1, _dt.int32))


def _as_i64(kb_or_g, ref, v):
    if kb_or_g.lw.program.spec(tuple(ref)).dtype != _dt.int64:
        return kb_or_g.bind(Cast(v, _dt.int64), _dt.int64)
    return v


def _normalize(b, k, d):
    """(``k`` with a negative index counted from the end, ``k`` in ``[-d, d)``) as locals."""
    ok = b.bind(Math.AND(Math.GE(k, sym.sub(sym.ZERO, d)), Math.LT(k, sym.as_expr(d))), _dt.bool_)
    kk = b.bind(Math.SELECT(Math.LT(k, i64(0)), sym.add(k, d), k), _dt.int64)
    return kk, ok


def _clamp(i, n):
    return sym.maximum(sym.minimum(i, sym.sub(n, 1)), 0)


def _not_wider(checks, n, data, idx, axis, what):
    for d, (a, b) in enumerate(zip(data, idx)):
        if d != axis and a != b:
            msg = f"{what}: indices dimension {d} of size {{0}} exceeds data's {{1}}"
            require(checks, n, Math.LE(sym.as_expr(b), sym.as_expr(a)), msg, b, a)


# -- GatherElements ----------------------------------------------------------------------------


@rule("GatherElements")
def _gather_elements_shape(n, ins, checks):
    data, idx = ins
    axis = n.attrs["axis"] % len(data)
    _not_wider(checks, n, data, idx, axis, "gather_elements")
    return tuple(idx)


@value_rule("index", "GatherElements")
def _gather_elements(g, node, ix):
    """out[..., j, ...] = data[..., indices[..., j, ...], ...] along ``axis``."""
    d_ref, i_ref = node.inputs
    data = g.shape(d_ref)
    axis = node.attrs["axis"] % len(data)
    dims = ix.dims()
    k = _as_i64(g, i_ref, g.value(i_ref, ix))
    size = data[axis]
    kk, ok = _normalize(g, k, size)
    bad = _flag_stmt(g.lw, node, f"GatherElements '{node.name}': indices out of range "
                                 f"[-dim, dim) of data axis {axis}")  # fmt: skip
    g.emit(If(Math.NOT(ok), (bad,)))
    g.writes.add(STATUS_BUFFER)
    ddims = list(dims)
    ddims[axis] = _clamp(kk, size)
    return g.value(d_ref, g.ix(data, dims=ddims))


# -- scatters ----------------------------------------------------------------------------------

_COMBINE = {"add": Math.ADD, "mul": Math.MUL, "max": Math.MAX, "min": Math.MIN}
_COMBINE_BOOL = {"add": Math.OR, "mul": Math.AND, "max": Math.OR, "min": Math.AND}


def _combined(reduction, dt, cur, upd):
    if reduction == "none":
        return upd
    table = _COMBINE_BOOL if dt.is_bool else _COMBINE
    return table[reduction](cur, upd)


def _copy(kb, out, src_ref, size):
    with kb.loop(size, parallel=True) as i:
        kb.emit(Store(out, i, kb.load(src_ref, i)))


@rule("ScatterElements")
def _scatter_elements_shape(n, ins, checks):
    data, idx, upd = ins
    axis = n.attrs["axis"] % len(data)
    for a, b in zip(idx, upd):
        require_eq(checks, n, a, b, "scatter_elements: updates must have the shape of indices")
    _not_wider(checks, n, data, idx, axis, "scatter_elements")
    return tuple(data)


@opaque("ScatterElements")
def _scatter_elements(kb, node):
    """out = data; then for every index position p (row-major):
    out[p with p[axis] = indices[p]] (op)= updates[p]."""
    d_ref, i_ref, u_ref = (tuple(r) for r in node.inputs)
    data, idx = kb.shape(d_ref), kb.shape(i_ref)
    axis = node.attrs["axis"] % len(data)
    dt = node.outs[0].dtype
    red = node.attrs["reduction"]
    out = kb.out_buffer(node)
    _copy(kb, out, d_ref, sym.product(data))
    flag = _flag_stmt(kb.lw, node, f"ScatterElements '{node.name}': indices out of range "
                                   f"[-dim, dim) of data axis {axis}")  # fmt: skip
    kb.writes.add(STATUS_BUFFER)
    lead = idx[:axis]
    with kb.nest(lead, parallel=True) as lidx:
        with kb.nest(idx[axis:], parallel=False) as ridx:
            pos = list(lidx) + list(ridx)
            p_flat = sym.flat_index(pos, idx)
            k = _as_i64(kb, i_ref, kb.load(i_ref, p_flat))
            kk, ok = _normalize(kb, k, data[axis])
            with block(kb) as then:
                odims = list(pos)
                odims[axis] = kk
                o = kb.bind(sym.flat_index(odims, data), _dt.int64)
                cur = None if red == "none" else kb.bind(Load(out, o, dt), dt)
                kb.emit(Store(out, o, _combined(red, dt, cur, kb.load(u_ref, p_flat))))
            kb.emit(If(ok, then[0], (flag,)))


def _nd_depth(node, data, idx, upd):
    """K, the length of the index tuples: static from the indices, else from the ranks
    (updates = indices[:-1] + data[K:])."""
    if sym.const_value(idx[-1]) is not None:
        return index_depth(node, idx)
    return len(data) - (len(upd) - (len(idx) - 1))


@rule("TensorScatterNdUpdate")
def _scatter_nd_update_shape(n, ins, checks):
    data, idx, upd = ins
    k = _nd_depth(n, data, idx, upd)
    what = "tensor_scatter_nd_update"
    if sym.const_value(idx[-1]) is None:
        require_eq(checks, n, idx[-1], i64(k), f"{what}: index tuples must have length {k}")
    want = tuple(idx[:-1]) + tuple(data[k:])
    for a, b in zip(upd, want):
        require_eq(checks, n, a, b, f"{what}: updates must have shape indices[:-1] + data[K:]")
    return tuple(data)


@opaque("TensorScatterNdUpdate")
def _scatter_nd_update(kb, node):
    """out = data; then for every index tuple j (in order) the row out[indices[j, :]] (op)=
    updates[j] (a row: data's dims after the first K)."""
    d_ref, i_ref, u_ref = (tuple(r) for r in node.inputs)
    data, idx, upd = kb.shape(d_ref), kb.shape(i_ref), kb.shape(u_ref)
    k = _nd_depth(node, data, idx, upd)
    dt = node.outs[0].dtype
    red = node.attrs["reduction"]
    out = kb.out_buffer(node)
    _copy(kb, out, d_ref, sym.product(data))
    row_size = sym.product(data[k:])
    flag = _flag_stmt(kb.lw, node, f"TensorScatterNdUpdate '{node.name}': indices out of range")
    kb.writes.add(STATUS_BUFFER)
    with kb.loop(sym.product(idx[:-1])) as j:  # sequential: index tuples may repeat
        ok, row = Const(True, _dt.bool_), sym.ZERO
        for c in range(k):
            kc = _as_i64(kb, i_ref, kb.load(i_ref, sym.add(sym.mul(j, k), c)))
            kc, ok_c = _normalize(kb, kc, data[c])
            ok = sym.logical_and(ok, ok_c)
            row = sym.add(sym.mul(row, data[c]), kc)
        row = kb.bind(row, _dt.int64)
        with block(kb) as then:

            def update(r):
                o = kb.bind(sym.add(sym.mul(row, row_size), r), _dt.int64)
                cur = None if red == "none" else kb.bind(Load(out, o, dt), dt)
                u = kb.load(u_ref, sym.add(sym.mul(j, row_size), r))
                kb.emit(Store(out, o, _combined(red, dt, cur, u)))

            if sym.const_value(row_size) == 1:
                update(sym.ZERO)
            else:
                with kb.loop(row_size) as r:
                    update(r)
        if k:
            kb.emit(If(kb.bind(ok, _dt.bool_), then[0], (flag,)))
        else:
            kb.blocks[-1].extend(then[0])
