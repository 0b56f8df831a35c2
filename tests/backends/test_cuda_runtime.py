"""The cuda target end to end. Tests marked ``cuda`` need an NVIDIA GPU and pycuda (the
conftest skips them otherwise; scripts/gpu_check.sh runs them on a GPU machine). The
unmarked ones check what a session says when either is missing."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import graphc as gc
from graphc.backends import cuda as cuda_backend
from graphc.kernel import interp
from graphc.ops.registry import REGISTRY
from graphc.runtime_state import RunContext
from tests.backends import cuda_programs as P
from tests.oracle import build_example, run

OPS = sorted(REGISTRY)
CASES = [(name, i) for name in OPS for i in range(len(REGISTRY[name].examples()))]


# -- without a GPU ------------------------------------------------------------------------------


def test_session_says_what_is_missing():
    problem = cuda_backend.availability()
    if problem is None:
        pytest.skip("a GPU and pycuda are usable here")
    with pytest.raises(gc.errors.UnavailableError, match="cuda") as err:
        gc.Session(target="cuda")
    assert problem in str(err.value)


def test_missing_pycuda_is_named(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "pycuda is not installed" in cuda_backend.availability()


def test_missing_driver_is_named(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setitem(sys.modules, "pycuda", types.ModuleType("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)  # import fails like libcuda missing
    assert "cannot load the CUDA driver" in cuda_backend.availability()


def _installed_driver(monkeypatch, gpus: int) -> None:
    """pycuda importable, its driver seeing ``gpus`` GPUs."""
    import importlib.util

    fake_driver = types.SimpleNamespace(
        init=lambda: None, Device=types.SimpleNamespace(count=lambda: gpus)
    )
    fake = types.ModuleType("pycuda")
    fake.driver = fake_driver
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setitem(sys.modules, "pycuda", fake)
    monkeypatch.setitem(sys.modules, "pycuda.driver", fake_driver)


def test_missing_gpu_is_named(monkeypatch):
    _installed_driver(monkeypatch, gpus=0)
    assert cuda_backend.availability() == "no CUDA GPU was found"
    with pytest.raises(gc.errors.UnavailableError, match="no CUDA GPU was found"):
        gc.Session(target="cuda")


def test_missing_nvcc_is_named(monkeypatch):
    from graphc.backends.cuda import nvcc

    _installed_driver(monkeypatch, gpus=1)
    monkeypatch.setattr(nvcc, "find_nvcc", lambda: None)
    assert "nvcc" in cuda_backend.availability() and "CUDA_HOME" in cuda_backend.availability()
    with pytest.raises(gc.errors.UnavailableError, match="nvcc"):
        gc.Session(target="cuda")


# -- on a GPU ---------------------------------------------------------------------------------


def _close(got, want, rtol, atol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if want.dtype.kind == "f":
        if want.dtype == np.float16:
            rtol, atol = max(rtol, 2e-3), max(atol, 2e-3)
        np.testing.assert_allclose(got, want, rtol=max(rtol, 1e-5), atol=max(atol, 1e-6),
                                   equal_nan=True, err_msg=what)  # fmt: skip
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.cuda
@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
def test_cuda_matches_reference(name, index, fusion):
    example = REGISTRY[name].examples()[index]
    g, phs, outs, arrays = build_example(example)
    feeds = dict(zip(phs, arrays))
    want = run(g, outs, feeds, target="reference")
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    try:
        got = run(g, outs, feeds, target="cuda", options=opts)
    except gc.errors.UnimplementedError as exc:
        pytest.skip(f"not lowered yet: {exc}")
    for t, w, v in zip(outs, want, got):
        _close(v, w, example.rtol, example.atol, t.name)


def _runner(kp, module):
    from graphc.backends.cuda.nvcc import cache_key, compile_source, find_nvcc
    from graphc.backends.cuda.runtime import CudaRunner, device

    dev = device()
    cubin, _ = compile_source(module.source, dev.arch, "cubin", None)
    return CudaRunner(dev, kp, module, cache_key(module.source, dev.arch, "cubin", find_nvcc()),
                      cubin)  # fmt: skip


@pytest.mark.cuda
@pytest.mark.parametrize("variant", [None, "rows", "threads"])
@pytest.mark.parametrize("name", sorted(P.ALL))
def test_hand_written_programs_on_the_gpu(name, variant):
    """Many threads per row: warp shuffles, shared memory and barriers against the spec."""
    from tests.backends.cuda_programs import render_program

    kp = P.ALL[name]()
    feeds, variables = P.feeds_for(name, kp, np.random.default_rng(11))
    runner = _runner(kp, render_program(kp))
    runner.variant = variant
    want = interp.run(kp, RunContext(dict(variables), {}, list(feeds)))
    got = runner.run(RunContext(dict(variables), {}, list(feeds)))
    for buf, g, w in zip(kp.outputs, got, want):
        _close(g, w, 1e-4 if "gemm" in name else 1e-5, 1e-5, f"{name}:{buf}")


@pytest.mark.cuda
def test_large_rows_and_reductions():
    """Sizes that use many blocks, long rows (1024 threads) and grid-stride wrap-around."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 5000)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        p = gc.placeholder(gc.float32, (None, None))
        outs = [gc.nn.softmax(p), gc.reduce_sum(p, axis=0), gc.reduce_max(p), gc.reduce_mean(p)]
    want = run(g, outs, {p: x}, target="reference")
    got = run(g, outs, {p: x}, target="cuda", options=gc.CompileOptions(cache_dir=None))
    for w, v in zip(want, got):
        np.testing.assert_allclose(v, w, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_vectorised_maps_with_tails_and_broadcasts():
    """float4 loads/stores over many blocks: an odd length (scalar tail), a broadcast bias
    row, a float64 result (double2) and an in-place variable update."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1 << 20) + 3).astype(np.float32)
    a = rng.standard_normal((4099, 64)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        px = gc.placeholder(gc.float32, (None,))
        pa = gc.placeholder(gc.float32, (None, 64))
        pb = gc.placeholder(gc.float32, (64,))
        v = gc.Variable(np.ones((4099, 64), np.float32))
        outs = [gc.tanh(px * 0.5) * px, gc.cast(gc.nn.relu(pa + pb), gc.float64)]
        upd = gc.assign_sub(v, 0.5 * pa)
        init = gc.global_variables_initializer()
    feeds = {px: x, pa: a, pb: b}
    want = run(g, outs, feeds, target="reference")
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(init)
        got = s.run(outs, feeds)
        s.run(upd, feeds)
        updated = s.run(v)
    for w, v_ in zip(want, got):
        _close(v_, w, 1e-5, 1e-6, "vectorised map")
    np.testing.assert_allclose(updated, 1 - 0.5 * a, rtol=1e-6)


def _mlp():
    """The W3-sized layer pair (784-512-10, batch 256)."""
    return P.mlp_step(784, 512, 10, 256, lr=0.1, scale=0.05)


@pytest.mark.cuda
def test_variables_stay_on_the_device_and_train_like_the_reference():
    g, loss, step, init, params, feeds = _mlp()
    results = {}
    for target in ("reference", "cuda"):
        with gc.Session(graph=g, target=target, options=gc.CompileOptions(cache_dir=None)) as s:
            s.run(init)
            losses = [s.run([loss, step], feeds)[0] for _ in range(5)]
            if target == "cuda":
                resident = [getattr(v, "__graphc_device__", False) for v in s._variables.values()]
                assert all(resident), "variables were copied back to the host"
            results[target] = (losses, s.variable_values())
    np.testing.assert_allclose(results["cuda"][0], results["reference"][0], rtol=1e-4)
    for name, value in results["reference"][1].items():
        np.testing.assert_allclose(results["cuda"][1][name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_trace_gives_per_kernel_gpu_times():
    g, loss, step, init, params, feeds = _mlp()
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(init)
        meta = gc.RunMetadata()
        s.run([loss, step], feeds, options=gc.RunOptions(trace=True), run_metadata=meta)
        exe = s.compile([loss, step], list(feeds))
    assert len(meta.step_stats) == len(exe.kernels) > 1
    assert all(st.duration >= 0 for st in meta.step_stats)
    assert sum(st.duration for st in meta.step_stats) > 0
    assert "traceEvents" in meta.chrome_trace()


@pytest.mark.cuda
def test_failed_run_commits_nothing():
    g = gc.Graph()
    with g.as_default():
        v = gc.Variable(np.ones(4, np.float32))
        x = gc.placeholder(gc.float32, (4,))
        upd = gc.assign_add(v, gc.check_numerics(x, "x is bad"))
        init = gc.global_variables_initializer()
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(init)
        s.run(upd, {x: np.ones(4, np.float32)})
        with pytest.raises(gc.errors.InvalidArgumentError, match="x is bad"):
            s.run(upd, {x: np.array([1, np.nan, 1, 1], np.float32)})
        np.testing.assert_array_equal(s.run(v), np.full(4, 2, np.float32))


@pytest.mark.cuda
def test_compiled_modules_are_cached_on_disk(tmp_path):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None,))
        y = gc.tanh(x * 2.0) + 1.0
    from graphc.backends.cuda import nvcc
    from graphc.backends.cuda.runtime import device

    opts = gc.CompileOptions(cache_dir=tmp_path)
    stats = []
    for _ in range(2):
        with gc.Session(graph=g, target="cuda", options=opts) as s:
            np.testing.assert_allclose(s.run(y, {x: np.ones(3, np.float32)}),
                                       np.tanh(2.0) + 1.0, rtol=1e-6)  # fmt: skip
            exe = s.compile(y, [x])
            stats.append(exe.stats)
    assert [st["cubin_from_disk"] for st in stats] == [False, True]
    assert [st["loaded_from_disk"] for st in stats] == [False, True]  # the executable entry
    assert list(tmp_path.glob("cuda-*.gcx"))
    # nvcc's cubin underneath: an authenticated entry named by its key, no raw .cubin file
    arch = device().arch
    key = nvcc.cache_key(exe.stages["cuda"], arch, "cubin", nvcc.find_nvcc(),
                         cuda_backend.nvcc_options(opts))  # fmt: skip
    names = [p.name for p in tmp_path.glob("nvcc-*.gcx")]
    assert f"nvcc-cubin-{key}.gcx" in names and all(n.startswith("nvcc-cubin-") for n in names)
    assert not (tmp_path / "cuda").exists() and not list(tmp_path.rglob("*.cubin"))
    cubin = nvcc.load_cached(tmp_path, key, "cubin", arch)
    assert cubin is not None and cubin[:4] == b"\x7fELF"
