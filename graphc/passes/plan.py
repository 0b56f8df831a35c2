"""Buffer planning: liveness, storage reuse, in-place variable updates and memory stats.

``plan(kp)`` returns a KernelProgram whose temporaries share storage where their lifetimes
(first writing kernel .. last reading kernel) do not overlap, and whose variable updates are
written in place where that is safe (see ``kernel/ir.py``, Variables). ``kp.stats`` then
holds, before anything runs: bytes moved per kernel (reads + writes, an estimate that
counts each buffer a kernel touches once), total bytes moved, peak temporary memory and
total buffer bytes. Sizes with runtime dims are reported as expressions (text).
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from ..expr import Call, Const, Load, Math, Var, sub_exprs
from ..kernel import sym
from ..kernel.ir import If, KernelProgram, Let, LibCall, Loop, Store, exprs_in, walk_stmts
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


#: a temporary takes the storage of its size freed last (still in cache: the tensor just
#: read), not the one freed first; one thread, in-process A/B against onnxruntime, W13's
#: ResNet-50 and SqueezeNet at batch 1: 0.5-1% less time in 7 of 7 runs
REUSE_HOT = True
#: a temporary last read by the kernel that first writes another may hand its storage over to
#: it there (``_overwrite_ok``); off: never (A/B runs)
HAND_OVER = True


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
    # Storage that frees up, per byte size: each temp takes the storage of its size freed
    # last (REUSE_HOT; else the one freed first), else its own.
    # ``waiting``: (free after kernel, seq, root), not yet free for the temps to come;
    # ``ready``: (-freed, -seq, root), free for every later temp (temps come by first
    # kernel).
    # A temp whose last kernel is another's first may hand its storage over to it there
    # (``_overwrite_ok``): ``ending[k]`` the temps last used by kernel k.
    waiting: dict = {}
    ready: dict = {}
    seq = 0
    alias: dict = {}
    root_of: dict = {}  # temp -> its storage root
    current: dict = {}  # root -> seq of its one valid entry in ``waiting``
    ending: dict = {}
    for name in temps:
        if name not in pinned:
            ending.setdefault(live[name][1], []).append(name)
    for name in temps:
        first, last = live[name]
        if name in pinned:
            last = end
        size = nbytes(buffers[name])
        w, r = waiting.setdefault(size, []), ready.setdefault(size, [])
        while w and w[0][0] < first:
            freed, k, root = heapq.heappop(w)
            if current.get(root) != k:
                continue  # (its storage was handed over: a newer entry holds it)
            heapq.heappush(r, (-freed, -k, root) if REUSE_HOT else (k, root))
        root = _handed_over(kp, name, first, size, ending, root_of, buffers)
        if root is None and r:
            root = heapq.heappop(r)[-1]
        if root is None:
            root = name
        elif root != name:
            alias[name] = root
        root_of[name] = root
        current[root] = seq
        heapq.heappush(w, (last, seq, root))
        seq += 1
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


def _handed_over(kp, name, first, size, ending, root_of, buffers):
    """The storage root of a temp last used by kernel ``first`` that ``name`` may be stored
    over there (same byte size; ``_overwrite_ok``), else None."""
    if not HAND_OVER:
        return None
    candidates = ending.get(first, [])
    for i, e in enumerate(candidates):
        if e != name and e in root_of and nbytes(buffers[e]) == size:
            if buffers[e].dtype == buffers[name].dtype:
                if _overwrite_ok(kp.kernels[first], name, e):
                    del candidates[i]  # (its storage goes to one temp)
                    return root_of[e]
    return None


def _overwrite_ok(kernel, d: str, e: str) -> bool:
    """Whether ``kernel`` may store ``d`` in ``e``'s storage: it stores ``d`` once, by one
    Store in a statement list whose Lets before it are the only loads of ``e``, all at the
    Store's index (of loop variables only); it loads ``d`` nowhere, stores ``e`` nowhere, and
    passes neither to a library call. Each element of ``e`` is then read by the iteration
    that overwrites it, before it does (an elementwise epilogue reading a residual for the
    last time: ``kernel.lower_gemm._last_read_operand``)."""
    found = []  # (statement list, position of the Store, loop variables around it)

    def scan(stmts, loop_vars):
        for pos, s in enumerate(stmts):
            if isinstance(s, LibCall):
                if d in s.args or e in s.args:
                    return False
            elif isinstance(s, Store):
                if s.buffer == e:
                    return False
                if s.buffer == d:
                    found.append((stmts, pos, loop_vars))
            elif isinstance(s, Loop):
                if not scan(s.body, loop_vars | {s.var}):
                    return False
            elif isinstance(s, If):
                if not (scan(s.then, loop_vars) and scan(s.orelse, loop_vars)):
                    return False
        return True

    if not scan(kernel.body, frozenset()) or len(found) != 1:
        return False
    stmts, pos, loop_vars = found[0]
    index = stmts[pos].index
    if not {x.name for x in sub_exprs(index) if isinstance(x, Var)} <= loop_vars:
        return False
    allowed = 0  # loads of e at the index, in the values of the Lets before the Store or its
    for s in stmts[: pos + 1]:
        if isinstance(s, Let | Store):
            for x in sub_exprs(s.value):
                if isinstance(x, Load) and x.buffer == e and x.index == index:
                    allowed += 1
    loads = 0
    for x in exprs_in(kernel.body):
        if isinstance(x, Load) and x.buffer == d:
            return False
        loads += isinstance(x, Load) and x.buffer == e
    return loads == allowed


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
    """Bytes moved per kernel, totals and the peak of live temporary storage.

    Sums of sizes are kept as coefficients of their distinct non-constant factors
    (``_Sum``): a total over thousands of buffers of a few dynamic sizes stays a short
    expression (``d0_0 * 123456 + 7890``) instead of a chain as long as the program.
    """
    live = live or liveness(kp)
    per_kernel = {}
    total = _Sum()
    for k in kp.kernels:
        moved = _Sum()
        for name in sorted(set(k.reads) | set(k.writes)):
            b = kp.buffers.get(name)
            if b is not None and b.kind not in ("rng", "status"):
                moved.add(nbytes(b))
        k.bytes_moved = _value(moved.expr())
        per_kernel[k.name] = k.bytes_moved
        total.update(moved)
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
    # the live temporary bytes at each kernel, swept once: a root counts from lo to hi
    starts: dict = {}
    stops: dict = {}
    for root, (lo, hi) in span.items():
        starts.setdefault(lo, []).append(root)
        stops.setdefault(hi + 1, []).append(root)
    cur = _Sum()
    peak_candidates = []
    for k in range(len(kp.kernels) + 1):
        for root in stops.get(k, ()):
            cur.add(nbytes(kp.buffers[root]), -1)
        for root in starts.get(k, ()):
            cur.add(nbytes(kp.buffers[root]))
        peak_candidates.append(cur.snapshot())
    if all(set(c) <= {None} for c in peak_candidates):
        peak = max((c.get(None, 0) for c in peak_candidates), default=0)
    else:
        peak = expr_text(_max_all([_Sum(c).expr() for c in _maximal(peak_candidates)]))
    all_bytes = _Sum()
    for b in kp.buffers.values():
        if b.alias_of is None and b.kind not in ("rng", "status"):
            all_bytes.add(nbytes(b))
    return {
        "kernel_count": len(kp.kernels),
        "bytes_moved_per_kernel": per_kernel,
        "bytes_moved": _value(total.expr()),
        "peak_temp_bytes": peak,
        "buffer_bytes": _value(all_bytes.expr()),
        "temp_buffers": sum(1 for b in kp.buffers.values() if b.kind == "temp"),
    }


class _Sum:
    """A sum of int64 sizes as {non-constant factor (None: the constant): coefficient}: a
    size ``x * c`` (``nbytes``) adds ``c`` to the coefficient of ``x``."""

    def __init__(self, terms=None):
        self.terms: dict = dict(terms or {})

    def add(self, e, sign: int = 1) -> None:
        c = sym.const_value(e)
        key = None
        if c is None:
            key, c = e, 1
            if isinstance(e, Call) and e.fn is Math.MUL:
                k = sym.const_value(e.args[1])
                if k is not None:
                    key, c = e.args[0], k
        c = self.terms.get(key, 0) + sign * c
        if c:
            self.terms[key] = c
        else:
            self.terms.pop(key, None)

    def update(self, other: _Sum) -> None:
        for key, c in other.terms.items():
            c += self.terms.get(key, 0)
            if c:
                self.terms[key] = c
            else:
                self.terms.pop(key, None)

    def snapshot(self) -> dict:
        return dict(self.terms)

    def expr(self):
        terms = [sym.mul(key, c) for key, c in self.terms.items() if key is not None]
        return sym.add(_balanced(sym.add, terms, sym.ZERO), self.terms.get(None, 0))


#: distinct live-byte sums beyond which the peak is reported as an upper bound
_MAX_EXACT_PEAK = 64


def _maximal(candidates: list) -> list:
    """The sums of ``candidates`` that no other one bounds from above for every value of the
    runtime dims (each factor is a size, >= 0: a sum with every coefficient at most
    another's is at most it), once each, in order of first appearance."""
    firsts: dict = {}
    for i, c in enumerate(candidates):
        firsts.setdefault(frozenset(c.items()), (i, c))
    if len(firsts) > _MAX_EXACT_PEAK:
        # the pairwise test would be quadratic in the program: one upper bound instead,
        # each factor's largest coefficient (a run's peak is at most that)
        bound: dict = {}
        for _, c in firsts.values():
            for key, v in c.items():
                bound[key] = max(bound.get(key, 0), v)
        return [bound]
    # larger sums first: a sum can only be bounded by one with a coefficient total as large
    order = sorted(firsts.values(), key=lambda ic: (-sum(ic[1].values()), ic[0]))
    kept: list = []
    for i, c in order:
        if not any(all(v <= o.get(key, 0) for key, v in c.items()) for _, o in kept):
            kept.append((i, c))
    return [c for _, c in sorted(kept, key=lambda ic: ic[0])]


def _max_all(xs):
    return sym.maximum(Const(0, sym.ZERO.dtype), _balanced(sym.maximum, list(xs), sym.ZERO))


def _balanced(fn, xs: list, empty):
    """``fn`` folded over ``xs`` as a balanced tree: an expression of depth log2(len(xs)),
    which the printer and the code generators walk recursively (a chain of one term per
    kernel raised RecursionError)."""
    if not xs:
        return empty
    while len(xs) > 1:
        xs = [fn(xs[i], xs[i + 1]) if i + 1 < len(xs) else xs[i] for i in range(0, len(xs), 2)]
    return xs[0]
