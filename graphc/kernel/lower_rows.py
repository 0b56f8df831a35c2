"""Loop and row (reduction) groups: the Kernel IR of a fused group without a GEMM.

``lower.emit_group`` picks the emitter by the group's members:
  * a ``loop`` group (elementwise members only): one loop nest over the shape of the stored
    outputs, every member computed inline at the index its consumer asks for
    (``emit_loop_group``); a flat loop unless that needs a divmod a nest can avoid. A group
    whose one output is a concat gets one nest per input, each computing only its piece.
  * a ``reduction`` group in the row layout: outer (parallel) loops over the rows, then for
    each reduction an inner loop accumulating its fused producers, then the row-valued
    elementwise members, then an inner loop storing the full-shaped outputs
    (``emit_row_group``). Softmax and layer norm become one such kernel. Expensive members
    that several passes need are cached in a full-shaped output (``row_cache_plan``).

``store_all`` and ``stored_space`` are shared with the GEMM epilogue (``lower_gemm``).
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Cast, Const, Math, Var
from . import lowerings as L
from . import sym
from .builder import REDUCE_COMBINE, REDUCE_INIT, Illegal, is_row_shape, reduce_extreme
from .group_emitter import GroupEmitter
from .ir import Let, Store
from .printer import expr_text


def stored_space(lw, stored):
    shapes = {lw.shapes[r] for r in stored}
    if len(shapes) != 1:
        raise Illegal("the group's outputs have different shapes: "
                      + " vs ".join(fmt_shape(s) for s in shapes))  # fmt: skip
    return shapes.pop()


def fmt_shape(s):
    return "(" + ", ".join(expr_text(d) for d in s) + ")"


def emit_loop_group(lw, name, nodes, stored, flat_first=True):
    if not stored:
        kb = GroupEmitter(lw, name, [n.id for n in nodes])
        return kb, ()
    shapes = list(dict.fromkeys(lw.shapes[r] for r in stored))
    if len(shapes) > 1 and len({r[0] for r in stored}) == 1:
        # one multi-output op (split, unstack): one loop nest per output shape
        kb = GroupEmitter(lw, name, [n.id for n in nodes])
        for shape in shapes:
            with kb.nest(shape) as idx:
                store_all(kb, [r for r in stored if lw.shapes[r] == shape],
                           kb.ix(shape, dims=idx))  # fmt: skip
        return kb, kb.body()
    concat = concat_output(lw, stored, {n.id for n in nodes})
    if concat is not None:
        kb = GroupEmitter(lw, name, [n.id for n in nodes])
        emit_concat_pieces(kb, concat)
        return kb, kb.body()
    space = stored_space(lw, stored)
    for flat in [True, False] if flat_first else [False]:
        kb = GroupEmitter(lw, name, [n.id for n in nodes])
        if flat:
            with kb.loop(sym.product(space), parallel=True) as i:
                ix = kb.ix(space, flat=i)
                store_all(kb, stored, ix)
        else:
            _nest_unrolled_tail(kb, space, lambda ix, kb=kb: store_all(kb, stored, ix))
        if not kb.divmod_used or len(space) <= 1:
            break
    return kb, kb.body()


#: a loop nest's innermost extent up to this (static) is unrolled into the loop above it
UNROLL_INNER = 4


def _nest_unrolled_tail(kb, space, store):
    """``store(ix)`` for every index of ``space`` in a loop nest, the innermost extent
    unrolled when it is static and at most UNROLL_INNER: the loop above then vectorises with
    interleaved accesses (an NCHW -> NHWC transpose of 3 channels, an ONNX model's input:
    one masked gather per pixel before, 95 -> ~20 us for 224 x 224 x 3 on one thread)."""
    tail = sym.const_value(space[-1]) if len(space) > 1 else None
    if tail is None or not 1 < tail <= UNROLL_INNER:
        with kb.nest(space) as idx:
            store(kb.ix(space, dims=idx))
        return
    with kb.nest(space[:-1]) as idx:
        for t in range(tail):
            store(kb.ix(space, dims=(*idx, sym.as_expr(t))))


def concat_output(lw, stored, members):
    """(stored ref, concat node, perm) when a group's one stored output is a concat of the
    group, or a chain of the group's transposes of one (an ONNX NCHW concat between NHWC
    convolutions); ``perm[d]`` is the concat's dim that output dim ``d`` reads. Else None."""
    if len(stored) != 1:
        return None
    node = lw.program.node(stored[0][0])
    perm = tuple(range(len(lw.shapes[stored[0]])))
    while node.op_def.symbolic_dims == "transpose" and node.id in members:
        perm = tuple(node.attrs["perm"][p] for p in perm)
        node = lw.program.node(node.inputs[0][0])
    if node.op_def.symbolic_dims != "concat" or node.id not in members:
        return None
    return stored[0], node, perm


