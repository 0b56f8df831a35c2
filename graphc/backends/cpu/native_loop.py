"""A cpu loop with a known trip count runs its iterations after the first in one native call.

``run_while`` (``graphc/ops/control_runtime.py``) runs the first iteration of a ``While``
without a condition through the body's runner as usual: that sizes every stacked output.
Then ``drive`` (its ``rest`` hook) hands iterations 1 .. trips - 1 to ``gc_loop_drive``
(``graphc/backends/llvm/loopdrive.py``), which calls the body's ``gc_entry`` once per
iteration with no Python in between: about 1 us an iteration instead of ~20 us of Python
(binding feeds, making outputs, the loop's bookkeeping).

What makes it possible: from the second iteration on, every buffer the body binds is known.
Each feed and output slot of the body's buffer table points at a descriptor of our own
(``runtime.descriptor``'s block form: the data pointer at word DATA_WORD), whose pointer the
driver moves per iteration:

- a sliced input's row, a stacked output's row: the array's start + ``at`` rows;
- a loop variable: two arrays, read from one and written to the other, alternating (the
  first is what iteration 0 returned);
- a captured tensor, a loop-invariant value (``loop_invariant.py``), an unread stacked output
  (a scratch array): fixed.

A stacked value the body does not write itself (a history row that is one of the body's
inputs, a value returned both as a loop variable and stacked: ``control._Outputs``) is copied
into its row after the call, as ``run_while`` would. The body's sizes are those of the
second iteration's feeds, so every later iteration has the same (a loop variable must come
back with the shape it went in with, checked here); the run-time checks ``run_while`` makes
per iteration (shapes of the loop variables and of the rows) then hold for every iteration.

Only a lean body takes this path (``LLVMRunner.lean``: no variables, random numbers or
run-time checks, every output its own buffer); anything else (or ``NATIVE_LOOP`` off) returns
None and the loop goes on in Python.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ...errors import InvalidArgumentError, ResourceExhaustedError
from ..llvm import jit, loopdrive, pool
from ..llvm.render import DATA_WORD
from ..llvm.runtime import aligned_empty

#: run the iterations after the first natively (off: every iteration from Python, to compare)
NATIVE_LOOP = True

_I64 = ctypes.c_int64
_DRIVE_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_int32, _I64, _I64, _I64, ctypes.c_void_p, _I64,
                            ctypes.c_void_p, _I64)  # fmt: skip


class _Move(ctypes.Structure):
    _fields_ = [("word", ctypes.c_void_p), ("base", _I64), ("at", _I64), ("par", _I64)]


class _Copy(ctypes.Structure):
    _fields_ = [(f, _I64) for f in ("dst", "dst_at", "src", "src_at", "src_par", "nbytes")]


def _driver():
    jit.load_pool()
    return _DRIVE_T(pool._state["addrs"][loopdrive.SYMBOL])


def _addr(a: np.ndarray) -> int:
    return a.ctypes.data


def _usable(a, shape, npdt) -> bool:
    return (
        type(a) is np.ndarray and a.shape == tuple(shape) and a.dtype == npdt
        and a.flags.c_contiguous
    )  # fmt: skip


class _Where:
    """Where a value lives at iteration i: ``base + at * at_stride + par * par_stride``."""

    __slots__ = ("base", "at", "par")

    def __init__(self, base, at=0, par=0):
        self.base, self.at, self.par = base, at, par


def drive(runner, outputs, n, k, invariant, vars_, rows, caps, stacks, trips, reverse):
    """Run iterations 1 .. trips - 1 of the loop natively (see the module docstring); the
    final loop variables, or None when this loop cannot (nothing has run then)."""
    if not NATIVE_LOOP or not getattr(runner, "lean", False) or trips < 2:
        return None
    if any(type(r) is not np.ndarray or not r.flags.c_contiguous for r in rows):
        return None
    at1 = trips - 2 if reverse else 1
    feeds = list(vars_) + [r[at1] for r in rows] + list(caps) + list(invariant)
    try:
        dvals = tuple(int(feeds[i].shape[axis]) for i, axis in runner.dim_src)
        plan = runner._plan(dvals)
    except (AttributeError, IndexError, InvalidArgumentError, ResourceExhaustedError):
        return None
    kp = runner.kp
    for i, name, _slot, npdt in runner.inputs:
        if not _usable(feeds[i], plan.shapes[name], npdt):
            return None
    npdt_of = {name: np.dtype(kp.buffers[name].dtype.np) for name in kp.outputs}
    src = outputs.src if outputs.src is not None else list(range(len(kp.outputs)))
    stacks = list(stacks)
    if len(src) < n + len(stacks):  # a body without its history outputs (none kept)
        if any(st is not None for st in stacks[len(src) - n :]):
            return None
        stacks = stacks[: len(src) - n]
    if len(src) != n + len(stacks):
        return None
    owner: dict = {}  # compiled output -> the first body output position it is
    for pos, s in enumerate(src):
        if s >= 0:
            owner.setdefault(s, pos)
    keep = []  # arrays the native call uses
    read: dict = {}  # feed index -> _Where (loop variables, sliced rows, fixed inputs)
    write: dict = {}  # compiled output -> _Where
    final: list = []  # per loop variable: (buffer written at odd i, at even i)
    in_rows = _stacked_variables(src, n, stacks, trips)
    for j in range(n):
        s = src[j]
        if s < 0:  # passes its input through: fixed
            if -1 - s != j:
                return None
            read[j] = _Where(_addr(feeds[j]))
            final.append((feeds[j], feeds[j]))
            continue
        name = kp.outputs[s]
        if owner[s] != j or not _usable(vars_[j], plan.shapes[name], npdt_of[name]):
            return None  # a variable must come back with the shape it went in with
        st = in_rows.get(s)
        if st is not None and _usable(st[0], plan.shapes[name], npdt_of[name]):
            # written into its stacked row, read from the previous iteration's row (which
            # run_while filled at iteration 0): no copy per iteration
            step = st.strides[0]
            write[s] = _Where(_addr(st), step)
            read[j] = _Where(_addr(st) + (step if reverse else -step), step)
            final.append((st, st))  # the last row, copied at the end
            continue
        p0 = vars_[j]
        p1 = aligned_empty(p0.shape, p0.dtype)
        keep += [p0, p1]
        a0, a1 = _addr(p0), _addr(p1)
        read[j] = _Where(a1, 0, a0 - a1)  # i odd: p0, even: p1
        write[s] = _Where(a0, 0, a1 - a0)  # i odd: p1, even: p0
        final.append((p1, p0))
    for j in range(k):
        r = rows[j]
        read[n + j] = _Where(_addr(r), r.strides[0] if r.ndim else 0)
    for i in range(n + k, len(feeds)):
        if i not in read and isinstance(feeds[i], np.ndarray):
            read[i] = _Where(_addr(feeds[i]))
    copies = []
    for j, st in enumerate(stacks):
        pos = n + j
        s = src[pos]
        if s >= 0 and owner[s] == pos:
            name = kp.outputs[s]
            shape = plan.shapes[name]
            if st is None:  # not kept: the body still writes it somewhere
                scratch = aligned_empty(shape, npdt_of[name])
                keep.append(scratch)
                write[s] = _Where(_addr(scratch))
                continue
            if not (type(st) is np.ndarray and st.flags.c_contiguous and st.shape[0] == trips
                    and st.shape[1:] == tuple(shape) and st.dtype == npdt_of[name]):  # fmt: skip
                return None
            write[s] = _Where(_addr(st), st.strides[0])
            continue
        if st is None:
            continue
        if type(st) is not np.ndarray or not st.flags.c_contiguous or st.shape[0] != trips:
            return None
        if s >= 0 and in_rows.get(s) is st:
            continue  # the variable is written into this array's rows
        if s >= 0:  # the value of an earlier output (a loop variable, another row)
            if owner[s] > pos:
                return None
            where = write.get(s)
            name = kp.outputs[s]
            ok = st.shape[1:] == tuple(plan.shapes[name]) and st.dtype == npdt_of[name]
        else:  # one of the body's inputs
            i = -1 - s
            where = read.get(i)
            v = feeds[i] if i < len(feeds) else None
            ok = _usable(v, st.shape[1:], st.dtype)
        if where is None or not ok:
            return None
        copies.append((_addr(st), st.strides[0], where.base, where.at, where.par, st.strides[0]))
    # the descriptors: a block per moving or fixed slot, the word DATA_WORD its data pointer
    slots = [(slot, read[i]) for i, _name, slot, _dt in runner.inputs]
    for s, name in enumerate(kp.outputs):
        if s not in write:
            return None
        slots.append((runner.slot_of[name], write[s]))
    blocks = np.zeros((max(len(slots), 1), DATA_WORD + 1), np.int64)
    moves = []
    for b, (slot, where) in enumerate(slots):
        block = blocks.ctypes.data + 8 * (DATA_WORD + 1) * b
        runner.table[slot] = block
        blocks[b, DATA_WORD] = where.base
        if where.at or where.par:
            moves.append((block + 8 * DATA_WORD, where.base, where.at, where.par))
    for r, a in plan.temps.items():
        runner.table[runner.slot_of[r]] = id(a)
    for i, v in enumerate(dvals):
        runner.dims_arr[i] = v
    move_arr = (_Move * max(len(moves), 1))(*[_Move(*m) for m in moves])
    copy_arr = (_Copy * max(len(copies), 1))(*[_Copy(*c) for c in copies])
    entry = ctypes.cast(runner.entry, ctypes.c_void_p).value
    _driver()(entry, runner.table_addr, runner.dims_addr, runner.nthreads, 1, trips,
              int(bool(reverse)), ctypes.addressof(move_arr), len(moves),
              ctypes.addressof(copy_arr), len(copies))  # fmt: skip
    del keep, blocks
    last_odd = (trips - 1) % 2 == 1
    last = 0 if reverse else trips - 1
    out = [odd if last_odd else even for odd, even in final]
    # from a stacked array: its last row, copied (the stack's arrays are reused later)
    return [v[last].copy() if any(v is st for st in in_rows.values()) else v for v in out]


def _stacked_variables(src, n, stacks, trips) -> dict:
    """{compiled output of a loop variable: the stacked array of its value}, for the first
    stacked output that is exactly a loop variable's new value (a C-contiguous
    ``[trips, ...]`` array): the driver writes that variable into its row."""
    out: dict = {}
    for pos, st in enumerate(stacks, start=n):
        s = src[pos] if pos < len(src) else -1
        if s < 0 or s in out or s not in src[:n]:
            continue
        if type(st) is np.ndarray and st.flags.c_contiguous and st.ndim >= 1:
            if st.shape[0] == trips:
                out[s] = st
    return out
