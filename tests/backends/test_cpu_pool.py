"""The cpu target's process-wide worker pool (graphc/backends/llvm/pool.py)."""

import ctypes
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import blas, jit, pool

ROOT = Path(__file__).resolve().parents[2]
BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
PARALLEL_FOR = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64
)


#: tests that count worker threads need a CPU for one
needs_worker = pytest.mark.skipif(
    pool.worker_limit() < 1, reason="one CPU: the pool has no workers"
)


def _parallel_for():
    jit.load_pool()
    return PARALLEL_FOR(pool._state["addrs"]["gc_parallel_for"])


def _run_chunks(lo, trips, n):
    """Call gc_parallel_for directly with a Python body recording each chunk and its thread."""
    chunks = []

    @BODY
    def body(ctx, s, e):
        chunks.append((s, e, threading.get_ident()))

    _parallel_for()(ctypes.cast(body, ctypes.c_void_p), None, lo, trips, n)
    return chunks


@pytest.mark.parametrize(
    "lo,trips,n", [(0, 10, 2), (5, 7, 3), (0, 3, 8), (-4, 1, 2), (0, 0, 2), (0, 1000, 1),
                   (0, 100, 300), (10, 1 << 20, 2)],
)  # fmt: skip
def test_chunks_cover_the_range_exactly_once(lo, trips, n):
    chunks = _run_chunks(lo, trips, n)
    covered = sorted((s, e) for s, e, _ in chunks)
    assert all(s < e for s, e in covered)  # empty chunks are not run
    pos = lo
    for s, e in covered:
        assert s == pos
        pos = e
    assert pos == lo + trips
    assert len(covered) <= max(n, 1)
    # never more threads than CPUs, however many chunks were asked for
    assert len({t for _, _, t in chunks}) <= pool.worker_limit() + 1
    assert pool.stats()["workers"] <= pool.worker_limit()


@needs_worker
def test_pool_threads_are_created_once_and_reused():
    """Many parallel jobs over several executables: the pool starts its workers once."""
    x = gc.placeholder(gc.float32, (None, None))
    w = gc.placeholder(gc.float32, (None, None))
    y = gc.matmul(x, w)
    z = gc.tanh(x) * 3.0 + 1.0
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 512)).astype(np.float32)
    b = rng.standard_normal((512, 384)).astype(np.float32)
    big = rng.standard_normal((1 << 21,)).astype(np.float32).reshape(1024, -1)
    opts = gc.CompileOptions(threads=2, cache_dir=None)
    s1 = gc.Session(options=opts)
    s2 = gc.Session(options=gc.CompileOptions(threads=2, cache_dir=None, fusion=False))
    s1.run([y, z], {x: a, w: b})  # the first parallel job starts the worker
    before = pool.stats()
    assert before["workers"] >= 1 and before["created"] >= 1
    for _ in range(5):
        for s in (s1, s2):
            got_y = s.run(y, {x: a, w: b})
            got_z = s.run(z, {x: big})
            np.testing.assert_allclose(got_y, a @ b, rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(got_z, np.tanh(big) * 3 + 1, rtol=1e-5, atol=1e-5)
    after = pool.stats()
    assert after["created"] == before["created"]
    assert after["jobs"] - before["jobs"] >= 20  # GEMM split + parallel loop, 2 sessions x 5


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize(
    "m,n,k,ta,tb",
    [
        (2 * blas.GEMM_ROW_SPLIT_MIN - 1, 1024, 129, 0, 0),  # just under the row split: columns
        (2 * blas.GEMM_ROW_SPLIT_MIN, 1023, 129, 1, 0),  # at it: rows
        (257, 509, 131, 0, 1),  # odd sizes, rows
        (61, 2053, 67, 1, 1),  # few rows, odd columns
        (1 << 10, blas.GEMM_PARALLEL_MIN_FLOPS >> 11, 2, 0, 0),  # K=2 exactly at the threshold
        (1, blas.GEMM_PARALLEL_MIN_FLOPS, 1, 0, 0),  # one row: columns
        (64, 64, (blas.GEMM_PARALLEL_MIN_FLOPS >> 12) - 1, 0, 1),  # just under: one thread
    ],
)
def test_gemm_split_matches_reference(m, n, k, ta, tb, threads):
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    pa = gc.placeholder(gc.float32, a.shape)
    pb = gc.placeholder(gc.float32, b.shape)
    y = gc.matmul(pa, pb, transpose_a=bool(ta), transpose_b=bool(tb))
    want = gc.Session(target="reference").run(y, {pa: a, pb: b})
    s = gc.Session(options=gc.CompileOptions(threads=threads, cache_dir=None))
    s.compile(y, [pa, pb])
    jobs = pool.stats()["jobs"]
    got = s.run(y, {pa: a, pb: b})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.sqrt(k))
    by_cols = m < threads * blas.GEMM_ROW_SPLIT_MIN and n > m
    split = m * n * k >= blas.GEMM_PARALLEL_MIN_FLOPS and (n if by_cols else m) >= 64
    # one job on the pool (two when the native kernel first transposes B), or none
    ran = pool.stats()["jobs"] - jobs
    assert ran in ((1, 2) if split and tb else (int(split),))