def emit_concat_pieces(kb, found, skip=None):
    """Store a group's one output, a concat (``concat_output``): one loop nest per input,
    each computing only its piece and storing it at its offset along the axis (one nest
    over the whole output would compute every input's fused producers at each element and
    select one, with clamped loads that do not vectorise). Loop groups and GEMM epilogues (a
    fire module's two expand convolutions and their concat) both use it. ``skip``: a piece
    stored elsewhere (``lower_gemm.Finish``)."""
    lw = kb.lw
    ref, concat, perm = found
    axis = concat.attrs["axis"]
    out_shape = lw.shapes[ref]
    buf = kb.out_buffer(lw.program.node(ref[0]), ref[1])
    offset = sym.ZERO
    for piece in concat.inputs:
        shape = lw.shapes[tuple(piece)]
        if sym.const_value(shape[axis]) != 0 and tuple(piece) != skip:
            with kb.nest([shape[p] for p in perm]) as idx:
                dims = [None] * len(perm)
                for d, p in enumerate(perm):
                    dims[p] = idx[d]
                v = kb.value(piece, kb.ix(shape, dims=dims))
                at = [sym.add(i, offset) if p == axis else i for i, p in zip(idx, perm)]
                kb.emit(Store(buf, sym.flat_index(at, out_shape), v))
        offset = sym.add(offset, shape[axis])


def store_all(kb, stored, ix):
    for ref in stored:
        node = kb.lw.program.node(ref[0])
        v = kb.value(ref, ix)
        buf = kb.out_buffer(node, ref[1])
        kb.emit(Store(buf, ix.flat(), v))


def row_cache_plan(lw, kb, stored) -> dict:
    """ref -> (output buffer, storing pass, passes) for the expensive members a row kernel
    computes in several passes: the first pass stores them into a full-shaped output of the
    same dtype (which the last pass overwrites element by element after reading it)."""
    free = [
        r for r in kb.full_stored if not lw.program.node(r[0]).op_def.must_store
    ]  # fmt: skip
    plan = {}
    for ref, passes in sorted(kb.expensive_seen.items(), key=lambda kv: min(kv[1])):
        if len(passes) < 2:
            continue
        dt = lw.program.spec(ref).dtype
        out = next((r for r in free if lw.program.spec(r).dtype == dt), None)
        if out is None:
            continue
        free.remove(out)
        plan[ref] = (lw.buffer_for_write(out), min(passes), frozenset(passes))
    return plan


