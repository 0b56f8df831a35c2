"""The process-wide worker pool behind every parallel loop and GEMM split of the cpu target.

Generated code calls ``gc_parallel_for(body, ctx, lo, trips, n)``: run ``body(ctx, s, e)``
over ``n`` chunks of ``[lo, lo + trips)`` and return when all are done. The pool is one small
LLVM module (``POOL_IR`` below), compiled once per process, whose entry points are
registered with ``llvm.add_symbol`` before any program is loaded, so every Executable in the
process shares the same threads. (``gc.export_c`` links the same object into its library.)

How a call runs:

- The caller takes the pool with a compare-and-swap on ``busy``. When another thread holds
  it (several Python threads running sessions at once, or a nested call), the caller runs
  the whole range itself: concurrent callers then each use one core, nobody waits.
- Workers are created lazily (``n - 1`` of them, at most one fewer than the CPUs, on the
  first call that needs them) and live until process exit. A worker that cannot be started
  is simply missing: the caller and the others claim its chunks.
- A job is published as one 64-bit ``ticket`` = (generation << 32) | chunks not yet claimed.
  Caller and workers claim chunks with a compare-and-swap on it, so the calling thread takes
  a share of the work (it runs chunk 0 first), and when a worker is slow to wake (a loaded
  machine) the caller simply claims its chunk too. A successful claim also proves that the
  job's fields are the current job's: the caller rewrites them only after every chunk of the
  previous job has been claimed and finished.
- Workers spin on the ticket for WORKER_SPIN_NS after their last chunk (the next GEMM of a
  training step usually comes a few microseconds later), calling sched_yield every 16 pauses
  so that on a loaded machine the spinning gives the core to whoever wants it (pure spinning
  made W8 ~1.5x slower at load average 10), then park on a condition variable; the caller
  broadcasts only when some worker is parked. The caller waits for the last chunk
  by spinning for CALLER_SPIN_NS, then yielding the core between checks.
- Kernels report errors through status buffers, never by unwinding, so every chunk returns
  and a job always completes.
- fork: the pool records the pid that created its threads; in a child (other pid) the first
  call forgets the parent's workers (they do not exist there) and re-initialises the mutex
  and condition variable, then starts its own.
- exit: ``shutdown()`` (registered with atexit) waits for a running job, stops and joins the
  workers; later calls run serially. The pool's code is never freed (a thread may still be
  in it while the interpreter tears down).

The pool's module also defines graphc's own GEMM and transpose kernels (``nativegemm.py``)
and the loop driver (``loopdrive.py``): shared code every program calls, compiled once per
process (and cached with the pool) instead of in every program's module.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading

import llvmlite.binding as llvm

from . import loopdrive, nativegemm
from .irutil import MODULE_SEP

#: how long an idle worker spins for the next job before parking (about one small kernel
#: between two GEMMs of a training step)
WORKER_SPIN_NS = 100_000
#: how long the caller spins for the last chunk before yielding the core between checks
CALLER_SPIN_NS = 20_000
#: most worker threads the pool starts: one fewer than the CPUs this process may run on (the
#: caller is the other), at most MAX_WORKERS. A call asking for more chunks still completes:
#: the threads there are claim them (more threads than cores would only compete, and each
#: idle one spins)
MAX_WORKERS = 255


def worker_limit() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(MAX_WORKERS, (cpus or 1) - 1))


#: symbols the pool defines for generated code and for this module
SYMBOLS = (
    "gc_parallel_for",
    "gc_pool_shutdown",
    "gc_pool_stats",
    "gc_pool_hot",
    loopdrive.SYMBOL,
    *nativegemm.SYMBOLS,
)

_PAUSE = {
    "x86_64": "call void @llvm.x86.sse2.pause()",
    "aarch64": 'call void asm sideeffect "yield", ""()',
}
_PAUSE_DECL = {"x86_64": "declare void @llvm.x86.sse2.pause()", "aarch64": ""}

# Loop variables live in allocas (promoted to SSA by the optimiser): easier to read than phis.
POOL_IR = r"""
; graphc worker pool: see graphc/backends/llvm/pool.py
%job = type { ptr, ptr, i64, i64, i64, i64 }   ; body, ctx, lo, trips, n, chunk

