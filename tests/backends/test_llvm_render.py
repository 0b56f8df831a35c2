"""The LLVM renderer/runtime on hand-written Kernel IR programs (independent of lowering)."""

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as dt
from graphc.backends.llvm import cache, compile_kernel_program, load_compiled
from graphc.errors import FailedPreconditionError, InvalidArgumentError
from graphc.expr import Cast, Const, Dim, Load, Math, Var, i64
from graphc.kernel.ir import Buffer, Check, If, Kernel, KernelProgram, Let, LibCall, Loop, Store
from graphc.runtime_state import RunContext

f32, f64, i64t = dt.float32, dt.float64, dt.int64


def _opts(threads=None):
    return gc.CompileOptions(threads=threads, cache_dir=None)


def _run(kp, feeds, variables=None, threads=None, trace=None):
    c = compile_kernel_program(kp, _opts(threads))
    ctx = RunContext(variables or {}, {}, list(feeds))
    out = c.runner.run(ctx, trace)
    return out, ctx, c


def _w1_program():
    i = Var("i", i64t)
    x = Load("x", i, f32)

    def c(v):
        return Const(v, f32)

    a = Math.MUL(x, c(1.702))
    s = Math.DIV(c(1.0), Math.ADD(c(1.0), Math.EXP(Math.NEG(a))))
    y = Math.MUL(x, s)
    z = Math.ADD(Math.MUL(Math.TANH(Math.ADD(Math.MUL(y, c(0.5)), c(0.1))), y), x)
    n = Dim("n")
    return KernelProgram(
        buffers={"x": Buffer("x", f32, (n,), "input"), "z": Buffer("z", f32, (n,), "output")},
        kernels=[
            Kernel(
                "w1",
                (Loop("i", i64(0), n, (Store("z", i, z),), parallel=True),),
                ops=("a", "s", "y", "z"),
            )
        ],
        dims={"n": (0, 0)},
        inputs=("x",),
        outputs=("z",),
    )


def _w1_ref(x):
    a = x * np.float32(1.702)
    s = 1 / (1 + np.exp(-a))
    y = x * s
    return np.tanh(y * np.float32(0.5) + np.float32(0.1)) * y + x


@pytest.mark.parametrize("threads", [1, 2])
def test_w1_chain_dynamic_sizes(rng, threads):
    kp = _w1_program()
    c = compile_kernel_program(kp, _opts(threads))
    for n in (0, 1, 17, 1000, 300_000):  # 300k: large enough to split over threads (18M units)
        x = (rng.standard_normal(n) * 4).astype(np.float32)
        (z,) = c.runner.run(RunContext({}, {}, [x]), None)
        assert z.shape == (n,) and z.dtype == np.float32
        np.testing.assert_allclose(z, _w1_ref(x), rtol=2e-6, atol=2e-6)


def test_threads_on_off_equal(rng):
    kp = _w1_program()
    x = rng.standard_normal(400_000).astype(np.float32)
    (a,), _, _ = _run(kp, [x], threads=1)
    (b,), _, _ = _run(kp, [x], threads=2)
    np.testing.assert_array_equal(a, b)


def test_trace_records_kernel_times(rng):
    kp = _w1_program()
    trace = []
    _run(kp, [rng.standard_normal(100).astype(np.float32)], trace=trace)
    assert len(trace) == 1
    name, ops, start, end = trace[0]
    assert name == "w1" and ops == ("a", "s", "y", "z") and 0 < start <= end


def test_feed_shape_mismatch_raises_before_native_code():
    kp = _w1_program()
    kp.buffers["y"] = Buffer("y", f32, (Dim("n"),), "input")
    kp.inputs = ("x", "y")
    c = compile_kernel_program(kp, _opts())
    with pytest.raises(InvalidArgumentError, match="shape"):
        c.runner.run(RunContext({}, {}, [np.zeros(4, np.float32), np.zeros(5, np.float32)]), None)


