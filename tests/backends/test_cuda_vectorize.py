"""Vectorised (128-bit) loads and stores of element-wise CUDA kernels, without a GPU.

Which accesses move as ``float4``/``double2``... is decided in
graphc/backends/cuda/vectorize.py; these tests pin the decisions (what must not move:
guarded loads, reads after a store to the same storage, misaligned or non-contiguous
indices, quads that would straddle rows) and run the rendered code on the CPU (host
emulation, one thread and many) with tails and misaligned pointers against the Kernel IR
interpreter, and check that nvcc really emits vector memory instructions.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as dt
from graphc.backends.cuda import launch as L
from graphc.backends.cuda.nvcc import compile_source
from graphc.backends.cuda.render import template_source
from graphc.backends.cuda.vectorize import affine
from graphc.expr import Call, Cast, Const, Dim, Load, Math, Var, i64
from graphc.kernel import interp
from graphc.kernel.ir import Buffer, If, Kernel, KernelProgram, Loop, Store
from graphc.passes.plan import plan as plan_buffers
from graphc.runtime_state import RunContext
from tests.backends import cuda_emulation as emu
from tests.backends import cuda_programs as P
from tests.backends.cuda_programs import render_program
from tests.backends.test_cuda_render import (
    CACHE,
    needs_host,
    needs_nvcc,
    ptx_cache,  # noqa: F401 - a fixture
)
from tests.kernel.helpers import compile_kernels

F32, F64, I64 = dt.float32, dt.float64, dt.int64


def one_loop(body, buffers: dict, inputs=("x",), outputs=("z",), n=None) -> KernelProgram:
    """A program of one parallel loop ``i`` over ``n`` (None: the runtime size ``n``)."""
    size = Dim("n") if n is None else i64(n)
    bufs = {name: Buffer(name, dtype, (size,), kind) for name, (dtype, kind) in buffers.items()}
    k = Kernel("k", (Loop("i", i64(0), size, tuple(body), parallel=True),), ops=("k",))
    dims = {"n": (0, 0)} if n is None else {}
    return KernelProgram(bufs, [k], dims, inputs=inputs, outputs=outputs)


def vector_launch(kp: KernelProgram):
    (launch,) = [ln for k in render_program(kp).kernels for ln in k.launches]
    return launch


def moved(kp: KernelProgram) -> str:
    """The generated source's vector accesses, e.g. 'float4<x float4>z' (load x, store z)."""
    body = render_program(kp).body
    out = []
    for line in body.splitlines():
        if "reinterpret_cast<const " in line:
            out.append(line.split("reinterpret_cast<const ")[1].split("*")[0] + "<"
                       + line.split("b_")[1].split(" ")[0])  # fmt: skip
        elif "reinterpret_cast<" in line:
            out.append(line.split("reinterpret_cast<")[1].split("*")[0] + ">"
                       + line.split("b_")[1].split(" ")[0])  # fmt: skip
    return " ".join(out)


i = Var("i", I64)
x = Load("x", i, F32)


def test_affine_forms():
    j = Var("j", I64)
    e = Call(Math.ADD, (Call(Math.MUL, (i, i64(64))), Call(Math.SUB, (j, i64(4)))))
    assert affine(e, {"i", "j"}) == ({"i": 64, "j": 1}, -4)
    assert affine(Cast(i, dt.int64), {"i"}) == ({"i": 1}, 0)
    assert affine(Call(Math.MUL, (i, j)), {"i", "j"}) is None  # not affine
    assert affine(Call(Math.ADD, (i, Dim("n"))), {"i"}) is None  # unknown constant part
    assert affine(Call(Math.FLOORDIV, (i, i64(2))), {"i"}) is None


def test_elementwise_chain_moves_float4_and_launches_quads():
    launch = vector_launch(P.elementwise_chain())
    assert launch.kind == "threads" and launch.vector == 4
    assert moved(P.elementwise_chain()) == "float4<x float4>z"
    geo = L.configure(launch, {"n": 1003})
    assert geo.grid == (1, 1, 1) and geo.block == (256, 1, 1)  # 251 quads: one block


