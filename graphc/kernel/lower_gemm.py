"""GEMM groups: a ``gemm`` LibCall (or a Conv2D through im2col) then a fused epilogue.

The GEMM writes C, then the group's elementwise members (bias, activation) run as one loop
over their outputs, written in place into C's buffer when nothing else needs the raw product
(``emit_gemm_group``). ``_emit_gemm`` turns a MatMul / BatchMatMul into one batched ``gemm``
call, or one call per output batch index when the operands broadcast their batch dims
differently (the LibCall's arguments: ``graphc/backends/llvm/blas.py``). A convolution
lowering that computes each output element in a loop of its own (Winograd's output
transform) applies the epilogue there instead (``Finish``), unless the epilogue reads the
convolution at another element.
"""

from __future__ import annotations

from ..expr import Const, Load, i64
from . import sym
from .builder import Illegal, Ix
from .group_emitter import GroupEmitter
from .ir import Buffer, LibCall, Store, exprs_in, walk_stmts
from .lower_nn import emit_conv2d, takes_packed
from .lower_rows import concat_output, emit_concat_pieces, store_all, stored_space


def emit_gemm_group(lw, name, nodes, stored, mm):
    """``gemm`` LibCall for ``mm`` then the epilogue members as a loop over their outputs.

    The GEMM writes straight into the epilogue's output (in place) when that is the only
    stored value, of C's shape and dtype, and the epilogue reads each element of C only at
    the index it then overwrites (not so for a transpose of a square C, say)."""
    prog = lw.program
    mm_ref = (mm.id, 0)
    for src, _ in mm.inputs:
        if src in {n.id for n in nodes}:
            raise Illegal("GEMM operands are read from memory by the BLAS library")
    epilogue = [r for r in stored if r != mm_ref]
    c_shape = lw.shapes[mm_ref]
    dt = mm.outs[0].dtype
    in_place = (
        mm_ref not in stored
        and len(epilogue) == 1
        and lw.shapes[epilogue[0]] == c_shape
        and prog.spec(epilogue[0]).dtype == dt
        and not _last_read_operand(lw, nodes, mm, c_shape, dt)
    )
    if in_place:
        kb = _finished_or_not(lw, name, nodes, stored, mm, epilogue, in_place=True)
        if _reads_only_overwritten(kb.body(), kb.overrides[mm_ref]):
            return kb, kb.body()
    kb = _finished_or_not(lw, name, nodes, stored, mm, epilogue, in_place=False)
    return kb, kb.body()


def _finished_or_not(lw, name, nodes, stored, mm, epilogue, in_place):
    """The group with its epilogue where the convolution computes each element (``Finish``)
    when it reads C only there (an LRN after the convolution reads neighbouring channels:
    a Load of C would remain, of values never stored); else with the loop after it."""
    kb = _gemm_group_emitter(lw, name, nodes, stored, mm, epilogue, in_place)
    c_buf = kb.overrides[(mm.id, 0)]
    if kb.finished and any(isinstance(e, Load) and e.buffer == c_buf for e in exprs_in(kb.body())):
        kb = _gemm_group_emitter(lw, name, nodes, stored, mm, epilogue, in_place, finish=False)
    return kb


