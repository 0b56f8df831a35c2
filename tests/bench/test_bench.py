"""graphc bench: structure of the results, the refusal of wrong results, ratios and reports.

Quick sizes only: these check the benchmark machinery, they measure nothing.
"""

import io
import itertools
import json
import sys
import types

import numpy as np
import pytest

import graphc as gc
from graphc.bench import WORKLOADS, measure, run_suite
from graphc.bench.figures import exe_figures, feed_dims, size_value
from graphc.bench.measure import compare, time_alternating, time_runs
from graphc.bench.progress import Progress
from graphc.bench.report import format_table, to_dict, write_json
from graphc.bench.results import FUSED, REFERENCE, UNFUSED, BenchResult
from graphc.bench.runner import run_workload, select
from graphc.bench.workloads import Case, ElementwiseChain, TinyRun, w1_numpy


def _quick(suite, **kw):
    kw.setdefault("repeat", 3)
    return run_suite(suite=suite, quick=True, progress=False, peers=["numpy eager"], **kw)


@pytest.fixture(scope="module")
def w1_w4():
    return _quick("W1,W4")


def _impl(w, name):
    (impl,) = [i for i in w.impls if i.name == name]
    return impl


def test_result_structure_and_json(w1_w4, tmp_path):
    assert w1_w4.ok
    assert [w.id for w in w1_w4.workloads] == ["W1", "W4"]
    for w in w1_w4.workloads:
        assert w.status == "ok", w.reason
        assert [i.name for i in w.impls] == [REFERENCE, UNFUSED, FUSED, "numpy eager"]
        for i in w.impls:
            assert i.status == "ok", (i.name, i.reason)
            assert 0 < i.min_s <= i.median_s
            assert 1 <= i.runs <= 3
            assert i.max_abs_err is not None and i.max_abs_err <= 1e-4
        for name in (REFERENCE, UNFUSED, FUSED):
            assert _impl(w, name).kernels >= 1
    assert _impl(w1_w4.workloads[1], FUSED).inner == WORKLOADS["W4"].sizes(True)["calls"]
    path = tmp_path / "bench.json"
    write_json(w1_w4, path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "graphc-bench/1" and doc["ok"] is True
    m = doc["machine"]
    for key in ("cpu", "cores", "numpy", "graphc", "date", "peers"):
        assert m[key], key
    assert m["numpy"] == np.__version__
    assert doc["options"]["quick"] is True and doc["options"]["suite"] == ["W1", "W4"]
    w1 = doc["workloads"][0]
    assert w1["id"] == "W1" and w1["sizes"] == {"n": 2**12} and w1["unit"] == "ms"
    fused = [i for i in w1["impls"] if i["name"] == FUSED][0]
    for key in ("median_s", "min_s", "runs", "kernels", "bytes_moved", "peak_temp_bytes"):
        assert key in fused


def test_ratios_are_times_over_the_fused_time(w1_w4):
    for w in w1_w4.workloads:
        fused = _impl(w, FUSED)
        assert fused.vs_baseline == 1.0
        for i in w.impls:
            assert i.vs_baseline == pytest.approx(i.median_s / fused.median_s)
        unfused = _impl(w, UNFUSED)
        numpy_ = _impl(w, "numpy eager")
        assert w.speedups["fused_over_unfused"] == pytest.approx(unfused.median_s / fused.median_s)
        assert w.speedups["fused_over_numpy_eager"] == pytest.approx(
            numpy_.median_s / fused.median_s
        )


def test_table_lists_every_implementation(w1_w4):
    table = format_table(w1_w4)
    assert "W1 elementwise chain" in table and "W4 tiny run" in table
    for name in (REFERENCE, UNFUSED, FUSED, "numpy eager"):
        assert table.count(name) >= 2
    assert " us " in table  # W4 is reported per run in microseconds
    assert "fused over unfused:" in table
    assert "FAILED" not in table


def _shift(target):
    def hook(impl, workload_id, values):
        return [v + 1 for v in values] if impl == target else values

    return hook


def test_a_wrong_graphc_result_is_refused():
    res = _quick("W4", result_hook=_shift(FUSED))
    (w,) = res.workloads
    fused = _impl(w, FUSED)
    assert fused.status == "wrong"
    assert "refused" in fused.reason and "differs from the reference" in fused.reason
    assert fused.median_s is None and fused.runs == 0  # never timed
    assert w.status == "refused" and not res.ok
    assert "fused_over_unfused" not in w.speedups
    table = format_table(res)
    assert "WRONG" in table and "REFUSED" in table and "FAILED" in table
    assert to_dict(res)["ok"] is False


def test_a_wrong_peer_result_is_refused_but_graphc_stands():
    res = _quick("W4", result_hook=_shift("numpy eager"))
    (w,) = res.workloads
    peer = _impl(w, "numpy eager")
    assert peer.status == "wrong" and peer.median_s is None
    assert _impl(w, FUSED).status == "ok"
    assert "fused_over_numpy_eager" not in w.speedups
    assert res.ok  # a peer's mistake is reported, not a graphc failure


def test_missing_ops_skip_a_workload_with_the_reason():
    class NotYet(ElementwiseChain):
        requires = ("nn.surely_not_an_op",)

    res = run_workload(NotYet(), True, "cpu", 2, 5.0, [], Progress(1, enabled=False), None)
    assert res.status == "skipped"
    assert "gc.nn.surely_not_an_op is not implemented yet" in res.reason
    assert res.impls == []


class TinyStep(TinyRun):
    """A W5-style compile workload on a tiny training step: quick to compile anywhere."""

    id, kind = "T5", "compile"

    def inner_calls(self, sizes):
        return 1

    def build(self, sizes, inputs):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (None,), name="x")
            w = gc.Variable(np.float32(0.5), name="w")
            loss = gc.reduce_sum(gc.square(x * w - 1.0))
            (grad,) = gc.gradients(loss, [w])
            step = gc.group(gc.assign_sub(w, 0.1 * grad))
            init = gc.global_variables_initializer()
        return Case(g, [loss, step], [{x: inputs["x"]}], loss=loss, variables=[w], init=init)