@busy = internal global i32 0, align 64        ; 1 while a caller owns the pool
@ticket = internal global i64 0, align 64      ; (generation << 32) | chunks left to claim
@done = internal global i64 0, align 64        ; chunks of the current job finished
@job = internal global %job zeroinitializer, align 64
@sleepers = internal global i32 0, align 64    ; workers parked (or about to) on @cond
@helped = internal global i32 0, align 64      ; 1 once a worker ran a chunk of the current job
@stop = internal global i32 0, align 4         ; set by shutdown: workers exit, calls run serially
@pid = internal global i32 0, align 4          ; process whose threads @tids are
@nworkers = internal global i64 0, align 8
@tids = internal global [{MAXW} x i64] zeroinitializer, align 8
; worker chunks, threads created, jobs, contended calls
@stats = internal global [4 x i64] zeroinitializer, align 8
@mutex = internal global [128 x i8] zeroinitializer, align 64
@cond = internal global [128 x i8] zeroinitializer, align 64

declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_join(i64, ptr)
declare i32 @pthread_mutex_init(ptr, ptr)
declare i32 @pthread_cond_init(ptr, ptr)
declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare i32 @pthread_cond_wait(ptr, ptr)
declare i32 @pthread_cond_broadcast(ptr)
declare i32 @clock_gettime(i32, ptr)
declare i32 @sched_yield()
declare i32 @getpid()
{PAUSE_DECL}

define internal i64 @now_ns() {
  %ts = alloca [2 x i64], align 8
  call i32 @clock_gettime(i32 1, ptr %ts)
  %s = load i64, ptr %ts, align 8
  %pn = getelementptr [2 x i64], ptr %ts, i64 0, i64 1
  %n = load i64, ptr %pn, align 8
  %sn = mul i64 %s, 1000000000
  %t = add i64 %sn, %n
  ret i64 %t
}

; Claim and run chunks of job %gen until none is left (or another job is current); returns
; how many it ran. %worker: 1 on a worker thread (it then marks the job @helped).
define internal i64 @run_chunks(i64 %gen, i32 %worker) {
entry:
  %ran = alloca i64, align 8
  store i64 0, ptr %ran, align 8
  br label %loop
loop:
  %v = load atomic i64, ptr @ticket acquire, align 8
  %g = lshr i64 %v, 32
  %left = and i64 %v, 4294967295
  %same = icmp eq i64 %g, %gen
  %some = icmp ne i64 %left, 0
  %ok = and i1 %same, %some
  br i1 %ok, label %claim, label %out
claim:
  %v1 = sub i64 %v, 1
  %r = cmpxchg ptr @ticket, i64 %v, i64 %v1 acq_rel acquire
  %won = extractvalue { i64, i1 } %r, 1
  br i1 %won, label %run, label %loop
run:
  %isw = icmp ne i32 %worker, 0
  br i1 %isw, label %mark, label %go
mark:
  store atomic i32 1, ptr @helped monotonic, align 4
  br label %go
go:
  ; the job's fields cannot change before this chunk is counted in @done
  %body = load ptr, ptr @job, align 8
  %pctx = getelementptr %job, ptr @job, i32 0, i32 1
  %ctx = load ptr, ptr %pctx, align 8
  %plo = getelementptr %job, ptr @job, i32 0, i32 2
  %lo = load i64, ptr %plo, align 8
  %ptrips = getelementptr %job, ptr @job, i32 0, i32 3
  %trips = load i64, ptr %ptrips, align 8
  %pn = getelementptr %job, ptr @job, i32 0, i32 4
  %n = load i64, ptr %pn, align 8
  %pchunk = getelementptr %job, ptr @job, i32 0, i32 5
  %chunk = load i64, ptr %pchunk, align 8
  %idx = sub i64 %n, %left
  %off = mul i64 %idx, %chunk
  %s = add i64 %lo, %off
  %e0 = add i64 %s, %chunk
  %end = add i64 %lo, %trips
  %short = icmp slt i64 %e0, %end
  %e = select i1 %short, i64 %e0, i64 %end
  %nonempty = icmp slt i64 %s, %e
  br i1 %nonempty, label %call, label %count
call:
  call void %body(ptr %ctx, i64 %s, i64 %e)
  br label %count
count:
  atomicrmw add ptr @done, i64 1 release
  %r0 = load i64, ptr %ran, align 8
  %r1 = add i64 %r0, 1
  store i64 %r1, ptr %ran, align 8
  br label %loop
out:
  %total = load i64, ptr %ran, align 8
  ret i64 %total
}

