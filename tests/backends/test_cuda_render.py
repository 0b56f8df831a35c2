"""The CUDA renderer without a GPU: Kernel IR programs (hand-written ones, every lowered op
example of the registry, MLP and CNN train steps) render to CUDA C that nvcc compiles to
PTX, and that runs on the CPU (host emulation: one thread per block, or every CUDA thread a
host thread with real barriers and shuffles) with the meaning of the Kernel IR interpreter
and the reference.

What needs a GPU (the pycuda runtime, cuBLAS, timings) is in test_cuda_runtime.py.
"""

from __future__ import annotations

import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from graphc import dtypes as dt
from graphc.backends.cuda import launch as L
from graphc.backends.cuda.mathtable import MATH, render_const
from graphc.backends.cuda.nvcc import compile_source, find_nvcc
from graphc.backends.cuda.render import template_source
from graphc.backends.reference.interpreter import run_program
from graphc.errors import CompileError, InvalidArgumentError, UnimplementedError
from graphc.expr import Const, Load, Math, Var, i64
from graphc.kernel import interp
from graphc.kernel.ir import Buffer, Kernel, KernelProgram, LibCall, Loop, Store
from graphc.ops.registry import REGISTRY
from graphc.runtime_state import RunContext
from tests.backends import cuda_emulation as emu
from tests.backends import cuda_programs as P
from tests.backends.cuda_programs import render_program
from tests.kernel.helpers import compile_kernels
from tests.oracle import build_example

#: PTX / host builds are cached by source hash here, across test runs.
CACHE = Path(tempfile.gettempdir()) / "graphc-cuda-test-cache"
#: nvcc's entries in CACHE are authenticated (graphc/backends/llvm/cache.py) with a key the
#: tests keep across runs (a private file graphc creates), not conftest's key of the test
#: process: then PTX compiled by an earlier run is a hit (the registry's PTX: ~20 s of nvcc).
CACHE_KEY = Path(tempfile.gettempdir()) / "graphc-cuda-test-config" / "cache.key"

needs_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found (CUDA toolkit)")
needs_host = pytest.mark.skipif(emu.available() is not None, reason=str(emu.available()))


@pytest.fixture
def ptx_cache(monkeypatch):
    """CACHE, for nvcc.compile_source: its entries authenticated with CACHE_KEY."""
    from graphc import config

    monkeypatch.setattr(config, "cache_key_file", lambda: CACHE_KEY)
    return CACHE


def batch_source(modules: list) -> str:
    """One translation unit for several modules (rendered with distinct prefixes)."""
    return "\n".join([template_source(), *(m.body for m in modules)])


def test_math_table_has_one_entry_per_math_member():
    assert set(MATH) == set(Math)
    for fn, entry in MATH.items():
        assert len(entry) == 3, fn


def test_constants_are_exact():
    assert render_const(1.702, dt.float32) == "1.7020000219345093f"
    assert float(render_const(0.1, dt.float64)) == 0.1
    assert render_const(float("-inf"), dt.float32) == "(-GC_INF_F)"
    assert render_const(float("nan"), dt.float64) == "GC_NAN_D"
    assert render_const(-(2**63), dt.int64) == "(-9223372036854775807LL - 1)"
    assert render_const(True, dt.bool_) == "true"


def test_launch_kinds_follow_the_loop_shapes():
    kinds = {
        name: [(ln.kind, bool(ln.alt)) for k in render_program(f()).kernels for ln in k.launches]
        for name, f in P.ALL.items()
    }
    assert kinds["elementwise_chain"] == [("threads", False)]
    assert kinds["softmax_rows"] == [("rows", True)]  # block per row, thread per row as alt
    assert kinds["layer_norm_rows"] == [("rows", True)]
    # column sum (collapsed nest) rows; full sum: one block; argmax carries values: serial
    assert kinds["column_sum_and_full_sum"] == [("rows", True), ("rows", False),
                                                ("serial", False)]  # fmt: skip
    assert kinds["gemm_bias_relu"] == [("gemm", False), ("threads", False)]
    assert kinds["split_kernel"] == [("threads", False), ("threads", False)]
    assert kinds["status_check"] == [("rows", True)]


def test_row_kernels_use_warp_shuffles_and_shared_memory():
    m = render_program(P.softmax_rows())
    rows = m.body.split("gc_k0_softmax_rows")[1]
    assert rows.count("gc_block_reduce<float>") == 2
    assert "GcMax()" in rows and "GcAdd()" in rows
    assert "threadIdx.x; " in rows and "+= blockDim.x" in rows


