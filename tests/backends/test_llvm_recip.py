"""Division by a loop-invariant local becomes a multiply by its reciprocal (kernel/recip.py,
a Kernel IR pass the pipeline runs for the cpu backend)."""

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as dt
from graphc.backends.cpu import KERNEL_PASSES
from graphc.backends.llvm import compile_kernel_program
from graphc.expr import Const, Dim, Load, Math, Var, i64
from graphc.kernel.ir import Buffer, If, Kernel, KernelProgram, Let, Loop, Store
from graphc.kernel.recip import hoist_divisors
from graphc.pipeline import run_kernel_passes
from graphc.runtime_state import RunContext


def _normalise_program(np_dtype):
    """y[i, :] = x[i, :] / sum(x[i, :]) with a reduce accumulator, over a dynamic (m, n)."""
    f = dt.as_dtype(np_dtype)
    m, n = Dim("m"), Dim("n")
    i, j = Var("i", dt.int64), Var("j", dt.int64)
    ix = Math.ADD(Math.MUL(i, n), j)
    s = Var("s", f)
    body = (
        Let("s", f, Const(0.0, f)),
        Loop("j", i64(0), n, (Let("s", f, Math.ADD(s, Load("x", ix, f)), reduce=True),)),
        Loop("j", i64(0), n, (Store("y", ix, Math.DIV(Load("x", ix, f), s)),)),
    )
    return KernelProgram(
        buffers={"x": Buffer("x", f, (m, n), "input"), "y": Buffer("y", f, (m, n), "output")},
        kernels=[Kernel("norm", (Loop("i", i64(0), m, body, parallel=True),))],
        dims={"m": (0, 0), "n": (0, 1)},
        inputs=("x",),
        outputs=("y",),
    )


def test_invariant_divisor_is_hoisted_under_a_guard():
    kp = _normalise_program(np.float32)
    (row,) = hoist_divisors(kp.kernels[0].body)
    assert isinstance(row, Loop) and row.parallel  # the parallel loop itself is kept
    let, guarded = row.body[2], row.body[3]
    assert isinstance(let, Let) and let.value.fn is Math.DIV  # 1 / s once per row
    assert isinstance(guarded, If)
    (fast,), (slow,) = guarded.then, guarded.orelse
    assert fast.body[0].value.fn is Math.MUL and slow.body[0].value.fn is Math.DIV
    # a divisor that changes inside the loop, or one that loads memory, is left alone
    j = Var("j", dt.int64)
    x = Load("x", j, dt.float32)
    for d in (x, Var("t", dt.float32)):
        body = (
            Loop("j", i64(0), i64(8), (Let("t", dt.float32, x), Store("y", j, Math.DIV(x, d)))),
        )
        assert hoist_divisors(body) == body
    const = (Loop("j", i64(0), i64(8), (Store("y", j, Math.DIV(x, Const(3.0, dt.float32))),)),)
    assert hoist_divisors(const) == const


@pytest.mark.parametrize("np_dtype", [np.float32, np.float64])
def test_reciprocal_rows_match_division(rng, np_dtype):
    """Rows whose sum is a normal number use the reciprocal (within an ulp or two of numpy);
    rows whose sum is 0, subnormal, huge, inf or NaN take the division path: exactly numpy."""
    kp = run_kernel_passes(_normalise_program(np_dtype), KERNEL_PASSES)  # as the pipeline does
    c = compile_kernel_program(kp, gc.CompileOptions(cache_dir=None))
    assert "fmul" in c.llvm_ir
    info = np.finfo(np_dtype)
    for n in (1, 7, 16, 33, 100):
        x = rng.uniform(0.5, 2.0, (10, n)).astype(np_dtype)
        x[1] *= info.tiny * 1e-3  # subnormal sum: 1/s would overflow
        x[2] = 0.0
        x[3] *= info.max / (4 * n)  # sum above 2**emax: 1/s would be subnormal
        x[4, 0] = np.inf
        x[5, -1] = np.nan
        x[6] *= info.tiny * 4  # just inside the range
        x[7] = -x[7]
        ctx = RunContext({}, {}, [x])
        with np.errstate(all="ignore"):
            want = x / x.sum(axis=1, dtype=np_dtype, keepdims=True)
            (y,) = c.runner.run(ctx, None)
        for r in (1, 2, 4, 5):  # division path
            np.testing.assert_array_equal(y[r], want[r], err_msg=f"n={n} row {r}")
        rtol = 4 * info.eps  # sums differ in order; the reciprocal adds one rounding
        np.testing.assert_allclose(y, want, rtol=n * rtol, err_msg=f"n={n}")


def test_softmax_and_normalise_equal_reference(rng):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 37))
        sm = gc.nn.softmax(x, axis=-1)
        nz = x / gc.reduce_sum(x, axis=-1, keepdims=True)
    data = rng.standard_normal((9, 37)).astype(np.float32) * 5
    data[3] = 1e-41  # subnormal row sum
    data[4, 5] = np.nan
    outs = {}
    for target in ("reference", "cpu"):
        with gc.Session(graph=g, target=target, options=gc.CompileOptions(cache_dir=None)) as s:
            outs[target] = s.run([sm, nz], {x: data})
    for got, want in zip(outs["cpu"], outs["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
