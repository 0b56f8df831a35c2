"""Batched GEMMs on the cpu target whose items are too small to split by rows are split by
whole items over the threads (graphc/backends/llvm/blas.py ``_gemm_items``, or
nativegemm.py's items kernel): a thread runs whole items, one BLAS or kernel call each.
Every transpose combination, float32 and float64, a run-time batch size, batches too small
for the split and items big enough to be split by rows, against numpy; with one thread the
items run serially."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import blas
from graphc.backends.llvm import math as llvm_math


def _batched(dtype, a_shape, b_shape, ta, tb, threads, dynamic=False):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(dtype)
    b = rng.standard_normal(b_shape).astype(dtype)
    g = gc.Graph()
    with g.as_default():
        gd = gc.float32 if dtype == np.float32 else gc.float64
        pa = gc.placeholder(gd, (None,) * len(a_shape) if dynamic else a_shape)
        pb = gc.placeholder(gd, (None,) * len(b_shape) if dynamic else b_shape)
        y = gc.matmul(pa, pb, transpose_a=ta, transpose_b=tb)
    opts = gc.CompileOptions(threads=threads, cache_dir=None)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(y, {pa: a, pb: b})
        ir = sess.compile(y, [pa, pb]).dump_ir("llvm")
    at = np.swapaxes(a, -1, -2) if ta else a
    bt = np.swapaxes(b, -1, -2) if tb else b
    want = np.matmul(at.astype(np.float64), bt.astype(np.float64))
    return got, want, ir


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_items_split_over_threads_equal_numpy(ta, tb, dtype):
    # 2 x 8 items of 48 x 40 x 56: too few multiply-adds per item to split its rows, enough
    # together to split the batch
    m, n, k = 48, 40, 56
    a_shape = (2, 8) + ((k, m) if ta else (m, k))
    b_shape = (2, 8) + ((n, k) if tb else (k, n))
    assert 16 * m * n * k >= blas.GEMM_PARALLEL_MIN_FLOPS > m * n * k
    got, want, ir = _batched(dtype, a_shape, b_shape, ta, tb, threads=2)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    # whole items per thread: graphc's own kernel (AVX-512; a transposed B transposed per
    # item, not both transposed), else OpenBLAS
    native = bool(llvm_math.HOST["avx512f"]) and not (ta and tb)
    assert ("gc_gemm_native_items" if native else "gc.gemm_items") in ir


@pytest.mark.parametrize("n,k", [(130, 56), (8000, 1), (300, 120), (17, 520)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_items_with_b_transposed_equal_numpy(n, k, dtype):
    """Items with B transposed: each item's B^T goes into panels on the thread's stack (N
    past a panel, one term, panels past nativegemm.ITEMS_TB_SCRATCH_MAX bytes: OpenBLAS per
    item instead)."""
    m = 24
    got, want, _ = _batched(dtype, (6, m, k), (6, n, k), False, True, threads=2)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    got, want, _ = _batched(dtype, (6, m, k), (6, n, k), False, True, threads=2, dynamic=True)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def test_run_time_batch_and_sizes():
    got, want, _ = _batched(np.float32, (12, 64, 72), (12, 80, 72), False, True, 2,
                            dynamic=True)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # a batch below the split's thresholds (and an empty one) take the per-item path
    for shapes in (((3, 16, 8), (3, 8, 4)), ((0, 16, 8), (0, 8, 4)), ((5, 0, 8), (5, 8, 4))):
        got, want, _ = _batched(np.float32, *shapes, False, False, 2, dynamic=True)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_large_items_are_split_by_rows_and_one_thread_runs_serially():
    # 2 items of 256 x 256 x 256: each big enough for its rows to be split
    for threads in (1, 2):
        got, want, _ = _batched(np.float32, (2, 256, 256), (2, 256, 256), False, False, threads)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False)])
def test_items_whose_rows_could_split_run_whole_on_the_native_kernel(ta, tb):
    """16 items of 128 x 128 x 64 on 2 threads (W9's attention shape): each item's rows could
    be split, but with blas.ITEMS_PER_THREAD items a thread graphc's kernel runs whole items."""
    m, n, k = 128, 128, 64
    assert 16 >= 2 * blas.ITEMS_PER_THREAD and m <= blas.ITEMS_MAX_ROWS
    a_shape = (16,) + ((k, m) if ta else (m, k))
    b_shape = (16,) + ((n, k) if tb else (k, n))
    for dynamic in (False, True):
        got, want, ir = _batched(np.float32, a_shape, b_shape, ta, tb, 2, dynamic=dynamic)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        if llvm_math.HOST["avx512f"] and not dynamic:  # (run-time batches: item by item)
            assert "gc_gemm_native_items" in ir
