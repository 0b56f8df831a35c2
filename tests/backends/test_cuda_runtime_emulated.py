"""graphc's pycuda runtime (graphc/backends/cuda/runtime.py), unmodified, on a fake pycuda
whose kernels run in the many-thread host emulation (tests/backends/fake_pycuda.py).

This checks the runtime's own logic without a GPU: buffer binding and storage sharing,
feeds in / fetches out, launch geometry, the tiled GEMM fallback, status flags, device-
resident variables (DeviceArray) and commit-on-success, traces. pycuda's real behaviour,
cuBLAS and the GPU itself are checked by the tests marked ``cuda``.
"""

from __future__ import annotations

import importlib.machinery
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cuda import nvcc
from graphc.kernel import interp
from graphc.runtime_state import RunContext
from tests.backends import cuda_emulation as emu
from tests.backends import cuda_programs as P
from tests.backends import fake_pycuda

pytestmark = pytest.mark.skipif(emu.available() is not None, reason=str(emu.available()))

#: nvcc.compile_source itself (the fake_gpu fixture replaces it)
REAL_COMPILE_SOURCE = nvcc.compile_source


@pytest.fixture
def fake_gpu(monkeypatch):
    """Session(target="cuda") works, on the fake pycuda (nvcc hands back the source)."""
    fake_pycuda.install(monkeypatch)
    sys.modules["pycuda"].__spec__ = importlib.machinery.ModuleSpec("pycuda", None)
    from graphc.backends.cuda import cublas, nvcc

    def fake_nvcc(source, arch, kind, cache_dir, options=()):
        return source.encode(), False

    monkeypatch.setattr(nvcc, "compile_source", fake_nvcc)
    if nvcc.find_nvcc() is None:  # headers without the compiler: the fake needs neither
        monkeypatch.setattr(nvcc, "find_nvcc", lambda: "/bin/true")
    monkeypatch.setattr(cublas, "load", lambda: None)  # the tiled GEMM of kernels/cuda
    monkeypatch.delitem(sys.modules, "graphc.backends.cuda.runtime", raising=False)
    import graphc.backends.cuda.runtime as runtime

    yield runtime
    monkeypatch.delitem(sys.modules, "graphc.backends.cuda.runtime", raising=False)


def test_fake_gpu_is_available(fake_gpu):
    from graphc.backends.cuda import availability

    assert availability() is None
    assert fake_gpu.device().arch == "sm_90"


RUNNER_CASES = ["softmax_rows", "layer_norm_rows", "column_sum_and_full_sum", "gemm_bias_relu",
                "split_kernel", "status_check", "every_math_float32"]  # fmt: skip


@pytest.mark.parametrize("name", RUNNER_CASES)
def test_runner_matches_the_interpreter(fake_gpu, name):
    from tests.backends.cuda_programs import render_program

    kp = P.ALL[name]()
    feeds, variables = P.feeds_for(name, kp, np.random.default_rng(2))  # (may set consts)
    module = render_program(kp)
    runner = fake_gpu.CudaRunner(fake_gpu.device(), kp, module, name, module.source.encode())
    want = interp.run(kp, RunContext(dict(variables), {}, list(feeds)))
    got = runner.run(RunContext(dict(variables), {}, list(feeds)))
    for buf, g, w in zip(kp.outputs, got, want):
        tol = 1e-4 if "gemm" in name else 1e-5
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{name}:{buf}")


def _mlp():
    return P.mlp_step()  # small: every CUDA thread is a host thread here


