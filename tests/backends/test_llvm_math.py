"""Accuracy of the vectorisable polynomial math (backends/llvm/math.py) against numpy.

Each function runs in a vectorised LLVM loop over a dense sweep of its useful domain plus
special values; the maximum error (in ulp of the float type, with an absolute floor near
zero where the function itself crosses zero) must stay within the documented bound. The
measured figures are printed with ``-s`` and recorded in docs/benchmarks.md.
"""

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as dt
from graphc.backends.llvm import compile_kernel_program
from graphc.expr import NUMPY_MATH, Dim, Load, Math, Var, i64
from graphc.kernel.ir import Buffer, Kernel, KernelProgram, Loop, Store
from graphc.runtime_state import RunContext

# function -> (domain, max ulp f32, max ulp f64); abs floor: errors below eps are ignored
BOUNDS = {
    Math.EXP: ((-100.0, 88.0), 1, 1),
    Math.EXPM1: ((-20.0, 20.0), 3, 3),
    Math.LOG: ((1e-30, 1e30), 2, 2),
    Math.LOG1P: ((-0.999, 1e6), 3, 3),
    Math.TANH: ((-12.0, 12.0), 5, 3),
    Math.SIGMOID: ((-40.0, 40.0), 3, 3),
    Math.ERF: ((-5.0, 5.0), 6, 4),
    Math.SIN: ((-100.0, 100.0), 2, 2),
    Math.COS: ((-100.0, 100.0), 2, 2),
    Math.TAN: ((-1.5, 1.5), 4, 4),
}


def _sweep(lo, hi, dtype, n=200_001):
    if lo > 0:
        x = np.geomspace(lo, hi, n)
    else:
        x = np.concatenate([np.linspace(lo, hi, n), np.geomspace(1e-12, 1.0, 2001),
                            -np.geomspace(1e-12, 1.0, 2001)])  # fmt: skip
    x = x[(x >= lo) & (x <= hi)]
    return x.astype(dtype)


def _program(fn, dtype):
    d = dt.as_dtype(dtype)
    n = Dim("n")
    i = Var("i", dt.int64)
    body = (Store("y", i, fn(Load("x", i, d))),)
    return KernelProgram(
        buffers={"x": Buffer("x", d, (n,), "input"), "y": Buffer("y", d, (n,), "output")},
        kernels=[Kernel(fn.name.lower(), (Loop("i", i64(0), n, body, parallel=True),))],
        dims={"n": (0, 0)},
        inputs=("x",),
        outputs=("y",),
    )


def _exact(fn, x):
    """float64 values of ``fn`` to ~0.5 ulp (libm; math.erf rather than the reference's
    series, which is itself off by ~70 ulp near |x| = 2.5)."""
    x = x.astype(np.float64)
    if fn is Math.ERF:
        from math import erf

        return np.array([erf(v) for v in x])
    return np.asarray(NUMPY_MATH[fn](x), np.float64)


def _ulp_error(got, x, fn, dtype):
    want = _exact(fn, x)
    ok = np.isfinite(want) & (np.abs(want) < np.finfo(dtype).max)
    spacing = np.spacing(np.abs(want[ok]).astype(dtype)).astype(np.float64)
    floor = np.finfo(dtype).eps  # absolute floor where the result crosses zero
    err = np.abs(got[ok].astype(np.float64) - want[ok])
    return float(np.max(err / np.maximum(spacing, floor * np.finfo(dtype).eps)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fn", list(BOUNDS), ids=[f.name for f in BOUNDS])
def test_polynomial_math_accuracy(fn, dtype):
    (lo, hi), ulp32, ulp64 = BOUNDS[fn]
    x = _sweep(lo, hi, dtype)
    c = compile_kernel_program(_program(fn, dtype), gc.CompileOptions(cache_dir=None))
    (got,) = c.runner.run(RunContext({}, {}, [x]), None)
    err = _ulp_error(got, x, fn, dtype)
    bound = ulp32 if dtype == np.float32 else ulp64
    print(f"{fn.name:8s} {np.dtype(dtype).name}: max error {err:.2f} ulp on [{lo}, {hi}]")
    assert err <= bound, f"{fn.name} {np.dtype(dtype).name}: {err:.2f} ulp > {bound}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fn", list(BOUNDS), ids=[f.name for f in BOUNDS])
def test_special_values(fn, dtype):
    _check_special_values(fn, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fn", [Math.EXP, Math.EXPM1, Math.SIGMOID, Math.TANH, Math.ERF])
def test_exp_scaling_without_avx512(fn, dtype, monkeypatch):
    # hosts without AVX-512 scale exp by 2^n with two exponent-bit multiplications instead
    # of llvm.ldexp (vscalefps): same accuracy, same special values
    from graphc.backends.llvm import jit, math

    jit.host()
    monkeypatch.setitem(math.HOST, "ldexp", False)
    _check_special_values(fn, dtype)
    (lo, hi), ulp32, ulp64 = BOUNDS[fn]
    x = _sweep(lo, hi, dtype)
    c = compile_kernel_program(_program(fn, dtype), gc.CompileOptions(cache_dir=None))
    text = c.llvm_ir() if callable(c.llvm_ir) else c.llvm_ir
    assert "llvm.ldexp" not in text
    (got,) = c.runner.run(RunContext({}, {}, [x]), None)
    assert _ulp_error(got, x, fn, dtype) <= (ulp32 if dtype == np.float32 else ulp64)


def _check_special_values(fn, dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1e30, -1e30, 1000.0,
                  -1000.0, 710.0, -746.0, 89.0, -104.0, 88.72, 88.73, -103.9, -104.5, 709.78,
                  709.79, -745.0, -745.2, 1e-45, -1e-45, 4e-4, -4e-4, 7.9, -7.9, 3e38, -3e38,
                  np.nan], dtype)  # fmt: skip
    # three copies: the first ones go through the vectorised loop body, the rest through
    # its scalar remainder
    x = np.concatenate([x, x[::-1], x])
    c = compile_kernel_program(_program(fn, dtype), gc.CompileOptions(cache_dir=None))
    (got,) = c.runner.run(RunContext({}, {}, [x]), None)
    with np.errstate(all="ignore"):
        want = NUMPY_MATH[fn](x.astype(np.float64)).astype(dtype)
    # trigonometric functions of huge arguments: only require a value in range
    huge = np.abs(x) >= 1e30 if fn in (Math.SIN, Math.COS, Math.TAN) else np.zeros(len(x), bool)
    np.testing.assert_array_equal(np.isnan(got[~huge]), np.isnan(want[~huge]))
    fin = ~huge & np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-30)
    inf = ~huge & np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])