class TinyBatches(TinyRun):
    """A W8-style workload: one graph fed four sizes of its None dimension in turn."""

    id = "T8"

    def inner_calls(self, sizes):
        return 1

    def build(self, sizes, inputs):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (None,), name="x")
            y = x * 2 + 1
        return Case(g, [y], [{x: inputs["x"][:n]} for n in (1, 2, 3, 4)])

    def numpy(self, sizes, inputs):
        x = inputs["x"]
        return lambda: [x * np.float32(2) + np.float32(1)]


def _run(workload, repeat=1):
    return run_workload(workload, True, "cpu", repeat, 5.0, [], Progress(1, enabled=False), None)


def test_run_time_rows_are_timed_in_turns_and_a_failure_stays_in_its_row():
    from graphc.bench.peers.base import Peer

    calls = []

    def peer(name, fail_after=None):
        def build(workload, sizes, inputs, device):
            x = inputs["x"]

            def run():
                calls.append(name)
                if fail_after is not None and calls.count(name) > fail_after:
                    raise RuntimeError(f"{name} broke while timed")
                return [x * np.float32(2) + np.float32(1)]

            return run

        return Peer(name, "numpy", {"W4": build})

    class Few(TinyRun):
        def sizes(self, quick):
            return {"n": 4, "calls": 2}

    peers = [peer("steady"), peer("flaky", fail_after=3)]
    res = run_workload(Few(), True, "cpu", 3, 5.0, peers, Progress(1, enabled=False), None)
    rows = {i.name: i for i in res.impls}
    assert rows["flaky"].status == "error" and "broke while timed" in rows["flaky"].reason
    assert rows["flaky"].reason.startswith("timing")
    for name in (REFERENCE, UNFUSED, FUSED, "steady"):
        assert rows[name].status == "ok" and rows[name].runs == 3, name
    assert rows["steady"].inner == 2
    # the steady peer's rows were first timed in turns with the flaky one (which failed
    # there), then alone: its calls are interleaved with the flaky one's before that
    first_flaky_fail = [i for i, n in enumerate(calls) if n == "flaky"][3]
    assert "steady" in calls[calls.index("flaky") : first_flaky_fail]
    assert res.speedups["fused_over_steady"] > 0