def test_training_keeps_variables_on_the_device(fake_gpu):
    g, loss, step, init, params, feeds = _mlp()
    results = {}
    for target in ("reference", "cuda"):
        with gc.Session(graph=g, target=target, options=gc.CompileOptions(cache_dir=None)) as s:
            s.run(init)
            losses = [s.run([loss, step], feeds)[0] for _ in range(4)]
            if target == "cuda":
                assert all(isinstance(v, fake_gpu.DeviceArray) for v in s._variables.values())
                w1 = s.run(params[0])  # a fetched variable comes back as a host array
                assert isinstance(w1, np.ndarray)
            results[target] = (losses, s.variable_values())
    np.testing.assert_allclose(results["cuda"][0], results["reference"][0], rtol=1e-5)
    for name, value in results["reference"][1].items():
        np.testing.assert_allclose(results["cuda"][1][name], value, rtol=1e-5, atol=1e-6)


def test_trace_lists_every_kernel(fake_gpu):
    g, loss, step, init, params, feeds = _mlp()
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(init)
        meta = gc.RunMetadata()
        s.run([loss, step], feeds, options=gc.RunOptions(trace=True), run_metadata=meta)
        exe = s.compile([loss, step], list(feeds))
    assert [st.name for st in meta.step_stats] == [k.name for k in exe.kernels]
    assert all(st.duration > 0 for st in meta.step_stats)
    assert exe.stats["kernel_count"] == len(exe.kernels) and "cuda" in exe.dump_ir()


@pytest.mark.parametrize(
    "test",
    ["test_failed_run_commits_nothing", "test_vectorised_maps_with_tails_and_broadcasts",
     "test_large_rows_and_reductions"],
)  # fmt: skip
def test_gpu_tests_pass_on_the_fake_gpu(fake_gpu, test):
    """Tests of test_cuda_runtime.py marked ``cuda``, run here on the fake pycuda."""
    from tests.backends import test_cuda_runtime

    getattr(test_cuda_runtime, test)()


def test_dynamic_sizes_reuse_one_executable(fake_gpu):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, None))
        y = gc.nn.softmax(x * 2.0) + gc.reduce_sum(x, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        for shape in [(3, 5), (70, 130), (1, 1), (0, 4)]:
            a = rng.standard_normal(shape).astype(np.float32)
            e = np.exp(2 * a - (2 * a).max(axis=1, keepdims=True)) if a.size else a
            want = e / e.sum(axis=1, keepdims=True) + a.sum(axis=1, keepdims=True)
            np.testing.assert_allclose(s.run(y, {x: a}), want, rtol=1e-5, atol=1e-6)
        assert s.cache_info()["compiles"] == 1


@pytest.mark.parametrize("name", ["mlp_digits", "cnn_digits"])
def test_examples_train_on_the_cuda_target_like_the_reference(fake_gpu, name):
    """examples/*_digits.py --target cuda, end to end through gc.Session (random init,
    Adam, fused train step, evaluation): the same losses and accuracies as the reference."""
    pytest.importorskip("sklearn")
    from tests.test_examples import load

    example = load(name)
    flags = ["--steps", "4", "--epochs", "1", "--batch-size", "16", "--seed", "1"]
    if name == "cnn_digits":
        flags += ["--channels", "4", "--dense", "16"]
    hist = {t: example.train(example.parse_args([*flags, "--target", t]))
            for t in ("reference", "cuda")}  # fmt: skip
    np.testing.assert_allclose(hist["cuda"].step_losses, hist["reference"].step_losses,
                               rtol=1e-4)  # fmt: skip
    np.testing.assert_allclose(hist["cuda"].test_accuracy, hist["reference"].test_accuracy,
                               atol=1e-6)  # fmt: skip


def test_gpu_benchmarks_run_on_the_emulated_gpu(fake_gpu, tmp_path):
    """The GPU rows' two entry points (scripts/gpu_kernel_bench.py and
    ``graphc bench --target cuda``) at tiny sizes: every row runs and checks its result, so
    a device session spends its time measuring, not debugging the scripts."""
    import importlib.util
    import json
    from pathlib import Path

    from graphc.bench.runner import run_suite

    path = Path(__file__).resolve().parents[2] / "scripts" / "gpu_kernel_bench.py"
    spec = importlib.util.spec_from_file_location("gpu_kernel_bench", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path), "--quick"]) == 0
    rows = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert rows["device"] == "host emulation"
    for name in ("W1", "W2"):
        assert isinstance(rows[name], dict), rows[name]  # a failed row is a string
        assert rows[name]["max_abs_error"] < 1e-5 and rows[name]["kernel_ms"] > 0
    assert isinstance(rows["W3"], dict) and rows["W3"]["step_ms"] > 0, rows["W3"]
    result = run_suite("W1,W2,W3", quick=True, target="cuda", repeat=1, budget_s=1,
                       peers=[], progress=False)  # fmt: skip
    assert [w.id for w in result.workloads] == ["W1", "W2", "W3"]
    assert result.ok and result.options["target"] == "cuda"
    for w in result.workloads:
        assert w.status == "ok" and w.impls, (w.id, w.status, w.reason)
        assert all(i.status == "ok" for i in w.impls), [(i.name, i.reason) for i in w.impls]


