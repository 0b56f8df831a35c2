"""Run a compiled KernelProgram: bind buffers, make ONE native call, hand back the fetches.

Per run, in Python and before any native code: runtime dims are read from the feeds, the
program's shape checks run, every feed's shape is compared with its buffer's (so the native
code can never index outside an array), variables are bound (FailedPreconditionError for an
uninitialised one), random keys computed. Then ``gc_entry`` runs every kernel in one ctypes
call (which releases the GIL). Afterwards the status flags become InvalidArgumentError, and
variable updates go to ``ctx.write_variable`` (the Session commits them; a private copy made
for this run, or a temporary holding the new value, is committed as is, without a copy: the
runner then gives the temporary's root a different array for the next run).

Storage: one slot per storage root (see ``render.Layout``); the slots of large constants are
filled once, at load, with their values (``slot_values``) and never written. Outputs get
arrays the caller does not hold (new ones, or large ones recycled once the caller dropped
them: their pages are mapped already); temporaries live in arrays cached per runtime-dims value
(the Session serialises runs of one Executable under its lock); a variable updated in place
gets a private copy of its value, so a failed run changes nothing.
"""

from __future__ import annotations

import ctypes
import math
import sys

import numpy as np

from ...errors import InvalidArgumentError, ResourceExhaustedError
from ...kernel.ir import KernelProgram
from ...kernel.runtime import (
    bind_variables,
    check_dims,
    check_sizes,
    check_total,
    eval_int,
    raise_status,
    rng_keys,
)
from .render import DATA_WORD

_ENTRY_T = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32
)
#: the same function without argtypes, for the lean run: called only with ctypes objects
#: made once (two c_void_p, None, a c_int32), it skips the per-call conversion of four
#: Python values (~0.15 us of a ~3 us tiny run)
_ENTRY_RAW_T = ctypes.CFUNCTYPE(ctypes.c_int32)


def _probe_native_descriptor() -> bool:
    """Whether a numpy array object holds its data pointer at word DATA_WORD (CPython)."""
    a = np.arange(3.0)
    try:
        return ctypes.c_void_p.from_address(id(a) + 8 * DATA_WORD).value == a.ctypes.data
    except (ValueError, OSError):  # pragma: no cover
        return False


_NATIVE_DESCRIPTOR = _probe_native_descriptor()


def descriptor(arr: np.ndarray, keep: list) -> int:
    """What a buffer-table slot holds for ``arr`` (see ``render.py``)."""
    if _NATIVE_DESCRIPTOR:
        return id(arr)
    block = (ctypes.c_void_p * (DATA_WORD + 1))()
    block[DATA_WORD] = arr.ctypes.data
    keep.append(block)
    return ctypes.addressof(block)


#: outputs at least this large are recycled when the caller has dropped them
REUSE_MIN_BYTES = 1 << 18


#: large arrays the runner allocates (temporaries, recycled outputs, variables' new values)
#: start on a cache line: numpy's (malloc's) large blocks start 16 bytes past one, and
#: OpenBLAS's sgemm on the W3 shapes ran ~3% slower on such operands (2 threads, znver4)
ALIGN = 64
#: arrays smaller than this keep numpy's allocation (cheaper, and alignment does not pay)
ALIGN_MIN_BYTES = 1 << 12


def aligned_empty(shape, dtype, zero: bool = False) -> np.ndarray:
    """An uninitialised (or zero-filled) C-contiguous array whose data starts on an ALIGN-byte
    boundary when it is at least ALIGN_MIN_BYTES long (a view into a slightly larger block)."""
    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes < ALIGN_MIN_BYTES:
        return (np.zeros if zero else np.empty)(shape, dt)
    raw = (np.zeros if zero else np.empty)(nbytes + ALIGN, np.uint8)
    off = -raw.__array_interface__["data"][0] % ALIGN
    return raw[off : off + nbytes].view(dt).reshape(shape)


#: recycled arrays kept per output: two, so that ``y = sess.run(...)`` in a loop (the previous
#: result is still held while the next run executes) recycles every other array
REUSE_DEPTH = 2