; Worker thread: %arg is the generation current when it was created (its first job is the
; next one).
define internal ptr @worker(ptr %arg) {
entry:
  %seen = alloca i64, align 8
  %spins = alloca i64, align 8
  %deadline = alloca i64, align 8
  %g0 = ptrtoint ptr %arg to i64
  store i64 %g0, ptr %seen, align 8
  br label %idle
idle:
  %t0 = call i64 @now_ns()
  %t1 = add i64 %t0, {WORKER_SPIN_NS}
  store i64 %t1, ptr %deadline, align 8
  store i64 0, ptr %spins, align 8
  br label %spin
spin:
  %v = load atomic i64, ptr @ticket acquire, align 8
  %g = lshr i64 %v, 32
  %sn = load i64, ptr %seen, align 8
  %new = icmp ne i64 %g, %sn
  br i1 %new, label %work, label %pause
pause:
  {PAUSE}
  %i = load i64, ptr %spins, align 8
  %i1 = add i64 %i, 1
  store i64 %i1, ptr %spins, align 8
  %m = and i64 %i1, 15
  %check = icmp eq i64 %m, 0
  br i1 %check, label %clock, label %spin
clock:
  ; give the core away when another thread wants it (a loaded machine), else spin on
  call i32 @sched_yield()
  %t = call i64 @now_ns()
  %dl = load i64, ptr %deadline, align 8
  %late = icmp sge i64 %t, %dl
  br i1 %late, label %park, label %spin
park:
  call i32 @pthread_mutex_lock(ptr @mutex)
  atomicrmw add ptr @sleepers, i32 1 seq_cst
  br label %wait
wait:
  %st = load atomic i32, ptr @stop monotonic, align 4
  %stopped = icmp ne i32 %st, 0
  br i1 %stopped, label %quit, label %test
test:
  %v2 = load atomic i64, ptr @ticket seq_cst, align 8
  %g2 = lshr i64 %v2, 32
  %sn2 = load i64, ptr %seen, align 8
  %same = icmp eq i64 %g2, %sn2
  br i1 %same, label %sleep, label %woke
sleep:
  call i32 @pthread_cond_wait(ptr @cond, ptr @mutex)
  br label %wait
woke:
  atomicrmw sub ptr @sleepers, i32 1 seq_cst
  call i32 @pthread_mutex_unlock(ptr @mutex)
  store i64 %g2, ptr %seen, align 8
  %n2 = call i64 @run_chunks(i64 %g2, i32 1)
  atomicrmw add ptr @stats, i64 %n2 monotonic
  br label %idle
work:
  store i64 %g, ptr %seen, align 8
  %n1 = call i64 @run_chunks(i64 %g, i32 1)
  atomicrmw add ptr @stats, i64 %n1 monotonic
  br label %idle
quit:
  atomicrmw sub ptr @sleepers, i32 1 seq_cst
  call i32 @pthread_mutex_unlock(ptr @mutex)
  ret ptr null
}

