"""GEMM epilogues run inside the GEMM's row chunks (backends/llvm/epilogue.py): results equal
numpy whether the fused path or the fallback (columns split, batches, partial loops) runs,
and the fusion is only chosen when no chunk can see another chunk's rows."""

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as dt
from graphc.backends.llvm import compile_kernel_program
from graphc.backends.llvm.epilogue import ROW_EPILOGUES, plan_row_epilogues, row_epilogue
from graphc.backends.llvm.render import Layout, Renderer
from graphc.expr import Const, Dim, Load, Math, Var, i64
from graphc.kernel.ir import Buffer, Kernel, KernelProgram, LibCall, Loop, Store
from graphc.runtime_state import RunContext

i64t = dt.int64


def _program(d, m, n, k, ta, batch=1, stop=None, c_index=None, dyn=False):
    """gemm into c, then ``c[i] = max(c[i] + bias[i % n], 0) - 0.25 * old[i]`` and
    ``e[i] = 2 * c[i]`` in one parallel loop (the shape of a bias+relu or SGD epilogue)."""
    iv = Var("i", i64t)
    mm = Dim("m") if dyn else i64(m)
    mn = Math.MUL(mm, i64(n))
    total = Math.MUL(mn, i64(batch))
    c = Load("c", c_index if c_index is not None else iv, d)
    v = Math.ADD(c, Load("bias", Math.MOD(iv, i64(n)), d))
    v = Math.SUB(Math.MAX(v, Const(0.0, d)), Math.MUL(Const(0.25, d), Load("old", iv, d)))
    loop = Loop("i", i64(0), stop if stop is not None else total, (
        Store("c", iv, v), Store("e", iv, Math.MUL(Const(2.0, d), Load("c", iv, d)))),
        parallel=True)  # fmt: skip
    ka = Math.MUL(mm, i64(k))
    call = LibCall("gemm", (
        "a", "b", "c", Const(ta, i64t), Const(0, i64t), mm, i64(n), i64(k), i64(batch),
        ka, i64(k * n), mn, Const(1.0, dt.float64), Const(0.0, dt.float64),
        i64(0), i64(0), i64(0)))  # fmt: skip
    size = Math.MUL(total, i64(1))
    # the cpu backend's Kernel IR pass decides which GEMMs take their epilogue per row chunk
    return plan_row_epilogues(KernelProgram(
        buffers={
            "a": Buffer("a", d, (Math.MUL(ka, i64(batch)),), "input"),
            "b": Buffer("b", d, (i64(k * n * batch),), "input"),
            "bias": Buffer("bias", d, (i64(n),), "input"),
            "old": Buffer("old", d, (Math.MUL(mm, i64(batch)), i64(n)), "input"),
            "c": Buffer("c", d, (size,), "output"),
            "e": Buffer("e", d, (size,), "output"),
        },
        kernels=[Kernel("mm", (call, loop))],
        inputs=("a", "b", "bias", "old"),
        outputs=("c", "e"),
        dims={"m": (3, 0)} if dyn else {},
    ))  # fmt: skip


def _want(a, b, bias, old, ta, stop):
    c = np.matmul(np.swapaxes(a, -1, -2) if ta else a, b).astype(np.float64)
    flat = c.reshape(-1).copy()
    ep = np.maximum(c + bias, 0) - 0.25 * old.reshape(c.shape)
    ep = ep.reshape(-1)
    flat[:stop] = ep[:stop]
    return flat, 2 * flat