def test_sizes_are_worked_out_once_per_set_of_dims(fake_gpu):
    """A repeated run reuses its size plan (no size arithmetic in Python); a new batch size
    gets its own; a failing shape check raises every time and is never cached."""
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, (None,))
        b = gc.placeholder(gc.float32, (None,))
        y = gc.nn.relu(a + b) * 2.0
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        runner = s.compile(y, [a, b]).runner
        for n in (5, 5, 9, 5):
            x = np.arange(n, dtype=np.float32)
            np.testing.assert_allclose(s.run(y, {a: x, b: x}), np.maximum(2 * x, 0) * 2)
        assert len(runner.plans) == 2
        for _ in range(2):
            with pytest.raises(gc.errors.InvalidArgumentError):
                s.run(y, {a: np.ones(3, np.float32), b: np.ones(4, np.float32)})
        assert len(runner.plans) == 2
        for n in range(20, 20 + fake_gpu.PLAN_CACHE + 3):
            s.run(y, {a: np.ones(n, np.float32), b: np.ones(n, np.float32)})
        assert len(runner.plans) == fake_gpu.PLAN_CACHE


def test_overhead_script_runs():
    """scripts/cuda_overhead.py (the cuda runtime's own cost per run, without a GPU)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "scripts" / "cuda_overhead.py"),
                           "--runs", "5"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "median Python overhead" in proc.stdout, proc.stdout


def test_concurrent_runs_with_different_sizes(fake_gpu):
    """Two threads share one executable with different batch sizes: each run's plan and
    kept storage stay its own (they change only under the device lock)."""
    from concurrent.futures import ThreadPoolExecutor

    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, (None, 8))
        y = gc.nn.softmax(a * 3.0) + 1.0
    rng = np.random.default_rng(3)
    inputs = {n: rng.standard_normal((n, 8)).astype(np.float32) for n in (5, 9)}
    want = {}
    for n, x in inputs.items():
        e = np.exp(3 * x - (3 * x).max(axis=1, keepdims=True))
        want[n] = e / e.sum(axis=1, keepdims=True) + 1.0
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(y, {a: inputs[5]})

        def work(n):
            for _ in range(8):
                np.testing.assert_allclose(s.run(y, {a: inputs[n]}), want[n], rtol=1e-5)
            return n

        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(work, (5, 9))) == [5, 9]


def test_export_from_a_cuda_session_and_load_anywhere(fake_gpu, tmp_path):
    """gc.export of a trained cuda session (variables resident on the device) writes their
    values; gc.load runs the artifact on cuda and on cpu with the same results."""
    g, loss, step, init, params, feeds = _mlp()
    x = next(t for t in feeds if t.op.type == "Placeholder" and t.dtype == gc.float32)
    with g.as_default():
        probs = gc.nn.softmax(gc.matmul(gc.nn.relu(gc.matmul(x, params[0]) + params[1]),
                                        params[2]))  # fmt: skip
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(init)
        for _ in range(3):
            s.run([loss, step], feeds)
        want = s.run(probs, {x: feeds[x]})
        path = gc.export(s, tmp_path / "mlp.gcx", {"x": x}, {"probs": probs})
    for target in ("cuda", "cpu"):
        model = gc.load(path, target=target)
        np.testing.assert_allclose(model(x=feeds[x])["probs"], want, rtol=1e-5, atol=1e-6)


def test_executables_are_cached_on_disk_like_the_cpu_target(fake_gpu, tmp_path, monkeypatch):
    """A second session with the same cache_dir loads the whole executable: no pass, no
    lowering, no nvcc; same results, same kernels, stages still there. A damaged entry is a
    miss that compiles again; other options are another entry."""
    import graphc.passes.manager as manager
    from graphc.backends.cuda import nvcc

    g, loss, step, init, params, feeds = _mlp()
    opts = gc.CompileOptions(cache_dir=tmp_path)

    def train(expect_disk):
        with gc.Session(graph=g, target="cuda", options=opts) as s:
            s.run(init)
            losses = [s.run([loss, step], feeds)[0] for _ in range(3)]
            exe = s.compile([loss, step], list(feeds))
            assert exe.stats["loaded_from_disk"] is expect_disk
            return losses, exe, s.variable_values()

    first, exe1, vars1 = train(False)
    entries = sorted(tmp_path.glob("cuda-*.gcx"))
    assert len(entries) == 2  # the initialiser and the train step

    def refuse(*args, **kwargs):
        raise AssertionError("a cache hit must not compile")

    with monkeypatch.context() as m:
        m.setattr(manager, "optimize", refuse)
        m.setattr(nvcc, "compile_source", refuse)
        second, exe2, vars2 = train(True)
    np.testing.assert_array_equal(second, first)
    for name, value in vars1.items():
        np.testing.assert_array_equal(vars2[name], value)
    assert [k.name for k in exe2.kernels] == [k.name for k in exe1.kernels]
    assert exe2.dump_ir("cuda") == exe1.dump_ir("cuda") and "kernel" in exe2.stages
    for entry in entries:
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    again, _, _ = train(False)  # damaged: compiled again, and rewritten
    np.testing.assert_allclose(again, first, rtol=1e-6)
    opts = gc.CompileOptions(cache_dir=tmp_path, fusion=False)
    train(False)
    assert len(list(tmp_path.glob("cuda-*.gcx"))) == 4


@pytest.mark.parametrize("plant", ["raw bytes", "sha256", "old raw layout"])
def test_a_planted_cubin_never_reaches_the_driver(fake_gpu, tmp_path, monkeypatch, plant):
    """Under the executable cache, nvcc's own cache (nvcc-cubin-<key>.gcx, authenticated):
    when the executable entry misses, a cubin planted for the module (raw bytes under the
    entry's name, an entry rebuilt with a recomputed checksum, or a raw file in the old
    layout cuda/<key>.cubin) is a miss too: nvcc runs and the driver loads its output, never
    the planted bytes. A genuine entry is a hit."""
    import hashlib

    from graphc.backends.llvm import cache
    from tests.backends.test_cache_trust import _rebuild, compiles, write_fake_nvcc

    script = write_fake_nvcc(tmp_path / "toolkit" / "bin")  # its output is the source
    monkeypatch.setattr(nvcc, "compile_source", REAL_COMPILE_SOURCE)
    monkeypatch.setattr(nvcc, "find_nvcc", lambda: str(script))
    loaded = []
    real_load = fake_pycuda.module_from_buffer
    monkeypatch.setattr(fake_pycuda, "module_from_buffer",
                        lambda data: loaded.append(data) or real_load(data))  # fmt: skip
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None,))
        y = gc.tanh(x * 2.0) + 1.0
    d = tmp_path / "cache"

    def run():
        """A session as a new process would have it: no module loaded, no executable entry
        on disk (so the cubin cache is asked)."""
        fake_gpu.device().modules.clear()
        for e in d.glob("cuda-*.gcx"):
            e.unlink()
        loaded.clear()
        with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=d)) as s:
            out = s.run(y, {x: np.ones(3, np.float32)})
            exe = s.compile(y, [x])
        np.testing.assert_allclose(out, np.tanh(2.0) + 1.0, rtol=1e-6)
        return exe.stats["cubin_from_disk"], exe.stages["cuda"].encode()

    from_disk, source = run()
    assert not from_disk and compiles(script) == 1 and loaded == [source]
    (entry,) = d.glob("nvcc-cubin-*.gcx")
    key = entry.name[len("nvcc-cubin-") : -len(".gcx")]
    planted = b"// planted\n" + source  # would run like the real one: only its origin differs
    if plant == "raw bytes":
        entry.write_bytes(planted)
    elif plant == "sha256":
        manifest = {"key": key, "kind": "cubin", "arch": "sm_90"}
        entry.write_bytes(_rebuild(manifest, planted, lambda body: hashlib.sha256(body).digest()))
    else:
        entry.unlink()
        (d / "cuda").mkdir(mode=0o700)
        (d / "cuda" / f"{key}.cubin").write_bytes(planted)
    assert run() == (False, source) and compiles(script) == 2  # a miss: nvcc ran
    assert loaded == [source]  # the driver got nvcc's output, not the planted bytes
    assert cache.load(d, key, target="nvcc-cubin")[1] == source  # the entry was rewritten
    assert run() == (True, source) and compiles(script) == 2 and loaded == [source]


@pytest.mark.parametrize("name", sorted(P.GEMM_CASES))
def test_gemm_launches_through_the_cublas_interface(fake_gpu, name):
    """graphc/backends/cuda/cublas.py's row-major -> column-major mapping (swapped operands,
    transposes, leading dimensions, strides, offsets, alpha/beta) against a libcublas fake
    written from cuBLAS's documented contract; float16 falls back to the tiled kernel."""
    from graphc.backends.cuda import cublas
    from tests.backends.cuda_programs import render_program
    from tests.backends.fake_cublas import FakeCublasLib

    lib = FakeCublasLib()
    dev = fake_gpu.device()
    dev.cublas = cublas.Cublas(lib)
    kp = P.GEMM_CASES[name]()
    module = render_program(kp)
    runner = fake_gpu.CudaRunner(dev, kp, module, name, module.source.encode())
    rng = np.random.default_rng(8)
    feeds = [rng.uniform(-1, 1, int(kp.buffers[b].shape[0].value)).astype(
        kp.buffers[b].dtype.np) for b in kp.inputs]  # fmt: skip
    want = interp.run(kp, RunContext({}, {}, feeds))[0]
    got = runner.run(RunContext({}, {}, feeds))[0]
    tol = 2e-2 if got.dtype == np.float16 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    calls = lib.cublasSgemmStridedBatched.calls + lib.cublasDgemmStridedBatched.calls
    assert calls == (0 if name.startswith("f16") else 1)
    assert lib.stream == (None if name.startswith("f16") else dev.stream.handle)


