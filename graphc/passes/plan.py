"""Buffer planning: liveness, storage reuse, in-place variable updates and memory stats.

``plan(kp)`` returns a KernelProgram whose temporaries share storage where their lifetimes
(first writing kernel .. last reading kernel) do not overlap, and whose variable updates are
written in place where that is safe (see ``kernel/ir.py``, Variables). ``kp.stats`` then
holds, before anything runs: bytes moved per kernel (reads + writes, an estimate that
counts each buffer a kernel touches once), total bytes moved, peak temporary memory and
total buffer bytes. Sizes with runtime dims are reported as expressions (text).
"""

from __future__ import annotations

from dataclasses import replace

from ..kernel import sym
from ..kernel.expr import Const, Load
from ..kernel.ir import KernelProgram, Store, exprs_in, walk_stmts
from ..kernel.printer import expr_text


def nbytes(buf):
    """Size of a buffer in bytes as an int64 expression."""
    return sym.mul(sym.product(buf.shape), buf.dtype.itemsize)


def _value(e):
    v = sym.const_value(e)
    return v if v is not None else expr_text(e)


def liveness(kp: KernelProgram) -> dict:
    """buffer -> (first kernel index touching it, last kernel index touching it)."""
    live: dict = {}
    for k, kernel in enumerate(kp.kernels):
        for name in (*kernel.reads, *kernel.writes):
            first, _ = live.get(name, (k, k))
            live[name] = (first, k)
    return live


def plan(kp: KernelProgram) -> KernelProgram:
    """Alias temporaries by liveness, make safe variable updates in place, fill ``stats``."""
    buffers = dict(kp.buffers)
    live = liveness(kp)
    end = len(kp.kernels)
    pinned = set(kp.var_updates.values())  # needed after the last kernel
    # -- in-place variable updates -------------------------------------------------------
    in_place = {}
    if not kp.checks:
        for var, upd in kp.var_updates.items():
            var_buf = next((b for b, v in kp.var_reads.items() if v == var), None)
            if var_buf is None or buffers[upd].kind != "temp" or var_buf in kp.outputs:
                continue  # (a fetched old value must survive the run)
            if _in_place_ok(kp, var_buf, upd, live):
                in_place[upd] = var_buf
    # -- temporaries: greedy reuse of freed storage of the same byte size --------------------
    temps = [
        n
        for n, b in buffers.items()
        if b.kind == "temp" and n in live and n not in in_place and b.alias_of is None
    ]
    temps.sort(key=lambda n: live[n][0])
    free: list = []  # (byte size expr, root name, free after kernel index)
    alias: dict = {}
    for name in temps:
        first, last = live[name]
        if name in pinned:
            last = end
        size = nbytes(buffers[name])
        chosen = None
        for j, (fsize, _root, free_after) in enumerate(free):
            if fsize == size and free_after < first:
                chosen = j
                break
        if chosen is not None:
            _, root, _ = free.pop(chosen)
            alias[name] = root
        else:
            root = name
        free.append((size, root, last))
    for name, root in alias.items():
        buffers[name] = replace(buffers[name], alias_of=root)
    for upd, var_buf in in_place.items():
        buffers[upd] = replace(buffers[upd], alias_of=var_buf)
    out = replace(kp, buffers=buffers, kernels=[replace(k) for k in kp.kernels])
    out.stats = stats(out, live)
    out.stats["aliased_buffers"] = len(alias)
    out.stats["in_place_updates"] = sorted(kp.var_updates[v] for v in kp.var_updates
                                           if kp.var_updates[v] in in_place)  # fmt: skip
    return out


def _in_place_ok(kp, var_buf, upd, live) -> bool:
    """The update may overwrite the variable's storage: the kernel writing it is the last
    reader of the old value and reads it only at the index it writes."""
    writer = live.get(upd, (None, None))[0]
    if writer is None:
        return False
    if live.get(var_buf, (0, -1))[1] > writer:
        return False
    kernel = kp.kernels[writer]
    stores, loads = set(), set()
    for s in walk_stmts(kernel.body):
        if isinstance(s, Store) and s.buffer == upd:
            stores.add(s.index)
    for ld in exprs_in(kernel.body):
        if not isinstance(ld, Load):
            continue
        if ld.buffer == var_buf:
            loads.add(ld.index)
        if ld.buffer == upd:
            return False
    return len(stores) == 1 and loads <= stores


def stats(kp: KernelProgram, live=None) -> dict:
    """Bytes moved per kernel, totals and the peak of live temporary storage."""
    live = live or liveness(kp)
    per_kernel = {}
    total = sym.ZERO
    for k in kp.kernels:
        moved = sym.ZERO
        for name in sorted(set(k.reads) | set(k.writes)):
            b = kp.buffers.get(name)
            if b is not None and b.kind not in ("rng", "status"):
                moved = sym.add(moved, nbytes(b))
        k.bytes_moved = _value(moved)
        per_kernel[k.name] = k.bytes_moved
        total = sym.add(total, moved)
    # peak: sum of live temp roots at each kernel
    roots = {n for n, b in kp.buffers.items() if b.kind == "temp" and b.alias_of is None}
    span: dict = {}
    for n, b in kp.buffers.items():
        if b.kind != "temp" or n not in live:
            continue
        root = b.alias_of or n
        if root not in roots:
            continue  # aliased to a variable: no temporary storage
        lo, hi = live[n]
        if n in kp.var_updates.values():
            hi = len(kp.kernels)
        plo, phi = span.get(root, (lo, hi))
        span[root] = (min(lo, plo), max(hi, phi))
    peak = sym.ZERO
    peak_candidates = []
    for k in range(len(kp.kernels) + 1):
        cur = sym.ZERO
        for root, (lo, hi) in span.items():
            if lo <= k <= hi:
                cur = sym.add(cur, nbytes(kp.buffers[root]))
        peak_candidates.append(cur)
    consts = [sym.const_value(c) for c in peak_candidates]
    if all(c is not None for c in consts):
        peak = max(consts, default=0)
    else:
        peak = expr_text(_max_all(peak_candidates))
    all_bytes = sym.ZERO
    for b in kp.buffers.values():
        if b.alias_of is None and b.kind not in ("rng", "status"):
            all_bytes = sym.add(all_bytes, nbytes(b))
    return {
        "kernel_count": len(kp.kernels),
        "bytes_moved_per_kernel": per_kernel,
        "bytes_moved": _value(total),
        "peak_temp_bytes": peak,
        "buffer_bytes": _value(all_bytes),
        "temp_buffers": sum(1 for b in kp.buffers.values() if b.kind == "temp"),
    }


def _max_all(xs):
    out = Const(0, sym.ZERO.dtype)
    for x in xs:
        out = sym.maximum(out, x)
    return out