def test_concurrent_sessions_from_python_threads():
    """Threads running sessions at once: one owns the pool, the others run serially; every
    result is right and nothing deadlocks."""
    rng = np.random.default_rng(1)
    x = gc.placeholder(gc.float32, (None, 512))
    w = gc.Variable(rng.standard_normal((512, 512)).astype(np.float32) * 0.05)
    y = gc.nn.relu(gc.matmul(x, w)) + gc.exp(x * 0.1)
    init = gc.global_variables_initializer()
    sessions = []
    for _ in range(4):
        s = gc.Session(options=gc.CompileOptions(threads=2, cache_dir=None))
        s.run(init)
        sessions.append(s)
    wv = sessions[0].run(w)
    errors = []

    def work(s, seed):
        r = np.random.default_rng(seed)
        try:
            for _ in range(15):
                a = r.standard_normal((384, 512)).astype(np.float32)
                got = s.run(y, {x: a})
                want = np.maximum(a @ wv, 0) + np.exp(a * 0.1)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, i)) for i, s in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a session thread hung"
    assert not errors, errors[0]


def test_nested_call_runs_serially_instead_of_deadlocking():
    """A body that itself calls gc_parallel_for finds the pool busy and runs inline."""
    inner_chunks = []

    @BODY
    def inner(ctx, s, e):
        inner_chunks.append((s, e))

    @BODY
    def outer(ctx, s, e):
        _parallel_for()(ctypes.cast(inner, ctypes.c_void_p), None, s * 10, (e - s) * 10, 2)

    before = pool.stats()["contended"]
    _parallel_for()(ctypes.cast(outer, ctypes.c_void_p), None, 0, 4, 2)
    assert sorted(inner_chunks) == [(0, 20), (20, 40)]  # one serial call per outer chunk
    assert pool.stats()["contended"] - before == 2


def test_kernel_error_mid_run_leaves_variables_unchanged():
    """A status error raised after large parallel kernels wrote the new value of a variable:
    the run fails, the variable keeps its old value, and the pool keeps working."""
    rng = np.random.default_rng(2)
    v0 = rng.standard_normal((512, 512)).astype(np.float32)
    x = gc.placeholder(gc.float32, (None, 512))
    v = gc.Variable(v0)
    h = gc.matmul(x, v)
    upd = gc.assign_sub(v, 0.01 * gc.matmul(x, h, transpose_a=True))
    with gc.control_dependencies([upd]):
        out = gc.check_numerics(gc.reduce_sum(h, axis=1), "rows")
    s = gc.Session(options=gc.CompileOptions(threads=2, cache_dir=None))
    s.run(gc.global_variables_initializer())
    good = rng.standard_normal((512, 512)).astype(np.float32)
    bad = good.copy()
    bad[300, 7] = np.inf
    with pytest.raises(gc.errors.InvalidArgumentError, match="rows"):
        s.run(out, {x: bad})
    np.testing.assert_array_equal(s.run(v), v0)
    s.run(out, {x: good})
    want = v0 - 0.01 * (good.T @ (good @ v0))
    np.testing.assert_allclose(s.run(v), want, rtol=1e-3, atol=1e-3)