def test_runtime_dims_are_kernel_arguments():
    m = render_program(P.elementwise_chain())
    head = (
        r"gc_k0_fused_chain\(const float\* __restrict__ b_x, float\* __restrict__ b_z, gc_i64 d_n\)"
    )
    assert re.search(head, m.body)
    static = render_program(P.elementwise_chain(1 << 24))
    assert "gc_i64 d_" not in static.body and "16777216LL" in static.body


@needs_nvcc
def test_hand_written_programs_compile_to_ptx(ptx_cache):
    modules = [render_program(f(), prefix=f"p{i}_") for i, f in enumerate(P.ALL.values())]
    ptx, _ = compile_source(batch_source(modules), "sm_90", "ptx", cache_dir=ptx_cache)
    text = ptx.decode()
    for m in modules:
        for fn in m.functions:
            assert f".entry {fn}(" in text, fn
    for fn in ("gc_gemm_f32", "gc_gemm_f64", "gc_gemm_f16"):
        assert f".entry {fn}(" in text
    assert "shfl.sync.bfly" in text  # the warp reductions survived


@needs_nvcc
def test_nvcc_errors_name_the_line_and_the_cache_is_used(tmp_path):
    with pytest.raises(CompileError, match="undefined_thing"):
        compile_source('extern "C" __global__ void f() { undefined_thing(); }', cache_dir=None)
    src = 'extern "C" __global__ void g(float* x) { x[threadIdx.x] = 1.0f; }'
    first, hit1 = compile_source(src, cache_dir=tmp_path)
    second, hit2 = compile_source(src, cache_dir=tmp_path)
    assert (hit1, hit2) == (False, True) and first == second
    # one authenticated entry (graphc/backends/llvm/cache.py's container), no raw file
    assert [p.name.split("-")[:2] for p in tmp_path.iterdir()] == [["nvcc", "ptx"]]


@needs_host
@pytest.mark.parametrize("variant", ["auto", "rows", "threads"])
def test_emulated_programs_match_the_kernel_ir_interpreter(variant):
    names = list(P.ALL)
    programs = {n: P.ALL[n]() for n in names}
    modules = {n: render_program(programs[n], prefix=f"p{i}_") for i, n in enumerate(names)}
    lib = emu.build(batch_source(list(modules.values())), CACHE)
    for name in names:
        kp = programs[name]
        feeds, variables = P.feeds_for(name, kp, np.random.default_rng(7))
        want = interp.run(kp, RunContext(dict(variables), {}, list(feeds)))
        got = emu.run(modules[name], kp, RunContext(dict(variables), {}, list(feeds)), lib,
                      variant)  # fmt: skip
        for buf, g, w in zip(kp.outputs, got, want):
            assert g.dtype == w.dtype and g.shape == w.shape, (name, buf)
            if w.dtype.kind == "f":
                tol = 2e-3 if w.dtype == np.float16 else 1e-4 if "gemm" in name else 1e-5
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True,
                                           err_msg=f"{name}:{buf}")  # fmt: skip
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{name}:{buf}")


@needs_host
@pytest.mark.parametrize("variant", ["rows", "threads"])
def test_many_thread_emulation_matches_the_interpreter(variant):
    """Every CUDA thread a host thread: block barriers, shared memory and warp shuffles
    really cooperate (2 warps per block, 3 blocks striding over the rest)."""
    names = [n for n in P.ALL if not n.startswith("every_math")]
    programs = {n: P.ALL[n]() for n in names}
    modules = {n: render_program(programs[n], prefix=f"t{i}_") for i, n in enumerate(names)}
    lib = emu.build(batch_source(list(modules.values())), CACHE, threaded=True)
    for name in names:
        kp = programs[name]
        feeds, variables = P.feeds_for(name, kp, np.random.default_rng(9))
        want = interp.run(kp, RunContext(dict(variables), {}, list(feeds)))
        got = emu.run(modules[name], kp, RunContext(dict(variables), {}, list(feeds)), lib,
                      variant, threaded=(3, 64))  # fmt: skip
        for buf, g, w in zip(kp.outputs, got, want):
            tol = 1e-4 if "gemm" in name else 1e-5
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{name}:{buf}")