def test_training_through_the_cublas_interface(fake_gpu):
    """The MLP train step with its GEMMs (forward, both gradients, transposed operands) on
    the cuBLAS path (the fake of tests/backends/fake_cublas.py) matches the reference."""
    from graphc.backends.cuda import cublas
    from tests.backends.fake_cublas import FakeCublasLib

    lib = FakeCublasLib()
    fake_gpu.device().cublas = cublas.Cublas(lib)
    g, loss, step, init, params, feeds = _mlp()
    results = {}
    for target in ("reference", "cuda"):
        with gc.Session(graph=g, target=target, options=gc.CompileOptions(cache_dir=None)) as s:
            s.run(init)
            results[target] = ([s.run([loss, step], feeds)[0] for _ in range(3)],
                               s.variable_values())  # fmt: skip
    assert lib.cublasSgemmStridedBatched.calls >= 3 * 5  # forward 2 + backward 3 per step
    np.testing.assert_allclose(results["cuda"][0], results["reference"][0], rtol=1e-5)
    for name, value in results["reference"][1].items():
        np.testing.assert_allclose(results["cuda"][1][name], value, rtol=1e-5, atol=1e-6)


def test_checkpoints_of_device_resident_variables(fake_gpu, tmp_path):
    """Saver.save reads variables that live on the device; restore into a new cuda
    session continues training exactly where the first one was."""
    g, loss, step, init, params, feeds = _mlp()
    with g.as_default():
        saver = gc.train.Saver()
    opts = gc.CompileOptions(cache_dir=None)
    with gc.Session(graph=g, target="cuda", options=opts) as s:
        s.run(init)
        s.run([loss, step], feeds)
        path = saver.save(s, str(tmp_path / "ckpt"))
        saved = s.variable_values()
        after = [s.run([loss, step], feeds)[0] for _ in range(2)]
    with gc.Session(graph=g, target="cuda", options=opts) as s:
        saver.restore(s, path)
        for name, value in saved.items():
            np.testing.assert_array_equal(s.variable_values()[name], value)
        again = [s.run([loss, step], feeds)[0] for _ in range(2)]
    np.testing.assert_array_equal(again, after)