def test_row_reduction_and_sequential_scan(rng):
    """Row sums (reduce=True accumulator) and a running max (sequential Let) of a (m, n)."""
    m, n = Dim("m"), Dim("n")
    i, j = Var("i", i64t), Var("j", i64t)
    idx = Math.ADD(Math.MUL(i, n), j)
    acc = Var("acc", f64)
    body = (
        Let("acc", f64, Const(0.0, f64)),
        Let("mx", f32, Const(-np.inf, f32)),
        Loop(
            "j",
            i64(0),
            n,
            (
                Let("acc", f64, Math.ADD(acc, Cast(Load("x", idx, f32), f64)), reduce=True),
                Let("mx", f32, Math.MAX(Var("mx", f32), Load("x", idx, f32))),
                Store("cm", idx, Var("mx", f32)),
            ),
        ),
        Store("s", i, acc),
    )
    kp = KernelProgram(
        buffers={
            "x": Buffer("x", f32, (m, n), "input"),
            "s": Buffer("s", f64, (m,), "output"),
            "cm": Buffer("cm", f32, (m, n), "output"),
        },
        kernels=[Kernel("rows", (Loop("i", i64(0), m, body, parallel=True),))],
        dims={"m": (0, 0), "n": (0, 1)},
        inputs=("x",),
        outputs=("s", "cm"),
    )
    x = rng.standard_normal((5, 37)).astype(np.float32)
    x[2, 3] = np.nan
    (s, cm), _, _ = _run(kp, [x])
    np.testing.assert_allclose(s, x.astype(np.float64).sum(1), rtol=1e-12)
    np.testing.assert_array_equal(cm, np.maximum.accumulate(x, axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_libcall_batched(rng, dtype, ta, tb):
    d = dt.as_dtype(dtype)
    bsz, m, n, k = 3, 4, 5, 6
    a = (rng.standard_normal((bsz, k, m) if ta else (bsz, m, k)) * 3).astype(dtype)
    b = (rng.standard_normal((n, k) if tb else (k, n)) * 3).astype(dtype)
    kp = KernelProgram(
        buffers={
            "a": Buffer("a", d, (i64(a.size),), "input"),
            "b": Buffer("b", d, (i64(b.size),), "input"),
            "c": Buffer("c", d, (i64(bsz), i64(m), i64(n)), "output"),
        },
        kernels=[
            Kernel(
                "mm",
                (
                    LibCall(
                        "gemm",
                        (
                            "a",
                            "b",
                            "c",
                            Const(ta, i64t),
                            Const(tb, i64t),
                            i64(m),
                            i64(n),
                            i64(k),
                            i64(bsz),
                            i64(m * k),
                            i64(0),
                            i64(m * n),
                            Const(2.0, f64),
                            Const(0.0, f64),
                            i64(0),
                            i64(0),
                            i64(0),
                        ),
                    ),
                ),
            )
        ],
        inputs=("a", "b"),
        outputs=("c",),
    )
    (c,), _, _ = _run(kp, [a.reshape(-1), b.reshape(-1)])
    aa = np.swapaxes(a, 1, 2) if ta else a
    bb = b.T if tb else b
    want = 2 * np.matmul(aa.astype(np.float64), bb.astype(np.float64))
    np.testing.assert_allclose(c, want.astype(dtype), rtol=1e-5, atol=1e-4)


def test_variables_status_rng_and_if(rng):
    """var copy-in/copy-out with an in-place update, a status check raised via If."""
    n = i64(4)
    i = Var("i", i64t)
    w = Load("w", i, f32)
    g = Load("g", i, f32)
    body = (
        Store("w_new", i, Math.SUB(w, Math.MUL(Const(0.5, f32), g))),
        If(Math.ISNAN(g), (Store("status", i64(0), Const(1, dt.int32)),)),
    )
    kp = KernelProgram(
        buffers={
            "g": Buffer("g", f32, (n,), "input"),
            "w": Buffer("w", f32, (n,), "var"),
            "w_new": Buffer("w_new", f32, (n,), "temp", alias_of="w"),
            "status": Buffer("status", dt.int32, (i64(1),), "status"),
        },
        kernels=[Kernel("sgd", (Loop("i", i64(0), n, body),))],
        inputs=("g",),
        outputs=(),
        var_reads={"w": "w"},
        var_updates={"w": "w_new"},
        checks=(Check(0, "gradient is NaN"),),
    )
    c = compile_kernel_program(kp, _opts())
    w0 = np.arange(4, dtype=np.float32)
    w0.setflags(write=False)
    variables = {"w": w0}
    ctx = RunContext(variables, {}, [np.ones(4, np.float32)])
    c.runner.run(ctx, None)
    np.testing.assert_array_equal(ctx.pending["w"], w0 - 0.5)
    np.testing.assert_array_equal(variables["w"], np.arange(4))  # session value untouched
    bad = np.array([1, np.nan, 1, 1], np.float32)
    with pytest.raises(InvalidArgumentError, match="gradient is NaN"):
        c.runner.run(RunContext(variables, {}, [bad]), None)
    with pytest.raises(FailedPreconditionError, match="uninitialized value w"):
        c.runner.run(RunContext({}, {}, [np.ones(4, np.float32)]), None)


def test_integer_and_bool_semantics_match_numpy_math(rng):
    """Integer floor division/mod by zero and negatives, int pow, comparisons, casts."""
    from graphc.expr import NUMPY_MATH

    n = i64(12)
    i = Var("i", i64t)
    a = Load("a", i, dt.int32)
    b = Load("b", i, dt.int32)
    f = Load("f", i, f32)
    outs = {
        "div": (Math.FLOORDIV(a, b), dt.int32),
        "mod": (Math.MOD(a, b), dt.int32),
        "pow": (Math.POW(a, b), dt.int32),
        "lt": (Math.LT(a, b), dt.bool_),
        "fmod": (Math.MOD(f, Cast(b, f32)), f32),
        "fdiv": (Math.FLOORDIV(f, Cast(b, f32)), f32),
        "cast": (Cast(f, dt.int32), dt.int32),
        "tobool": (Cast(f, dt.bool_), dt.bool_),
        "sign": (Math.SIGN(f), f32),
        "round": (Math.ROUND(f), f32),
        "mx": (Math.MAX(f, Cast(a, f32)), f32),
    }
    bufs = {
        "a": Buffer("a", dt.int32, (n,), "input"),
        "b": Buffer("b", dt.int32, (n,), "input"),
        "f": Buffer("f", f32, (n,), "input"),
    }
    body = []
    for name, (e, d) in outs.items():
        bufs[name] = Buffer(name, d, (n,), "output")
        body.append(Store(name, i, e))
    kp = KernelProgram(
        bufs,
        [Kernel("k", (Loop("i", i64(0), n, tuple(body)),))],
        inputs=("a", "b", "f"),
        outputs=tuple(outs),
    )
    av = np.array([7, -7, 7, -7, 0, 5, -(2**31), 3, 2, 9, -9, 1], np.int32)
    bv = np.array([2, 2, -2, -2, 3, 0, -1, 3, 10, 0, 4, -3], np.int32)
    fv = np.array([2.5, -2.5, 0.5, 1.5, -0.0, np.nan, 7.9, -7.9, 3.0, 1e3, -1e-3, 0], np.float32)
    got, _, _ = _run(kp, [av, bv, fv])
    M = NUMPY_MATH
    bf = bv.astype(np.float32)
    want = {
        "div": M[Math.FLOORDIV](av, bv),
        "mod": M[Math.MOD](av, bv),
        "pow": M[Math.POW](av, bv),
        "lt": av < bv,
        "fmod": M[Math.MOD](fv, bf),
        "fdiv": M[Math.FLOORDIV](fv, bf),
        "tobool": fv.astype(bool),
        "sign": np.sign(fv),
        "round": np.rint(fv),
        "mx": np.maximum(fv, av.astype(np.float32)),
    }
    for k, g in zip(outs, got):
        if k == "cast":
            ok = np.isfinite(fv)
            np.testing.assert_array_equal(g[ok], fv[ok].astype(np.int32))
            continue
        np.testing.assert_array_equal(g, want[k], err_msg=k)


def test_disk_cache_roundtrip_and_corruption(tmp_path, rng):
    kp = _w1_program()
    c = compile_kernel_program(kp, _opts())
    key = "k" * 64
    c.manifest["key"] = key
    from graphc.backends.llvm import cache_payload

    payload = cache_payload(c)
    assert cache.save(tmp_path, key, c.manifest, payload)
    man, obj = cache.load(tmp_path, key)
    c2 = load_compiled(man, obj, _opts())
    x = rng.standard_normal(1000).astype(np.float32)
    (z,) = c2.runner.run(RunContext({}, {}, [x]), None)
    np.testing.assert_allclose(z, _w1_ref(x), rtol=2e-6, atol=2e-6)
    path = cache.entry_path(tmp_path, key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cache.load(tmp_path, key) is None
    path.write_bytes(bytes(data[:100]))
    assert cache.load(tmp_path, key) is None
    assert cache.load(tmp_path / "missing", key) is None


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "m,n", [(400, 192), (192, 400), (32, 1024)], ids=["rows", "columns", "thin-threshold"]
)
def test_large_gemm_split_over_threads_matches_numpy(rng, ta, tb, dtype, m, n):
    """Big enough (>= blas.GEMM_PARALLEL_MIN_FLOPS multiply-adds; the thin case exactly at it)
    to be split over two threads: by rows of C, by columns when the rows are few (fewer than
    blas.GEMM_ROW_SPLIT_MIN per thread) and N > M."""
    from graphc.backends.llvm import blas

    assert m * n * 256 >= blas.GEMM_PARALLEL_MIN_FLOPS
    d = dt.as_dtype(dtype)
    k = 256
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    iv = Var("i", i64t)
    kp = KernelProgram(
        buffers={
            "a": Buffer("a", d, (i64(a.size),), "input"),
            "b": Buffer("b", d, (i64(b.size),), "input"),
            "c0": Buffer("c0", d, (i64(m * n),), "input"),
            "c": Buffer("c", d, (i64(m), i64(n)), "output"),
        },
        kernels=[Kernel("mm", (
            Loop("i", i64(0), i64(m * n), (Store("c", iv, Load("c0", iv, d)),)),
            LibCall("gemm", (
                "a", "b", "c", Const(ta, i64t), Const(tb, i64t), i64(m), i64(n), i64(k),
                i64(1), i64(0), i64(0), i64(0), Const(0.5, f64), Const(2.0, f64),
                i64(0), i64(0), i64(0))),
        ))],
        inputs=("a", "b", "c0"),
        outputs=("c",),
    )  # fmt: skip
    for threads in (1, 2):
        (c,), _, _ = _run(kp, [a.reshape(-1), b.reshape(-1), c0.reshape(-1)], threads=threads)
        want = 0.5 * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b)) + 2.0 * c0
        np.testing.assert_allclose(c, want, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                   atol=1e-3 if dtype == np.float32 else 1e-10)  # fmt: skip