@needs_host
def test_tiled_gemm_kernel_matches_the_interpreter():
    """kernels/cuda/gemm.cuh (the fallback without cuBLAS), 256 emulated threads a block:
    transposes, batches, broadcast B, offsets, alpha/beta, partial tiles, f16/f32/f64."""
    programs = {n: f() for n, f in P.GEMM_CASES.items()}
    modules = {n: render_program(kp, prefix=f"g{i}_") for i, (n, kp) in enumerate(programs.items())}
    lib = emu.build(batch_source(list(modules.values())), CACHE, threaded=True)
    rng = np.random.default_rng(4)
    for name, kp in programs.items():
        feeds = [rng.uniform(-1, 1, int(kp.buffers[b].shape[0].value)).astype(
            kp.buffers[b].dtype.np) for b in kp.inputs]  # fmt: skip
        want = interp.run(kp, RunContext({}, {}, feeds))[0]
        got = emu.run(modules[name], kp, RunContext({}, {}, feeds), lib, threaded=(4, 64))[0]
        tol = 2e-2 if got.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)


@needs_host
def test_status_flags_raise_like_the_interpreter():
    kp = P.status_check()
    m = render_program(kp)
    lib = emu.build(batch_source([m]), CACHE)
    x = np.zeros((3, 64), np.float32)
    x[1, 5] = np.nan
    # (the Kernel IR interpreter cannot vectorise a taken flag inside a reduction loop yet)
    with pytest.raises(InvalidArgumentError, match="x is bad : Tensor had NaN"):
        emu.run(m, kp, RunContext({}, {}, [x]), lib)
    x[1, 5] = np.inf
    with pytest.raises(InvalidArgumentError, match="x is bad : Tensor had Inf"):
        emu.run(m, kp, RunContext({}, {}, [x]), lib)


def test_geometry_choices():
    sm = render_program(P.softmax_rows()).kernels[0].launches[0]
    geo = L.configure(sm, {"r": 4096})
    assert geo.function.endswith("_rows") and geo.grid == (4096, 1, 1)
    assert geo.block[0] % 32 == 0 and 32 <= geo.block[0] <= 1024
    assert L.configure(sm, {"r": 0}).function is None  # empty: no launch
    chain = render_program(P.elementwise_chain()).kernels[0].launches[0]
    geo = L.configure(chain, {"n": 1 << 24})
    assert chain.vector == 4  # float4 loads and stores: a thread takes 4 elements a step
    assert geo.grid[0] * geo.block[0] * 4 >= 1 << 24 or geo.grid[0] == L.MAX_GRID
    assert L.rows_block(1) == 32 and L.rows_block(10**6) == 1024


def test_gemm_arguments_are_evaluated_from_dims():
    launch = render_program(P.gemm_bias_relu()).kernels[0].launches[0]
    g = L.gemm_args(launch, {"b": 256})
    assert (g.a, g.b, g.c) == ("x", "w", "h")
    assert (g.m, g.n, g.k, g.batch, g.lda, g.ldb) == (256, 512, 784, 1, 784, 512)
    assert g.tiled_grid() == (8, 4, 1)


def test_buffers_sharing_storage_are_not_restrict():
    f32 = dt.float32
    i = Var("i", dt.int64)
    body = (Loop("i", i64(0), i64(8), (Store("b", i, Load("a", i, f32)),
                                       Store("c", i, Load("x", i, f32))), True),)  # fmt: skip
    bufs = {
        "x": Buffer("x", f32, (i64(8),), "input"),
        "a": Buffer("a", f32, (i64(8),), "temp"),
        "b": Buffer("b", f32, (i64(8),), "temp", alias_of="a"),
        "c": Buffer("c", f32, (i64(8),), "output"),
    }
    src = render_program(KernelProgram(bufs, [Kernel("k", body)], {}, ("x",), ("c",))).body
    assert "const float* __restrict__ b_x" in src and "float* __restrict__ b_c" in src
    assert "const float* b_a" in src and "float* b_b" in src


def _program(body, buffers):
    return KernelProgram(buffers, [Kernel("k", body)], {}, (), ())


def test_unsupported_library_calls_are_named():
    bufs = {"a": Buffer("a", dt.float32, (i64(4),), "temp")}
    with pytest.raises(UnimplementedError, match="conv"):
        render_program(_program((LibCall("conv", ("a",)),), bufs))


def test_unknown_buffer_is_a_compile_error():
    body = (Loop("i", i64(0), i64(4), (Store("nope", i64(0), Const(1.0, dt.float32)),), True),)
    with pytest.raises(CompileError, match="nope"):
        render_program(_program(body, {}))


