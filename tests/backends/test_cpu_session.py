"""The cpu target through the public API: compile cache (memory and disk), dynamic dims,
threads, tracing, inspection, variables and the host fallback label."""

import os

import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import cache


def _mlp(batch=None):
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (batch, 8), name="x")
    labels = gc.placeholder(gc.int64, (batch,), name="labels")
    w1 = gc.Variable(rng.normal(size=(8, 16)).astype(np.float32) * 0.3, name="w1")
    b1 = gc.Variable(np.zeros(16, np.float32), name="b1")
    w2 = gc.Variable(rng.normal(size=(16, 4)).astype(np.float32) * 0.3, name="w2")
    h = gc.nn.relu(gc.matmul(x, w1) + b1)
    logits = gc.matmul(h, w2)
    loss = gc.reduce_mean(
        gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )
    step = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return x, labels, loss, step


def _train(target, options, sizes=(5, 3, 9)):
    gc.reset_default_graph()
    x, labels, loss, step = _mlp()
    rng = np.random.default_rng(1)
    losses = []
    with gc.Session(target=target, options=options) as sess:
        sess.run(gc.global_variables_initializer())
        for n in sizes:
            xv = rng.normal(size=(n, 8)).astype(np.float32)
            lv = rng.integers(0, 4, size=n)
            losses.append(sess.run([loss, step], {x: xv, labels: lv})[0])
        info = sess.cache_info()
        values = sess.variable_values()
    return losses, info, values


def test_training_steps_match_reference_with_one_compile_for_all_batch_sizes(tmp_path):
    opts = gc.CompileOptions(cache_dir=tmp_path)
    losses, info, values = _train("cpu", opts)
    ref_losses, _, ref_values = _train("reference", None)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for k in ref_values:
        np.testing.assert_allclose(values[k], ref_values[k], rtol=1e-5, atol=1e-6)
    # initializer + step (new batch sizes reuse the step: no recompilation)
    assert info["compiles"] == 2 and info["hits"] == 2


