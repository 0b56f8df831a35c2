"""The MPI side of ``gc.distribute``: the process group, and collectives on numpy buffers.

mpi4py is optional (the ``graphc[mpi]`` extra): it is imported on first use, and without it
every call raises UnavailableError naming what to install. Data moves through mpi4py's
buffer interface (``Iallreduce``/``Ibcast`` on numpy arrays: no pickling); only the error
path that names a difference between ranks gathers Python objects.

Every collective a graph op makes is preceded by a *signature check*: a 2-element int64
``MAX`` allreduce of (h, -h), where h hashes what this rank is about to reduce (the op's
name and kind, each tensor's label, dtype and shape). All ranks equal iff max == -min; when
they differ every rank sees it, gathers the descriptions and raises the same
FailedPreconditionError naming the first difference, instead of reducing buffers that do
not match (which MPI may not even detect).

Waiting is bounded: a collective that has not completed after ``config.dist_timeout()``
seconds (GRAPHC_DIST_TIMEOUT) raises UnavailableError naming this rank and the op. The
waiter polls with ``Test`` (which drives MPI's progress): see ``_wait`` for when it spins,
yields its core or sleeps.

``init`` installs an exception hook: an uncaught exception on any rank prints the rank and
the error, then ``MPI_Abort``s the whole job (so the other ranks do not wait in a
collective). ``python -m mpi4py script.py`` does the same for exceptions raised before
``init``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import sys
import time

import numpy as np

from .. import config
from ..errors import FailedPreconditionError, InvalidArgumentError, UnavailableError

INSTALL_HINT = (
    "gc.distribute needs mpi4py and an MPI library: pip install graphc[mpi] "
    "(installs mpi4py and mpich)"
)

#: how long a waiter for the other ranks spins on Test before it yields its core between
#: polls, and after how long any waiter sleeps 1 ms between polls
SPIN_SECONDS = 1e-3
SLEEP_AFTER = 0.1


class _State:
    """The process group once ``init`` has run."""

    def __init__(self):
        self.mpi = None  # the mpi4py.MPI module
        self.comm = None  # graphc's duplicate of COMM_WORLD
        self.local = None  # the processes of this machine
        self.rank = 0
        self.size = 1
        self.local_rank = 0
        self.local_size = 1
        self.host = socket.gethostname()
        #: seconds spent in collectives and calls made, since init or reset_stats
        self.stats = {"allreduce_calls": 0, "allreduce_seconds": 0.0, "allreduce_bytes": 0,
                      "broadcast_calls": 0, "check_calls": 0, "check_seconds": 0.0}  # fmt: skip


_state = _State()


def mpi_module():
    """mpi4py's MPI module (importing it initialises MPI), or UnavailableError."""
    if _state.mpi is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise UnavailableError(f"{INSTALL_HINT} ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - e.g. no MPI library found at import
            raise UnavailableError(f"{INSTALL_HINT}: loading MPI failed: {exc}") from None
        _state.mpi = MPI
    return _state.mpi


def require_installed() -> None:
    """UnavailableError unless mpi4py is installed (checked without initialising MPI, so
    that building graphs with collective ops does not start MPI)."""
    if _state.mpi is None and importlib.util.find_spec("mpi4py") is None:
        raise UnavailableError(INSTALL_HINT)


def available() -> bool:
    """Whether mpi4py (and an MPI library) can be loaded."""
    try:
        mpi_module()
    except UnavailableError:
        return False
    return True


def init(threads: bool = True) -> None:
    """Join the job: set up the process group (idempotent).

    ``threads``: make this process's default ``CompileOptions.threads`` the machine's cores
    divided by the job's processes on this machine (GRAPHC_THREADS still wins), so the
    processes of one machine do not oversubscribe it.
    """
    MPI = mpi_module()
    if _state.comm is None:
        world = MPI.COMM_WORLD
        _state.rank, _state.size = world.Get_rank(), world.Get_size()
        _install_excepthook()
        # meet with a bounded wait first: Dup and Split_type would block forever on a rank
        # that never calls init
        _wait(world.Ibarrier(), "init", patient=True)
        _state.comm = world.Dup()
        _state.local = _state.comm.Split_type(MPI.COMM_TYPE_SHARED, key=_state.comm.Get_rank())
        _state.rank = _state.comm.Get_rank()
        _state.size = _state.comm.Get_size()
        _state.local_rank = _state.local.Get_rank()
        _state.local_size = _state.local.Get_size()
    if threads and not config.threads_from_environment():
        n = max(1, config.cpu_count() // _state.local_size)
        config.set_default_threads(n)
        _limit_other_blas(n)


def _limit_other_blas(n: int) -> None:
    """Limit the BLAS libraries loaded besides graphc's own (numpy's OpenBLAS...) to ``n``
    threads, when the optional threadpoolctl is installed. graphc's scipy-openblas32 stays
    at one thread: graphc splits its GEMMs over its own ``threads``."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and "scipy_openblas32" not in str(lib.filepath):
            lib.set_num_threads(n)


def is_initialized() -> bool:
    return _state.comm is not None


def _require() -> _State:
    mpi_module()
    if _state.comm is None:
        raise FailedPreconditionError(
            "gc.distribute.init() must be called before using the process group"
        )
    return _state


def rank() -> int:
    """This process's index in the job, 0 .. size() - 1."""
    return _require().rank


def size() -> int:
    """Number of processes in the job."""
    return _require().size


def local_rank() -> int:
    """This process's index among the job's processes on this machine."""
    return _require().local_rank


def local_size() -> int:
    """Number of the job's processes on this machine."""
    return _require().local_size


def abort(code: int = 1) -> None:
    """End every process of the job now (MPI_Abort)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _state.comm is not None:
        _state.mpi.COMM_WORLD.Abort(code)
    raise SystemExit(code)


def stats() -> dict:
    """Collective calls and seconds (allreduce, signature checks) since init/reset_stats."""
    return dict(_state.stats)


def reset_stats() -> None:
    for k in _state.stats:
        _state.stats[k] = 0 if k.endswith(("calls", "bytes")) else 0.0


def time_allreduce(nbytes: int, repeat: int = 10) -> float:
    """Median seconds of one float32 allreduce of ``nbytes`` on a preallocated buffer, each
    after a barrier: the bare MPI cost of a bucket (a collective: every rank must call it)."""
    st = _require()
    buf = np.ones(max(1, nbytes // 4), np.float32)
    times = []
    for _ in range(repeat):
        st.comm.Barrier()
        t0 = time.perf_counter()
        _wait(st.comm.Iallreduce(st.mpi.IN_PLACE, buf, op=st.mpi.SUM), "time_allreduce")
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


#: seconds between writing a failing rank's message and aborting the job
ABORT_GRACE_SECONDS = 0.5


def _install_excepthook() -> None:
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        try:
            print(
                f"graphc.distribute: rank {_state.rank} of {_state.size} (host {_state.host}) "
                f"failed with {exc_type.__name__}: {exc}; aborting the job",
                file=sys.stderr,
            )
            previous(exc_type, exc, tb)
        finally:
            if _state.size > 1 and not issubclass(exc_type, KeyboardInterrupt):
                sys.stdout.flush()
                sys.stderr.flush()
                # mpiexec forwards each rank's output through its proxy; an abort right
                # after the write can kill the proxy before the message reaches the user
                # (seen on a loaded machine): give it a moment
                time.sleep(ABORT_GRACE_SECONDS)
                _state.mpi.COMM_WORLD.Abort(1)

    sys.excepthook = hook


# -- waiting -----------------------------------------------------------------------------------


def _wait(reqs, what: str, patient: bool = False) -> None:
    """Complete the request(s) ``reqs``; UnavailableError after the configured timeout.

    Polls with ``Test`` (which drives MPI's progress). ``patient`` (the signature check,
    where a rank waits for the slower ones to arrive): spin for SPIN_SECONDS, then yield the
    core between polls (``sched_yield``: the process stays runnable, so it resumes as soon
    as a core is free, where a sleeping one waits to be woken: under load that cost a
    scheduler slice, ~20 ms, in one step of two). Moving data (every rank has arrived): spin,
    as a large allreduce is many pipelined steps each needing a ``Test`` on both sides
    (sleeping between polls made 2.7 MB take 13 ms instead of 6 here). Past SLEEP_AFTER
    seconds either waits 1 ms between polls: a peer is compiling, stuck or gone, and a
    spinning core would only slow the others down.
    """
    reqs = reqs if isinstance(reqs, list) else [reqs]
    test = _state.mpi.Request.Testall
    timeout = config.dist_timeout()
    if test(reqs):
        return
    if timeout <= 0:
        _state.mpi.Request.Waitall(reqs)
        return
    start = time.monotonic()
    deadline = start + timeout
    polls = 0
    while not test(reqs):
        polls += 1
        if not patient and polls % 256:
            continue
        now = time.monotonic()
        if now > deadline:
            raise UnavailableError(
                f"gc.distribute: rank {_state.rank} of {_state.size} waited {timeout:g} s in "
                f"{what} for the other processes (one died, hangs, or runs a different "
                "program); set GRAPHC_DIST_TIMEOUT to wait longer. The job cannot go on."
            )
        if now - start > SLEEP_AFTER:
            time.sleep(1e-3)
        elif patient and now - start > SPIN_SECONDS:
            _yield()


def _yield() -> None:
    if hasattr(os, "sched_yield"):
        os.sched_yield()
    else:  # pragma: no cover - not Linux
        time.sleep(0)


# -- signature check ---------------------------------------------------------------------------


def describe(arrays, labels) -> list:
    """[(label, dtype name, shape)] of the tensors a collective is about to move."""
    return [
        (str(lab), str(a.dtype), tuple(int(d) for d in a.shape)) for lab, a in zip(labels, arrays)
    ]


def check_same(kind: str, name: str, attrs: tuple, entries: list) -> None:
    """All ranks are about to run the same collective on tensors of the same labels, dtypes
    and shapes; FailedPreconditionError naming the first difference otherwise."""
    st = _state
    if st.size == 1:
        return
    t0 = time.perf_counter()
    desc = repr((kind, name, attrs, entries))
    h = int.from_bytes(hashlib.blake2b(desc.encode(), digest_size=8).digest(), "little") >> 2
    buf = np.array([h, -h], np.int64)
    _wait(st.comm.Iallreduce(st.mpi.IN_PLACE, buf, op=st.mpi.MAX), f"{kind} '{name}'", True)
    st.stats["check_calls"] += 1
    st.stats["check_seconds"] += time.perf_counter() - t0
    if buf[0] == h and -buf[1] == h:
        return
    everyone = st.comm.allgather((kind, name, attrs, entries))
    raise FailedPreconditionError(_difference(everyone))


def _difference(everyone: list) -> str:
    """A sentence naming the first way a rank's collective differs from rank 0's."""
    kind0, name0, attrs0, entries0 = everyone[0]
    for r, (kind, name, attrs, entries) in enumerate(everyone):
        if r == 0:
            continue
        head = f"gc.distribute: the processes run different programs: rank {r} "
        if (kind, name) != (kind0, name0):
            return head + f"runs {kind} '{name}' where rank 0 runs {kind0} '{name0}'"
        if attrs != attrs0:
            return head + f"runs {kind} '{name}' with {attrs}, rank 0 with {attrs0}"
        by_label0 = {e[0]: e for e in entries0}
        by_label = {e[0]: e for e in entries}
        for lab in by_label0:
            if lab not in by_label:
                return head + f"has no '{lab}' in {kind} '{name}' (rank 0 has)"
        for lab in by_label:
            if lab not in by_label0:
                return head + f"has '{lab}' in {kind} '{name}', rank 0 has not"
        for lab, (_, dt, shape, *value) in by_label.items():
            _, dt0, shape0, *value0 = by_label0[lab]
            if (dt, shape) != (dt0, shape0):
                return (
                    head + f"has '{lab}' of shape {shape} {dt} in {kind} '{name}', rank 0 "
                    f"of shape {shape0} {dt0}"
                )
            if value != value0:
                return f"gc.distribute: rank {r}'s value of '{lab}' differs from rank 0's"
        if [e[0] for e in entries] != [e[0] for e in entries0]:
            return head + f"orders the tensors of {kind} '{name}' differently from rank 0"
    return "gc.distribute: the processes disagree on a collective (no difference found)"


def check_same_values(name: str, labels, arrays) -> None:
    """Every rank holds the same ``arrays`` (bit for bit): FailedPreconditionError naming
    the first that differs otherwise. One 16-byte allreduce when they agree."""
    _require()
    arrays = [np.ascontiguousarray(a) for a in arrays]
    entries = [
        (*e, hashlib.sha256(a.tobytes()).hexdigest()[:32])
        for e, a in zip(describe(arrays, labels), arrays)
    ]
    check_same("values", name, (), entries)


# -- collectives on numpy arrays ---------------------------------------------------------------

#: dtypes MPI reduces as they are; float16 is summed in float32 (MPICH has no half SUM)
_WIDEN = {np.dtype(np.float16): np.dtype(np.float32)}


def buckets(arrays, bucket_bytes: int) -> list:
    """Indices of ``arrays`` grouped for fused collectives: by dtype, in order, each group
    at most ``bucket_bytes`` (a larger tensor is a bucket of its own)."""
    out, open_ = [], {}
    for i, a in enumerate(arrays):
        dt = _WIDEN.get(a.dtype, a.dtype)
        nbytes = a.size * dt.itemsize
        cur = open_.get(dt)
        if cur is None or cur[1] + nbytes > bucket_bytes:
            cur = [[], 0]
            open_[dt] = cur
            out.append(cur)
        cur[0].append(i)
        cur[1] += nbytes
    return [b[0] for b in out]


def allreduce_arrays(arrays, op: str, name: str, labels, bucket_bytes: int, keep_on=None):
    """Sum (op "sum") or mean (op "average") of each array over the processes.

    Arrays are packed into buckets of at most ``bucket_bytes`` (one MPI call per bucket).
    ``keep_on``: a rank; every other rank gets zeros (the gradient of a broadcast).
    """
    st = _require()
    arrays = [np.asarray(a) for a in arrays]
    for a, lab in zip(arrays, labels):
        if a.dtype.kind not in "fiu":  # floating, signed or unsigned integer
            raise InvalidArgumentError(f"allreduce '{name}': cannot reduce {lab} of {a.dtype}")
    if st.size == 1:  # the sum and the mean over one process are the value itself
        return arrays if keep_on in (None, 0) else [np.zeros_like(a) for a in arrays]
    # pack first, then meet: the check is where ranks wait for each other (yielding their
    # cores), so they start moving data together and nobody spins through its time slice
    # while another packs (that cost a scheduler slice, ~20 ms, in every other step here)
    t0 = time.perf_counter()
    groups = buckets(arrays, bucket_bytes)
    dts = [_WIDEN.get(arrays[idx[0]].dtype, arrays[idx[0]].dtype) for idx in groups]
    flats = [
        np.concatenate([arrays[i].reshape(-1).astype(dt, copy=False) for i in idx])
        for idx, dt in zip(groups, dts)
    ]
    packing = time.perf_counter() - t0
    # bucket_bytes too: ranks bucketing differently would post mismatched MPI calls
    check_same("allreduce", name, (op, keep_on, bucket_bytes), describe(arrays, labels))
    t0 = time.perf_counter()
    # every bucket in flight at once (ranks issue them in the same order, as MPI requires)
    reqs = [st.comm.Iallreduce(st.mpi.IN_PLACE, f, op=st.mpi.SUM) for f in flats if f.size]
    _wait(reqs, f"allreduce '{name}'")
    outs: list = [None] * len(arrays)
    for idx, dt, flat in zip(groups, dts, flats):
        st.stats["allreduce_calls"] += 1
        st.stats["allreduce_bytes"] += flat.nbytes
        if op == "average":
            if dt.kind in "iu":
                flat //= st.size
            else:
                flat /= dt.type(st.size)
        if keep_on is not None and st.rank != keep_on:
            flat[:] = 0
        pos = 0
        for i in idx:
            a = arrays[i]
            outs[i] = flat[pos : pos + a.size].reshape(a.shape).astype(a.dtype, copy=False)
            pos += a.size
    st.stats["allreduce_seconds"] += packing + time.perf_counter() - t0
    return outs


def broadcast_arrays(arrays, root: int, name: str, labels, bucket_bytes: int):
    """Rank ``root``'s value of each array, on every rank (bucketed like allreduce)."""
    st = _require()
    if not 0 <= root < st.size:
        raise InvalidArgumentError(
            f"broadcast '{name}': root_rank {root} is not a rank of this job of {st.size}"
        )
    arrays = [np.asarray(a) for a in arrays]
    groups = buckets(arrays, bucket_bytes)
    flats = [
        np.concatenate([np.ascontiguousarray(arrays[i]).reshape(-1).view(np.uint8) for i in idx])
        for idx in groups
    ]
    check_same("broadcast", name, (root, bucket_bytes), describe(arrays, labels))
    reqs = [st.comm.Ibcast(f, root=root) for f in flats if f.size]
    _wait(reqs, f"broadcast '{name}'")
    st.stats["broadcast_calls"] += len(reqs)
    outs: list = [None] * len(arrays)
    for idx, flat in zip(groups, flats):
        pos = 0
        for i in idx:
            a = arrays[i]
            outs[i] = flat[pos : pos + a.nbytes].view(a.dtype).reshape(a.shape)
            pos += a.nbytes
    return outs
