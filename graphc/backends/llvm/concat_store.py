"""Convolutions that store straight into their piece of a concat (a cpu Kernel IR pass, in
the backend's ``KERNEL_PASSES`` after ``plan_row_epilogues``).

A SqueezeNet fire module ends in ``concat(relu(conv1x1 + b1), relu(conv3x3 + b3))`` along
the channels. Lowered, the 3 x 3 kernel is a ``conv_packed`` call writing a temporary T of
``[m, o]`` and, after it, the row loop of ``epilogue.row_nest`` storing each row's two
pieces of the concat D ``[m, K]`` (``D[row * K + off + col] = relu(T[row * o + col] +
b[col])``). T is read nowhere else, yet at batch 8 it is 6.2 MB per 55 x 55 module: the
kernel writes it (each line read for ownership first), the epilogue reads it back, and the
lines are written back to memory when evicted. With two threads the fire kernels are bound
by that memory traffic, not by their multiply-adds.

``direct_concat`` has the call write its rows straight into D (``ldc = K``, ``oc = off``,
see ``ir.LIBCALLS``) and the epilogue read them there in place: T is no longer touched.
It is exact, not a reordering of arithmetic, and is applied only where this holds:

- the call's C is a temporary read only by the row loop right after the call (no other
  statement or kernel reads or writes it: its storage, shared or not, is left alone), and
  the call's m output pixels are the loop's rows;
- every read of T is ``T[row * o + col]`` in one channel loop of o iterations, which
  stores ``D[row * K + off + col]`` (float32, ``0 <= off``, ``off + o <= K``) after its
  last read of T;
- no other store of the row loop to D's storage reaches columns ``[off, off + o)`` of a row
  (the other pieces are ``D[row * K + off2 + col2]`` with columns disjoint from them), and
  the row loop reads D's storage only at another piece's own element in its columns (a
  piece already moved in place; ``row_nest`` already refuses a loop reading what another
  of its pieces stores, or storing into the input or filters).

So, row by row, the value read is the convolution's and each element of D is stored once
after it was read, as before. Per task (the fused epilogue) a task's rows of D are written
by the call, then read and overwritten by its own epilogue only; with the epilogue run
after the call as a loop, every row is complete before it is read.

The fire module's 1 x 1 expand is a kernel of its own (A) before the concat's (B), its
output U read only by B's row loop. The same rewrite then moves A's call into D's other
piece when, besides the rules above, D is a temporary whose storage no kernel from A to B
touches except B (through D): buffer planning gives each storage root a region of its own,
and D's is in use only from B on, so writing it from A overwrites nothing live. A's piece of
B's row loop (its bias and ReLU over its columns of D, in place) then moves into A as A's
own row loop (``_move_piece``), when A is that call alone and the piece reads nothing a
kernel after A writes: each convolution finishes its half, and with ``tile_epilogue.py``
both halves are stored once, final, from the tiles.
"""

from __future__ import annotations

from dataclasses import replace

from ... import dtypes as _dt
from ...expr import Const, Load, Var, sub_exprs
from ...kernel.analysis import buffers_read, buffers_written, replace_loads, var_names
from ...kernel.ir import KernelProgram, Let, LibCall, Loop, Store, stmt_exprs, walk_stmts
from .epilogue import ROW_COLUMNS, ROW_EPILOGUES, affine_index, counted, linear_index, storage_roots

#: positions of ``LIBCALLS["conv_packed"]``'s C, o, ldc and oc arguments
_C, _O, _LDC, _OC = 2, 5, 19, 20
#: an earlier kernel's call (A) writes into the concat of kernel B only this many kernels
#: before it at most (a fire module's are adjacent): the checks over the kernels between them
#: then cost a bounded time each, and the pass stays linear in the program's size
MAX_KERNELS_APART = 4


def direct_concat(kp: KernelProgram) -> KernelProgram:
    """``kp`` with each qualifying ``conv_packed`` call writing into its concat piece in
    place: the call of a row-nest epilogue's kernel, then a call of an earlier kernel whose
    output only such a row loop reads (see the module docstring)."""
    root = storage_roots(kp)
    readers = _readers(kp.kernels)
    kernels = []
    for i, k in enumerate(kp.kernels):
        body = list(k.body)
        for j, _o in k.meta.get(ROW_COLUMNS, ()):
            t = body[j].args[_C] if isinstance(body[j], LibCall) else None
            if t is None or readers.get(t) != {i}:
                continue
            rest = body[:j] + body[j + 2 :]
            if t in buffers_read(rest) | buffers_written(rest):
                continue
            new = _rewrite(body[j], body[j + 1], kp, root)
            if new is not None:
                body[j], body[j + 1] = new[:2]
        kernels.append(replace(k, body=tuple(body)))
    kernels = _from_earlier_kernels(kernels, kp, root)
    return replace(kp, kernels=kernels)