def emit_row_group(lw, name, nodes, stored, reductions, cache=None):
    specs = {}
    for r in reductions:
        spec = L.REDUCTIONS[r.op](r, lw.shapes)
        if spec is None:
            raise Illegal(f"{r.op} '{r.name}': which dims it reduces is only known at run time")
        specs[r.id] = spec
    first = specs[reductions[0].id]
    space = lw.shapes[first.ref]
    axes = first.axes
    for r in reductions:
        s = specs[r.id]
        if lw.shapes[s.ref] != space or s.axes != axes:
            raise Illegal("reductions over different shapes or axes")
    outer_axes = [d for d in range(len(space)) if d not in axes]
    row_shape = tuple(space[d] for d in outer_axes)
    kb = GroupEmitter(lw, name, [n.id for n in nodes])
    kb.row_cache = dict(cache or {})
    full_stored, row_stored = [], []
    for ref in stored:
        s = lw.shapes[ref]
        if s == space and ref[0] not in specs:
            full_stored.append(ref)
        elif sym.product(s) == sym.product(row_shape) and is_row_shape(s, space, axes):
            row_stored.append(ref)
        else:
            raise Illegal(f"output shape {fmt_shape(s)} is neither the row nor the full shape")
    with kb.nest([space[d] for d in outer_axes]) as ovars:
        kb.row_flat = sym.flat_index(ovars, row_shape)
        row_dims = dict(zip(outer_axes, ovars))

        def full_ix(avars):
            dims = [
                row_dims[d]
                if d in row_dims
                else (sym.ZERO if sym.const_value(space[d]) == 1 else avars[axes.index(d)])
                for d in range(len(space))
            ]
            return kb.ix(space, dims=dims)

        for n in nodes:
            if n.id in specs:
                _emit_reduction(kb, n, specs[n.id], space, axes, full_ix)
            elif L.op_kind(n) != "source":
                s = lw.shapes[(n.id, 0)]
                if s != space and is_row_shape(s, space, axes) and _reads_rows(lw, n, kb):
                    kb.value((n.id, 0), kb.ix(s, flat=kb.row_flat))
        for ref in row_stored:
            node = lw.program.node(ref[0])
            v = kb.value(ref, kb.ix(lw.shapes[ref], flat=kb.row_flat))
            kb.emit(Store(kb.out_buffer(node, ref[1]), kb.row_flat, v))
        if full_stored:
            kb.pass_no += 1
            with kb.nest([space[d] for d in axes], parallel=False) as avars:
                ix = full_ix(avars)
                kb.full_flat = ix.flat()
                # read cached values before any store to the output rows holding them
                for ref, (_, _, passes) in kb.row_cache.items():
                    if kb.pass_no in passes:
                        kb.value(ref, ix)
                store_all(kb, full_stored, ix)
                kb.full_flat = None
    kb.full_stored = full_stored
    return kb, kb.body()


def _reads_rows(lw, node, kb) -> bool:
    """True when ``node`` depends (inside the group) on a reduction of this row."""
    stack = [src for src, _ in node.inputs]
    seen = set()
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in kb.members:
            continue
        seen.add(nid)
        if nid in kb.row_values:
            return True
        stack.extend(src for src, _ in lw.program.node(nid).inputs)
    return False


def _emit_reduction(kb, node, spec, space, axes, full_ix):
    lw = kb.lw
    dt = lw.program.spec(spec.ref).dtype
    acc = kb.new_var("acc")
    extents = [space[d] for d in axes]
    if spec.op in ("argmax", "argmin"):
        best = acc
        idx = kb.new_var("arg")
        kb.emit(Let(best, dt, reduce_extreme(dt, spec.op == "argmin")))
        kb.emit(Let(idx, _dt.int64, sym.ZERO))
        with kb.nest(extents, parallel=False) as avars:
            v = kb.value(spec.ref, full_ix(avars))
            b = Var(best, dt)
            better = (Math.GT if spec.op == "argmax" else Math.LT)(v, b)
            if dt.is_floating:
                better = Math.OR(better, Math.AND(Math.ISNAN(v), Math.NOT(Math.ISNAN(b))))
            better = kb.bind(better, _dt.bool_)
            kb.emit(Let(idx, _dt.int64, Math.SELECT(better, avars[0], Var(idx, _dt.int64))))
            kb.emit(Let(best, dt, Math.SELECT(better, v, b)))
        final = Cast(Var(idx, _dt.int64), node.outs[0].dtype)
    else:
        if spec.op in ("max", "min"):
            init = reduce_extreme(dt, spec.op == "min")
        else:
            init = Const(dt.np.type(REDUCE_INIT[spec.op]).item(), dt)
        kb.emit(Let(acc, dt, init))
        kb.pass_no += 1
        with kb.nest(extents, parallel=False) as avars:
            ix = full_ix(avars)
            kb.full_flat = ix.flat()
            v = kb.value(spec.ref, ix)
            kb.emit(Let(acc, dt, REDUCE_COMBINE[spec.op](Var(acc, dt), v), reduce=True))
        kb.full_flat = None
        final = Var(acc, dt)
        if spec.op == "mean":
            final = Math.DIV(final, Cast(sym.product(extents), dt))
    kb.row_values[node.id] = kb.bind(final, node.outs[0].dtype)
    if isinstance(kb.row_values[node.id], Var) and kb.row_values[node.id].name == acc:
        # keep the accumulator name private: later reductions may not re-assign it
        kb.row_values[node.id] = Var(acc, dt)