def test_width_follows_the_widest_element():
    body = [Store("z", i, Cast(x, F64))]
    kp = one_loop(body, {"x": (F32, "input"), "z": (F64, "output")})
    assert vector_launch(kp).vector == 2
    assert moved(kp) == "float2<x double2>z"
    ints = one_loop([Store("z", i, Load("x", i, I64))], {"x": (I64, "input"),
                                                         "z": (I64, "output")})  # fmt: skip
    assert moved(ints) == "longlong2<x longlong2>z"


def test_narrow_elements_stay_scalar():
    kp = one_loop([Store("z", i, Cast(Load("x", i, dt.bool_), F32))],
                  {"x": (dt.bool_, "input"), "z": (F32, "output")})  # fmt: skip
    assert moved(kp) == "float4>z"  # one-byte bools are read one by one
    kp = one_loop([Store("z", i, Load("x", i, dt.float16))],
                  {"x": (dt.float16, "input"), "z": (dt.float16, "output")})  # fmt: skip
    assert vector_launch(kp).vector == 1 and moved(kp) == ""


def test_guarded_and_shifted_loads_stay_scalar():
    y = Load("y", i, F32)
    guarded = Call(Math.SELECT, (Call(Math.GT, (x, Const(0.0, F32))), y, Const(0.0, F32)))
    kp = one_loop([Store("z", i, guarded)],
                  {"x": (F32, "input"), "y": (F32, "input"), "z": (F32, "output")},
                  inputs=("x", "y"))  # fmt: skip
    assert moved(kp) == "float4<x float4>z"  # y is read only when x > 0: never moved
    under_if = [If(Call(Math.GT, (x, Const(0.0, F32))), (Store("z", i, y),))]
    kp = one_loop(under_if, {"x": (F32, "input"), "y": (F32, "input"), "z": (F32, "output")},
                  inputs=("x", "y"))  # fmt: skip
    assert moved(kp) == "float4<x"  # the store is conditional: scalar
    shifted = Load("x", Call(Math.ADD, (i, i64(1))), F32)
    kp = one_loop([Store("z", i, shifted)], {"x": (F32, "input"), "z": (F32, "output")})
    assert moved(kp) == "float4>z"  # x[i+1] is not on a 16-byte boundary


def test_storage_read_after_a_store_is_not_moved():
    body = [
        Store("z", i, Call(Math.ADD, (x, Const(1.0, F32)))),
        Store("w", i, Call(Math.MUL, (Load("z", i, F32), Const(2.0, F32)))),
    ]
    kp = one_loop(body, {"x": (F32, "input"), "z": (F32, "output"), "w": (F32, "output")},
                  outputs=("z", "w"))  # fmt: skip
    assert moved(kp) == "float4<x float4>w"  # z is written, then read back: stays scalar
    got = _run_single(kp, [np.arange(10, dtype=np.float32)], {"n": 10})
    np.testing.assert_array_equal(got[1], (np.arange(10) + 1) * 2)


def test_rows_that_a_quad_would_straddle_are_not_vectorised():
    def bias_add(cols):
        g = gc.Graph()
        with g.as_default():
            a = gc.placeholder(gc.float32, (None, cols), name="a")
            b = gc.placeholder(gc.float32, (cols,), name="b")
            out = gc.nn.relu(a + b) * 2.0
            _, _, kp = compile_kernels([out], [a, b])
        return plan_buffers(kp) or kp

    wide = vector_launch(bias_add(64))
    assert wide.kind == "threads" and wide.vector == 4  # a map: one thread per element
    assert "float4<in1" in moved(bias_add(64))  # the broadcast bias row moves too
    assert vector_launch(bias_add(6)).vector == 1