def _readers(kernels) -> dict:
    """buffer -> indices of the kernels reading it (a LibCall's operands count)."""
    readers = {}
    for i, k in enumerate(kernels):
        for name in buffers_read(k.body):
            readers.setdefault(name, set()).add(i)
    return readers


def _from_earlier_kernels(kernels: list, kp, root) -> list:
    """The other piece of a fire module: its 1 x 1 expand is a kernel of its own (A), whose
    output U only the row loop of the concat's kernel (B) reads. A's call then writes its
    rows into D too, when nothing in kernels A..B but B touches D's storage (D is a
    temporary: its storage is first used by B, so it is free since A; buffer planning gave
    each storage root a region of its own)."""
    readers = _readers(kernels)
    writers = {}  # buffer -> [(kernel, statement)] of the conv_packed calls writing it
    for i, k in enumerate(kernels):
        for j, s in enumerate(k.body):
            if isinstance(s, LibCall) and s.fn == "conv_packed":
                writers.setdefault(s.args[_C], []).append((i, j))
    for b, kb in enumerate(kernels):
        for jb, _o in kb.meta.get(ROW_COLUMNS, ()):
            for u in sorted(buffers_read(kernels[b].body[jb + 1 : jb + 2])):
                (a, ja), *more = writers.get(u, [(b, 0)])
                if more or not 0 < b - a <= MAX_KERNELS_APART or readers.get(u) != {a, b}:
                    continue
                ka, kb_now = kernels[a], kernels[b]
                rest_a = ka.body[:ja] + ka.body[ja + 1 :]
                rest_b = kb_now.body[: jb + 1] + kb_now.body[jb + 2 :]
                if u in buffers_read(rest_a) | buffers_written(rest_a) | buffers_read(rest_b):
                    continue
                if u in buffers_written(kb_now.body):
                    continue
                new = _rewrite(ka.body[ja], kb_now.body[jb + 1], kp, root)
                if new is None or not _free(kernels, a, b, new[0].args[_C], kp, root):
                    continue
                body_a, body_b = list(ka.body), list(kb_now.body)
                body_a[ja], body_b[jb + 1] = new[:2]
                kernels[a] = replace(ka, body=tuple(body_a))
                kernels[b] = replace(kb_now, body=tuple(body_b))
                _move_piece(kernels, a, b, jb, new[2])
    return kernels


def _move_piece(kernels: list, a: int, b: int, jb: int, chan) -> None:
    """Move A's piece of B's row loop (the channel loop ``chan``, now over D in place) into
    A, as the row loop after A's call (then a row epilogue of A's own, or its tiles': see
    ``tile_epilogue.py``): the fire module's 1 x 1 half is then finished by its kernel. Only
    when A is that call alone, and the piece reads nothing kernels after A write (it reads
    its columns of D, which A wrote, and constants) and no local of the row loop's."""
    ka, kb = kernels[a], kernels[b]
    loop = kb.body[jb + 1]
    if len(ka.body) != 1 or ka.meta.get(ROW_EPILOGUES):
        return
    call = ka.body[0]
    d = call.args[_C]
    later = set()
    for k in kernels[a + 1 : b + 1]:
        later |= buffers_written(k.body)
    if (buffers_read((chan,)) - {d}) & later:
        return
    known = {loop.var, chan.var} | {s.var for s in walk_stmts(chan.body) if isinstance(s, Let)}
    used = set().union(*(var_names(e) for s in walk_stmts(chan.body) for e in stmt_exprs(s)))
    if not used <= known:
        return
    o = int(call.args[_O].value)
    mine = replace(loop, body=(chan,))
    meta = {**ka.meta, ROW_EPILOGUES: (0,), ROW_COLUMNS: ((0, o),)}
    kernels[a] = replace(ka, body=(call, mine), meta=meta)
    kernels[b] = replace(kb, body=kb.body[: jb + 1]
                         + (replace(loop, body=tuple(s for s in loop.body if s is not chan)),)
                         + kb.body[jb + 2 :])  # fmt: skip


def _free(kernels, a: int, b: int, d: str, kp, root) -> bool:
    """Whether D (a temporary) may be written from kernel ``a`` on: no kernel of ``a..b``
    touches D's storage but ``b``, through D itself."""
    if kp.buffers[d].kind != "temp" or kp.buffers[root[d]].kind != "temp":
        return False
    for i in range(a, b + 1):
        body = kernels[i].body
        for name in buffers_read(body) | buffers_written(body):
            if root.get(name) == root[d] and not (i == b and name == d):
                return False
    return True


