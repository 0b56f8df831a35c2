"""Scatter-add lowerings: GatherGrad, GatherNdGrad, ScatterNd, UnsortedSegmentSum.

Repeated indices must sum, so each is an opaque kernel of two loops: a parallel loop that
zeroes the output, then a *sequential* loop over the index positions that adds each
source row into the output row its index names (``out[idx[i]] += src[i]``: a load and a
store at a data-dependent index, which the contract in ``ir.py`` never vectorises nor
splits over threads). Only the innermost loop over a row's elements, whose iterations
touch distinct elements, is vectorisable. Where independent outer dimensions exist
(GatherGrad's batch and leading params dims) they form a parallel loop: they write
disjoint parts of the output.

An out-of-range index raises the op's status flag (InvalidArgumentError after the run, as
the reference raises) and is skipped; UnsortedSegmentSum drops negative ids, as TF does.
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Cast, Const, Load, Math, i64
from . import lower_elements, lower_sort, sym  # noqa: F401  (lower_*: register their rules)
from .ir import STATUS_BUFFER, If, Store
from .lower_index import index_depth
from .lowerings import opaque
from .shapes import rule


def _zero(dt):
    return Const(dt.np.type(0).item(), dt)


def _same_dims(checks, got, want, message):
    for a, b in zip(got, want):
        if a != b:
            checks.append((sym.eq(a, b), message))


def _index(kb, i_ref, flat):
    """``indices[flat]`` as int64."""
    v = kb.load(i_ref, flat)
    if kb.lw.program.spec(tuple(i_ref)).dtype != _dt.int64:
        v = kb.bind(Cast(v, _dt.int64), _dt.int64)
    return v


def _flag(kb, node, message):
    slot = kb.lw.plain_check(node, message)
    kb.writes.add(STATUS_BUFFER)
    return Store(STATUS_BUFFER, i64(slot), Const(1, _dt.int32))


def _zero_fill(kb, out, shape, dt):
    with kb.loop(sym.product(shape), parallel=True) as i:
        kb.emit(Store(out, i, _zero(dt)))


def _add_row(kb, out, out_row, src_ref, src_row, row_size, dt):
    """out[out_row * R + r] += src[src_row * R + r] for r < R (vectorisable)."""

    def body(r):
        o = sym.add(sym.mul(out_row, row_size), r)
        cur = kb.bind(Load(out, o, dt), dt)
        v = kb.load(src_ref, sym.add(sym.mul(src_row, row_size), r))
        kb.emit(Store(out, o, Math.ADD(cur, v)))

    if sym.const_value(row_size) == 1:
        body(sym.ZERO)
        return
    with kb.loop(row_size) as r:
        body(r)


def _guarded(kb, ok, bad_flag, emit):
    """Run ``emit()`` into an If(ok) (else raise ``bad_flag`` when given)."""
    kb.blocks.append([])
    kb.memos.append({})
    emit()
    then = tuple(kb.blocks.pop())
    kb.memos.pop()
    kb.emit(If(ok, then, (bad_flag,) if bad_flag is not None else ()))


# -- GatherGrad --------------------------------------------------------------------------------


def _gather_out(p, i, axis, bd):
    return tuple(i[:bd]) + tuple(p[bd:axis]) + tuple(i[bd:]) + tuple(p[axis + 1 :])


@rule("GatherGrad")
def _gather_grad_shape(n, ins, checks):
    g, i, p = ins
    axis, bd = n.attrs["axis"], n.attrs["batch_dims"]
    what = f"GatherGrad '{n.name}'"
    _same_dims(checks, p[:bd], i[:bd], f"{what}: batch dimensions of params and indices differ")
    _same_dims(checks, g, _gather_out(p, i, axis, bd), f"{what}: the gradient does not fit "
                                                        "the gather")  # fmt: skip
    return tuple(p)


@opaque("GatherGrad")
def _gather_grad(kb, node):
    """out viewed [B, PRE, A, POST], g as [B, PRE, I, POST], indices as [B, I]."""
    g_ref, i_ref, p_ref = (tuple(r) for r in node.inputs)
    p, i = kb.shape(p_ref), kb.shape(i_ref)
    axis, bd = node.attrs["axis"], node.attrs["batch_dims"]
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    _zero_fill(kb, out, p, dt)
    b_n, pre = sym.product(p[:bd]), sym.product(p[bd:axis])
    a, post = p[axis], sym.product(p[axis + 1 :])
    n_idx = sym.product(i[bd:])
    flag = _flag(kb, node, f"GatherGrad '{node.name}': indices out of range [0, dim of params "
                           f"axis {axis})")  # fmt: skip

    def scatter(outer):
        # outer = b * PRE + q: these rows of the output are written by this iteration only
        if sym.const_value(b_n) == 1:
            b = sym.ZERO
        else:
            b = sym.floordiv(outer, pre) if sym.const_value(pre) != 1 else outer
        with kb.loop(n_idx) as j:  # sequential: indices may repeat
            k = _index(kb, i_ref, sym.add(sym.mul(b, n_idx), j))
            ok = kb.bind(Math.AND(Math.GE(k, sym.ZERO), Math.LT(k, a)), _dt.bool_)
            out_row = sym.add(sym.mul(outer, a), k)
            g_row = sym.add(sym.mul(outer, n_idx), j)
            _guarded(kb, ok, flag, lambda: _add_row(kb, out, out_row, g_ref, g_row, post, dt))

    n_outer = sym.mul(b_n, pre)
    if sym.const_value(n_outer) == 1:
        scatter(sym.ZERO)
    else:
        with kb.loop(n_outer, parallel=True) as outer:
            scatter(outer)


# -- GatherNdGrad / ScatterNd ------------------------------------------------------------------


def _nd_depth(node, out_rank, src_rank, ishape):
    """K from the ranks (src = indices[:-1] + out[bd + K:]); the static last index dim must
    agree."""
    bd = node.attrs.get("batch_dims", 0)
    k = out_rank - bd - (src_rank - (len(ishape) - 1))
    if sym.const_value(ishape[-1]) is None:
        return k
    return index_depth(node, ishape)


def _nd_checks(n, out, src, i, checks, what):
    bd = n.attrs.get("batch_dims", 0)
    k = _nd_depth(n, len(out), len(src), i)
    if sym.const_value(i[-1]) is None:
        checks.append((sym.eq(i[-1], k), f"{what}: index vectors must have length {k}"))
    _same_dims(checks, i[:bd], out[:bd], f"{what}: batch dimensions of the indices and the "
                                         "output differ")  # fmt: skip
    want = tuple(i[:-1]) + tuple(out[bd + k :])
    _same_dims(checks, src, want, f"{what}: the updates do not fit the indexed shape")


@rule("GatherNdGrad")
def _gather_nd_grad_shape(n, ins, checks):
    g, i, p = ins
    _nd_checks(n, p, g, i, checks, f"GatherNdGrad '{n.name}'")
    return tuple(p)


@rule("ScatterNd")
def _scatter_nd_shape(n, ins, checks):
    i, u = ins
    shape = tuple(i64(d) for d in n.attrs["shape"])
    _nd_checks(n, shape, u, i, checks, f"ScatterNd '{n.name}'")
    return shape


def _scatter_nd(kb, node, src_ref, i_ref):
    """out[b, idx[b, j, :], rest] += src[b, j, rest]: zero-fill, then per batch entry b (the
    ``batch_dims`` leading dims; a parallel loop, entries write disjoint parts of out) a
    sequential loop over its index vectors j."""
    out_shape = kb.shape((node.id, 0))
    src, i = kb.shape(src_ref), kb.shape(i_ref)
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    bd = node.attrs.get("batch_dims", 0)
    k = _nd_depth(node, len(out_shape), len(src), i)
    _zero_fill(kb, out, out_shape, dt)
    row_size = sym.product(out_shape[bd + k :])
    n_batch = sym.product(i[:bd])
    n_idx = sym.product(i[bd:-1])
    block = sym.product(out_shape[bd : bd + k])  # rows of one batch entry
    flag = _flag(kb, node, f"{node.op} '{node.name}': indices out of range")

    def scatter(b):
        with kb.loop(n_idx) as jj:  # sequential: indices may repeat
            j = jj if b is None else sym.add(sym.mul(b, n_idx), jj)
            ok, row = Const(True, _dt.bool_), sym.ZERO
            for c in range(k):
                kc = _index(kb, i_ref, sym.add(sym.mul(j, k), c))
                in_range = Math.AND(Math.GE(kc, sym.ZERO), Math.LT(kc, out_shape[bd + c]))
                ok = sym.logical_and(ok, in_range)
                row = sym.add(sym.mul(row, out_shape[bd + c]), kc)
            if b is not None:
                row = sym.add(sym.mul(b, block), row)
            row = kb.bind(row, _dt.int64)

            def add():
                _add_row(kb, out, row, src_ref, j, row_size, dt)

            if k:
                _guarded(kb, kb.bind(ok, _dt.bool_), flag, add)
            else:
                add()

    if bd == 0 or sym.const_value(n_batch) == 1:
        scatter(None if bd == 0 else sym.ZERO)
    else:
        with kb.loop(n_batch, parallel=True) as b:
            scatter(b)


@opaque("GatherNdGrad")
def _gather_nd_grad(kb, node):
    _scatter_nd(kb, node, tuple(node.inputs[0]), tuple(node.inputs[1]))


@opaque("ScatterNd")
def _scatter_nd_op(kb, node):
    _scatter_nd(kb, node, tuple(node.inputs[1]), tuple(node.inputs[0]))


# -- UnsortedSegmentSum ------------------------------------------------------------------------


@rule("UnsortedSegmentSum")
def _segment_sum_shape(n, ins, checks):
    data, ids = ins
    _same_dims(checks, data[: len(ids)], ids, f"UnsortedSegmentSum '{n.name}': segment_ids "
                                              "must be a prefix of data")  # fmt: skip
    return (i64(n.attrs["num_segments"]),) + tuple(data[len(ids) :])


@opaque("UnsortedSegmentSum")
def _segment_sum(kb, node):
    d_ref, s_ref = (tuple(r) for r in node.inputs)
    data, ids = kb.shape(d_ref), kb.shape(s_ref)
    out_shape = kb.shape((node.id, 0))
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    n = node.attrs["num_segments"]
    _zero_fill(kb, out, out_shape, dt)
    row_size = sym.product(data[len(ids) :])
    flag = _flag(kb, node, f"UnsortedSegmentSum '{node.name}': a segment id is not below {n}")
    with kb.loop(sym.product(ids)) as j:  # sequential: ids may repeat
        s = _index(kb, s_ref, j)
        too_big = kb.bind(Math.GE(s, i64(n)), _dt.bool_)
        kb.emit(If(too_big, (flag,)))
        keep = kb.bind(Math.AND(Math.GE(s, sym.ZERO), Math.NOT(too_big)), _dt.bool_)
        _guarded(kb, keep, None, lambda: _add_row(kb, out, s, d_ref, j, row_size, dt))
