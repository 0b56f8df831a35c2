"""The pool's hot state (``gc_pool_hot``, graphc/backends/llvm/pool.py) and the lower split
threshold of parallel loops while it holds (``loops.PARALLEL_MIN_WORK_HOT``): workers that
spin after a job make a small loop worth splitting. Results are the same whichever way a
loop runs."""

import ctypes
import time

import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import jit, loops, pool

HOT = ctypes.CFUNCTYPE(ctypes.c_int32)
BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
PARALLEL_FOR = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64
)
needs_worker = pytest.mark.skipif(pool.worker_limit() < 1, reason="one CPU: no workers")


def _parallel_for():
    jit.load_pool()
    return PARALLEL_FOR(pool._state["addrs"]["gc_parallel_for"])


def _hot() -> int:
    jit.load_pool()
    return HOT(pool._state["addrs"]["gc_pool_hot"])()


@BODY
def _nap(ctx, s, e):
    time.sleep(0.0005)  # long enough for a spinning worker to claim the other chunk


@needs_worker
def test_hot_between_jobs_then_cold_once_the_workers_park():
    """Hot after a job a worker helped with, while the workers spin; cold once they park."""
    run = _parallel_for()
    seen = False
    deadline = time.monotonic() + 5.0
    while not seen and time.monotonic() < deadline:  # a loaded machine may delay a wake-up
        for _ in range(50):
            run(ctypes.cast(_nap, ctypes.c_void_p), None, 0, 64, 2)
            seen = seen or _hot() == 1
    assert seen
    deadline = time.monotonic() + 5.0
    while _hot() and time.monotonic() < deadline:  # they park after WORKER_SPIN_NS
        time.sleep(0.01)
    assert _hot() == 0


def test_hot_threshold_is_below_the_cold_one():
    assert 0 < loops.PARALLEL_MIN_WORK_HOT < loops.PARALLEL_MIN_WORK


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 7, 32, 33])
def test_small_loops_after_a_split_gemm_match_numpy(threads, rows):
    """A GEMM big enough to split, then gate-sized elementwise and row kernels (as in an
    LSTM step): with the pool hot they may split; every result equals numpy's."""
    rng = np.random.default_rng(rows)
    x = gc.placeholder(gc.float32, (None, 321))
    w = rng.standard_normal((321, 1024)).astype(np.float32) * 0.05
    z = gc.matmul(x, gc.constant(w))
    i, j, f, o = gc.split(z, 4, axis=1)
    c = gc.sigmoid(f + 1.0) * gc.tanh(i) + gc.sigmoid(j) * gc.tanh(o)
    h = gc.tanh(c) * gc.sigmoid(o)
    s = gc.reduce_sum(h * h, axis=1)
    a = rng.standard_normal((rows, 321)).astype(np.float32)
    sess = gc.Session(options=gc.CompileOptions(threads=threads, cache_dir=None))
    zz = a @ w
    ii, jj, ff, oo = np.split(zz, 4, axis=1)

    def sig(v):
        return 1 / (1 + np.exp(-v))

    cc = sig(ff + 1) * np.tanh(ii) + sig(jj) * np.tanh(oo)
    hh = np.tanh(cc) * sig(oo)
    for _ in range(20):  # later runs find the pool hot
        got_c, got_h, got_s = sess.run([c, h, s], {x: a})
        np.testing.assert_allclose(got_c, cc, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_h, hh, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_s, (hh * hh).sum(1), rtol=1e-4, atol=1e-4)
    assert "gc_pool_hot" in sess.compile([c, h, s], [x]).dump_ir("llvm")