def _gemm_group_emitter(lw, name, nodes, stored, mm, epilogue, in_place, finish=True):
    prog = lw.program
    mm_ref = (mm.id, 0)
    kb = GroupEmitter(lw, name, [n.id for n in nodes if n.id != mm.id])
    if in_place:
        c_buf = kb.out_buffer(prog.node(epilogue[0][0]), epilogue[0][1])
    elif mm_ref in stored:
        c_buf = kb.out_buffer(mm)
    else:
        c_buf = f"t{mm.id}"
        lw.buffers[c_buf] = Buffer(c_buf, mm.outs[0].dtype, lw.shapes[mm_ref], "temp")
        kb.writes.add(c_buf)
    kb.overrides[mm_ref] = c_buf
    kb.finished = False
    if mm.op_def.gemm_group == "conv":
        fin = _finisher(lw, nodes, epilogue, mm, c_buf, mm_ref in stored) if finish else None
        emit_conv2d(kb, mm, c_buf, fin)
        kb.finished = fin is not None and fin.used
    else:
        _emit_gemm(kb, mm, c_buf)
    if kb.finished:
        if fin.concat is not None:  # the other pieces
            emit_concat_pieces(kb, fin.concat[0], skip=fin.concat[1])
        return kb
    if epilogue:
        kb.reads.add(c_buf)
        concat = concat_output(lw, epilogue, {n.id for n in nodes})
        if concat is not None:
            emit_concat_pieces(kb, concat)
            return kb
        space = stored_space(lw, epilogue)
        saved = list(kb.blocks[0])
        for flat in (True, False):
            kb.blocks[0] = list(saved)
            kb.divmod_used = False
            if flat:
                with kb.loop(sym.product(space), parallel=True) as i:
                    store_all(kb, epilogue, kb.ix(space, flat=i))
            else:
                with kb.nest(space) as idx:
                    store_all(kb, epilogue, kb.ix(space, dims=idx))
            # the flat loop unless it needs a divmod (multi-index) and a nest can do without;
            # the nest is kept even when it needs one too
            if not kb.divmod_used or len(space) <= 1:
                break
    return kb


class Finish:
    """A GEMM group's epilogue applied where a convolution lowering computes each element of
    its output (``lower_winograd``'s output transform), instead of in a loop over the
    output after it: ``finish(kb, dims, flat, value)`` inside the lowering's loops, the
    element at NHWC index ``dims`` (flat ``flat``) being ``value``, stores the epilogue's
    results there: the stored tensors of C's shape, or the convolution's piece of a concat
    (``concat``: ``(concat_output's found, the piece's ref, its offset on the axis)``; the
    other pieces are stored by loops after it). ``store_raw``: the convolution's own output
    is stored too (fetched or read elsewhere); ``used``: the lowering called it."""

    def __init__(self, epilogue, space, c_buf, store_raw, concat=None):
        self.epilogue, self.space, self.c_buf = epilogue, space, c_buf
        self.store_raw, self.concat = store_raw, concat
        self.used = False

    def __call__(self, kb, dims, flat, value):
        kb.remember(("load", self.c_buf, flat), value)  # (the epilogue's read of C)
        ix = kb.ix(self.space, dims=dims, flat=flat)
        if self.concat is None:
            store_all(kb, self.epilogue, ix)
        else:
            (ref, node, _), piece, offset = self.concat
            axis, out_shape = node.attrs["axis"], kb.lw.shapes[ref]
            at = [sym.add(d, offset) if i == axis else d for i, d in enumerate(dims)]
            buf = kb.out_buffer(kb.lw.program.node(ref[0]), ref[1])
            kb.emit(Store(buf, sym.flat_index(at, out_shape), kb.value(piece, ix)))
        self.used = True


def _finisher(lw, nodes, epilogue, mm, c_buf, store_raw):
    """A ``Finish`` for a convolution group whose epilogue stores only tensors of C's shape,
    or one concat (not transposed) of which one piece of C's shape is computed from C;
    None when there is no such epilogue."""
    c_shape = lw.shapes[(mm.id, 0)]
    if not epilogue:
        return None
    ids = {n.id for n in nodes}
    found = concat_output(lw, epilogue, ids)
    if found is None:
        return None if any(lw.shapes[r] != c_shape for r in epilogue) else (
            Finish(epilogue, c_shape, c_buf, store_raw))  # fmt: skip
    _, node, perm = found
    if perm != tuple(range(len(perm))):
        return None
    offset, hit = sym.ZERO, []
    for piece in node.inputs:
        piece = tuple(piece)
        if _computed_from(lw, piece, mm.id, ids):
            hit.append((piece, offset))
        offset = sym.add(offset, lw.shapes[piece][node.attrs["axis"]])
    if len(hit) != 1 or lw.shapes[hit[0][0]] != c_shape:
        return None
    return Finish(epilogue, c_shape, c_buf, store_raw, (found, *hit[0]))


def _computed_from(lw, ref, source: int, ids) -> bool:
    """Whether group member ``ref`` reads node ``source`` through the group's members."""
    todo, seen = [ref[0]], set()
    while todo:
        nid = todo.pop()
        if nid == source:
            return True
        if nid in seen or nid not in ids:
            continue
        seen.add(nid)
        todo.extend(r[0] for r in lw.program.node(nid).inputs)
    return False