; With the pool owned: the first call in this process (or in a forked child) forgets any
; workers (a child has none) and initialises the mutex and condition variable.
define internal void @adopt() {
entry:
  %p = call i32 @getpid()
  %old = load i32, ptr @pid, align 4
  %same = icmp eq i32 %p, %old
  br i1 %same, label %out, label %reset
reset:
  call i32 @pthread_mutex_init(ptr @mutex, ptr null)
  call i32 @pthread_cond_init(ptr @cond, ptr null)
  store atomic i64 0, ptr @nworkers monotonic, align 8
  store atomic i32 0, ptr @sleepers seq_cst, align 4
  store i32 %p, ptr @pid, align 4
  br label %out
out:
  ret void
}

define void @gc_parallel_for(ptr %body, ptr %ctx, i64 %lo, i64 %trips, i64 %n) {
entry:
  %end = add i64 %lo, %trips
  %few = icmp sle i64 %n, 1
  br i1 %few, label %serial, label %try
try:
  %r = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue { i32, i1 } %r, 1
  br i1 %got, label %owned, label %contended
contended:
  %pc = getelementptr [4 x i64], ptr @stats, i64 0, i64 3
  atomicrmw add ptr %pc, i64 1 monotonic
  br label %serial
serial:
  call void %body(ptr %ctx, i64 %lo, i64 %end)
  ret void
owned:
  call void @adopt()
  %st = load atomic i32, ptr @stop monotonic, align 4
  %stopped = icmp ne i32 %st, 0
  br i1 %stopped, label %release_serial, label %prepare
release_serial:
  store atomic i32 0, ptr @busy release, align 4
  br label %serial
prepare:
  ; chunks are claimed from the low 32 bits of the ticket
  %big = icmp sgt i64 %n, 65536
  %nc = select i1 %big, i64 65536, i64 %n
  %want0 = sub i64 %nc, 1
  %capped = icmp sgt i64 %want0, {LIMIT}
  %want = select i1 %capped, i64 {LIMIT}, i64 %want0
  %cur = load atomic i64, ptr @ticket monotonic, align 8
  %gen0 = lshr i64 %cur, 32
  %garg = inttoptr i64 %gen0 to ptr
  br label %grow
grow:
  %have = load atomic i64, ptr @nworkers monotonic, align 8
  %enough = icmp sge i64 %have, %want
  br i1 %enough, label %publish, label %spawn
spawn:
  %ptid = getelementptr [{MAXW} x i64], ptr @tids, i64 0, i64 %have
  %rc = call i32 @pthread_create(ptr %ptid, ptr null, ptr @worker, ptr %garg)
  %started = icmp eq i32 %rc, 0
  br i1 %started, label %spawned, label %publish
spawned:
  %have1 = add i64 %have, 1
  store atomic i64 %have1, ptr @nworkers monotonic, align 8
  %pcr = getelementptr [4 x i64], ptr @stats, i64 0, i64 1
  atomicrmw add ptr %pcr, i64 1 monotonic
  br label %grow
publish:
  %nm1 = sub i64 %nc, 1
  %tn = add i64 %trips, %nm1
  %chunk = sdiv i64 %tn, %nc
  store ptr %body, ptr @job, align 8
  %pctx = getelementptr %job, ptr @job, i32 0, i32 1
  store ptr %ctx, ptr %pctx, align 8
  %plo = getelementptr %job, ptr @job, i32 0, i32 2
  store i64 %lo, ptr %plo, align 8
  %ptrips = getelementptr %job, ptr @job, i32 0, i32 3
  store i64 %trips, ptr %ptrips, align 8
  %pn = getelementptr %job, ptr @job, i32 0, i32 4
  store i64 %nc, ptr %pn, align 8
  %pchunk = getelementptr %job, ptr @job, i32 0, i32 5
  store i64 %chunk, ptr %pchunk, align 8
  store atomic i64 0, ptr @done monotonic, align 8
  store atomic i32 0, ptr @helped monotonic, align 4
  %gen1 = add i64 %gen0, 1
  %gen = and i64 %gen1, 4294967295
  %hi = shl i64 %gen, 32
  %tk = or i64 %hi, %nc
  store atomic i64 %tk, ptr @ticket seq_cst, align 8
  %sl = load atomic i32, ptr @sleepers seq_cst, align 4
  %parked = icmp ne i32 %sl, 0
  br i1 %parked, label %wake, label %share
wake:
  call i32 @pthread_mutex_lock(ptr @mutex)
  call i32 @pthread_cond_broadcast(ptr @cond)
  call i32 @pthread_mutex_unlock(ptr @mutex)
  br label %share
share:
  call i64 @run_chunks(i64 %gen, i32 0)
  %t0 = call i64 @now_ns()
  %deadline = add i64 %t0, {CALLER_SPIN_NS}
  br label %waitloop
waitloop:
  %d = load atomic i64, ptr @done acquire, align 8
  %fin = icmp eq i64 %d, %nc
  br i1 %fin, label %finish, label %waitmore
waitmore:
  {PAUSE}
  %t = call i64 @now_ns()
  %late = icmp sge i64 %t, %deadline
  br i1 %late, label %yield, label %waitloop
yield:
  call i32 @sched_yield()
  br label %waitloop
finish:
  %pj = getelementptr [4 x i64], ptr @stats, i64 0, i64 2
  atomicrmw add ptr %pj, i64 1 monotonic
  store atomic i32 0, ptr @busy release, align 4
  ret void
}