def test_runner_accepts_numpy_scalars_and_lists_as_feeds():
    """The native code reads an ndarray's data pointer: anything else is converted first."""
    f = Dim("n")
    i = Var("i", i64t)
    kp = KernelProgram(
        buffers={
            "x": Buffer("x", f32, (), "input"),
            "y": Buffer("y", f32, (f,), "input"),
            "z": Buffer("z", f32, (f,), "output"),
        },  # fmt: skip
        kernels=[
            Kernel(
                "k",
                (
                    Loop(
                        "i",
                        i64(0),
                        f,
                        (Store("z", i, Math.ADD(Load("x", i64(0), f32), Load("y", i, f32))),),
                    ),
                ),
            )
        ],  # fmt: skip
        dims={"n": (1, 0)},
        inputs=("x", "y"),
        outputs=("z",),
    )
    c = compile_kernel_program(kp, _opts())
    (z,) = c.runner.run(RunContext({}, {}, [np.float32(2.0), [1.0, 2.0]]), None)
    np.testing.assert_array_equal(z, [3.0, 4.0])


def _gemm_program(dtype):
    d = dt.as_dtype(dtype)
    m = n = k = 8
    zero, one = Const(0, i64t), Const(1.0, f64)
    shape = (i64(m), i64(n), i64(k), i64(1), i64(0), i64(0), i64(0))
    args = ("a", "b", "c", zero, zero, *shape, one, Const(0.0, f64), i64(0), i64(0), i64(0))
    return KernelProgram(
        buffers={
            "a": Buffer("a", d, (i64(m * k),), "input"),
            "b": Buffer("b", d, (i64(k * n),), "input"),
            "c": Buffer("c", d, (i64(m), i64(n)), "output"),
        },
        kernels=[Kernel("mm", (LibCall("gemm", args),))],
        inputs=("a", "b"),
        outputs=("c",),
    )