def test_disk_cache_hit_skips_compilation_and_survives_corruption(tmp_path):
    opts = gc.CompileOptions(cache_dir=tmp_path)
    first, info1, _ = _train("cpu", opts)
    assert info1["compiles"] == 2 and info1["disk_loads"] == 0
    entries = sorted(tmp_path.glob("cpu-*.gcx"))
    assert len(entries) == 2
    second, info2, _ = _train("cpu", opts)
    assert info2["compiles"] == 0 and info2["disk_loads"] == 2
    np.testing.assert_array_equal(first, second)
    # corrupt one entry and truncate the other: both become misses and are rewritten
    data = bytearray(entries[0].read_bytes())
    data[len(data) // 3] ^= 0x5A
    entries[0].write_bytes(bytes(data))
    entries[1].write_bytes(entries[1].read_bytes()[:50])
    third, info3, _ = _train("cpu", opts)
    assert info3["compiles"] == 2 and info3["disk_loads"] == 0
    np.testing.assert_array_equal(first, third)
    _, info4, _ = _train("cpu", opts)
    assert info4["disk_loads"] == 2
    assert not list(tmp_path.glob(".tmp-*"))  # no temp files left behind


def test_loaded_from_disk_flag_and_inspection(tmp_path):
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = gc.tanh(x * 2.0 + 1.0)
    opts = gc.CompileOptions(cache_dir=tmp_path)
    with gc.Session(options=opts) as sess:
        exe = sess.compile(y, [x])
        assert exe.stats["loaded_from_disk"] is False
        assert exe.stats["kernel_count"] == len(exe.kernels) == 1
        assert {"Mul", "Add", "Tanh"} <= set(exe.kernels[0].op_types)
        assert "compile_seconds" in exe.stats and "llvm_opt" in exe.stats["compile_seconds"]
        ir = exe.dump_ir("llvm")
        assert "define" in ir and "gc_entry" in ir
        assert "<16 x float>" in ir or "<8 x float>" in ir  # the loop was vectorised
        asm = exe.dump_ir("asm")
        assert "gc_entry" in asm
    with gc.Session(options=opts) as sess:
        exe2 = sess.compile(y, [x])
        assert exe2.stats["loaded_from_disk"] is True
        assert sess.cache_info()["disk_loads"] == 1 and sess.cache_info()["compiles"] == 0
        assert "gc_entry" in exe2.dump_ir("llvm")
        v = np.linspace(-2, 2, 7).astype(np.float32)
        np.testing.assert_allclose(sess.run(y, {x: v}), np.tanh(v * 2 + 1), rtol=1e-6)


def test_cache_key_depends_on_options_and_program(tmp_path):
    x = gc.placeholder(gc.float32, (3,), name="x")
    y = x * 2.0
    z = x * 3.0
    for fusion in (True, False):
        with gc.Session(options=gc.CompileOptions(cache_dir=tmp_path, fusion=fusion)) as sess:
            sess.run([y, z], {x: np.ones(3, np.float32)})
            sess.run(y, {x: np.ones(3, np.float32)})
    assert len(list(tmp_path.glob("cpu-*.gcx"))) == 4


def test_unwritable_cache_dir_still_compiles(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    x = gc.placeholder(gc.float32, (2,))
    with gc.Session(options=gc.CompileOptions(cache_dir=blocker / "sub")) as sess:
        np.testing.assert_array_equal(sess.run(x + 1, {x: [1, 2]}), [2, 3])


def test_trace_fills_step_stats_and_chrome_trace():
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    y = gc.nn.softmax(x)
    z = gc.reduce_sum(y * y)
    meta = gc.RunMetadata()
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(z, {x: np.ones((3, 4))}, options=gc.RunOptions(trace=True), run_metadata=meta)
        exe = sess.compile(z, [x])
    assert len(meta.step_stats) == len(exe.kernels) >= 1
    for s, k in zip(meta.step_stats, exe.kernels):
        assert s.name == k.name and s.ops == k.ops and s.end >= s.start > 0
    import json

    events = json.loads(meta.chrome_trace())["traceEvents"]
    assert [e["name"] for e in events] == [k.name for k in exe.kernels]


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_option_gives_identical_results(threads):
    rng = np.random.default_rng(3)
    x = gc.placeholder(gc.float32, (None, 256), name="x")
    y = gc.nn.softmax(gc.exp(x) * gc.sigmoid(x)) + gc.reduce_max(x, axis=1, keepdims=True)
    xv = rng.normal(size=(2048, 256)).astype(np.float32)  # big enough to use threads
    with gc.Session(options=gc.CompileOptions(cache_dir=None, threads=threads)) as sess:
        got = sess.run(y, {x: xv})
    with gc.Session(options=gc.CompileOptions(cache_dir=None, threads=1)) as sess:
        one = sess.run(y, {x: xv})
    np.testing.assert_array_equal(got, one)
    with gc.Session("reference") as sess:
        np.testing.assert_allclose(got, sess.run(y, {x: xv}), rtol=1e-5, atol=1e-6)


def test_bad_feeds_never_reach_native_code():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.placeholder(gc.float32, (None, 3), name="y")
    z = x + y
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        np.testing.assert_array_equal(sess.run(z, {x: np.ones((2, 3)), y: np.ones((2, 3))}), 2)
        with pytest.raises((ValueError, gc.errors.InvalidArgumentError)):
            sess.run(z, {x: np.ones((2, 3)), y: np.ones((5, 3))})
        with pytest.raises(ValueError):
            sess.run(z, {x: np.ones((2, 4)), y: np.ones((2, 4))})
        with pytest.raises(ValueError):
            sess.run(z, {x: [["a", "b", "c"]], y: np.ones((1, 3))})
        # non-contiguous and other-dtype feeds are converted, not misread
        big = np.arange(12, dtype=np.float64).reshape(2, 6)[:, ::2]
        np.testing.assert_array_equal(sess.run(z, {x: big, y: big}), 2 * big)


def test_uninitialized_variable_raises_before_running():
    v = gc.Variable(np.ones(3, np.float32), name="v")
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        with pytest.raises(gc.errors.FailedPreconditionError, match="v"):
            sess.run(v * 2)


def test_host_fallback_is_labelled(monkeypatch):
    """An op without a lowering runs on the host and says so (never silently)."""
    from graphc.ops import registry

    class HostOnly(registry.OpDef):
        type = "HostOnlyForTest"
        no_examples_reason = "test-only op"

        def infer(self, specs, attrs):
            return [specs[0]]

        def ref(self, xs, attrs):
            return np.cumprod(xs[0])

    monkeypatch.setitem(registry.REGISTRY, "HostOnlyForTest", HostOnly())
    x = gc.placeholder(gc.float32, (5,), name="x")
    y = registry.apply1("HostOnlyForTest", [x * 2.0]) + 1.0
    xv = np.arange(1, 6, dtype=np.float32)
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        np.testing.assert_allclose(sess.run(y, {x: xv}), np.cumprod(xv * 2) + 1)
        exe = sess.compile(y, [x])
    assert exe.stats["host_fallback_ops"] == ["HostOnlyForTest"]
    assert exe.stats["native_calls_per_run"] == 2
    names = [k.name for k in exe.kernels]
    assert any(n.startswith("host_fallback:") for n in names), names


def test_cache_files_are_not_pickles(tmp_path):
    x = gc.placeholder(gc.float32, (2,))
    with gc.Session(options=gc.CompileOptions(cache_dir=tmp_path)) as sess:
        sess.run(x * 2, {x: [1, 2]})
    (entry,) = tmp_path.glob("cpu-*.gcx")
    data = entry.read_bytes()
    assert data.startswith(cache.MAGIC) and b"\x80\x04\x95" not in data[:16]
    assert os.path.getsize(entry) > 100


def test_recycled_outputs_never_overwrite_arrays_the_caller_holds():
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = x * 2.0
    n = 1 << 17  # 512 kB: large enough to be recycled
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        first = sess.run(y, {x: np.ones(n, np.float32)})
        view = first[10:]
        second = sess.run(y, {x: np.full(n, 3.0, np.float32)})
        assert first is not second and np.all(first == 2) and np.all(view == 2)
        del first, view
        third = sess.run(y, {x: np.full(n, 5.0, np.float32)})
        assert np.all(second == 6) and np.all(third == 10)


def test_large_outputs_are_recycled_once_the_caller_drops_them():
    # a dropped output comes back on the next run (no fresh pages to fault in), for the
    # lean and the general (traced) run path alike
    import weakref

    x = gc.placeholder(gc.float32, (None,), name="x")
    y = x * 2.0
    n = 1 << 17
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        for opts in (None, gc.RunOptions(trace=True)):
            first = sess.run(y, {x: np.ones(n, np.float32)}, options=opts)
            ref = weakref.ref(first)
            del first
            second = sess.run(y, {x: np.full(n, 3.0, np.float32)}, options=opts)
            assert ref() is second and np.all(second == 6)
            del second
        # y = sess.run(...) in a loop: the previous result is alive during the next run, so
        # two arrays take turns
        ids = []
        y_val = None
        for k in range(6):
            y_val = sess.run(y, {x: np.full(n, float(k), np.float32)})
            assert np.all(y_val == 2 * k)
            ids.append(id(y_val))
        assert len(set(ids[2:])) == 2 and ids[2] == ids[4] and ids[3] == ids[5]


def test_max_min_reductions_propagate_nan_like_numpy():
    x = gc.placeholder(gc.float32, (None, 40), name="x")
    outs = [gc.reduce_max(x, axis=1), gc.reduce_min(x, axis=1), gc.nn.softmax(x)]
    xv = np.random.default_rng(5).normal(size=(6, 40)).astype(np.float32)
    xv[1, 17] = np.nan
    xv[3, 0] = -np.inf
    xv[4, :] = -0.0
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        got = sess.run(outs, {x: xv})
    with gc.Session("reference") as sess:
        want = sess.run(outs, {x: xv})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g[~np.isnan(w)], w[~np.isnan(w)], rtol=1e-6)


def test_variable_update_is_committed_without_a_second_copy(monkeypatch):
    """A variable's new value is computed into an array made for the run (a private copy of
    the variable when it is updated in place, else a temporary the runner hands over), so a
    failed run changes nothing; commit keeps that array, read-only, instead of copying it."""
    from graphc import runtime_state

    x, labels, loss, step = _mlp()
    sess = gc.Session(options=gc.CompileOptions(cache_dir=None))
    sess.run(gc.global_variables_initializer())
    feeds = {x: np.ones((4, 8), np.float32), labels: np.arange(4) % 4}
    sess.run(step, feeds)
    committed = []
    real = runtime_state.RunContext.commit

    def spy(ctx):
        committed.append({n: ctx.pending[n] for n in ctx.owned})
        real(ctx)

    monkeypatch.setattr(runtime_state.RunContext, "commit", spy)
    before = sess.variable_values()
    sess.run(step, feeds)
    owned = committed[-1]
    assert set(owned) == set(before)
    values = sess._variables
    for name, arr in owned.items():
        assert values[name] is arr and not arr.flags.writeable
        assert not np.array_equal(arr, before[name])
    kept = {n: a.copy() for n, a in owned.items()}
    sess.run(step, feeds)  # the next run does not write to the committed arrays
    for name, arr in owned.items():
        assert values[name] is not arr
        np.testing.assert_array_equal(arr, kept[name])
        assert not np.array_equal(values[name], arr)
    for _ in range(3):  # the arrays handed over two runs ago are recycled: results still right
        sess.run(step, feeds)
    ref = gc.Session(target="reference")
    ref.run(gc.global_variables_initializer())
    for _ in range(6):  # as many steps as sess ran
        ref.run(step, feeds)
    for name, arr in ref.variable_values().items():
        np.testing.assert_allclose(sess.variable_values()[name], arr, rtol=1e-5, atol=1e-6)


def test_large_arrays_the_runner_allocates_start_on_a_cache_line():
    """Temporaries and variables' new values (handed-over temporaries) of at least
    ALIGN_MIN_BYTES start on an ALIGN-byte boundary (OpenBLAS runs faster on them); recycled
    outputs keep malloc's offset, like the arrays users feed (runtime._output_array)."""
    from graphc.backends.llvm.runtime import ALIGN, ALIGN_MIN_BYTES, REUSE_MIN_BYTES, aligned_empty

    for shape, dtype in [((2000,), np.float32), ((37, 53), np.float64), (5000, np.uint8)]:
        a = aligned_empty(shape, dtype)
        assert a.ctypes.data % ALIGN == 0 and a.flags.c_contiguous and a.flags.writeable
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,))
        assert a.dtype == dtype
        assert not aligned_empty(shape, dtype, zero=True).any()
    assert aligned_empty((3, 0), np.float32).shape == (3, 0)
    assert aligned_empty(7, np.float32, zero=True).tolist() == [0.0] * 7

    # variables' new values: temporaries handed over to the Session (the MLP training step)
    from graphc.bench.workloads import build_mlp_step, mlp_inputs

    sizes = {"inputs": 64, "hidden": 128, "classes": 10}
    inputs = mlp_inputs(sizes, np.random.default_rng(0), 40)
    g, x, labels, loss, step, params, init = build_mlp_step(sizes, inputs)
    with gc.Session(graph=g, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(init)
        for _ in range(3):
            sess.run([loss, step], {x: inputs["x"], labels: inputs["labels"]})
        big = [a for a in sess._variables.values() if a.nbytes >= ALIGN_MIN_BYTES]
        assert len(big) == 3 and all(a.ctypes.data % ALIGN == 0 for a in big)  # w1, w2, w3
    # recycled outputs and cached temporaries
    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 64))
        w = gc.constant(rng.standard_normal((64, 96)).astype(np.float32))
        y = gc.matmul(gc.nn.relu(gc.matmul(x, w)), w, transpose_b=True) * 2.0
    xs = rng.standard_normal((1100, 64)).astype(np.float32)  # y: a recycled output
    assert xs.nbytes >= REUSE_MIN_BYTES
    with gc.Session(graph=g, options=gc.CompileOptions(cache_dir=None)) as sess:
        for _ in range(3):
            out = sess.run(y, {x: xs})
            np.testing.assert_allclose(
                out, (np.maximum(xs @ w.op.attrs["value"], 0) @ w.op.attrs["value"].T) * 2,
                rtol=1e-4, atol=1e-3,
            )  # fmt: skip
        runner = sess.compile([y], [x]).runner
        temps = [a for p in runner._plans.values() for a in p.temps.values()]
        big = [a for a in temps if a.nbytes >= ALIGN_MIN_BYTES]
        assert big and all(a.ctypes.data % ALIGN == 0 for a in big)