def test_compile_workload_rows():
    res = _run(TinyStep())
    assert res.status == "ok", res.reason
    assert res.baseline == f"{FUSED} cold compile"
    assert [i.name for i in res.impls] == [
        f"{UNFUSED} cold compile", f"{UNFUSED} warm start",
        f"{FUSED} cold compile", f"{FUSED} warm start",
    ]  # fmt: skip
    for i in res.impls:
        assert i.status == "ok", (i.name, i.reason)
        assert i.median_s > 0 and i.max_abs_err is not None
    warm = res.impls[3]
    assert "disk_loads" in warm.extra and "compiles" in warm.extra
    assert res.speedups["fused_cold_over_warm"] == pytest.approx(
        res.impls[2].median_s / warm.median_s
    )


def test_batch_sizes_report_the_compilations_of_the_step():
    res = _run(TinyBatches(), repeat=2)
    assert res.status == "ok", res.reason
    for i in res.impls:
        assert i.status == "ok", (i.name, i.reason)
        assert i.extra["batch_sizes"] == [1, 2, 3, 4]
        # a new size of a None dimension must not compile again (API.md)
        assert i.extra["compiles"] == 1, i.name
    assert "compilation(s) of the step over batch sizes 1, 2, 3, 4" in format_table(
        run_suite_result(res)
    )


def test_select():
    assert [w.id for w in select(None)] == [f"W{i}" for i in range(1, 9)]
    assert [w.id for w in select("w3, W1")] == ["W1", "W3"]
    with pytest.raises(ValueError, match="W99"):
        select("W1,W99")


def test_bad_target_and_repeat():
    with pytest.raises(ValueError, match="target"):
        run_suite(suite="W1", target="tpu", progress=False)
    with pytest.raises(ValueError, match="repeat"):
        run_suite(suite="W1", quick=True, repeat=0, progress=False)


def test_compare():
    ref = [np.array([1.0, 2.0, 3.0], np.float32)]
    assert compare([ref[0] + 1e-7], ref, 1e-4, 1e-5)[1] is None
    err, why = compare([ref[0] + np.array([0, 0, 0.1], np.float32)], ref, 1e-4, 1e-5)
    assert err == pytest.approx(0.1, rel=1e-5) and "index (2,)" in why
    assert "shape" in compare([ref[0][:2]], ref, 1e-4, 1e-5)[1]
    assert "non-finite" in compare([np.array([1, np.nan, 3])], ref, 1e-4, 1e-5)[1]
    assert "values" in compare([], ref, 1e-4, 1e-5)[1]


def test_time_runs_counts_and_budget():
    calls = []
    t = time_runs(lambda: calls.append(1), repeat=5, warmup=2, inner=3)
    assert len(calls) == 2 + 5 * 3 and t.runs == 5 and t.min_s <= t.median_s
    slow = time_runs(lambda: sum(range(20000)), repeat=1000, budget_s=0.0)
    assert slow.runs == 3  # the budget stops it after the minimum of three samples
    with pytest.raises(ValueError):
        time_runs(lambda: None, repeat=0)


def test_the_garbage_collector_is_off_while_timing():
    import gc as pygc

    seen = []
    assert pygc.isenabled()
    time_runs(lambda: seen.append(pygc.isenabled()), repeat=3, warmup=1)
    assert seen == [True, False, False, False] and pygc.isenabled()  # (the warm-up runs with it)
    seen.clear()
    time_alternating([lambda: seen.append(pygc.isenabled())], repeat=3, budget_s=0.0,
                     settle_s=0.0)  # fmt: skip
    assert seen and not any(seen) and pygc.isenabled()
    pygc.disable()  # a caller's choice is kept
    try:
        time_runs(lambda: None, repeat=1, warmup=0)
        assert not pygc.isenabled()
    finally:
        pygc.enable()