def _optnone(module) -> dict:
    return {
        f.name: "optnone" in f.attributes
        for f in module.functions
        if f.blocks  # definitions
    }


def test_only_functions_with_loops_are_optimised():
    """Loop-free glue (entry point, dispatch, thread start-up, BLAS calls) is optnone, so the
    O3 pipeline only spends compile time where loops can be vectorised."""
    from graphc.backends.llvm import jit
    from graphc.backends.llvm.render import Renderer

    jit.host()
    flags = _optnone(Renderer(_w1_program()).render())
    assert flags["k0.w1.par0"] is False  # the elementwise loop: O3, vectorised
    assert flags["k0.w1"] is True  # dispatch only: the loop is outlined into .par0
    for glue in ("gc_entry", "k0.w1.par0.body"):  # (the pool itself is llvm/pool.py)
        assert flags[glue] is True, glue
    assert not any(v for k, v in flags.items() if k.startswith("gc.") and "exp" in k)

    blas = _optnone(Renderer(_gemm_program(np.float32)).render())
    assert blas["k0.mm"] is True and blas["gc.gemm_rows.s00"] is True
    naive = _optnone(Renderer(_gemm_program(np.int32)).render())  # no BLAS: triple loop
    assert naive["k0.mm"] is False

    c = compile_kernel_program(_w1_program(), _opts())
    par = [d for d in c.llvm_ir.split("\ndefine ") if d.split("(", 1)[0].endswith("@k0.w1.par0")]
    assert len(par) == 1
    par = par[0].split("\n}\n", 1)[0]
    assert "x float>" in par  # the hot loop still went through the vectoriser


