"""Scan and sort lowerings: Cumprod (a product scan) and TopK (``gc.top_k`` and ``gc.sort``).

Both are opaque kernels: one parallel loop over the rows (every index of the dims other than
``axis``) around sequential work along ``axis``.

TopK sorts each row with a stable bottom-up merge sort of int64 positions, O(n log n) per
row, then keeps the first ``k``. The Kernel IR has no ``while``, so a merge pass is one loop
over the output positions ``t`` of the pass: ``t`` names its run pair (``s = t - t % 2w``)
and two cursors (locals re-assigned each iteration) walk the left run ``[s, s + w)`` and the
right run ``[s + w, s + 2w)``; the right element is taken only when it is strictly before
the left one, which keeps equal values in index order (the lower index first, as the op's
reference and ONNX's TopK). Passes ping-pong between two scratch buffers of one int64 per
element: a pass pair (width ``w``, then ``2w`` back) runs while ``w < n``; the second pass of
the last pair merges a single run, a copy, so the order always ends in the first buffer. The
pair loop has a fixed trip count of 31 (``4**30`` exceeds any row length), guarded by
``If(w < n)``. The order of values: ``a`` before ``b`` when ``a > b`` (largest) or ``a < b``
(smallest), NaN counting as larger than every number, as the reference.

For a small ``k`` (at most ``INSERTION_MAX_K``) a row is one pass instead: the positions of
the best ``k`` seen so far are kept sorted in the indices output itself, and an element
enters only when it is strictly before the current ``k``-th (so an equal later element never
displaces an earlier one); entering shifts the worse ones down one slot. That is O(n) for
most inputs (O(n k) at worst: a row already in order) and needs no scratch memory.
"""

from __future__ import annotations

from contextlib import contextmanager

from .. import dtypes as _dt
from ..expr import Const, Load, Math, i64
from . import sym
from .ir import Buffer, If, Let, Store
from .lowerings import emit_scan, opaque
from .shapes import require, rule

# -- helpers -----------------------------------------------------------------------------------


@contextmanager
def block(kb):
    """Collect the statements emitted inside into a tuple (``out[0]``), for an If branch."""
    kb.blocks.append([])
    kb.memos.append({})
    out = []
    try:
        yield out
    finally:
        out.append(tuple(kb.blocks.pop()))
        kb.memos.pop()


def rows(x, axis):
    """(outer, n, inner): ``x`` viewed as [outer, n, inner] around ``axis``."""
    return sym.product(x[:axis]), x[axis], sym.product(x[axis + 1 :])


def row_base(r, n, inner):
    """Flat index of element 0 of row ``r`` (``r = o * inner + q``) of a [outer, n, inner]
    view: ``o * n * inner + q``."""
    if sym.const_value(inner) == 1:
        return sym.mul(r, n)
    o, q = sym.floordiv(r, inner), sym.mod(r, inner)
    return sym.add(sym.mul(sym.mul(o, n), inner), q)


def scratch(kb, node, tag, dtype, shape):
    """A temp buffer private to this kernel (the planner may reuse its storage afterwards)."""
    name = f"t{node.id}_{tag}"
    if name not in kb.lw.buffers:
        kb.lw.buffers[name] = Buffer(name, dtype, tuple(shape), "temp")
    kb.writes.add(name)
    kb.reads.add(name)
    return name


# -- Cumprod -----------------------------------------------------------------------------------

rule("Cumprod")(lambda n, ins, c: ins[0])


@opaque("Cumprod")
def _cumprod(kb, node):
    """Running product along the axis (``emit_scan``; integer products wrap as
    ``np.cumprod``'s)."""
    emit_scan(kb, node, 1, Math.MUL)


#: top_k with k up to this keeps its k best in one insertion pass; larger k merge-sorts the row
INSERTION_MAX_K = 32

# -- TopK --------------------------------------------------------------------------------------