def _rewrite(call, loop, kp, root):
    """``(call, loop)`` with the call writing D in place of T, or None when it does not
    qualify."""
    if not (call.fn == "conv_packed" and isinstance(loop, Loop)):
        return None
    t = call.args[_C]
    o_e, ldc, oc = call.args[_O], call.args[_LDC], call.args[_OC]
    if not all(isinstance(e, Const) for e in (o_e, ldc, oc)):
        return None
    o = int(o_e.value)
    if int(ldc.value) != o or int(oc.value) != 0 or kp.buffers[t].kind != "temp":
        return None
    if not (isinstance(loop.stop, Const) and call.args[4] == loop.stop):
        return None  # (the call's m output pixels are the loop's rows)
    found = _piece(loop, t, o, root)
    if found is None:
        return None
    chan, d, k, off = found
    if kp.buffers[d].dtype != _dt.float32 or kp.buffers[t].dtype != _dt.float32:
        return None
    at = linear_index([(Var(loop.var, _dt.int64), k), (Var(chan.var, _dt.int64), 1)], off)
    # T's loads (each at the row's own element, in whatever form) read D[at] instead
    to_d = {(x.buffer, x.index): Load(d, at, x.dtype) for st in chan.body for x in _loads(st)
            if x.buffer == t}  # fmt: skip
    moved = tuple(replace_loads(st, to_d) for st in chan.body)
    body = tuple(replace(s, body=moved) if s is chan else s for s in loop.body)
    args = list(call.args)
    args[_C], args[_LDC], args[_OC] = d, Const(k, _dt.int64), Const(off, _dt.int64)
    new_chan = next(s for s, old in zip(body, loop.body) if old is chan)
    return replace(call, args=tuple(args)), replace(loop, body=body), new_chan


def _piece(loop, t, o, root):
    """``(channel loop, D, K, off)``: the channel loop of the row loop that reads T and the
    concat piece it stores T's values into, checked as the module docstring says; else
    None."""
    row = loop.var
    chans = [s for s in loop.body if isinstance(s, Loop) and counted(s)]
    if any(t in buffers_read((s,)) for s in loop.body if not any(s is c for c in chans)):
        return None  # T read outside a channel loop of static extent
    with_t = [s for s in chans if t in buffers_read((s,))]
    if len(with_t) != 1:
        return None
    chan = with_t[0]
    col = chan.var
    if int(chan.stop.value) != o or not all(isinstance(st, Let | Store) for st in chan.body):
        return None
    for st in chan.body:
        for x in _loads(st):
            if x.buffer == t and affine_index(x.index) != ({row: o, col: 1}, 0):
                return None
    last = max(j for j, st in enumerate(chan.body) if t in buffers_read((st,)))
    hits = [st for st in chan.body[last:] if isinstance(st, Store)]
    pieces = [p for p in (_columns(st, row, col, o) for st in hits) if p is not None]
    if len(pieces) != 1:
        return None
    d, k, off, _last = pieces[0]
    if off < 0 or off + o > k or root[d] == root[t]:
        return None
    # every other store to D's storage: a piece of the same rows, with columns apart
    mine = next(st for st in hits if _columns(st, row, col, o) is not None)
    for c in chans:
        for st in c.body:
            if not isinstance(st, Store) or st is mine or root.get(st.buffer) != root[d]:
                continue
            p = _columns(st, row, c.var, int(c.stop.value))
            if p is None or p[0] != d or p[1] != k or not (p[3] < off or p[2] >= off + o):
                return None
    # reads of D's storage: only another piece's own columns (read in place, after a call
    # wrote them), never these
    owner = {id(st): c for c in chans for st in c.body}
    for s in walk_stmts(loop.body):
        if any(c is s for c in chans):
            continue
        if isinstance(s, Store) and root.get(s.buffer) == root[d] and id(s) not in owner:
            return None
        for x in _loads(s):
            if root.get(x.buffer) != root[d]:
                continue
            c = owner.get(id(s))
            p = None if c is None else _columns(x, row, c.var, int(c.stop.value))
            if p is None or p[0] != d or p[1] != k or not (p[3] < off or p[2] >= off + o):
                return None  # the row loop reads D's piece: not in place
    return chan, d, k, off


def _columns(st, row, col, n):
    """``(D, K, first column, last column)`` when store ``st`` is ``D[row * K + off + col]``
    in a channel loop ``col`` of ``n`` iterations; else None."""
    aff = affine_index(st.index)
    if aff is None:
        return None
    terms, const = aff
    k = terms.get(row, 0)
    if set(terms) != {row, col} or terms[col] != 1 or k <= 0:
        return None
    return st.buffer, k, const, const + n - 1


def _loads(st):
    return [x for e in stmt_exprs(st) for x in sub_exprs(e) if isinstance(x, Load)]