; Wait for a running job, stop and join the workers; later calls run serially.
define void @gc_pool_shutdown() {
entry:
  br label %take
take:
  %r = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue { i32, i1 } %r, 1
  br i1 %got, label %owned, label %yield
yield:
  call i32 @sched_yield()
  br label %take
owned:
  call void @adopt()
  call i32 @pthread_mutex_lock(ptr @mutex)
  store atomic i32 1, ptr @stop seq_cst, align 4
  call i32 @pthread_cond_broadcast(ptr @cond)
  call i32 @pthread_mutex_unlock(ptr @mutex)
  %nw = load atomic i64, ptr @nworkers monotonic, align 8
  br label %join
join:
  %i = phi i64 [ 0, %owned ], [ %i1, %joined ]
  %more = icmp slt i64 %i, %nw
  br i1 %more, label %joinone, label %out
joinone:
  %ptid = getelementptr [{MAXW} x i64], ptr @tids, i64 0, i64 %i
  %tid = load i64, ptr %ptid, align 8
  call i32 @pthread_join(i64 %tid, ptr null)
  br label %joined
joined:
  %i1 = add i64 %i, 1
  br label %join
out:
  store atomic i64 0, ptr @nworkers monotonic, align 8
  store atomic i32 0, ptr @busy release, align 4
  ret void
}