def _python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


PREAMBLE = """
    import os, sys, threading
    import numpy as np
    import graphc as gc
    from graphc.backends.llvm import pool
    x = gc.placeholder(gc.float32, (None, 256))
    w = gc.placeholder(gc.float32, (256, 256))
    y = gc.matmul(x, w)
    s = gc.Session(options=gc.CompileOptions(threads=2, cache_dir=None))
    a = np.random.default_rng(0).standard_normal((1024, 256)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
    def check():
        np.testing.assert_allclose(s.run(y, {x: a, w: b}), a @ b, rtol=1e-4, atol=1e-3)
"""


@needs_worker
def test_pool_after_fork_starts_its_own_workers():
    proc = _python(
        PREAMBLE
        + """
    check()
    assert pool.stats()["workers"] == 1
    pid = os.fork()
    if pid == 0:
        try:
            check()
            st = pool.stats()
            # the parent's worker does not exist here: the child started its own
            os._exit(0 if st["workers"] == 1 and st["created"] == 2 else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    check()
    print("child", os.waitstatus_to_exitcode(status), "parent", pool.stats()["created"])
    """
    )
    assert proc.returncode == 0, proc.stderr
    assert "child 0 parent 1" in proc.stdout


def test_exit_while_threads_run_sessions():
    """Interpreter exit with daemon threads still running parallel jobs: a clean exit."""
    proc = _python(
        PREAMBLE
        + """
    def loop():
        while True:
            check()
    for _ in range(3):
        threading.Thread(target=loop, daemon=True).start()
    check()
    print("ok")
    """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@needs_worker
def test_shutdown_joins_workers_and_later_runs_are_serial():
    proc = _python(
        PREAMBLE
        + """
    check()
    assert pool.stats()["workers"] == 1
    pool.shutdown()
    jobs = pool.stats()["jobs"]
    check()
    st = pool.stats()
    assert st["workers"] == 0 and st["jobs"] == jobs, st
    print("ok")
    """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_program_modules_call_the_pool_and_start_no_threads():
    x = gc.placeholder(gc.float32, (None, None))
    y = gc.matmul(x, x) + gc.exp(x)
    s = gc.Session(options=gc.CompileOptions(threads=2, cache_dir=None))
    ir = s.compile(y, [x]).dump_ir("llvm")
    assert "declare void @gc_parallel_for(ptr" in ir
    assert "pthread" not in ir


def test_pool_object_code_comes_from_the_disk_cache_and_survives_a_corrupt_entry(tmp_path):
    """A new process loads the pool's object code from the default disk cache (compiling it
    costs every process's first compile 25-40 ms); a damaged entry is compiled again."""
    import json
    import os

    script = """
        import numpy as np
        import graphc as gc
        x = gc.placeholder(gc.float32, (None,))
        print(gc.Session().run(gc.exp(x) * 2, {x: np.zeros(3, np.float32)}).tolist())
    """
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path)}
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip

    def pool_entries():
        found = []
        for p in tmp_path.glob("cpu-*.gcx"):
            data = p.read_bytes()
            if b'"kind":"worker pool"' in data:
                found.append(p)
        return found

    first = run()
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == [2.0, 2.0, 2.0]
    (entry,) = pool_entries()
    stamp = entry.stat().st_mtime_ns
    second = run()  # a cache hit: the entry is read, not rewritten
    assert second.returncode == 0 and json.loads(second.stdout) == [2.0, 2.0, 2.0]
    assert entry.stat().st_mtime_ns == stamp
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the checksum no longer matches: recompiled, rewritten
    entry.write_bytes(bytes(data))
    third = run()
    assert third.returncode == 0 and json.loads(third.stdout) == [2.0, 2.0, 2.0], third.stderr
    assert pool_entries() == [entry] and entry.read_bytes() != bytes(data)
