"""Copies the cpu runtime can skip: two Kernel IR passes the cpu backend asks for
(``KERNEL_PASSES``; ``graphc/pipeline.py`` runs them after buffer planning).

``elide_reshape_copies``: a reshape of a read-only buffer reads that buffer instead of a copy.

Buffers are dense and row-major with flat indices, so a ``Reshape`` whose kernel is the plain
copy ``t[i] = x[i]`` over the whole of ``t`` (lowering emits one when nothing fuses into the
reshape) leaves ``t`` with exactly ``x``'s elements in ``x``'s order. When ``x`` can never be
written (a feed or a constant: read-only by the Kernel IR contract) and ``t`` is a temporary
that only this kernel writes, every later read of ``t`` may read ``x`` instead, and the copy
goes. W11's step: the two ``Reshape``s of the loops' stacked rows into GEMM operands
(``[T, B, 321] -> [T * B, 321]`` and ``[T, B, 1024] -> [T * B, 1024]``, 10.9 MB a step) were
copies costing ~1.3 ms of its ~50 on one thread.

The temporary keeps its buffer (another temporary may share its storage by plan); it is no
longer written or read.

``updates_out_of_place``: a variable's new value gets storage of its own instead of the
variable's (see its docstring): no private copy of the variable per run.
"""

from __future__ import annotations

from dataclasses import replace

from ..expr import Const, Load, Var
from . import lowerings as L
from . import sym
from .analysis import rename_loads
from .ir import KernelProgram, Let, LibCall, Loop, Store, walk_stmts

#: buffer kinds no kernel writes (``ir.py``): a copy of one may be read in its place
_READ_ONLY = ("input", "const")


def elide_reshape_copies(kp: KernelProgram) -> KernelProgram:
    """``kp`` without the copy kernels described in the module docstring, their
    destinations' reads renamed to the copied buffers."""
    written: dict = {}  # buffer -> number of kernels writing it
    for k in kp.kernels:
        for name in _written(k.body):
            written[name] = written.get(name, 0) + 1
    keep_out = set(kp.outputs) | set(kp.var_updates.values())
    renames: dict = {}
    kernels = []
    for k in kp.kernels:
        pair = _plain_copy(k, kp)
        if pair is not None:
            src, dst = pair
            src = renames.get(src, src)
            if (
                kp.buffers[dst].kind == "temp" and dst not in keep_out
                and written.get(dst) == 1 and kp.buffers[src].kind in _READ_ONLY
                and src not in written
            ):  # fmt: skip
                renames[dst] = src
                continue
        if renames:
            k = _renamed(k, renames)
        kernels.append(k)
    if not renames:
        return kp
    return replace(kp, kernels=kernels)


def _written(stmts) -> set:
    out = set()
    for s in walk_stmts(stmts):
        if isinstance(s, Store):
            out.add(s.buffer)
        elif isinstance(s, LibCall):
            out.add(s.args[2])  # every LIBCALLS entry writes its third argument
    return out


def _plain_copy(k, kp) -> tuple | None:
    """(src, dst) when kernel ``k`` is a lone reshape's ``dst[i] = src[i]`` over all of
    ``dst``, both of one dtype; else None. A reshape is an op whose value rule reads its
    operand at the same flat index (``lowerings.READS``: "flat")."""
    if len(k.op_types) != 1 or len(k.body) != 1:
        return None
    if L.READS.get(L.VALUE.get(k.op_types[0])) != "flat":
        return None
    loop = k.body[0]
    if not isinstance(loop, Loop) or loop.start != Const(0, loop.start.dtype):
        return None
    i = loop.var
    body = loop.body
    value = None
    if len(body) == 2 and isinstance(body[0], Let) and isinstance(body[1], Store):
        let, store = body
        if store.value == Var(let.var, let.dtype):
            value = let.value
    elif len(body) == 1 and isinstance(body[0], Store):
        store = body[0]
        value = store.value
    if not (isinstance(value, Load) and _is_var(value.index, i) and _is_var(store.index, i)):
        return None
    src, dst = value.buffer, store.buffer
    bs, bd = kp.buffers.get(src), kp.buffers.get(dst)
    if bs is None or bd is None or src == dst or bs.dtype != bd.dtype:
        return None
    if loop.stop != sym.product(bd.shape):
        return None
    return src, dst


def _is_var(e, name: str) -> bool:
    return isinstance(e, Var) and e.name == name


def _renamed(k, renames: dict):
    """Kernel ``k`` reading ``renames[b]`` wherever it read buffer ``b``."""
    body = tuple(rename_loads(s, renames) for s in k.body)
    reads = tuple(dict.fromkeys(renames.get(b, b) for b in k.reads))
    return replace(k, body=body, reads=reads)


def updates_out_of_place(kp: KernelProgram) -> KernelProgram:
    """``kp`` with every variable update the planner put in the variable's own storage
    (``alias_of`` the var buffer) given storage of its own again.

    Why, on the cpu: a var buffer is the session's value, which the runtime may not write
    (the caller may hold it; a failed run must change nothing), so an in-place update costs
    a private copy of the whole variable before every run (``runtime._bind_vars``: W11's
    LSTM kernel and its two Adam moments, 3.9 MB a step). Written out of place, the kernel
    reads the session's array and writes a temporary the runner hands over to the session
    (``runtime._hand_over``, arrays reused two runs later): the same reads and writes, no
    copy."""
    buffers = kp.buffers
    changed = dict(buffers)
    for upd in kp.var_updates.values():
        b = buffers[upd]
        if b.alias_of is not None and buffers[b.alias_of].kind == "var":
            changed[upd] = replace(b, alias_of=None)
    if len(changed) == len(buffers) and all(changed[n] is buffers[n] for n in buffers):
        return kp
    out = replace(kp, buffers=changed)
    out.stats = dict(kp.stats, in_place_updates=[])
    return out