CASES = {  # m, n, k, batch: row split (fused), thin (columns split), batches, small (serial)
    "rows": (301, 77, 129, 1),
    "columns": (40, 300, 200, 1),
    "batch": (96, 64, 200, 3),
    "small": (9, 13, 5, 1),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("partial", [False, True], ids=["whole", "partial-loop"])
def test_epilogue_results_equal_numpy(rng, case, dtype, ta, partial):
    m, n, k, batch = CASES[case]
    d = dt.as_dtype(dtype)
    stop = m * n * batch - (n + 3 if partial else 0)
    kp = _program(d, m, n, k, ta, batch, stop=i64(stop) if partial else None)
    a = rng.standard_normal((batch, k, m) if ta else (batch, m, k)).astype(dtype)
    b = rng.standard_normal((batch, k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    old = rng.standard_normal((batch, m, n)).astype(dtype)
    want_c, want_e = _want(a, b, bias, old, ta, stop)
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for threads in (1, 2):
        c_ = compile_kernel_program(kp, gc.CompileOptions(threads=threads, cache_dir=None))
        ctx = RunContext({}, {}, [a.reshape(-1), b.reshape(-1), bias, old.reshape(-1, n)])
        c, e = c_.runner.run(ctx, None)
        np.testing.assert_allclose(c, want_c, **tol)
        np.testing.assert_allclose(e[:stop], want_e[:stop], **tol)  # (e is not written after)


def test_epilogue_runtime_rows(rng):
    """Rows given at run time: fused for large m, the loop after the GEMM for small m."""
    n, k = 64, 96
    kp = _program(dt.float32, None, n, k, 0, dyn=True)
    c_ = compile_kernel_program(kp, gc.CompileOptions(threads=2, cache_dir=None))
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for m in (1, 7, 200, 513):
        a = rng.standard_normal((m, k)).astype(np.float32)
        old = rng.standard_normal((m, n)).astype(np.float32)
        ctx = RunContext({}, {}, [a.reshape(-1), b.reshape(-1), bias, old])
        c, e = c_.runner.run(ctx, None)
        want_c, want_e = _want(a, b, bias, old, 0, m * n)
        np.testing.assert_allclose(c, want_c, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(e, want_e, rtol=1e-4, atol=1e-3)


def _fused(kp) -> bool:
    """Whether the kernel hands its epilogue's body to the GEMM's row chunks."""
    text = str(Renderer(kp).render())
    fn = text.split('define internal void @"k0.mm"(', 1)[1].split("\n}\n", 1)[0]
    # the fused form picks the body for the GEMM's argument block (the fallback only passes
    # it to gc_parallel_for)
    return any('@"k0.mm.par0.body"' in ln and "select" in ln for ln in fn.splitlines())


def test_epilogue_fused_only_when_rows_are_private():
    d = dt.float32
    kp = _program(d, 301, 77, 129, 0)
    lay = Layout.of(kp)
    call, loop = kp.kernels[0].body
    assert row_epilogue(call, loop, kp, lay.root)
    assert kp.kernels[0].meta[ROW_EPILOGUES] == (0,)
    assert _fused(kp)
    # the renderer follows the pass's record, not its own judgement
    unplanned = KernelProgram(kp.buffers, [Kernel("mm", (call, loop))], kp.inputs, kp.outputs)
    assert not _fused(unplanned)
    # reading C at another element: another chunk's rows
    other = _program(d, 301, 77, 129, 0, c_index=Math.ADD(Var("i", i64t), i64(1)))
    assert not row_epilogue(*other.kernels[0].body, other, Layout.of(other).root)
    assert other.kernels[0].meta[ROW_EPILOGUES] == ()
    assert not _fused(other)
    # writing an operand another chunk's sgemm still reads
    bad = Loop("i", i64(0), i64(301 * 77), (Store("a", Var("i", i64t), Const(0.0, d)),), True)
    assert not row_epilogue(call, bad, kp, lay.root)
    # a loop not starting at 0, a serial loop, integer GEMMs (no BLAS)
    assert not row_epilogue(call, Loop("i", i64(1), loop.stop, loop.body, True), kp, lay.root)
    assert not row_epilogue(call, Loop("i", i64(0), loop.stop, loop.body), kp, lay.root)
    ikp = _program(dt.int32, 301, 77, 129, 0)
    assert not row_epilogue(*ikp.kernels[0].body, ikp, Layout.of(ikp).root)


def test_mlp_step_gemm_epilogues_are_fused():
    """The SGD update and bias+relu epilogues of an MLP training step take the fused form."""
    from graphc.backends.llvm.blas import GEMM_MIN_ROWS

    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 96))
        w = gc.Variable(rng.standard_normal((96, 80)).astype(np.float32))
        h = gc.nn.relu(gc.matmul(x, w) + gc.constant(np.ones(80, np.float32)))
        loss = gc.reduce_sum(h * h)
        (gw,) = gc.gradients(loss, [w])
        step = gc.assign_sub(w, 0.01 * gw)
        init = gc.global_variables_initializer()
    xs = rng.standard_normal((4 * GEMM_MIN_ROWS + 5, 96)).astype(np.float32)
    with gc.Session(graph=g) as sess:
        sess.run(init)
        w0 = sess.run(w)
        exe = sess.compile([step], [x])
        sess.run(step, {x: xs})
        got = sess.run(w)
    kp = exe.runner.kp
    lay = Layout.of(kp)
    fused = [
        k.name
        for k in kp.kernels
        if len(k.body) == 2 and row_epilogue(k.body[0], k.body[1], kp, lay.root)
    ]
    assert any("assignsub" in name for name in fused), [k.name for k in kp.kernels]
    hh = np.maximum(xs @ w0 + 1, 0)
    want = w0 - 0.01 * (xs.T @ (2 * hh * (hh > 0)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