def _refs(pool: list, i: int) -> int:
    """sys.getrefcount of ``pool[i]`` as seen from here (the pool's reference, the
    temporary of the lookup and whatever else holds the object)."""
    return sys.getrefcount(pool[i])


def _probe_refs_if_unused() -> int:
    # measured rather than assumed: whether the interpreter counts the lookup temporary
    # differs between CPython versions
    return _refs([np.empty(1)], 0)


#: _refs of an array referenced only by its reuse pool
REFS_IF_UNUSED = _probe_refs_if_unused()


def reused_array(pool: list, shape, dtype) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` for a caller to fill: one of ``pool`` (the last
    REUSE_DEPTH handed out) that nothing but the pool holds any more, its pages already
    mapped (writing 64 MB of new memory costs ~7 ms of page faults), else a new one, kept in
    the pool when it is large. Not forced onto a 64-byte line: an elementwise kernel reading
    a fed array (malloc's offset, 16 bytes past a line) and writing an output on another
    offset ran ~12% slower (W1: loads and stores at different offsets within a 4 KiB page)."""
    for i in range(len(pool)):
        if _refs(pool, i) == REFS_IF_UNUSED:
            prev = pool[i]
            if prev.shape == shape and prev.dtype == dtype:
                return prev
    a = np.empty(shape, dtype)
    if a.nbytes >= REUSE_MIN_BYTES:
        if len(pool) >= REUSE_DEPTH:
            pool.pop(0)  # the oldest (e.g. of a previous batch size)
        pool.append(a)
    return a


def _probe_refs_of_local() -> int:
    ring = [np.empty(1)]
    old = ring.pop(0)
    return sys.getrefcount(old)


#: sys.getrefcount of an array held only by one local name (see Runner._hand_over)
REFS_OF_LOCAL = _probe_refs_of_local()


class _Plan:
    """Concrete sizes and cached temporaries for one value of the runtime dims."""

    __slots__ = ("shapes", "root_bytes", "temps", "out_shapes", "out_nbytes")


def _fits(a, shape, npdt) -> bool:
    """Whether the caller's array ``a`` can be an output of this shape and dtype."""
    return (
        type(a) is np.ndarray and a.shape == shape and a.dtype == npdt
        and a.flags.c_contiguous and a.flags.writeable
    )  # fmt: skip


class LLVMRunner:
    """Holds the loaded code of one Executable; ``run(ctx, trace)`` returns the fetches."""

    target = "cpu"
    #: every array run() returns is new (outputs are allocated per run, others copied), so
    #: the Session hands them to the caller without another copy
    fresh_outputs = True

    def __init__(
        self,
        kp: KernelProgram,
        layout,
        loaded,
        kernel_names,
        nthreads: int,
        written_roots: set,
        const_values: dict | None = None,
        slot_values: dict | None = None,
    ):
        self.kp = kp
        self.layout = layout
        self.loaded = loaded  # keeps the JIT engine (and the code) alive
        self.entry = _ENTRY_T(loaded.address("gc_entry"))
        self._entry_raw = _ENTRY_RAW_T(loaded.address("gc_entry"))
        self.kernel_names = kernel_names  # [(name, ops)]
        self.nthreads = int(nthreads)
        self.const_values = const_values or {}
        self.nslots = len(layout.slots)
        self.table = (ctypes.c_void_p * max(self.nslots, 1))()
        self.table_addr = ctypes.addressof(self.table)
        self.slot_of = {n: i for i, n in enumerate(layout.slots)}
        self.dims_arr = (ctypes.c_int64 * max(len(layout.dims), 1))()
        self.dims_addr = ctypes.addressof(self.dims_arr)
        self.trace_arr = (ctypes.c_double * max(2 * len(kernel_names), 1))()
        self._plans: dict = {}
        self._reuse: dict = {}  # output root -> arrays handed out recently (see _output_array)
        bufs = kp.buffers
        # members of each root (a root's storage must fit its largest member)
        self.members: dict = {}
        for name, root in layout.root.items():
            self.members.setdefault(root, []).append(name)
        roots = [(r, bufs[r].kind) for r in layout.slots]
        self.out_roots = [r for r, k in roots if k == "output"]
        self.temp_roots = [r for r, k in roots if k == "temp"]
        self.var_roots = [r for r, k in roots if k == "var"]
        self.rng_roots = [r for r, k in roots if k == "rng"]
        self.status_roots = [r for r, k in roots if k == "status"]
        self._bind_consts([r for r, k in roots if k == "const"], slot_values or {})
        self.private_vars = {r for r in self.var_roots if r in written_roots}
        # temporaries holding a variable's new value at the end of a run (and nothing else
        # the runner keeps): handed over to the caller instead of copied (see _hand_over)
        upd_roots = [layout.root[b] for b in kp.var_updates.values()]
        self.handover_roots = {
            r for r in upd_roots if r in self.temp_roots and upd_roots.count(r) == 1
        }
        self._handed: dict = {}  # temp root -> arrays handed over by the last two runs
        self.inputs = [
            (k, name, self.slot_of[layout.root[name]], np.dtype(bufs[name].dtype.np))
            for k, name in enumerate(kp.inputs)
            if name is not None
        ]
        self.dim_src = [kp.dims[d] for d in layout.dims]
        self.static = not layout.dims
        self._run = self._run_general
        self.out_slots = [(r, self.slot_of[r], np.dtype(bufs[r].dtype.np)) for r in self.out_roots]
        self.output_ranks = [len(bufs[n].shape) for n in kp.outputs]  # 0: fetched as a scalar
        # every fetch is an output buffer of its own (no alias, no reshape): hand it over as is
        self.simple_outputs = all(
            bufs[n].kind == "output" and layout.root[n] == n and len(self.members[n]) == 1
            for n in kp.outputs
        ) and len(set(kp.outputs)) == len(kp.outputs)
        lean = not (self.var_roots or self.rng_roots or self.status_roots or kp.var_updates)
        self._fast: dict = {}  # runtime dims value -> its lean run (see _run_dims)
        #: whether every run may bind only feeds, outputs and temporaries, each output its
        #: own buffer (a loop body then runs natively: cpu/native_loop.py)
        self.lean = lean and self.simple_outputs and _NATIVE_DESCRIPTOR
        if lean and self.simple_outputs and _NATIVE_DESCRIPTOR:
            if self.static:
                try:
                    self._run = self._fast_path(())
                except (InvalidArgumentError, ResourceExhaustedError):
                    pass  # a failing static shape check or size: reported by each run
            else:
                self._run = self._run_dims

    def _bind_consts(self, const_roots: list, values: dict) -> None:
        """Point the slots of the large constants (render.EMBED_CONST_MAX_BYTES) at their
        values, once: no run writes them (the kernels only read constants). Each value must
        be a C-contiguous array of the root's dtype holding every member's bytes."""
        bufs = self.kp.buffers
        self.const_arrays = {}
        self._const_keep: list = []
        for r in const_roots:
            a = values.get(r)
            npdt = np.dtype(bufs[r].dtype.np)
            need = max(
                math.prod(int(eval_int(d, {})) for d in bufs[m].shape) * bufs[m].dtype.itemsize
                for m in self.members[r]
            )
            if (
                type(a) is not np.ndarray or a.dtype != npdt or not a.flags.c_contiguous
                or a.nbytes < need
            ):  # fmt: skip
                raise ValueError(f"constant buffer {r}: no value of {need} bytes of {npdt}")
            self.const_arrays[r] = a
            self.table[self.slot_of[r]] = descriptor(a, self._const_keep)

    # -- sizes -------------------------------------------------------------------------------
    def _plan(self, dvals: tuple) -> _Plan:
        plan = self._plans.get(dvals)
        if plan is not None:
            return plan
        dims = dict(zip(self.layout.dims, dvals))
        check_dims(self.kp, dims)
        p = _Plan()
        bufs = self.kp.buffers
        p.shapes = {n: tuple(int(eval_int(d, dims)) for d in b.shape) for n, b in bufs.items()}
        nbytes = check_sizes(p.shapes, {n: b.dtype.itemsize for n, b in bufs.items()})
        p.root_bytes = {root: max(nbytes[n] for n in names) for root, names in self.members.items()}
        check_total(sum(p.root_bytes[r] for r in self.temp_roots + self.out_roots))
        # temporaries: zero-filled once per dims value (like the Kernel IR interpreter)
        try:
            p.temps = {
                r: aligned_empty(max(p.root_bytes[r], 1), np.uint8, zero=True)
                for r in self.temp_roots
            }
        except MemoryError:
            raise ResourceExhaustedError(
                f"out of memory allocating {sum(p.root_bytes[r] for r in self.temp_roots):,} "
                f"bytes of temporaries for dims {dims}"
            ) from None
        p.out_shapes = {r: p.shapes[r] for r in self.out_roots}
        p.out_nbytes = {r: nbytes[r] for r in self.out_roots}
        if len(self._plans) > 16:  # many batch sizes: keep memory bounded
            self._plans.clear()
        self._plans[dvals] = p
        return p

    def _output_array(self, root, shape, npdt):
        """A fresh-to-the-caller array for an output (``reused_array`` of this root's pool;
        small outputs are always new)."""
        return reused_array(self._reuse.setdefault(root, []), shape, npdt)

    # -- the run ---------------------------------------------------------------------------
    def _fast_path(self, dvals: tuple):
        """A lean run() for programs without variables, randomness or checks, for one value
        of the runtime dims (``dvals``; () for a static program): the per-run Python work is
        one check per feed (against the shapes of ``dvals``, which also checks the dims), one
        np.empty per fetch (or the caller's array, ``ctx.into``), one call. A loop body's
        iterations run through it (about 5 us a call, against about 25 for _run_general)."""
        plan = self._plan(dvals)
        table, entry = self.table, self._entry_raw
        # the arguments as ctypes objects, made once (see _ENTRY_RAW_T)
        addr, daddr = ctypes.c_void_p(self.table_addr), ctypes.c_void_p(self.dims_addr)
        nthr = ctypes.c_int32(self.nthreads)
        ins = [(k, slot, npdt, plan.shapes[name]) for k, name, slot, npdt in self.inputs]
        slot_of = self.slot_of
        outs = []
        for n in self.kp.outputs:
            npdt = np.dtype(self.kp.buffers[n].dtype.np)
            big = plan.out_nbytes[n] >= REUSE_MIN_BYTES
            outs.append((slot_of[n], plan.shapes[n], npdt, n if big else None))
        output_array = self._output_array
        temps = [(slot_of[r], a) for r, a in plan.temps.items()]
        static = not dvals
        if static:
            for slot, a in temps:
                table[slot] = id(a)  # cached for this plan: set once
        dims_arr = self.dims_arr
        slow = self._run_general
        empty = np.empty
        ndarray = np.ndarray

        def call(feeds, into=None):
            """Run on ``feeds`` (a list in the program's order): the outputs, or None when a
            feed is not a C-contiguous array of its dtype and this dims value's shape (the
            caller then takes the general path, which converts or refuses it)."""
            for k, slot, npdt, shape in ins:
                a = feeds[k]
                if (type(a) is not ndarray or a.dtype is not npdt or a.shape != shape
                        or not a.flags.c_contiguous):  # fmt: skip
                    return None
                table[slot] = id(a)
            res = []
            for j, (slot, shape, npdt, r) in enumerate(outs):
                a = into.get(j) if into else None
                if a is None or not _fits(a, shape, npdt):
                    a = empty(shape, npdt) if r is None else output_array(r, shape, npdt)
                table[slot] = id(a)
                res.append(a)
            if not static:
                for slot, a in temps:
                    table[slot] = id(a)
                for i, v in enumerate(dvals):
                    dims_arr[i] = v
            entry(addr, daddr, None, nthr)
            return res

        def run(ctx, trace=None):
            if trace is not None:
                return slow(ctx, trace)
            res = call(ctx.feeds, getattr(ctx, "into", None))
            return slow(ctx, trace) if res is None else res

        run.call = call
        return run

    def _run_dims(self, ctx, trace=None) -> list:
        """run() of a lean program with runtime dims: the lean run of this dims value
        (``_fast_path``, made on first use), else _run_general."""
        if trace is None:
            dvals = self._dims_of(ctx.feeds)
            if dvals is None:  # not arrays: _run_general converts them
                return self._run_general(ctx, trace)
            fast = self._fast.get(dvals)
            if fast is None:
                try:
                    fast = self._fast_path(dvals)
                except (InvalidArgumentError, ResourceExhaustedError):
                    return self._run_general(ctx, trace)  # raises for these dims
                if len(self._fast) > 16:  # many batch sizes: keep memory bounded
                    self._fast.clear()
                self._fast[dvals] = fast
            return fast(ctx)
        return self._run_general(ctx, trace)

    def direct_call(self):
        """``call(feeds) -> outputs or None`` for a caller that repeats one signature
        (Session's hot path): a lean run without a context object; None from call means
        "use run()" (a feed to convert or refuse, a dims value not run yet). None when this
        program has no lean run (variables, randomness, checks)."""
        call = getattr(self._run, "call", None)
        if call is not None or self._run != self._run_dims:
            return call
        fast_of, dims_of = self._fast, self._dims_of

        def call_dims(feeds):
            fast = fast_of.get(dims_of(feeds))
            return None if fast is None else fast.call(feeds)

        return call_dims

    def _dims_of(self, feeds):
        """The runtime dims value the fed arrays give (their sizes at ``dim_src``), or None
        when a feed is not an array of enough axes."""
        try:
            return tuple(feeds[k].shape[axis] for k, axis in self.dim_src)
        except (AttributeError, IndexError):
            return None

    def run(self, ctx, trace: list | None = None) -> list:
        try:
            return self._run(ctx, trace)
        except ResourceExhaustedError:
            raise
        except MemoryError:
            raise ResourceExhaustedError(
                "out of memory allocating this run's outputs or temporaries"
            ) from None

    def _run_general(self, ctx, trace: list | None = None) -> list:
        feeds = ctx.feeds
        kp = self.kp
        if self.static:
            dvals = ()
        else:
            dvals = tuple(int(np.shape(feeds[k])[axis]) for k, axis in self.dim_src)
        plan = self._plans.get(dvals) or self._plan(dvals)
        table = self.table
        keep = []  # arrays (and descriptor blocks) the native code uses during the call
        shapes = plan.shapes
        for k, name, slot, npdt in self.inputs:
            arr = feeds[k]
            if not isinstance(arr, np.ndarray):  # numpy scalars, lists: the native code
                arr = np.asarray(arr)  # reads an ndarray's data pointer (see descriptor)
            if arr.dtype != npdt or not arr.flags.c_contiguous:
                arr = np.array(arr, dtype=npdt, order="C")  # keeps 0-d arrays 0-d
            if arr.shape != shapes[name]:
                raise InvalidArgumentError(
                    f"feed {k} ({name}): shape {arr.shape} does not match the shape "
                    f"{shapes[name]} implied by the other feeds"
                )
            keep.append(arr)
            table[slot] = descriptor(arr, keep)
        arrays = plan.temps.copy() if plan.temps else {}
        into = getattr(ctx, "into", None)  # arrays the caller wants outputs written into
        if into and self.simple_outputs:
            into = {kp.outputs[k]: a for k, a in into.items() if k < len(kp.outputs)}
        else:
            into = None
        for r, slot, npdt in self.out_slots:
            a = into.get(r) if into else None
            if plan.root_bytes[r] > plan.out_nbytes[r]:  # a larger buffer aliases this output
                a = aligned_empty(plan.root_bytes[r], np.uint8)
            elif a is not None and _fits(a, plan.out_shapes[r], npdt):
                pass
            else:
                a = self._output_array(r, plan.out_shapes[r], npdt)
            arrays[r] = a
            table[slot] = descriptor(a, keep)
        for r, a in plan.temps.items():
            table[self.slot_of[r]] = descriptor(a, keep)
        if self.var_roots:
            self._bind_vars(ctx, plan, arrays, keep)
        for r in self.rng_roots:
            a = rng_keys(kp, ctx)
            if a.size == 0:
                a = np.zeros(1, np.int64)
            arrays[r] = a
            table[self.slot_of[r]] = descriptor(a, keep)
        for r in self.status_roots:
            a = np.zeros(max(plan.root_bytes[r] // 4, 1), np.int32)
            arrays[r] = a
            table[self.slot_of[r]] = descriptor(a, keep)
        if not self.static:
            for i, v in enumerate(dvals):
                self.dims_arr[i] = v
        tr = self.trace_arr if trace is not None else None
        self.entry(self.table_addr, self.dims_addr, tr, self.nthreads)
        del keep
        for r in self.status_roots:
            raise_status(kp, arrays[r])
        if trace is not None:
            for i, (name, ops) in enumerate(self.kernel_names):
                trace.append((name, ops, tr[2 * i], tr[2 * i + 1]))
        for var, buf in kp.var_updates.items():
            # a view is enough: the Session commits before this runner runs again. Commit
            # keeps (instead of copying: ~60 us for the W3 parameters) a private copy made for
            # this run, and a temporary that this run hands over (see _hand_over)
            root = self.layout.root[buf]
            owned = root in self.private_vars
            if root in self.handover_roots:
                self._hand_over(plan, root)
                owned = True
            ctx.write_variable(var, self._value(buf, plan, arrays, feeds, copy=False), owned)
        if self.simple_outputs:
            return [arrays[r] for r in kp.outputs]
        return [self._value(name, plan, arrays, feeds) for name in kp.outputs]

    def _hand_over(self, plan, root) -> None:
        """Give this run's array of temporary ``root`` (holding a variable's new value) to the
        caller, and put another in the plan for the next run: the array handed over two runs
        ago when nothing but this runner holds it any more (the Session has replaced that
        value since), else a new one. Every run writes a temporary before reading it, so
        what the array held does not matter."""
        out = plan.temps[root]
        ring = self._handed.setdefault(root, [])
        spare = None
        if len(ring) == 2:
            old = ring.pop(0)
            # nothing but the local name holds it: the Session has replaced that value
            if old.nbytes == out.nbytes and sys.getrefcount(old) == REFS_OF_LOCAL:
                spare = old
        ring.append(out)
        plan.temps[root] = spare if spare is not None else aligned_empty(out.shape, out.dtype)

    def _bind_vars(self, ctx, plan, arrays, keep):
        kp = self.kp
        values = bind_variables(kp, ctx)
        for r in self.var_roots:
            v = values.get(r)
            if v is None:  # written before being read (Assign): no old value needed
                v = np.zeros(max(plan.root_bytes[r], 1), np.uint8)
            else:
                v = np.asarray(v)
                want = plan.shapes[r]
                if v.shape != want:
                    raise InvalidArgumentError(
                        f"variable {kp.var_reads.get(r)} has shape {v.shape}, the program "
                        f"expects {want}"
                    )
                npdt = kp.buffers[r].dtype.np
                if r in self.private_vars or v.dtype != npdt or not v.flags.c_contiguous:
                    a = aligned_empty(v.shape, npdt)
                    np.copyto(a, v, casting="unsafe")
                    v = a
                if v.nbytes == 0:
                    v = np.zeros(max(plan.root_bytes[r], 1), np.uint8)
            arrays[r] = v
            self.table[self.slot_of[r]] = descriptor(v, keep)

    def _value(self, name, plan, arrays, feeds, copy=True):
        """The array of buffer ``name`` after the run (outputs as is; others copied unless
        ``copy=False``)."""
        b = self.kp.buffers[name]
        shape = plan.shapes[name]
        if b.kind == "input":
            k = list(self.kp.inputs).index(name)
            return np.array(feeds[k], dtype=b.dtype.np).reshape(shape)
        if b.kind == "const":
            return np.array(self.const_values[name], dtype=b.dtype.np).reshape(shape)
        root = self.layout.root[name]
        a = arrays[root]
        if root == name and a.shape == shape and a.dtype == b.dtype.np:
            if b.kind == "output" or not copy:
                return a
        n = math.prod(shape)  # (np.prod costs ~5 us a call)
        raw = a.reshape(-1).view(np.uint8)[: n * b.dtype.itemsize]
        view = raw.view(b.dtype.np).reshape(shape)
        return np.array(view) if copy else view

    def close(self) -> None:
        self._run = self._run_general
        self._plans.clear()
        self._reuse.clear()
        self._handed.clear()
