"""W12 (compile scaling) at tiny sizes: the rows, the stages and the per-op ratio; the
machinery only, no measurement."""

import numpy as np

import graphc as gc
from graphc.bench import WORKLOADS
from graphc.bench.progress import Progress
from graphc.bench.report import format_table
from graphc.bench.results import BenchResult
from graphc.bench.runner import run_workload, select

W12 = WORKLOADS["W12"]


def _run(scale=None, hook=None):
    return run_workload(W12, True, "cpu", 1, 5.0, [], Progress(1, enabled=False), hook,
                        scale=scale)  # fmt: skip


def _table(res):
    machine = {"peers": {}, "cpu": "x", "cores": 1, "cpu_flags": [], "numpy": "", "graphc": ""}
    options = {"target": "cpu", "quick": True, "repeat": 1, "seconds": 0.0}
    return format_table(BenchResult(machine, options, [res]))


def test_w12_is_run_when_named_only():
    assert "W12" not in [w.id for w in select(None)]
    assert [w.id for w in select("w12")] == ["W12"]


def test_w12_rows_stages_and_per_op_ratio():
    res = _run(scale=(1, 2))
    assert res.status == "ok", res.reason
    assert [i.name for i in res.impls] == ["lstm T=1", "lstm T=2", "mlp L=1", "mlp L=2"]
    for i in res.impls:
        assert i.status == "ok", (i.name, i.reason)
        assert i.compile_s > 0 and i.kernels >= 1 and i.max_abs_err is not None
        assert i.extra["ops"] > 0
        assert i.extra["s_per_op"] == i.compile_s / i.extra["ops"]
        assert set(i.extra["stages"]) >= {"passes", "fusion", "lower", "plan", "llvm"}
    for series in ("lstm", "mlp"):
        a, b = [i for i in res.impls if i.extra["series"] == series]
        assert b.extra["ops"] > a.extra["ops"]  # a bigger graph
        ratio = res.speedups[f"{series}_per_op_largest_over_smallest"]
        assert ratio == b.extra["s_per_op"] / a.extra["s_per_op"]
    table = _table(res)
    assert "W12 compile scaling" in table and "ms/op" in table and "fusion" in table
    assert "lstm: seconds per op at the largest size / at the smallest" in table


def test_w12_wrong_result_is_refused_and_failures_are_rows():
    def hook(name, workload_id, values):
        return [v + 1 for v in values] if name == "mlp L=1" else values

    res = _run(scale=(1,), hook=hook)
    rows = {i.name: i for i in res.impls}
    assert rows["mlp L=1"].status == "wrong" and rows["lstm T=1"].status == "ok"
    assert res.status == "refused" and "REFUSED" in _table(res)


def test_w12_graph_is_an_adam_step_of_the_asked_size():
    sizes = W12.sizes(True)
    for series, n in (("lstm", 3), ("mlp", 3)):
        inputs = W12.point_inputs(sizes, series, n, np.random.default_rng(0))
        case = W12.build_point(sizes, series, n, inputs)
        names = [op.name for op in case.graph.get_operations()]
        assert any("Adam" in name for name in names)
        with gc.Session(graph=case.graph, target="reference") as sess:
            sess.run(case.init)
            loss, _ = sess.run(case.run_fetches, case.feeds[0])
            assert loss > 0
