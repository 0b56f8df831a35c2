"""graphc's own GEMM (``graphc/backends/llvm/nativegemm.py``) and the loop prologue's
transpose of an invariant ``b`` (``graphc/backends/cpu/loop_invariant.py``).

The kernel is called directly (from the worker pool's object, where it lives) against numpy
in float64 for every edge: rows past a tile, columns past a vector block, K = 0, alpha and
beta (beta 0 never reads C, which may hold NaN), a sub-range of column blocks, row strides
larger than the row; then through the API on both targets (run-time M picking the kernel
or OpenBLAS, split over two threads, batched), and loops whose step multiplies by a
captured weight transposed (None batch, zero trips, gradients); the lean run of a program
with run-time dims.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as _dt
from graphc.backends.llvm import jit, nativegemm, pool, transposekernel
from graphc.backends.llvm import math as llvm_math


class _Args(ctypes.Structure):
    _fields_ = [
        (f, ctypes.c_double if f in ("alpha", "beta")
         else ctypes.c_void_p if f in ("a", "b", "c", "epi", "epi_ctx") else ctypes.c_int64)
        for f in nativegemm.FIELDS
    ]  # fmt: skip


_PART = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def _kernel(dt, ta):
    jit.load_pool()
    return _PART(pool._state["addrs"][nativegemm.symbol(dt, ta)])


def _call(a, b, c, ta=False, alpha=1.0, beta=0.0, blocks=None):
    """C = alpha * op(a) @ b + beta * C with the kernel; a, b, c may be views with row
    strides (their leading dimension)."""
    dt = _dt.float32 if a.dtype == np.float32 else _dt.float64
    m, n = c.shape
    k = b.shape[0]
    item = a.itemsize
    # one task per column block (all the rows); B in its row-major layout
    nb = nativegemm.block_columns(dt)
    args = _Args(m, n, k, alpha, beta, a.ctypes.data, a.strides[0] // item, b.ctypes.data,
                 b.strides[0] // item, c.ctypes.data, c.strides[0] // item, 1, 1,
                 None, None, nb)  # fmt: skip
    lo, hi = blocks if blocks is not None else (0, -(-n // nb))
    _kernel(dt, ta)(ctypes.addressof(args), lo, hi)


SHAPES = [(2, 1, 1), (3, 0, 5), (4, 17, 64), (5, 7, 65), (31, 33, 100), (32, 321, 130),
          (33, 8, 17), (64, 64, 48)]  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_kernel_matches_numpy(m, k, n, ta, dtype):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    want = (a.T if ta else a).astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    c = np.full((m, n), np.nan, dtype)  # beta 0: C is never read
    _call(a, b, c, ta)
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol * max(k, 1))
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    _call(a, b, c, ta, alpha=-2.0, beta=0.5)
    np.testing.assert_allclose(c, -2.0 * want + 0.5 * c0, rtol=tol, atol=tol * max(k, 1) * 4)


def test_kernel_strides_and_a_range_of_column_blocks():
    rng = np.random.default_rng(1)
    nb = nativegemm.block_columns(_dt.float32)
    m, k, n = 6, 9, 3 * nb + 5
    big_a = rng.standard_normal((m, k + 3)).astype(np.float32)
    big_b = rng.standard_normal((k, n + 7)).astype(np.float32)
    a, b = big_a[:, :k], big_b[:, :n]
    big_c = np.full((m, n + 2), 7.0, np.float32)
    c = big_c[:, :n]
    _call(a, b, c, blocks=(1, 3))  # columns [nb, 3 nb) only
    want = a.astype(np.float64) @ b
    np.testing.assert_allclose(c[:, nb : 3 * nb], want[:, nb : 3 * nb], rtol=1e-5, atol=1e-5)
    assert (c[:, :nb] == 7).all() and (c[:, 3 * nb :] == 7).all()
    assert (big_c[:, n:] == 7).all()  # nothing past the row's end is written


def _both(fetches, feeds, threads=None):
    want = gc.Session(target="reference").run(fetches, feeds)
    opts = gc.CompileOptions(cache_dir=None, threads=threads)
    with gc.Session(target="cpu", options=opts) as sess:
        got = sess.run(fetches, feeds)
    for w, v in zip(want, got):
        assert np.shape(v) == np.shape(w)
        np.testing.assert_allclose(v, w, rtol=2e-5, atol=2e-4)
    return got


@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_with_a_run_time_number_of_rows(threads):
    """One compiled product serves M = 1 (BLAS) and 2, 32, 64, 65 (the kernel); the
    32 x 321 x 1024 product is large enough to be split over two threads."""
    x = gc.placeholder(gc.float32, (None, None))
    w = gc.placeholder(gc.float32, (None, None))
    xt = gc.placeholder(gc.float32, (None, None))
    outs = [gc.matmul(x, w), gc.tanh(gc.matmul(xt, w, transpose_a=True)) + 1.0]
    rng = np.random.default_rng(2)
    for m, k, n in [(1, 5, 7), (2, 3, 4), (32, 321, 1024), (64, 40, 33), (65, 9, 70)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        feeds = {x: a, w: rng.standard_normal((k, n)).astype(np.float32), xt: a.T.copy()}
        _both(outs, feeds, threads)


def test_batched_product_with_few_rows():
    x = gc.placeholder(gc.float32, (None, None, 16))
    w = gc.placeholder(gc.float32, (None, 16, 40))
    rng = np.random.default_rng(3)
    feeds = {x: rng.standard_normal((3, 8, 16)).astype(np.float32),
             w: rng.standard_normal((3, 16, 40)).astype(np.float32)}  # fmt: skip
    _both([gc.matmul(x, w)], feeds)


def _rnn(transpose_b):
    xs = gc.placeholder(gc.float32, (None, None, 6))
    h0 = gc.placeholder(gc.float32, (None, 24))
    w = gc.constant(np.random.default_rng(4).standard_normal((24, 24)).astype(np.float32) / 5)
    u = gc.constant(np.random.default_rng(5).standard_normal((6, 24)).astype(np.float32) / 3)

    def step(h, x):
        return gc.tanh(gc.matmul(h, w, transpose_b=transpose_b) + gc.matmul(x, u))

    hs = gc.scan(step, xs, initializer=h0)
    loss = gc.reduce_sum(hs * hs)
    return xs, h0, w, hs, loss


@pytest.mark.parametrize("trips,batch", [(5, 3), (0, 3), (4, 1), (3, 40)])
def test_scan_multiplying_by_a_transposed_captured_weight(trips, batch):
    """The step's ``h @ w^T`` reads a transpose of ``w`` the prologue makes once a run;
    values and gradients equal the reference for every batch size (a None dim) and trip
    count, zero included."""
    xs, h0, w, hs, loss = _rnn(True)
    gw, gh0 = gc.gradients(loss, [w, h0])
    rng = np.random.default_rng(trips * 10 + batch)
    feeds = {xs: rng.standard_normal((trips, batch, 6)).astype(np.float32),
             h0: rng.standard_normal((batch, 24)).astype(np.float32)}  # fmt: skip
    _both([hs, loss, gw, gh0], feeds)


def test_the_transpose_of_the_weight_moves_to_the_prologue():
    xs, h0, w, hs, loss = _rnn(True)
    sess = gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None))
    feeds = {xs: np.ones((2, 3, 6), np.float32), h0: np.ones((3, 24), np.float32)}
    exe = sess.compile([hs], list(feeds))
    prologue = [k for k in exe.kernels if "/prologue/" in k.name]
    assert any("Transpose" in k.op_types for k in prologue), [k.name for k in exe.kernels]
    body = [k for k in exe.kernels if "/body/" in k.name]
    assert not any("Transpose" in k.op_types for k in body)
    sess.close()


def test_lean_run_per_dims_value_checks_every_feed():
    """A program with run-time dims and no variables runs through a lean path per dims
    value (llvm/runtime.py ``_run_dims``): batch sizes alternating, feeds that are lists or
    strided views, and a feed whose shape contradicts the others is still refused."""
    x = gc.placeholder(gc.float32, (None, 3))
    w = gc.placeholder(gc.float32, (3, None))
    v = gc.placeholder(gc.float32, (None,))
    y = gc.tanh(gc.matmul(x, w)) + v
    rng = np.random.default_rng(6)
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        for b, n in [(2, 4), (5, 4), (2, 4), (5, 7)]:
            a = rng.standard_normal((b, 3)).astype(np.float32)
            m = rng.standard_normal((3, n)).astype(np.float32)
            c = rng.standard_normal(n).astype(np.float32)
            np.testing.assert_allclose(sess.run(y, {x: a, w: m, v: c}), np.tanh(a @ m) + c,
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
        wide = rng.standard_normal((3, 8)).astype(np.float32)
        got = sess.run(y, {x: [[1.0, 2.0, 3.0]], w: wide[:, ::2], v: np.zeros(4, np.float32)})
        np.testing.assert_allclose(got, np.tanh(np.array([[1.0, 2, 3]]) @ wide[:, ::2]),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
        with pytest.raises(gc.errors.InvalidArgumentError):
            sess.run(y, {x: np.ones((2, 3), np.float32), w: np.ones((3, 4), np.float32),
                         v: np.ones(5, np.float32)})  # fmt: skip


def test_the_kernel_is_called_only_where_avx512_holds_its_tile():
    """Programs call the kernel when the target has AVX-512 (its 32 vector registers hold
    the 24 accumulators), else OpenBLAS alone; a static M of 1 (a row vector: OpenBLAS's
    gemv) unless B is large, more than SMALL_M_MAX rows with a last column block mostly
    padding (N = 32) or a transposed A with more than TA_K_MAX terms and DEEP_WIDE_M_MAX rows
    never does (more than DEEP_M_MAX rows only for a C of at most DEEP_MN_MAX elements); a
    transposed B is transposed first."""
    x = gc.placeholder(gc.float32, (None, 16))
    w = gc.placeholder(gc.float32, (16, 32))
    big = gc.placeholder(gc.float32, (4096, 16))
    w64 = gc.placeholder(gc.float32, (16, 64))
    row = gc.placeholder(gc.float32, (1, 16))
    k = nativegemm.TA_K_MAX + 1
    xt = gc.placeholder(gc.float32, (k, nativegemm.DEEP_WIDE_M_MAX + 1))
    xt_narrow = gc.placeholder(gc.float32, (k, 8))
    xt_wide = gc.placeholder(gc.float32, (k, nativegemm.DEEP_M_MAX + 1))
    wt = gc.placeholder(gc.float32, (k, 32))
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        small_ir = sess.compile(gc.matmul(x, w), [x, w]).dump_ir("llvm")
        big_ir = sess.compile(gc.matmul(big, w64), [big, w64]).dump_ir("llvm")
        thin_ir = sess.compile(gc.matmul(big, w), [big, w]).dump_ir("llvm")
        row_ir = sess.compile(gc.matmul(row, w), [row, w]).dump_ir("llvm")
        wide = gc.placeholder(gc.float32, (16, nativegemm.GEMV_MIN_ELEMENTS // 16))
        gemv_ir = sess.compile(gc.matmul(row, wide), [row, wide]).dump_ir("llvm")
        deep_ir = sess.compile(gc.matmul(xt, wt, transpose_a=True), [xt, wt]).dump_ir("llvm")
        narrow_ir = sess.compile(gc.matmul(xt_narrow, wt, transpose_a=True),
                                 [xt_narrow, wt]).dump_ir("llvm")  # fmt: skip
        wt64 = gc.placeholder(gc.float32, (k, 64))
        wide_ir = sess.compile(gc.matmul(xt_wide, wt64, transpose_a=True),
                               [xt_wide, wt64]).dump_ir("llvm")  # fmt: skip
        wtb = gc.placeholder(gc.float32, (64, 16))
        tb_ir = sess.compile(gc.matmul(big, wtb, transpose_b=True), [big, wtb]).dump_ir("llvm")
        few_tb_ir = sess.compile(gc.matmul(x, wtb, transpose_b=True), [x, wtb]).dump_ir("llvm")
    avx512 = bool(llvm_math.HOST["avx512f"])
    assert ("gc_gemm_native_s0" in small_ir) == avx512
    assert ("gc_gemm_native_s0" in big_ir) == avx512
    assert "gc_gemm_native" not in row_ir
    assert ("gc_gemm_native_s0" in gemv_ir) == avx512
    assert "gc_gemm_native" not in thin_ir
    assert "gc_gemm_native" not in deep_ir
    assert ("gc_gemm_native_s1" in narrow_ir) == avx512
    assert ("gc_gemm_native_s1" in wide_ir) == avx512
    # B transposed: into panels first, for TB_M_MIN rows or more (a run-time M may be)
    assert ("gc_transpose_s" in tb_ir) == avx512
    assert ("gc_transpose_s" in few_tb_ir) == avx512


class _TArgs(ctypes.Structure):
    _fields_ = [(f, ctypes.c_void_p if f in ("src", "dst") else ctypes.c_int64)
                for f in transposekernel.T_FIELDS]  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r,c", [(1, 1), (16, 16), (17, 33), (64, 7), (5, 40), (130, 70), (0, 3)])
def test_transpose_kernel_plain_and_in_panels(r, c, dtype):
    """dst = src^T from a strided src, whole blocks in registers and the edges element by
    element; in panels of 32 rows of src (the packed B of a transposed product) every
    element lands at its panel's row and column, and nothing outside is written."""
    dt = _dt.float32 if dtype == np.float32 else _dt.float64
    jit.load_pool()
    fn = _PART(pool._state["addrs"][transposekernel.transpose_symbol(dt)])
    w = nativegemm.lanes(dt)
    rng = np.random.default_rng(r * 100 + c)
    src = rng.standard_normal((r, c + 3)).astype(dtype)[:, :c]
    dst = np.full((c, r + 2), np.nan, dtype)
    args = _TArgs(src.ctypes.data, src.strides[0] // src.itemsize, dst.ctypes.data, r + 2, r, c,
                  1 << 40, 0)  # fmt: skip
    fn(ctypes.addressof(args), 0, -(-r // w))
    assert np.array_equal(dst[:, :r], src.T)
    assert np.isnan(dst[:, r:]).all()
    panel = 32
    npanels = -(-r // panel)
    packed = np.full(npanels * c * panel + 5, np.nan, dtype)
    args = _TArgs(src.ctypes.data, src.strides[0] // src.itemsize, packed.ctypes.data, panel, r,
                  c, panel, c * panel)  # fmt: skip
    fn(ctypes.addressof(args), 0, -(-r // w))
    for q in range(npanels):
        block = packed[q * c * panel : (q + 1) * c * panel].reshape(c, panel)
        rows = src[q * panel : (q + 1) * panel]
        assert np.array_equal(block[:, : len(rows)], rows.T)
        assert np.isnan(block[:, len(rows) :]).all()
    assert np.isnan(packed[npanels * c * panel :]).all()


def test_kernel_terms_in_chunks_apply_beta_once():
    """K over several chunks of KC terms: the first chunk applies alpha and beta, the later
    ones add to C (beta is not applied again)."""
    rng = np.random.default_rng(9)
    m, k, n = 13, 2 * nativegemm.KC + 37, 70
    a = rng.standard_normal((m, k)).astype(np.float64)
    b = rng.standard_normal((k, n)).astype(np.float64)
    c0 = rng.standard_normal((m, n))
    c = c0.copy()
    _call(a, b, c, alpha=0.5, beta=-3.0)
    np.testing.assert_allclose(c, 0.5 * (a @ b) - 3.0 * c0, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    "m,k,n,ta,tb",
    [
        (300, 50, 200, False, False),  # tasks of row blocks, the epilogue per task
        (257, 33, 129, False, True),  # B transposed into panels first (odd N and K)
        (256, 600, 64, True, True),  # both transposed, K in chunks
        (1000, 20, 1000, False, False),  # many tasks
        (70, 8, 640, False, True),  # B transposed, too few rows: OpenBLAS
    ],
)
def test_large_products_with_an_epilogue(m, k, n, ta, tb, threads):
    """Products past SMALL_M_MAX rows through the API, with a bias + ReLU epilogue fused per
    task, against the reference."""
    x = gc.placeholder(gc.float32, (None, None))
    w = gc.placeholder(gc.float32, (None, None))
    bias = gc.placeholder(gc.float32, (None,))
    y = gc.nn.relu(gc.matmul(x, w, transpose_a=ta, transpose_b=tb) + bias)
    rng = np.random.default_rng(m + k + n)
    feeds = {x: rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32),
             w: rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32),
             bias: rng.standard_normal(n).astype(np.float32)}  # fmt: skip
    _both([y], feeds, threads)


def test_batched_items_with_a_transposed_b():
    """Each item's B is transposed into the same scratch before its product."""
    x = gc.placeholder(gc.float32, (3, 260, 40))
    w = gc.placeholder(gc.float32, (3, 72, 40))
    rng = np.random.default_rng(11)
    feeds = {x: rng.standard_normal((3, 260, 40)).astype(np.float32),
             w: rng.standard_normal((3, 72, 40)).astype(np.float32)}  # fmt: skip
    _both([gc.matmul(x, w, transpose_b=True)], feeds)
    _both([gc.matmul(x, w, transpose_b=True)], feeds, threads=1)


@pytest.mark.parametrize("threads", [1, 2])
def test_weight_gradient_with_many_terms(threads):
    """A transposed A with more than TA_K_MAX terms (``X^T @ dY``): tasks of all the rows,
    the columns split over the threads, K in chunks; the epilogue runs after."""
    k = nativegemm.TA_K_MAX + 77
    x = gc.placeholder(gc.float32, (k, 40))
    dy = gc.placeholder(gc.float32, (k, 150))
    y = gc.matmul(x, dy, transpose_a=True) * 0.5 - 1.0
    rng = np.random.default_rng(12)
    feeds = {x: rng.standard_normal((k, 40)).astype(np.float32),
             dy: rng.standard_normal((k, 150)).astype(np.float32)}  # fmt: skip
    _both([y], feeds, threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(300, 1100, 70), (517, 2049, 33), (258, 1025, 64), (7, 1500, 5)])
def test_deep_transposed_a_through_packed_panels(m, k, n, dtype):
    """A transposed A with more than TA_K_MAX terms goes through the panel scratch
    (PANEL_ROWS rows of KC terms at a time, rows PANEL_LD apart): several panels, a last one
    with rows after its whole tiles, a last chunk of fewer terms, A a view whose rows are
    longer than M; alpha and beta applied once."""
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((k, m + 5)).astype(dtype)[:, 3 : 3 + m]
    b = rng.standard_normal((k, n)).astype(dtype)
    want = a.T.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    c = np.full((m, n), np.nan, dtype)
    _call(a, b, c, ta=True)
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol * k)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    _call(a, b, c, ta=True, alpha=-2.0, beta=0.5)
    np.testing.assert_allclose(c, -2.0 * want + 0.5 * c0, rtol=tol, atol=tol * k * 4)


@pytest.mark.parametrize("threads", [1, 2])
def test_weight_gradient_of_many_rows_and_few_columns(threads):
    """A weight's gradient with more than DEEP_M_MAX rows and a C of at most DEEP_MN_MAX
    elements (W9's ``[4096, 1024]^T x [4096, 256]``, scaled down) takes the kernel in a
    session, with an epilogue, against the reference."""
    k, m, n = nativegemm.TA_K_MAX + 100, nativegemm.DEEP_M_MAX + 300, 130
    x = gc.placeholder(gc.float32, (k, m))
    dy = gc.placeholder(gc.float32, (k, n))
    y = gc.matmul(x, dy, transpose_a=True) * 0.5 - 1.0
    rng = np.random.default_rng(13)
    feeds = {x: rng.standard_normal((k, m)).astype(np.float32),
             dy: rng.standard_normal((k, n)).astype(np.float32)}  # fmt: skip
    _both([y], feeds, threads)


def test_float64_products_through_the_kernel():
    """float64: 8-lane vectors, 32-column blocks, the 8 x 8 register transpose."""
    x = gc.placeholder(gc.float64, (None, None))
    w = gc.placeholder(gc.float64, (None, None))
    rng = np.random.default_rng(13)
    a = rng.standard_normal((300, 70))
    for tb in (False, True):
        b = rng.standard_normal((64, 70) if tb else (70, 64))
        want = a @ (b.T if tb else b)
        with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
            got = sess.run(gc.matmul(x, w, transpose_b=tb), {x: a, w: b})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_row_vector_times_a_large_constant(threads):
    """A classifier at batch 1: a row vector times a constant B of GEMV_MIN_ELEMENTS, the
    column blocks split over the threads, with a bias epilogue."""
    rng = np.random.default_rng(14)
    k = 1024
    n = nativegemm.GEMV_MIN_ELEMENTS // k + 40  # a last column block in part
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = gc.placeholder(gc.float32, (None, k))
    y = gc.matmul(x, gc.constant(w)) + 1.0
    _both([y], {x: rng.standard_normal((1, k)).astype(np.float32)}, threads)