def _run_single(kp, feeds, dims, offset_bytes=0):
    """Run ``kp`` (one launch) in the one-thread emulation with every buffer placed
    ``offset_bytes`` past a 64-byte boundary; outputs in ``kp.outputs`` order."""
    module = render_program(kp)
    lib = emu.build(template_source() + "\n" + module.body, CACHE)
    (launch,) = [ln for k in module.kernels for ln in k.launches]
    keep, out = [], {}
    args = []
    for kind, name in launch.params:
        if kind == "dim":
            args.append(ctypes.c_longlong(dims[name]))
            continue
        buf = kp.buffers[name]
        n = int(dims["n"]) if isinstance(buf.shape[0], Dim) else int(buf.shape[0].value)
        raw = np.zeros(n * buf.dtype.itemsize + 128, np.uint8)
        start = (-raw.ctypes.data) % 64 + offset_bytes
        view = raw[start : start + n * buf.dtype.itemsize].view(buf.dtype.np)
        if name in kp.inputs:
            view[...] = feeds[kp.inputs.index(name)]
        keep.append(raw)
        out[name] = view
        args.append(ctypes.c_void_p(view.ctypes.data))
    getattr(lib, launch.function)(*args)
    return [out[name].copy() for name in kp.outputs]


@needs_host
@pytest.mark.parametrize("offset", [0, 4], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("n", [0, 3, 4, 1003])
def test_tails_and_misaligned_pointers_match_the_interpreter(n, offset):
    kp = P.elementwise_chain()
    xs = np.random.default_rng(n).uniform(-3, 3, n).astype(np.float32)
    want = interp.run(kp, RunContext({}, {}, [xs]))[0]
    got = _run_single(kp, [xs], {"n": n}, offset)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@needs_host
@pytest.mark.parametrize("cols", [64, 6, 10])
def test_lowered_maps_run_like_the_interpreter_on_many_threads(cols):
    """Bias + relu + scale, a float64 cast and an in-place update, 3 blocks x 64 threads
    striding over 37 rows: quads, tails and row boundaries against the interpreter."""
    rng = np.random.default_rng(cols)
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, (None, cols), name="a")
        b = gc.placeholder(gc.float32, (cols,), name="b")
        v = gc.Variable(np.zeros((37, cols), np.float32), name="v")
        y = gc.cast(gc.nn.relu(a + b) * 2.0, gc.float64)
        upd = gc.assign_sub(v, 0.5 * a)
        _, _, kp = compile_kernels([y, upd], [a, b])
    kp = plan_buffers(kp) or kp
    feeds = [rng.standard_normal((37, cols)).astype(np.float32),
             rng.standard_normal(cols).astype(np.float32)]  # fmt: skip
    variables = {var: rng.standard_normal((37, cols)).astype(np.float32)
                 for var in kp.var_reads.values()}  # fmt: skip
    module = render_program(kp)
    lib = emu.build(template_source() + "\n" + module.body, CACHE, threaded=True)
    ctx_want = RunContext(dict(variables), {}, list(feeds))
    want = interp.run(kp, ctx_want)
    ctx_got = RunContext(dict(variables), {}, list(feeds))
    got = emu.run(module, kp, ctx_got, lib, threaded=(3, 64))
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=1e-6)
    for var in kp.var_updates:
        np.testing.assert_allclose(ctx_got.pending[var], ctx_want.pending[var], rtol=1e-6)


@needs_nvcc
@pytest.mark.usefixtures("ptx_cache")  # CACHE's entries verify across test runs
def test_ptx_has_vector_memory_instructions():
    modules = [render_program(P.elementwise_chain(), prefix="v0_"),
               render_program(one_loop([Store("z", i, Cast(x, F64))],
                                       {"x": (F32, "input"), "z": (F64, "output")}),
                              prefix="v1_")]  # fmt: skip
    source = "\n".join([template_source(), *(m.body for m in modules)])
    ptx = compile_source(source, "sm_90", "ptx", cache_dir=CACHE)[0].decode()
    assert ".v4.f32" in ptx and "st.global.v4.f32" in ptx
    assert "st.global.v2.f64" in ptx and ".v2.f32" in ptx
