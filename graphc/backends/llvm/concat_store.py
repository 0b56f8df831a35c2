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
  statement or kernel reads or writes it: its storage, shared or not, is left alone);
- every read of T is ``T[row * o + col]`` in one channel loop of o iterations, which
  stores ``D[row * K + off + col]`` (float32, ``0 <= off``, ``off + o <= K``) after its
  last read of T;
- no other store of the row loop to D's storage reaches columns ``[off, off + o)`` of a row
  (the other pieces are ``D[row * K + off2 + col2]`` with columns disjoint from them), and
  the row loop reads nothing of D's storage (``row_nest`` already refuses a loop reading
  what it stores, or storing into the input or filters).

So, row by row, the value read is the convolution's and each element of D is stored once
after it was read, as before. Per task (the fused epilogue) a task's rows of D are written
by the call, then read and overwritten by its own epilogue only; with the epilogue run
after the call as a loop, every row is complete before it is read.
"""

from __future__ import annotations

from dataclasses import replace

from ... import dtypes as _dt
from ...expr import Call, Const, Load, Var, sub_exprs
from ...kernel.analysis import buffers_read, buffers_written
from ...kernel.ir import KernelProgram, Let, LibCall, Loop, Store, stmt_exprs, walk_stmts
from .epilogue import ROW_COLUMNS, _affine, _linear, storage_roots

#: positions of ``LIBCALLS["conv_packed"]``'s C, o, ldc and oc arguments
_C, _O, _LDC, _OC = 2, 5, 19, 20


def direct_concat(kp: KernelProgram) -> KernelProgram:
    """``kp`` with each qualifying ``conv_packed`` call of a row-nest epilogue writing into
    its concat piece in place (see the module docstring)."""
    root = storage_roots(kp)
    readers = {}  # buffer -> kernels reading it
    for i, k in enumerate(kp.kernels):
        for name in buffers_read(k.body):
            readers.setdefault(name, set()).add(i)
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
                body[j], body[j + 1] = new
        kernels.append(replace(k, body=tuple(body)))
    return replace(kp, kernels=kernels)


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
    found = _piece(loop, t, o, root)
    if found is None:
        return None
    chan, d, k, off = found
    if kp.buffers[d].dtype != _dt.float32 or kp.buffers[t].dtype != _dt.float32:
        return None
    at = _linear([(Var(loop.var, _dt.int64), k), (Var(chan.var, _dt.int64), 1)], off)
    moved = tuple(_moved(st, t, d, at) for st in chan.body)
    body = tuple(replace(s, body=moved) if s is chan else s for s in loop.body)
    args = list(call.args)
    args[_C], args[_LDC], args[_OC] = d, Const(k, _dt.int64), Const(off, _dt.int64)
    return replace(call, args=tuple(args)), replace(loop, body=body)


def _piece(loop, t, o, root):
    """``(channel loop, D, K, off)``: the channel loop of the row loop that reads T and the
    concat piece it stores T's values into, checked as the module docstring says; else
    None."""
    row = loop.var
    chans = [s for s in loop.body if isinstance(s, Loop) and _static(s)]
    if any(_reads(s, t) for s in loop.body if not any(s is c for c in chans)):
        return None  # T read outside a channel loop of static extent
    with_t = [s for s in chans if _reads(s, t)]
    if len(with_t) != 1:
        return None
    chan = with_t[0]
    col = chan.var
    if int(chan.stop.value) != o or not all(isinstance(st, Let | Store) for st in chan.body):
        return None
    for st in chan.body:
        for x in _loads(st):
            if x.buffer == t and _affine(x.index) != ({row: o, col: 1}, 0):
                return None
    last = max(j for j, st in enumerate(chan.body) if _reads(st, t))
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
    for s in walk_stmts(loop.body):
        if any(c is s for c in chans):
            continue
        if isinstance(s, Store) and root.get(s.buffer) == root[d] and not _in_chan(s, chans):
            return None
        if any(root.get(x.buffer) == root[d] for x in _loads(s)):
            return None  # the row loop reads D: not in place
    return chan, d, k, off


def _static(loop) -> bool:
    return (isinstance(loop.start, Const) and loop.start.value == 0
            and isinstance(loop.stop, Const) and int(loop.stop.value) > 0)  # fmt: skip


def _columns(st, row, col, n):
    """``(D, K, first column, last column)`` when store ``st`` is ``D[row * K + off + col]``
    in a channel loop ``col`` of ``n`` iterations; else None."""
    aff = _affine(st.index)
    if aff is None:
        return None
    terms, const = aff
    k = terms.get(row, 0)
    if set(terms) != {row, col} or terms[col] != 1 or k <= 0:
        return None
    return st.buffer, k, const, const + n - 1


def _in_chan(st, chans) -> bool:
    return any(x is st for c in chans for x in c.body)


def _loads(st):
    return [x for e in stmt_exprs(st) for x in sub_exprs(e) if isinstance(x, Load)]


def _reads(st, t) -> bool:
    return any(x.buffer == t for s in walk_stmts((st,)) for x in _loads(s))


def _moved(st, t, d, at):
    """Statement ``st`` of the channel loop with its loads of T reading ``D[at]``."""

    def swap(e):
        if not any(isinstance(x, Load) and x.buffer == t for x in sub_exprs(e)):
            return e
        if isinstance(e, Load):
            return Load(d, at, e.dtype) if e.buffer == t else replace(e, index=swap(e.index))
        if isinstance(e, Call):
            return replace(e, args=tuple(swap(a) for a in e.args))
        return replace(e, x=swap(e.x))  # a Cast

    if isinstance(st, Store):
        return replace(st, index=swap(st.index), value=swap(st.value))
    return replace(st, value=swap(st.value))