def _last_read_operand(lw, nodes, mm, c_shape, dt) -> bool:
    """Whether a convolution's epilogue reads, for the last time, a computed tensor of C's
    shape and dtype (a ResNet block's residual): the convolution then writes a temporary of
    its own and the epilogue stores its result apart, so that buffer planning may store that
    result over the tensor (``passes/plan.py``: the kernel reads each element before it
    overwrites it), instead of the convolution writing the result's storage, which would
    then be the tensor's too. Only in the final lowering (``lower``), which knows the
    groups lowered before, and for the packed convolution, whose tile epilogue stores the
    result apart at no cost (the temporary untouched); another would write the temporary
    and the epilogue read it back."""
    if lw.consumers is None or mm.op_def.gemm_group != "conv" or not takes_packed(lw, mm):
        return False
    ids = {n.id for n in nodes}
    for n in nodes:
        for ref in n.inputs:
            ref = tuple(ref)
            if n.id == mm.id or ref[0] in ids or ref in lw.fetches or ref in lw.source_buffer:
                continue
            if lw.shapes[ref] != c_shape or lw.program.spec(ref).dtype != dt:
                continue
            if all(c in ids or c in lw.lowered for c in lw.consumers.get(ref, ())):
                return True
    return False


def _reads_only_overwritten(body, buf) -> bool:
    """Every Load of ``buf`` in ``body`` is at the index of the one Store to ``buf``."""
    stores = {s.index for s in walk_stmts(body) if isinstance(s, Store) and s.buffer == buf}
    if len(stores) != 1:
        return False
    return all(e.index in stores for e in exprs_in(body) if isinstance(e, Load) and e.buffer == buf)


def _emit_gemm(kb, mm, c_buf):
    lw = kb.lw
    a_ref, b_ref = (tuple(r) for r in mm.inputs)
    a_s, b_s = lw.shapes[a_ref], lw.shapes[b_ref]
    c_s = lw.shapes[(mm.id, 0)]
    ta, tb = mm.attrs["transpose_a"], mm.attrs["transpose_b"]
    m, n = c_s[-2], c_s[-1]
    k = a_s[-2] if ta else a_s[-1]
    a_buf, b_buf = lw.buffer_for_read(a_ref), lw.buffer_for_read(b_ref)
    kb.reads.update((a_buf, b_buf))
    batch = c_s[:-2]
    mk, kn, mn = sym.mul(m, k), sym.mul(k, n), sym.mul(m, n)
    dt = mm.outs[0].dtype
    one, zero = Const(1.0, dt), Const(0.0, dt)

    def stride(op_batch, size):
        if tuple(op_batch) == tuple(batch):
            return size
        if all(sym.const_value(d) == 1 for d in op_batch):
            return sym.ZERO
        return None

    sa, sb = stride(a_s[:-2], mk), stride(b_s[:-2], kn)
    flags = (i64(int(ta)), i64(int(tb)))
    if sa is not None and sb is not None:
        kb.emit(LibCall("gemm", (a_buf, b_buf, c_buf, *flags, m, n, k, sym.product(batch),
                                 sa, sb, mn, one, zero, sym.ZERO, sym.ZERO, sym.ZERO)))  # fmt: skip
        return
    # mixed batch broadcasting: one GEMM per output batch index
    with kb.nest(batch, parallel=False) as bidx:
        bix = Ix(kb, batch, dims=bidx)
        offs = []
        for op_batch, size in ((a_s[:-2], mk), (b_s[:-2], kn)):
            r, t = len(batch), len(op_batch)
            dims = []
            for j in range(t):
                d = op_batch[j]
                dims.append(sym.ZERO if sym.const_value(d) == 1 else
                            sym.select(sym.eq(d, 1), 0, bix.dims()[r - t + j]))  # fmt: skip
            offs.append(sym.mul(sym.flat_index(dims, op_batch), size))
        oc = sym.mul(bix.flat(), mn)
        kb.emit(LibCall("gemm", (a_buf, b_buf, c_buf, *flags, m, n, k, sym.ONE, sym.ZERO,
                                 sym.ZERO, sym.ZERO, one, zero, offs[0], offs[1], oc)))  # fmt: skip