def test_out_of_device_memory_is_resource_exhausted_and_changes_nothing(fake_gpu):
    """A run that cannot get device memory raises ResourceExhaustedError naming the sizes;
    the session and its variables are as before, and the next run that fits works."""
    g = gc.Graph()
    with g.as_default():
        v = gc.Variable(np.ones(4, np.float32), name="v")
        x = gc.placeholder(gc.float32, (None,))
        upd = gc.assign_add(v, v * 0.0 + gc.reduce_sum(x))
        init = gc.global_variables_initializer()
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(init)
        s.run(upd, {x: np.ones(3, np.float32)})
        pool = fake_gpu.device().pool
        pool.limit = 4096
        with pytest.raises(gc.errors.ResourceExhaustedError, match="bytes requested") as err:
            s.run(upd, {x: np.ones(10_000, np.float32)})
        assert isinstance(err.value, MemoryError)
        np.testing.assert_array_equal(s.run(v), np.full(4, 4, np.float32))
        pool.limit = fake_pycuda.TOTAL_MEMORY
        s.run(upd, {x: np.ones(10_000, np.float32)})
        np.testing.assert_array_equal(s.run(v), np.full(4, 10_004, np.float32))


def test_fed_sizes_are_checked_before_any_launch(fake_gpu):
    """The run-time shape contracts and the size limit hold on the cuda target too: the
    observed out-of-bounds cases raise before anything is copied or launched."""
    f32 = np.float32
    a = gc.placeholder(gc.float32, (1, None), name="a")
    b = gc.placeholder(gc.float32, (1, None), name="b")
    x = gc.placeholder(gc.float32, (None, None), name="x")
    with gc.Session(target="cuda") as sess:
        with pytest.raises(gc.errors.InvalidArgumentError, match=r"ConcatV2.*built at.*4 vs 3"):
            sess.run(gc.concat([a, b], 0), {a: np.ones((1, 4), f32), b: np.ones((1, 3), f32)})
        with pytest.raises(gc.errors.InvalidArgumentError, match="Squeeze"):
            sess.run(gc.squeeze(x, 0), {x: np.ones((2, 3), f32)})
        with pytest.raises(gc.errors.ResourceExhaustedError):
            sess.run(gc.exp(x @ gc.transpose(x)), {x: np.ones((2**31, 0), f32)})
        out = sess.run(gc.concat([a, b], 0), {a: np.ones((1, 2), f32), b: np.ones((1, 2), f32)})
    np.testing.assert_array_equal(out, np.ones((2, 2)))