# -- every op example of the registry, and two training graphs, through the lowering ----------


def _training_graphs():
    """(name, graph, fetches+targets, placeholders, feed arrays, variables) of an MLP train
    step and a small CNN train step (each one SGD step, as the examples run them)."""
    import graphc as gc

    rng = np.random.default_rng(3)
    out = []
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 20), name="x")
        labels = gc.placeholder(gc.int64, (None,), name="labels")
        w1 = gc.Variable(rng.standard_normal((20, 32)).astype(np.float32) * 0.3, name="w1")
        b1 = gc.Variable(np.zeros(32, np.float32), name="b1")
        w2 = gc.Variable(rng.standard_normal((32, 10)).astype(np.float32) * 0.3, name="w2")
        b2 = gc.Variable(np.zeros(10, np.float32), name="b2")
        logits = gc.matmul(gc.nn.relu(gc.matmul(x, w1) + b1), w2) + b2
        xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = gc.reduce_mean(xent)
        params = [w1, b1, w2, b2]
        grads = gc.gradients(loss, params)
        step = gc.group(*[gc.assign_sub(p, 0.1 * gr) for p, gr in zip(params, grads)])
    feeds = [rng.random((16, 20), dtype=np.float32), rng.integers(0, 10, 16)]
    out.append(("mlp_train_step", g, [loss], [step], [x, labels], feeds, params))
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 8, 8, 1), name="x")
        labels = gc.placeholder(gc.int64, (None,), name="labels")
        k = gc.Variable(rng.standard_normal((3, 3, 1, 4)).astype(np.float32) * 0.3, name="k")
        w = gc.Variable(rng.standard_normal((64, 10)).astype(np.float32) * 0.1, name="w")
        h = gc.nn.max_pool(gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "SAME")),
                           [1, 2, 2, 1], [1, 2, 2, 1], "VALID")  # fmt: skip
        logits = gc.matmul(gc.reshape(h, (-1, 64)), w)
        xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = gc.reduce_mean(xent)
        grads = gc.gradients(loss, [k, w])
        step = gc.group(*[gc.assign_sub(p, 0.1 * gr) for p, gr in zip([k, w], grads)])
    feeds = [rng.random((4, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 4)]
    out.append(("cnn_train_step", g, [loss], [step], [x, labels], feeds, [k, w]))
    return out


def _collect_cases():
    """Every lowerable case: (id, reference Program, KernelProgram, feeds, variables, tol)."""
    cases, gaps = [], {}
    for name in sorted(REGISTRY):
        for i, example in enumerate(REGISTRY[name].examples()):
            for dynamic in (False, True):
                if dynamic and not example.dynamic:
                    continue
                for fusion in (True, False):
                    g, phs, outs, arrays = build_example(example, dynamic=dynamic)
                    try:
                        prog, _, kp = compile_kernels(outs, phs, fusion)
                    except UnimplementedError as exc:
                        gaps[name] = str(exc)
                        continue
                    cid = f"{name}-{i}-{'dynamic' if dynamic else 'static'}-{fusion}"
                    cases.append((cid, prog, kp, arrays, {}, (example.rtol, example.atol)))
    for name, g, fetches, targets, phs, feeds, _params in _training_graphs():
        with g.as_default():
            import graphc as gc

            sess = gc.Session(graph=g, target="reference")
            sess.run(gc.global_variables_initializer())
            variables = sess.variable_values()
            sess.close()
        for fusion in (True, False):
            try:
                from graphc.kernel.lower import lower
                from graphc.options import CompileOptions
                from graphc.passes.fusion import fuse
                from graphc.program import extract

                prog = extract(fetches, targets, phs)
                kp = lower(prog, fuse(prog, CompileOptions(fusion=fusion, cache_dir=None)))
            except UnimplementedError as exc:
                gaps[name] = str(exc)
                continue
            cases.append((f"{name}-{fusion}", prog, kp, feeds, variables, (1e-4, 1e-5)))
    return cases, gaps


@pytest.fixture(scope="module")
def lowered():
    cases, gaps = _collect_cases()
    modules, failures = {}, {}
    for j, (cid, _, kp, *_rest) in enumerate(cases):
        try:
            modules[cid] = render_program(kp, prefix=f"r{j}_")
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            failures[cid] = f"{type(exc).__name__}: {exc}"
    return cases, gaps, modules, failures


def test_every_lowered_example_renders(lowered):
    cases, gaps, modules, failures = lowered
    assert len(cases) > 500, "the registry walk found too few lowerable examples"
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
    for name in ("mlp_train_step", "cnn_train_step"):
        assert any(c[0].startswith(name) for c in cases) or name in gaps, name


@needs_nvcc
def test_every_lowered_example_compiles_to_ptx(lowered, ptx_cache):
    _, _, modules, _ = lowered
    mods = list(modules.values())
    # nvcc starts slowly and is single-threaded: two big translation units, side by side.
    # NVVM's optimiser is off (-Xcicc -O0: 5x faster); the front end still checks every
    # type and name, which is what this test is for (the hand-written programs above
    # compile with the runtime's optimised flags).
    halves = [mods[: len(mods) // 2], mods[len(mods) // 2 :]]
    flags = ("-std=c++17", "-Xcicc", "-O0")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(
            lambda part: compile_source(batch_source(part), "sm_90", "ptx", ptx_cache, flags),
            halves,
        ))  # fmt: skip
    text = "".join(r[0].decode() for r in results)
    for m in mods:
        for fn in m.functions:
            assert f".entry {fn}(" in text, fn


@needs_host
def test_every_lowered_example_runs_like_the_reference(lowered):
    """Host emulation of every generated kernel (both mappings) against the reference."""
    cases, _, modules, _ = lowered
    lib = emu.build(batch_source(list(modules.values())), CACHE, opt="-O0")
    problems = []
    for cid, prog, kp, feeds, variables, (rtol, atol) in cases:
        if cid not in modules:
            continue
        want = run_program(prog, RunContext(dict(variables), {}, list(feeds)))
        for variant in ("auto", "rows", "threads"):
            ctx = RunContext(dict(variables), {}, list(feeds))
            try:
                got = emu.run(modules[cid], kp, ctx, lib, variant)
            except Exception as exc:  # noqa: BLE001 - collected, reported together
                problems.append(f"{cid} [{variant}]: {type(exc).__name__}: {exc}")
                continue
            for k, (g, w) in enumerate(zip(got, want)):
                w = np.asarray(w)
                if g.shape != w.shape or g.dtype != w.dtype:
                    problems.append(f"{cid} [{variant}] output {k}: {g.dtype}{g.shape} vs "
                                    f"{w.dtype}{w.shape}")  # fmt: skip
                    continue
                tol = (max(rtol, 2e-3), max(atol, 2e-3)) if w.dtype == np.float16 else (
                    max(rtol, 1e-5), max(atol, 1e-6))  # fmt: skip
                ok = (np.allclose(g, w, rtol=tol[0], atol=tol[1], equal_nan=True)
                      if w.dtype.kind == "f" else np.array_equal(g, w))  # fmt: skip
                if not ok:
                    problems.append(f"{cid} [{variant}] output {k} differs")
    assert not problems, "\n".join(problems[:40])


@needs_host
@pytest.mark.parametrize("threaded", [None, (3, 64)], ids=["one-thread", "many-thread"])
@pytest.mark.parametrize("graph", [0, 1], ids=["mlp", "cnn"])
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
def test_planned_train_steps_run_like_the_reference(fusion, graph, threaded):
    """The executable's pipeline (optimise, fuse, lower, plan: aliasing, in-place updates)
    then the emulated module: three SGD steps keep matching the reference."""
    import graphc as gc
    from graphc.backends.cuda import REDUCTION_LAYOUT
    from graphc.passes.manager import optimize
    from graphc.pipeline import lower_program
    from graphc.program import extract

    name, g, fetches, targets, phs, feeds, _ = _training_graphs()[graph]
    with gc.Session(graph=g, target="reference") as sess:
        sess.run(gc.global_variables_initializer())
        variables = sess.variable_values()
    options = gc.CompileOptions(fusion=fusion, cache_dir=None)
    prog = extract(fetches, targets, phs)
    kp = lower_program(optimize(prog, options).program, options, REDUCTION_LAYOUT).kp
    assert kp.var_updates, "the step updates its variables"
    module = render_program(kp)
    lib = emu.build(batch_source([module]), CACHE, opt="-O0", threaded=bool(threaded))
    ref_vars, emu_vars = dict(variables), dict(variables)
    for _ in range(3):
        ref_ctx = RunContext(ref_vars, {}, list(feeds))
        want = run_program(prog, ref_ctx)
        ref_ctx.commit()
        ctx = RunContext(emu_vars, {}, list(feeds))
        got = emu.run(module, kp, ctx, lib, threaded=threaded)
        ctx.commit()
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    for var in ref_vars:
        np.testing.assert_allclose(emu_vars[var], ref_vars[var], rtol=1e-5, atol=1e-6)


@needs_nvcc
def test_runtime_compile_path_builds_a_cubin(tmp_path):
    """What build_executable does before pycuda: nvcc -cubin for the GPU's arch, cached."""
    import graphc as gc
    from graphc.backends.cuda import nvcc_options

    module = render_program(P.softmax_rows())
    flags = nvcc_options(gc.CompileOptions(fast_math=True, cache_dir=None))
    assert "-use_fast_math" in flags
    cubin, hit = compile_source(module.source, "sm_90", "cubin", tmp_path, flags)
    assert cubin[:4] == b"\x7fELF" and not hit
    assert compile_source(module.source, "sm_90", "cubin", tmp_path, flags) == (cubin, True)


def test_templates_are_found_in_a_checkout_or_inside_an_installed_package(tmp_path):
    from graphc.backends.cuda.render import find_kernels_dir, kernels_dir

    assert (kernels_dir() / "gemm.cuh").is_file()
    checkout = tmp_path / "checkout"
    (checkout / "graphc").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="_cuda_kernels"):
        find_kernels_dir(checkout / "graphc")
    installed = checkout / "graphc" / "_cuda_kernels"  # where setup.py puts them in a wheel
    installed.mkdir()
    (installed / "prelude.cuh").write_text("// x")
    assert find_kernels_dir(checkout / "graphc") == installed
    (checkout / "kernels" / "cuda").mkdir(parents=True)
    (checkout / "kernels" / "cuda" / "prelude.cuh").write_text("// y")
    assert find_kernels_dir(checkout / "graphc") == checkout / "kernels" / "cuda"


def test_setup_py_ships_the_templates_as_package_data():
    text = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    assert '"graphc._cuda_kernels": "kernels/cuda"' in text
    assert '"graphc._cuda_kernels": ["*.cuh"]' in text


@needs_nvcc
def test_example_graphs_compile_with_the_runtime_flags(ptx_cache):
    """Every executable examples/*_digits.py --target cuda builds (initialiser with random
    init, Adam train step, evaluation) rendered and compiled to PTX with the flags the
    runtime uses, in one translation unit."""
    pytest.importorskip("sklearn")
    import graphc as gc
    from graphc.backends.cuda import REDUCTION_LAYOUT, nvcc_options
    from graphc.passes.manager import optimize
    from graphc.pipeline import lower_program
    from graphc.program import extract
    from tests.test_examples import load

    options = gc.CompileOptions(cache_dir=None)
    modules = []
    for name in ("mlp_digits", "cnn_digits"):
        example = load(name)
        g = gc.Graph()
        with g.as_default():
            x, y, loss, accuracy, train_op = example.build_model(example.parse_args([]))
            init = gc.global_variables_initializer()
        for fetches in ([init], [train_op, loss], [loss, accuracy]):
            prog = extract([f for f in fetches if not isinstance(f, gc.Operation)],
                           [f for f in fetches if isinstance(f, gc.Operation)],
                           [x, y] if init not in fetches else [])  # fmt: skip
            kp = lower_program(optimize(prog, options).program, options, REDUCTION_LAYOUT).kp
            modules.append(render_program(kp, prefix=f"e{len(modules)}_"))
    assert len(modules) == 6 and sum(len(m.functions) for m in modules) > 60
    flags = nvcc_options(options)
    ptx, _ = compile_source(batch_source(modules), "sm_90", "ptx", ptx_cache, flags)
    text = ptx.decode()
    for m in modules:
        for fn in m.functions:
            assert f".entry {fn}(" in text, fn


def test_launches_survive_the_disk_cache_manifest(lowered):
    """Every launch of every lowered example (sizes, GEMM arguments with loop variables,
    vector widths) comes back equal from the JSON manifest of the executable cache."""
    import json

    from graphc.backends.cuda.cache import decode_module, encode_module

    _, _, modules, _ = lowered
    for cid, module in modules.items():
        back = decode_module(json.loads(json.dumps(encode_module(module))), module.source)
        assert back.kernels == module.kernels, cid
        assert back.functions == module.functions, cid
    assert any(ln.loops for m in modules.values() for k in m.kernels for ln in k.launches)