@rule("TopK")
def _top_k_shape(n, ins, checks):
    (x,) = ins
    axis = n.attrs["axis"] % len(x)
    if n.attrs["k"] is None:  # the whole axis
        return [tuple(x), tuple(x)]
    k = i64(n.attrs["k"])
    require(checks, n, Math.LE(k, sym.as_expr(x[axis])),
            f"k={n.attrs['k']} is out of range for a dimension of size {{0}}", x[axis])  # fmt: skip
    out = tuple(k if d == axis else s for d, s in enumerate(x))
    return [out, out]


def _before(a, b, dt, largest):
    """``a`` strictly before ``b`` in the sorted order (NaN larger than every number)."""
    if largest:
        strict = Math.GT(a, b)
        if dt.is_floating:
            strict = Math.OR(strict, Math.AND(Math.ISNAN(a), Math.NOT(Math.ISNAN(b))))
    else:
        strict = Math.LT(a, b)
        if dt.is_floating:
            strict = Math.OR(strict, Math.AND(Math.ISNAN(b), Math.NOT(Math.ISNAN(a))))
    return strict


def _merge_pass(kb, src, dst, rb, n, width, key, dt, largest):
    """One bottom-up merge pass over a row: runs of ``width`` in ``src[rb:rb+n]`` merged in
    pairs into ``dst``; ``key(p)`` is the value at position ``p`` of the row."""
    i64_ = _dt.int64
    two_w = kb.bind(sym.mul(width, 2), i64_)
    ci, cj = kb.new_var("ci"), kb.new_var("cj")
    kb.emit(Let(ci, i64_, i64(0)))
    kb.emit(Let(cj, i64_, i64(0)))
    last = sym.sub(n, 1)
    with kb.loop(n) as t:
        s = kb.bind(sym.sub(t, Math.MOD(t, two_w)), i64_)
        mid = kb.bind(sym.minimum(sym.add(s, width), n), i64_)
        hi = kb.bind(sym.minimum(sym.add(s, two_w), n), i64_)
        start = kb.bind(Math.EQ(t, s), _dt.bool_)
        kb.emit(Let(ci, i64_, Math.SELECT(start, s, kb.var(ci, i64_))))
        kb.emit(Let(cj, i64_, Math.SELECT(start, mid, kb.var(cj, i64_))))
        i, j = kb.var(ci, i64_), kb.var(cj, i64_)
        left = kb.bind(Load(src, sym.add(rb, Math.MIN(i, last)), i64_), i64_)
        right = kb.bind(Load(src, sym.add(rb, Math.MIN(j, last)), i64_), i64_)
        vl, vr = kb.bind(key(left), dt), kb.bind(key(right), dt)
        take_r = Math.AND(Math.LT(j, hi), Math.OR(Math.GE(i, mid), _before(vr, vl, dt, largest)))
        take_r = kb.bind(take_r, _dt.bool_)
        kb.emit(Store(dst, sym.add(rb, t), Math.SELECT(take_r, right, left)))
        kb.emit(Let(ci, i64_, Math.ADD(i, Math.SELECT(take_r, i64(0), i64(1)))))
        kb.emit(Let(cj, i64_, Math.ADD(j, Math.SELECT(take_r, i64(1), i64(0)))))


