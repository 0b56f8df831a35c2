"""Column layout of a reduction over leading axes (``lower(..., reduction_layout="columns")``).

A reduction of ``space = outer kept + reduced + C`` (``C``: the kept axes after the last
reduced one, a contiguous trailing block) accumulates in the output row instead of in one
scalar per output element, so the innermost loop is unit-stride over ``C`` (vectorisable)
rather than strided over the reduced axis::

    for parallel p in 0..OUTER * TILES:          # independent: distinct output elements
        o, t = p // TILES, p % TILES
        for c in t*T .. min(C, t*T + T): out[o*C + c] = init
        for a in reduced axes (sequential: each pass updates the same row)
            for c in t*T .. min(C, t*T + T): out[o*C + c] = op(out[o*C + c], x[o, a, c])
        (mean: for c ...: out[o*C + c] /= count)

Taken only for groups made of reductions and the producers fused into them, with
``sum/mean/prod/max/min/any/all`` reductions whose output dtype is their accumulator's;
anything else returns None and gets the row layout.
"""

from __future__ import annotations

from . import lowerings as L
from . import sym
from .expr import Cast, Const, Load, Math
from .ir import Store

#: output-row elements per parallel iteration when the row is long
TILE = 512


def emit_column_group(lw, name, nodes, stored, reductions):
    """(kb, body) in the column layout, or None when the group does not qualify."""
    from .lower import _COMBINE, _INIT, GroupEmitter, _extreme

    specs = {r.id: L.REDUCTIONS[r.op](r, lw.shapes) for r in reductions}
    if any(s is None or s.op not in _COMBINE for s in specs.values()):
        return None
    first = specs[reductions[0].id]
    space, axes = lw.shapes[first.ref], tuple(sorted(first.axes))
    if any(lw.shapes[s.ref] != space or tuple(sorted(s.axes)) != axes for s in specs.values()):
        return None
    if not axes or axes[-1] == len(space) - 1:
        return None  # the reduced axis is already innermost: the row layout is unit-stride
    red_ids = set(specs)
    if any(src in red_ids for n in nodes for src, _ in n.inputs):
        return None  # a member reads a reduction's row: row kernel
    if sorted(stored) != sorted((r, 0) for r in red_ids):
        return None
    for r in reductions:
        if lw.program.spec((r.id, 0)).dtype != lw.program.spec(specs[r.id].ref).dtype:
            return None
    last = axes[-1]
    inner = space[last + 1 :]
    outer = [space[d] for d in range(last) if d not in axes]
    c_size = sym.product(inner)
    if sym.const_value(sym.product(outer)) == 1 and sym.const_value(c_size) == 1:
        return None
    if sym.const_value(c_size) is not None and sym.const_value(c_size) <= TILE:
        tiles = sym.ONE
    else:
        tiles = sym.floordiv(sym.add(c_size, TILE - 1), TILE)
    kb = GroupEmitter(lw, name, [n.id for n in nodes])
    outs = {r.id: kb.out_buffer(r) for r in reductions}
    dts = {r.id: r.outs[0].dtype for r in reductions}
    red_shape = [space[d] for d in axes]
    with kb.loop(sym.mul(sym.product(outer), tiles), parallel=True) as p:
        if sym.const_value(tiles) == 1:
            o, lo, hi = p, sym.ZERO, c_size
        else:
            if sym.const_value(sym.product(outer)) == 1:
                o, t = sym.ZERO, p
            else:
                o, t = sym.floordiv(p, tiles), sym.mod(p, tiles)
            lo = kb.bind(sym.mul(t, TILE), sym.ZERO.dtype)
            hi = kb.bind(sym.minimum(sym.add(lo, TILE), c_size), sym.ZERO.dtype)
        o = kb.bind(o, sym.ZERO.dtype)
        row = sym.mul(o, c_size)
        outer_dims = sym.unflatten(o, outer) if len(outer) > 1 else (o,) if outer else ()

        def chunk():
            return kb.loop(hi, start=lo)

        with chunk() as c:
            for r in reductions:
                s = specs[r.id]
                dt = dts[r.id]
                init = (_extreme(dt, s.op == "min") if s.op in ("max", "min")
                        else Const(dt.np.type(_INIT[s.op]).item(), dt))  # fmt: skip
                kb.emit(Store(outs[r.id], sym.add(row, c), init))
        with kb.nest(red_shape, parallel=False) as avars:
            with chunk() as c:
                od, ad = iter(outer_dims), iter(avars)
                dims = [next(ad) if d in axes else next(od) for d in range(last + 1)]
                base = sym.flat_index(dims, space[: last + 1])
                ix = kb.ix(space, flat=sym.add(sym.mul(base, c_size), c))
                for r in reductions:
                    s, dt, buf = specs[r.id], dts[r.id], outs[r.id]
                    v = kb.value(s.ref, ix)
                    at = sym.add(row, c)
                    cur = kb.bind(Load(buf, at, dt), dt)
                    kb.emit(Store(buf, at, _COMBINE[s.op](cur, v)))
                    kb.reads.add(buf)
        means = [r for r in reductions if specs[r.id].op == "mean"]
        if means:
            count = sym.product(red_shape)
            with chunk() as c:
                for r in means:
                    dt, buf = dts[r.id], outs[r.id]
                    at = sym.add(row, c)
                    cur = kb.bind(Load(buf, at, dt), dt)
                    kb.emit(Store(buf, at, Math.DIV(cur, Cast(count, dt))))
    return kb, kb.body()