def test_optnone_glue_runs_gemm_and_naive_gemm(rng):
    for dtype in (np.float32, np.int32):
        a = (rng.standard_normal(64) * 3).astype(dtype)
        b = (rng.standard_normal(64) * 3).astype(dtype)
        (c,), _, _ = _run(_gemm_program(dtype), [a, b])
        want = a.reshape(8, 8).astype(np.float64) @ b.reshape(8, 8).astype(np.float64)
        np.testing.assert_allclose(c, want.astype(dtype), rtol=1e-5, atol=1e-4)


def _row_reduce_program(op, init):
    """out[i] = op-reduction of x[i, :] (reduce=True accumulator) over a dynamic (m, n)."""
    m, n = Dim("m"), Dim("n")
    i, j = Var("i", i64t), Var("j", i64t)
    acc = Var("acc", f32)
    x = Load("x", Math.ADD(Math.MUL(i, n), j), f32)
    body = (
        Let("acc", f32, Const(init, f32)),
        Loop("j", i64(0), n, (Let("acc", f32, op(acc, x), reduce=True),)),
        Store("y", i, acc),
    )
    return KernelProgram(
        buffers={"x": Buffer("x", f32, (m, n), "input"), "y": Buffer("y", f32, (m,), "output")},
        kernels=[Kernel("rows", (Loop("i", i64(0), m, body, parallel=True),))],
        dims={"m": (0, 0), "n": (0, 1)},
        inputs=("x",),
        outputs=("y",),
    )


@pytest.mark.parametrize(
    "op,init,ref",
    [
        (Math.MAX, -np.inf, np.max),
        (Math.MIN, np.inf, np.min),
        (Math.ADD, 0.0, np.sum),
    ],
)
def test_row_reductions_interleaved_match_numpy(rng, op, init, ref):
    """Reduction loops get several independent vector accumulators (interleave hint): the
    results still match numpy on every row length around the vector and interleave widths,
    NaN propagates from any position, and all -inf / +inf rows stay infinite."""
    from graphc.backends.llvm import jit
    from graphc.backends.llvm.loops import REDUCE_INTERLEAVE
    from graphc.backends.llvm.render import Renderer

    jit.host()
    kp = _row_reduce_program(op, init)
    text = str(Renderer(kp).render())
    assert f'!"llvm.loop.interleave.count", i32 {REDUCE_INTERLEAVE}' in text
    if op is not Math.ADD:
        assert 'call nsz float @"llvm.m' in text
    c = compile_kernel_program(kp, _opts())
    par = [d for d in c.llvm_ir.split("\ndefine ") if ".par0(" in d.split("\n", 1)[0]]
    assert par and par[0].count("vec.phi") >= REDUCE_INTERLEAVE  # independent accumulators
    for n in (1, 5, 16, 63, 64, 65, 130, 257):
        x = rng.standard_normal((6, n)).astype(np.float32)
        x[1, n // 2] = np.nan
        x[2, -1] = np.nan
        x[3, 0] = np.nan
        x[4] = -np.inf
        x[5] = np.inf
        ctx = RunContext({}, {}, [x])
        (y,) = c.runner.run(ctx, None)
        np.testing.assert_allclose(y, ref(x, axis=1), rtol=1e-5, err_msg=f"n={n}")
