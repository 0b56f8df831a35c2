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

Taken only for groups made of reductions, the producers fused into them and an epilogue over
their rows: reshapes of a row (a SumToShape lowered to Sum + Reshape) share its buffer, and
elementwise consumers of the rows (a bias gradient's SGD update) are computed per chunk once
the rows are final::

        for c in t*T .. min(C, t*T + T): y[o*C + c] = f(out[o*C + c], ...)

(a row that is not stored itself accumulates in a temporary row buffer); with
``sum/mean/prod/max/min/any/all`` reductions whose output dtype is their accumulator's;
anything else returns None and gets the row layout.

A row of one tile with no outer axes (a bias gradient) would be one parallel iteration (and a
row of a few tiles a few, each reading part of every reduced row); its reduced rows are then
split in SPLITS parts instead, each combined into a partial row of a
scratch buffer in parallel, and the partial rows combined in part order (the same result
whatever the number of threads)::

    for parallel q in 0..SPLITS:
        parts[q*C + c] = init; for a in q's rows: parts[q*C + c] = op(parts[q*C + c], x[a, c])
    for c in 0..C: out[c] = op(parts[c], parts[C + c], ...)    (then the mean, the epilogue)
"""

from __future__ import annotations

from ..expr import Cast, Const, Load, Math
from . import lowerings as L
from . import sym
from .builder import REDUCE_COMBINE, REDUCE_INIT, Ix, is_row_shape, reduce_extreme
from .group_emitter import GroupEmitter
from .ir import Store

#: output-row elements per parallel iteration when the row is long
TILE = 512
#: a row of one tile and no outer axes (a bias gradient: the column sums of a [4096, 256]
#: gradient) would be one parallel iteration, on one thread: its reduced rows are split in
#: SPLITS parts instead, each summed into a partial row (in parallel), then the partial rows
#: are combined, from SPLIT_MIN_ROWS reduced rows (or a count known only at run time)
SPLITS = 8
SPLIT_MIN_ROWS = 512
#: ... also rows of a few tiles, up to this many columns: tiles split the threads' reads of
#: each reduced row (half a 4 KB row each), which the hardware prefetchers follow badly: the
#: column sums of W9's [4096, 1024] gradient took 1.7 ms on one thread, 1.9 on two, in tiles
SPLIT_MAX_COLUMNS = 2048


def emit_column_group(lw, name, nodes, stored, reductions):
    """(kb, body) in the column layout, or None when the group does not qualify."""
    specs = {r.id: L.REDUCTIONS[r.op](r, lw.shapes) for r in reductions}
    if any(s is None or s.op not in REDUCE_COMBINE for s in specs.values()):
        return None
    first = specs[reductions[0].id]
    space, axes = lw.shapes[first.ref], tuple(sorted(first.axes))
    if any(lw.shapes[s.ref] != space or tuple(sorted(s.axes)) != axes for s in specs.values()):
        return None
    if not axes or axes[-1] == len(space) - 1:
        return None  # the reduced axis is already innermost: the row layout is unit-stride
    red_ids = set(specs)
    post = _row_epilogue(lw, nodes, red_ids, space, axes)
    if post is None:
        return None  # a member uses a row in a way the column kernel cannot: row kernel
    if any(s.ref[0] in red_ids or s.ref[0] in post for s in specs.values()):
        # a reduction of a row (softmax's sum of exp(x - max) over a size-1 axis, where the
        # full space is the row shape): all rows accumulate in one sweep here
        return None
    views = _row_views(nodes, red_ids)
    targets: dict = {r: [] for r in red_ids}  # reduction id -> stored refs equal to its row
    computed = []  # stored refs of the elementwise epilogue, computed from finished rows
    for ref in stored:
        ref = tuple(ref)
        rid = ref[0] if ref[0] in red_ids else views.get(ref[0])
        if ref[1] != 0 or (rid is None and ref[0] not in post):
            return None
        if rid is None:
            computed.append(ref)
        else:
            targets[rid].append(ref)
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
    prog = lw.program
    # accumulate in the first stored view of each row, copy the finished chunk to the others
    bufs = {
        rid: [kb.out_buffer(prog.node(ref[0]), ref[1]) for ref in sorted(refs)]
        for rid, refs in targets.items()
    }
    for rid, b in bufs.items():
        if not b:  # the row is only read by the epilogue: a temporary row buffer
            b.append(lw.buffer_for_write((rid, 0)))
            kb.writes.add(b[0])
    outs = {rid: b[0] for rid, b in bufs.items()}
    dts = {r.id: r.outs[0].dtype for r in reductions}
    red_shape = [space[d] for d in axes]
    if _split(outer, c_size, red_shape):
        _emit_split(lw, kb, space, axes, specs, reductions, outs, dts, c_size, inner)
        _emit_rows_after(lw, kb, reductions, specs, dts, outs, bufs, computed, red_shape,
                         sym.ZERO, sym.ZERO, c_size)  # fmt: skip
        return kb, kb.body()
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
                kb.emit(Store(outs[r.id], sym.add(row, c), _init(s, dt)))
        with kb.nest(red_shape, parallel=False) as avars:
            with chunk() as c:
                od, ad = iter(outer_dims), iter(avars)
                dims = [next(ad) if d in axes else next(od) for d in range(last + 1)]
                base = sym.flat_index(dims, space[: last + 1])
                flat = sym.add(sym.mul(base, c_size), c)
                # one trailing axis: hand over the multi-index too, so broadcast operands
                # are indexed by loop variables instead of divisions of the flat index
                full = (*dims, c) if len(inner) == 1 else None
                _accumulate(kb, reductions, specs, dts, outs, Ix(kb, space, full, flat),
                            sym.add(row, c))  # fmt: skip
        _emit_rows_after(lw, kb, reductions, specs, dts, outs, bufs, computed, red_shape,
                         row, lo, hi)  # fmt: skip
    return kb, kb.body()


def _init(spec, dt):
    """The identity a reduction's accumulator starts from."""
    if spec.op in ("max", "min"):
        return reduce_extreme(dt, spec.op == "min")
    return Const(dt.np.type(REDUCE_INIT[spec.op]).item(), dt)


def _accumulate(kb, reductions, specs, dts, bufs, ix, at):
    """Each reduction's value at ``ix`` combined into its row element ``bufs[id][at]``."""
    for r in reductions:
        s, dt, buf = specs[r.id], dts[r.id], bufs[r.id]
        v = kb.value(s.ref, ix)
        cur = kb.bind(Load(buf, at, dt), dt)
        kb.emit(Store(buf, at, REDUCE_COMBINE[s.op](cur, v)))
        kb.reads.add(buf)


def _split(outer, c_size, red_shape) -> bool:
    """Whether the reduction is computed in SPLITS parts (see SPLITS)."""
    if sym.const_value(sym.product(outer)) != 1:
        return False
    columns = sym.const_value(c_size)
    if columns is None or columns > SPLIT_MAX_COLUMNS:
        return False
    rows = sym.const_value(sym.product(red_shape))
    return rows is None or rows >= SPLIT_MIN_ROWS


def _emit_split(lw, kb, space, axes, specs, reductions, outs, dts, c_size, inner):
    """The rows in SPLITS parts: each part's reduced rows combined into its own partial row
    (a parallel loop over the parts), then the partial rows combined, in part order, into
    the reductions' rows (the same order whatever the threads: deterministic)."""
    last = axes[-1]
    red_shape = [space[d] for d in axes]
    count = sym.product(red_shape)
    parts = {r.id: lw.scratch_buffer(f"t{r.id}_parts", dts[r.id], sym.mul(SPLITS, c_size))
             for r in reductions}  # fmt: skip
    for buf in parts.values():
        kb.writes.add(buf)
        kb.reads.add(buf)

    with kb.loop(SPLITS, parallel=True) as q:
        a0 = kb.bind(sym.floordiv(sym.mul(q, count), SPLITS), sym.ZERO.dtype)
        a1 = kb.bind(sym.floordiv(sym.mul(sym.add(q, 1), count), SPLITS), sym.ZERO.dtype)
        at0 = kb.bind(sym.mul(q, c_size), sym.ZERO.dtype)
        with kb.loop(c_size) as c:
            for r in reductions:
                kb.emit(Store(parts[r.id], sym.add(at0, c), _init(specs[r.id], dts[r.id])))
        with kb.loop(a1, start=a0) as a:
            red = sym.unflatten(a, red_shape) if len(red_shape) > 1 else (a,)
            rd = iter(red)
            dims = [next(rd) if d in axes else sym.ZERO for d in range(last + 1)]
            base = kb.bind(sym.flat_index(dims, space[: last + 1]), sym.ZERO.dtype)
            with kb.loop(c_size) as c:
                flat = sym.add(sym.mul(base, c_size), c)
                full = (*dims, c) if len(inner) == 1 else None
                _accumulate(kb, reductions, specs, dts, parts, Ix(kb, space, full, flat),
                            sym.add(at0, c))  # fmt: skip
    with kb.loop(c_size) as c:
        for r in reductions:
            s, dt, buf = specs[r.id], dts[r.id], parts[r.id]
            acc = kb.bind(Load(buf, c, dt), dt)
            for k in range(1, SPLITS):
                nxt = kb.bind(Load(buf, sym.add(sym.mul(k, c_size), c), dt), dt)
                acc = kb.bind(REDUCE_COMBINE[s.op](acc, nxt), dt)
            kb.emit(Store(outs[r.id], c, acc))


def _emit_rows_after(lw, kb, reductions, specs, dts, outs, bufs, computed, red_shape, row, lo, hi):
    """Once the rows' elements [lo, hi) (at flat ``row``) are final: means divided, copies to
    the other views stored, the elementwise epilogue computed."""
    prog = lw.program

    def chunk():
        return kb.loop(hi, start=lo)

    means = [r for r in reductions if specs[r.id].op == "mean"]
    if means:
        count = sym.product(red_shape)
        with chunk() as c:
            for r in means:
                dt, buf = dts[r.id], outs[r.id]
                at = sym.add(row, c)
                cur = kb.bind(Load(buf, at, dt), dt)
                kb.emit(Store(buf, at, Math.DIV(cur, Cast(count, dt))))
    copies = [r for r in reductions if len(bufs[r.id]) > 1]
    if copies:
        with chunk() as c:
            at = sym.add(row, c)
            for r in copies:
                dt = dts[r.id]
                cur = kb.bind(Load(outs[r.id], at, dt), dt)
                kb.reads.add(outs[r.id])
                for buf in bufs[r.id][1:]:
                    kb.emit(Store(buf, at, cur))
    if computed:
        with chunk() as c:
            at = sym.add(row, c)
            kb.row_flat = at
            for r in reductions:
                dt = dts[r.id]
                kb.row_values[r.id] = kb.bind(Load(outs[r.id], at, dt), dt)
                kb.reads.add(outs[r.id])
            for ref in computed:
                v = kb.value(ref, kb.ix(lw.shapes[ref], flat=at))
                kb.emit(Store(kb.out_buffer(prog.node(ref[0]), ref[1]), at, v))
            kb.row_flat = None
            kb.row_values.clear()


def _row_epilogue(lw, nodes, red_ids, space, axes):
    """Ids of the members computed from reductions' rows (elementwise ops and reshapes of
    row-shaped values, evaluated per row element once the rows are final), or None when a
    member mixes a row with a full-space member or is anything else."""
    row_size = sym.product([d for i, d in enumerate(space) if i not in axes])
    members = {n.id for n in nodes}
    post: set = set()
    for n in nodes:  # program order: producers first
        srcs = [src for src, _ in n.inputs if src in members]
        if n.id in red_ids or not any(s in red_ids or s in post for s in srcs):
            continue
        if any(s not in red_ids and s not in post for s in srcs):
            return None  # also needs a value over the reduced space
        if len(n.outs) != 1 or (not n.op_def.view and L.op_kind(n) != "elementwise"):
            return None
        shape = lw.shapes[(n.id, 0)]
        if sym.product(shape) != row_size:
            return None
        if not n.op_def.view and not is_row_shape(shape, space, axes):
            return None
        post.add(n.id)
    return post


def _row_views(nodes, red_ids):
    """node id -> reduction id for the members that are views (reshapes) of a reduction's
    row, e.g. the Reshape a SumToShape becomes after its Sum; they share the row's flat
    index, so the column kernel stores the row into their buffers directly."""
    views: dict = {}
    for n in nodes:  # program order: a view of a view follows it
        rows = [i for i, (src, _) in enumerate(n.inputs) if src in red_ids or src in views]
        if not rows:
            continue
        if not n.op_def.view or rows != [0] or n.inputs[0][1] != 0 or len(n.outs) != 1:
            continue  # computed by the epilogue, not an alias of the row
        src = n.inputs[0][0]
        views[n.id] = views.get(src, src)
    return views