def test_time_alternating_takes_turns_and_keeps_to_the_budget(monkeypatch):
    # a clock that only the calls advance: a takes 1 ms, b 3 ms (units of 2^-10 s: exact sums)
    ms = 2.0**-10
    now = [0.0]
    monkeypatch.setattr(measure, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(measure, "SETTLE_S", 5 * ms)
    order = []

    def call(name, seconds):
        order.append(name)
        now[0] += seconds

    fast, slow = (lambda: call("a", ms)), (lambda: call("b", 3 * ms))
    ta, tb = time_alternating([fast, slow], repeat=4)
    assert ta.runs == tb.runs == 4
    assert ta.median_s == ms and tb.min_s == 3 * ms
    # each turn: untimed calls until SETTLE_S passed (a: 5, b: 2), then one timed
    assert [k for k, _ in itertools.groupby(order)] == ["a", "b"] * 4
    assert order.count("a") == 4 * 6 and order.count("b") == 4 * 3
    few = time_alternating([lambda: call("c", 2 * ms)], repeat=1000, budget_s=0.0)
    assert few[0].runs == 3  # the budget stops it after the minimum of three rounds
    with pytest.raises(ValueError):
        time_alternating([fast], repeat=0)


def test_exe_figures_reads_stats_and_falls_back_to_na():
    class K:
        def __init__(self, b):
            self.bytes_moved = b

    class Exe:
        def __init__(self, stats, kernels):
            self.stats, self.kernels = stats, kernels

    full = exe_figures(Exe({"bytes_moved": 10, "peak_temp_bytes": 4,
                            "compile_seconds": {"total": 0.5}}, [K(1)]))  # fmt: skip
    assert full == {"kernels": 1, "bytes_moved": 10, "peak_temp_bytes": 4, "compile_s": 0.5}
    summed = exe_figures(Exe({}, [K(3), K(4)]))
    assert summed["bytes_moved"] == 7 and summed["peak_temp_bytes"] is None
    unknown = exe_figures(Exe({"bytes_moved": "lots"}, [K(None)]))
    assert unknown["bytes_moved"] is None and unknown["compile_s"] is None


def test_size_expressions_of_none_dims_are_evaluated():
    dims = {"d0_0": 1000, "d1_0": 3}
    assert size_value("((d0_0 * 4) + (d0_0 * 4))", dims) == 8000
    assert size_value("max((d0_0 * 4), (d1_0 * 8)) - 1", dims) == 3999
    assert size_value("((d0_0 // 2) % 7)", dims) == 500 % 7
    for bad in ("d9_0 * 4", "__import__('os')", "d0_0 ** 2", "(", "1.5 * d0_0"):
        assert size_value(bad, dims) is None, bad

    class Exe:
        stats = {"bytes_moved": "(d0_0 * 4)", "peak_temp_bytes": "max(d0_0, 16)"}
        kernels = [object()]

    x = gc.placeholder(gc.float32, (None, 2))
    assert feed_dims({x: np.zeros((5, 2))}) == {"d0_0": 5, "d0_1": 2}
    figures = exe_figures(Exe(), feed_dims({x: np.zeros((5, 2))}))
    assert figures["bytes_moved"] == 20 and figures["peak_temp_bytes"] == 16
    assert exe_figures(Exe())["bytes_moved"] is None  # no sizes given: n/a


def test_progress_bar_goes_to_its_stream():
    s = io.StringIO()
    p = Progress(4, stream=s)
    p.note("W1 graphc fused")
    p.advance(2)
    p.finish()
    out = s.getvalue()
    assert "W1 graphc fused" in out and "4/4" in out and "#" * 24 in out


def test_numpy_w1_matches_its_formula():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    s = 1 / (1 + np.exp(-1.702 * x.astype(np.float64)))
    y = x * s
    np.testing.assert_allclose(w1_numpy(x), np.tanh(y * 0.5 + 0.1) * y + x, rtol=1e-6)


def test_plot_writes_a_png_or_says_matplotlib_is_missing(w1_w4, tmp_path, monkeypatch):
    from graphc.bench.plot import PlotUnavailableError, plot

    path = tmp_path / "bench.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(PlotUnavailableError, match="pip install"):
            plot(w1_w4, path)
        return
    plot(w1_w4, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(PlotUnavailableError, match="graphc\\[plot\\]"):
        plot(w1_w4, tmp_path / "again.png")


def test_peer_plumbing_objects_functions_and_failures(monkeypatch):
    from graphc.bench import peers, runner

    class Stepper:  # the run()/values() form (W5's JAX peer uses it)
        def __init__(self, workload, sizes, inputs, device):
            self.x = inputs["x"]

        def run(self):
            self.out = self.x * 2 + 1

        def values(self):
            return [self.out]

    def broken(workload, sizes, inputs, device):
        raise RuntimeError("this framework is broken here")

    fake = [
        peers.Peer("fake stepper", "numpy", {"W4": Stepper}),
        peers.Peer("fake broken", "numpy", {"W4": broken}),
        peers.Peer("not installed", "surely_not_a_module_xyz", {"W4": broken}),
    ]
    monkeypatch.setattr(runner, "PEERS", peers.PEERS + fake)
    res = run_suite(suite="W4", quick=True, repeat=2, progress=False,
                    peers=["fake stepper", "fake broken", "not installed"])  # fmt: skip
    (w,) = res.workloads
    names = [i.name for i in w.impls]
    assert "not installed" not in names  # not importable: not run, not an error
    assert _impl(w, "fake stepper").status == "ok" and _impl(w, "fake stepper").median_s > 0
    bad = _impl(w, "fake broken")
    assert bad.status == "error" and "this framework is broken here" in bad.reason
    assert res.ok  # a peer failing is reported, it does not fail graphc
    assert "fused_over_fake_stepper" in w.speedups


def test_w13_times_graphc_and_onnxruntime_in_turns(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(measure, "SETTLE_S", 0.01)
    w13 = WORKLOADS["W13"]
    res = run_workload(w13, True, "cpu", 3, 5.0, [], Progress(1, enabled=False), None)
    ours, peer = res.impls  # SqueezeNet batch 1 at quick sizes
    assert ours.name.startswith("graphc cpu squeezenet") and peer.name.startswith("onnxruntime")
    assert ours.status == peer.status == "ok" and ours.runs == peer.runs == 3
    assert ours.max_abs_err < 1e-3 and 0 < ours.min_s <= ours.median_s
    ratio = res.speedups["squeezenet_b1_graphc_time_over_onnxruntime"]
    assert ratio == pytest.approx(ours.median_s / peer.median_s)


def test_w3_times_its_gemm_limit_in_turns():
    """W3's "gemm limit" row: the step's eight products through numpy's BLAS, timed in turns
    with the implementations, unchecked (no values), and the ratio the W3 target reads."""
    from graphc.bench.workloads import MLPStep

    res = _quick("W3").workloads[0]
    assert res.status == "ok", res.reason
    limit = _impl(res, "gemm limit")
    fused = _impl(res, FUSED)
    assert limit.family == "limit" and limit.status == "ok" and limit.max_abs_err is None
    assert limit.median_s > 0 and limit.runs == fused.runs  # the same rounds
    assert res.speedups["fused_time_over_gemm_limit"] == pytest.approx(
        fused.median_s / limit.median_s
    )
    assert "gemm limit" in format_table(run_suite_result(res))
    # the products are the step's: 2 * batch * (d*h + h*h + h*c) forward, as much for the
    # weight gradients, and the two hidden layers' input gradients
    w = MLPStep()
    sizes = w.sizes(quick=True)
    inputs = w.inputs(sizes, np.random.default_rng(0))
    calls = []
    real = np.matmul

    def counting(a, b, out=None):
        calls.append((a.shape, b.shape))
        return real(a, b, out=out)

    fn = w.limit(sizes, inputs)
    np_matmul, np.matmul = np.matmul, counting
    try:
        fn()
    finally:
        np.matmul = np_matmul
    b, d, h, c = sizes["batch"], sizes["inputs"], sizes["hidden"], sizes["classes"]
    flops = sum(2 * a[0] * a[1] * bb[1] for a, bb in calls)
    assert flops == 2 * b * (2 * (d * h + h * h + h * c) + h * c + h * h)
    # only W3 has the row (W5 times compiles, W8 four batch sizes)
    assert all(i.name != "gemm limit" for w8 in _quick("W8", repeat=2).workloads for i in w8.impls)


def run_suite_result(w):
    """A BenchResult of the one workload result ``w`` (for format_table)."""
    return BenchResult(
        {"peers": {}, "cpu": "x", "cores": 1, "cpu_flags": [], "numpy": "", "graphc": ""},
        {"target": "cpu", "quick": True, "repeat": 3, "seconds": 0.0},
        [w],
    )


def test_fma_peak_script_reports_each_thread_count():
    """scripts/fma_peak.py (the multiply-add bound docs/benchmarks.md compares GEMMs with)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "fma_peak.py"
    out = subprocess.run(
        [sys.executable, str(script), "--threads", "1,2", "--steps", "20000"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    lines = out.strip().splitlines()
    assert [ln.split(" thread")[0] for ln in lines] == ["1", "2"]
    assert all(float(ln.split(": ")[1].split()[0]) > 0 for ln in lines)