; 1 when a job handed over now starts within microseconds: workers exist, none is parked
; (each spins for WORKER_SPIN_NS after its last chunk), a worker ran a chunk of the last job
; (on a loaded machine a spinning worker is often off its core: the caller then ran every
; chunk itself) and no caller owns the pool; else 0
define i32 @gc_pool_hot() {
entry:
  %nw = load atomic i64, ptr @nworkers monotonic, align 8
  %some = icmp sgt i64 %nw, 0
  %sl = load atomic i32, ptr @sleepers monotonic, align 4
  %awake = icmp eq i32 %sl, 0
  %bz = load atomic i32, ptr @busy monotonic, align 4
  %free = icmp eq i32 %bz, 0
  %hp = load atomic i32, ptr @helped monotonic, align 4
  %help = icmp ne i32 %hp, 0
  %a0 = and i1 %some, %awake
  %a = and i1 %a0, %help
  %hot = and i1 %a, %free
  %r = zext i1 %hot to i32
  ret i32 %r
}
; out[0..5] = live workers, workers ever created, parallel jobs run, calls that found the
; pool busy (and ran serially), chunks run by workers
define void @gc_pool_stats(ptr %out) {
entry:
  %v4 = load atomic i64, ptr @stats monotonic, align 8
  %o4 = getelementptr i64, ptr %out, i64 4
  store i64 %v4, ptr %o4, align 8
  %nw = load atomic i64, ptr @nworkers monotonic, align 8
  store i64 %nw, ptr %out, align 8
  %p1 = getelementptr [4 x i64], ptr @stats, i64 0, i64 1
  %v1 = load atomic i64, ptr %p1 monotonic, align 8
  %o1 = getelementptr i64, ptr %out, i64 1
  store i64 %v1, ptr %o1, align 8
  %p2 = getelementptr [4 x i64], ptr @stats, i64 0, i64 2
  %v2 = load atomic i64, ptr %p2 monotonic, align 8
  %o2 = getelementptr i64, ptr %out, i64 2
  store i64 %v2, ptr %o2, align 8
  %p3 = getelementptr [4 x i64], ptr @stats, i64 0, i64 3
  %v3 = load atomic i64, ptr %p3 monotonic, align 8
  %o3 = getelementptr i64, ptr %out, i64 3
  store i64 %v3, ptr %o3, align 8
  ret void
}
"""


def pool_ir(triple: str) -> str:
    """The pool module's IR text for a target triple."""
    arch = triple.split("-", 1)[0]
    return (
        (
            POOL_IR.replace("{PAUSE_DECL}", _PAUSE_DECL.get(arch, ""))
            .replace("{PAUSE}", _PAUSE.get(arch, "fence seq_cst"))
            .replace("{MAXW}", str(MAX_WORKERS))
            .replace("{LIMIT}", str(worker_limit()))
            .replace("{WORKER_SPIN_NS}", str(WORKER_SPIN_NS))
            .replace("{CALLER_SPIN_NS}", str(CALLER_SPIN_NS))
        )
        + loopdrive.DRIVE_IR
        # the GEMM kernels' IR is already what the passes would make of it (measured: the
        # same speed at IR opt level 0 and 3, ~0.1 s of passes each): a second module that
        # jit links in unoptimised (jit._compile)
        + MODULE_SEP
        + nativegemm.kernels_ir()
    )


_lock = threading.Lock()
_state: dict = {}


def loaded() -> bool:
    """Whether the pool is loaded in this process (see jit.load_pool)."""
    return bool(_state)


def load(compile_ir, load_object, triple: str) -> None:
    """Compile and load the pool (once per process) and register its symbols
    (``compile_ir(text, pic=False) -> object code``, ``load_object(obj) ->
    jit.LoadedObject``)."""
    if _state:
        return
    with _lock:
        if _state:
            return
        obj = compile_ir(pool_ir(triple))
        loaded = load_object(obj)
        addrs = {name: loaded.address(name) for name in SYMBOLS}
        for name, addr in addrs.items():
            llvm.add_symbol(name, addr)
        # never freed: a thread may still run the pool's code while the interpreter exits
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(loaded))
        _state.update(obj=obj, loaded=loaded, addrs=addrs, compile_ir=compile_ir, triple=triple)
        atexit.register(shutdown)


def object_code() -> bytes:
    """The pool's position-independent object code (``gc.export_c`` links it into a shared
    library; the copy loaded in this process is not PIC, see jit._target_machine)."""
    if not _state:
        raise RuntimeError("the worker pool is not loaded (jit.load_pool loads it)")
    with _lock:
        if "pic_obj" not in _state:
            _state["pic_obj"] = _state["compile_ir"](pool_ir(_state["triple"]), pic=True)
    return _state["pic_obj"]


def shutdown() -> None:
    """Stop and join the workers (waits for a running job); later calls run serially."""
    if _state:
        ctypes.CFUNCTYPE(None)(_state["addrs"]["gc_pool_shutdown"])()


def stats() -> dict:
    """{'workers': live worker threads, 'created': threads ever started, 'jobs': parallel
    jobs run, 'contended': calls that found the pool busy and ran serially, 'worker_chunks':
    chunks run by workers (the rest ran on the calling threads)}."""
    names = ("workers", "created", "jobs", "contended", "worker_chunks")
    if not _state:
        return dict.fromkeys(names, 0)
    out = (ctypes.c_int64 * 5)()
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_state["addrs"]["gc_pool_stats"])(out)
    return dict(zip(names, out))
