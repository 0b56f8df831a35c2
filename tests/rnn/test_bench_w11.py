"""Benchmark workload W11 (char LSTM train step with dynamic_rnn) at its quick sizes: it
builds through the public API, the fused and unfused cpu runs match the reference, and it
runs only when named."""

from graphc.bench import WORKLOADS
from graphc.bench.progress import Progress
from graphc.bench.runner import FUSED, REFERENCE, UNFUSED, run_workload, select

W11 = WORKLOADS["W11"]


def test_w11_quick_matches_the_reference():
    res = run_workload(W11, True, "cpu", 2, 5.0, [], Progress(1, enabled=False), None)
    assert res.status == "ok", res.reason
    by_name = {i.name: i for i in res.impls}
    assert set(by_name) == {REFERENCE, UNFUSED, FUSED}
    for impl in by_name.values():
        assert impl.status == "ok", (impl.name, impl.reason)
        assert impl.max_abs_err is not None and impl.median_s > 0
    assert by_name[FUSED].kernels and by_name[FUSED].kernels < by_name[UNFUSED].kernels
    assert "dynamic_rnn" in res.description and "vocab 11" in res.description


def test_w11_runs_when_named():
    assert "W11" not in [w.id for w in select(None)]
    assert [w.id for w in select("w11")] == ["W11"]
    full = W11.sizes(False)
    assert full == {"vocab": 65, "hidden": 256, "batch": 32, "steps": 64}  # BENCH.md's W11