def _insertion(kb, indices, ib, n, k, inner, key, dt, largest):
    """The positions of the k best elements of a row, in order, into ``indices[ib + t*inner]``
    for t < k (n >= k, checked before the run)."""
    i64_ = _dt.int64
    kc = sym.const_value(k)
    count = kb.new_var("count")
    kb.emit(Let(count, i64_, i64(0)))

    def slot(t):
        return sym.add(ib, sym.mul(t, inner))

    with kb.loop(n) as p:
        v = kb.bind(key(p), dt)
        cnt = kb.var(count, i64_)
        full = kb.bind(Math.GE(cnt, k), _dt.bool_)
        # the k-th best so far; before the k slots are filled, the slot holds no position yet
        # (whatever the buffer held): this element itself stands in, never read as a position
        worst = Math.SELECT(full, Load(indices, slot(i64(kc - 1)), i64_), p)
        worst = kb.bind(worst, i64_)
        enter = Math.OR(Math.NOT(full), _before(v, key(worst), dt, largest))
        with block(kb) as then:
            placed = kb.new_var("placed")
            kb.emit(Let(placed, _dt.bool_, Const(False, _dt.bool_)))
            top = sym.minimum(cnt, i64(kc - 1))  # the slot the element enters at, or above
            with kb.loop(k) as t:  # slots k-1 down to 0
                jj = kb.bind(sym.sub(i64(kc - 1), t), i64_)
                free = Math.NOT(kb.var(placed, _dt.bool_))
                active = kb.bind(Math.AND(Math.LE(jj, top), free), _dt.bool_)
                with block(kb) as move:
                    # slot jj - 1 is filled when jj > 0 (jj <= count); at slot 0 this element
                    # stands in for it, so no unfilled slot is ever read as a position
                    inner_slot = kb.bind(Math.GT(jj, i64(0)), _dt.bool_)
                    above = Load(indices, slot(sym.maximum(sym.sub(jj, 1), 0)), i64_)
                    up = kb.bind(Math.SELECT(inner_slot, above, p), i64_)
                    shift = Math.AND(inner_slot, _before(v, key(up), dt, largest))
                    shift = kb.bind(shift, _dt.bool_)
                    kb.emit(Store(indices, slot(jj), Math.SELECT(shift, up, p)))
                    kb.emit(Let(placed, _dt.bool_, Math.NOT(shift)))
                kb.emit(If(active, move[0]))
            kb.emit(Let(count, i64_, Math.ADD(cnt, i64(1))))
        kb.emit(If(enter, then[0]))


@opaque("TopK")
def _top_k(kb, node):
    """Per row (parallel): a small k by insertion into the indices output; else positions
    0..n-1 into scratch A, merge passes A -> B -> A while the run width is below n, then the
    first k positions. Last, the values at the chosen positions."""
    x_ref = tuple(node.inputs[0])
    x = kb.shape(x_ref)
    axis = node.attrs["axis"] % len(x)
    largest = node.attrs["largest"]
    dt = node.outs[0].dtype
    i64_ = _dt.int64
    values, indices = kb.out_buffer(node, 0), kb.out_buffer(node, 1)
    outer, n, inner = rows(x, axis)
    k = n if node.attrs["k"] is None else i64(node.attrs["k"])  # None: sort the whole axis
    n_rows = sym.mul(outer, inner)
    if sym.const_value(k) == 0:
        return  # nothing to write (the outputs are empty)
    insertion = sym.const_value(k) is not None and sym.const_value(k) <= INSERTION_MAX_K
    if not insertion:
        a = scratch(kb, node, "order", i64_, (n_rows, n))
        b = scratch(kb, node, "merge", i64_, (n_rows, n))
    with kb.loop(n_rows, parallel=True) as r:
        xb = kb.bind(row_base(r, n, inner), i64_)
        ob = kb.bind(row_base(r, k, inner), i64_)

        def key(p):
            return kb.load(x_ref, sym.add(xb, sym.mul(p, inner)))

        if insertion:
            _insertion(kb, indices, ob, n, k, inner, key, dt, largest)
        else:
            rb = kb.bind(sym.mul(r, n), i64_)
            with kb.loop(n) as t:
                kb.emit(Store(a, sym.add(rb, t), t))
            w = kb.new_var("w")
            kb.emit(Let(w, i64_, i64(1)))
            with kb.loop(i64(31)):
                width = kb.var(w, i64_)
                with block(kb) as then:
                    _merge_pass(kb, a, b, rb, n, width, key, dt, largest)
                    w2 = kb.bind(sym.mul(width, 2), i64_)
                    _merge_pass(kb, b, a, rb, n, w2, key, dt, largest)
                kb.emit(If(Math.LT(width, n), then[0]))
                kb.emit(Let(w, i64_, Math.MUL(width, i64(4))))
            with kb.loop(k) as t:
                p = kb.bind(Load(a, sym.add(rb, t), i64_), i64_)
                kb.emit(Store(indices, sym.add(ob, sym.mul(t, inner)), p))
        with kb.loop(k) as t:
            o = kb.bind(sym.add(ob, sym.mul(t, inner)), i64_)
            p = kb.bind(Load(indices, o, i64_), i64_)
            kb.emit(Store(values, o, key(p)))
