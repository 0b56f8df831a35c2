"""W12 (compile scaling) with peers: each point's peer row (its cold compile, its first step
checked against the reference), the table's peer columns and summary lines, the notes for
peers not run. Fake peers stand in for JAX and TensorFlow (not installed in the dev venv);
the real peers are checked at tiny sizes where they can be imported."""

import pytest

import graphc as gc
from graphc.bench import WORKLOADS, peers, runner
from graphc.bench.progress import Progress
from graphc.bench.report import format_table
from graphc.bench.results import BenchResult, ImplResult, WorkloadResult
from graphc.bench.runner import run_suite, run_workload

W12 = WORKLOADS["W12"]


class RefCompile:
    """A fake peer of W12: its "compile" opens a reference Session on the point's graph and
    runs the step, so its values are the reference's."""

    def __init__(self, workload, sizes, inputs, device):
        self.case = workload.build_point(sizes, sizes["series"], sizes["size"], inputs)
        assert workload.param_names(sizes["series"], sizes["size"]) == [
            v.name.split(":")[0] for v in self.case.variables
        ]

    def run(self):
        with gc.Session(graph=self.case.graph, target="reference") as sess:
            sess.run(self.case.init)
            loss, _ = sess.run(self.case.run_fetches, self.case.feeds[0])
            self.out = [loss, *sess.run(self.case.variables)]

    def values(self):
        return self.out


class SelfTimed(RefCompile):
    """A fake peer that measures its own compile (as TF1's first step less a later one)."""

    def run(self):
        super().run()
        self.compile_s, self.compile_cpu_s = 0.25, 0.125


def broken(workload, sizes, inputs, device):
    raise RuntimeError("this compiler is broken here")


FAKE = peers.Peer("fake jit", "numpy", {"W12": RefCompile})
BROKEN = peers.Peer("fake broken", "numpy", {"W12": broken})
ABSENT = peers.Peer("fake absent", "surely_not_a_module_xyz", {"W12": broken})
TIMED = peers.Peer("fake timed", "numpy", {"W12": SelfTimed})


def _table(*workloads):
    machine = {"peers": {}, "cpu": "x", "cores": 1, "cpu_flags": [], "numpy": "", "graphc": ""}
    options = {"target": "cpu", "quick": True, "repeat": 1, "seconds": 0.0}
    return format_table(BenchResult(machine, options, list(workloads)))


def test_w12_peer_rows_checks_columns_and_notes(monkeypatch):
    def hook(name, workload_id, values):  # the fake peer's mlp step is wrong
        return [v + 1 for v in values] if name == "fake jit mlp L=1" else values

    monkeypatch.setattr(runner, "PEERS", peers.PEERS + [FAKE, BROKEN, ABSENT, TIMED])
    res = run_suite(suite="W12", quick=True, repeat=1, progress=False, scale=(1,),
                    peers=["fake jit", "fake broken", "fake absent", "fake timed"],
                    result_hook=hook)  # fmt: skip
    (w,) = res.workloads
    rows = {i.name: i for i in w.impls}
    assert list(rows) == ["lstm T=1", "fake jit lstm T=1", "fake broken lstm T=1",
                          "fake timed lstm T=1", "mlp L=1", "fake jit mlp L=1",
                          "fake broken mlp L=1", "fake timed mlp L=1"]  # fmt: skip
    timed = rows["fake timed mlp L=1"]  # its own figures, not the wall and CPU times
    assert timed.compile_s == 0.25 and timed.extra["cpu_s"] == 0.125
    graphc, fake = rows["lstm T=1"], rows["fake jit lstm T=1"]
    assert graphc.status == "ok" and fake.status == "ok", fake.reason
    assert fake.family == "peer" and fake.compile_s > 0 and fake.max_abs_err == 0.0
    assert fake.extra["cpu_s"] > 0 and graphc.extra["cpu_s"] > 0
    assert fake.extra["graphc_over_peer"] == graphc.compile_s / fake.compile_s
    assert w.speedups["lstm_largest_graphc_over_fake_jit"] == fake.extra["graphc_over_peer"]
    wrong = rows["fake jit mlp L=1"]
    assert wrong.status == "wrong" and "graphc_over_peer" not in wrong.extra
    bad = rows["fake broken mlp L=1"]
    assert bad.status == "error" and "this compiler is broken here" in bad.reason
    assert w.status == "ok" and res.ok  # peers failing do not refuse graphc's results
    assert "fake absent: not importable here; no fake absent compile times" in w.notes
    assert not any(n.startswith(("fake jit", "fake broken")) for n in w.notes)

    table = format_table(res)
    assert "fake jit compile" in table and "fake jit cpu" in table and "graphc/fake jit" in table
    assert f"lstm T=1: graphc {graphc.compile_s:.2f} s vs fake jit {fake.compile_s:.2f} s" in table
    (mlp,) = [ln for ln in table.splitlines() if ln.strip().startswith("mlp L=1: graphc")]
    assert "vs fake timed 0.25 s" in mlp  # fake jit's mlp step was wrong: no summary line
    assert "fake jit mlp L=1: WRONG: refused" in table
    assert "fake broken lstm T=1: error: setting up: RuntimeError" in table
    assert "fake jit: the first step of 1 point(s) matches the reference" in table
    assert "note: fake absent: not importable here" in table


def _row(name, family, status="ok", compile_s=None, **extra):
    out = ImplResult(name, family, status=status, compile_s=compile_s)
    out.extra.update(extra)
    if family == "graphc" and status == "ok":
        out.kernels, out.max_abs_err = 3, 0.0
        out.extra.update(ops=10, s_per_op=compile_s / 10, stages={"fusion": 0.1})
    return out


def test_w12_table_summary_and_failed_graphc_point_with_peers():
    w = WorkloadResult("W12", "compile scaling", "", "d", "ms", {}, baseline="")
    w.impls = [
        _row("mlp L=8", "graphc", compile_s=1.0, series="mlp", size=8, cpu_s=1.5),
        _row("jax mlp L=8", "peer", compile_s=4.0, series="mlp", size=8, point="mlp L=8",
             peer="jax", graphc_over_peer=0.25, cpu_s=3.5),
        _row("mlp L=64", "graphc", compile_s=3.0, series="mlp", size=64, cpu_s=4.0),
        _row("jax mlp L=64", "peer", compile_s=2.0, series="mlp", size=64, point="mlp L=64",
             peer="jax", graphc_over_peer=1.5, cpu_s=1.6),
        _row("lstm T=64", "graphc", status="error", series="lstm", size=64),
        _row("jax lstm T=64", "peer", compile_s=9.0, series="lstm", size=64, point="lstm T=64",
             peer="jax", cpu_s=8.0),
    ]  # fmt: skip
    w.impls[4].reason = "compiling: RecursionError: deep"
    text = _table(w)
    lines = text.splitlines()
    (head,) = [ln.split() for ln in lines if ln.strip().startswith("point")]
    assert head[:9] == ["point", "ops", "kernels", "compile", "cpu", "jax", "compile", "jax",
                        "cpu"] and head[9] == "graphc/jax"  # fmt: skip
    (big,) = [ln.split() for ln in lines if ln.strip().startswith("mlp L=64 ")]
    assert big[2:13] == ["10", "3", "3.00", "s", "4.00", "s", "2.00", "s", "1.60", "s", "1.50x"]
    (failed,) = [ln for ln in lines if ln.strip().startswith("lstm T=64 ")]
    assert "error" in failed and "9.00 s" in failed  # the peer's time survives graphc failing
    assert "lstm T=64: error: compiling: RecursionError: deep" in text
    summary = (
        "mlp L=64: graphc 3.00 s vs jax 2.00 s (graphc/jax 1.50x; CPU 4.00 s vs 1.60 s, 2.50x)"
    )
    assert summary in text
    assert "lstm T=64: graphc" not in text
    assert "jax: the first step of 3 point(s) matches the reference" in text


def test_w12_without_peers_has_no_peer_columns():
    w = WorkloadResult("W12", "compile scaling", "", "d", "ms", {}, baseline="")
    w.impls = [_row("mlp L=8", "graphc", compile_s=1.0, series="mlp", size=8),
               _row("mlp L=16", "graphc", status="error", series="mlp", size=16)]  # fmt: skip
    w.impls[1].reason = "compiling: boom"
    text = _table(w)
    (head,) = [ln.split() for ln in text.splitlines() if ln.strip().startswith("point")]
    assert head == ["point", "ops", "kernels", "compile", "ms/op", "fusion", "max", "err"]
    assert "mlp L=16  error: compiling: boom" in text  # a failed point: one line, as before


@pytest.mark.parametrize("name, module", [("jax jit", "jax"), ("tf1 + xla", "tensorflow")])
def test_w12_real_peer_matches_graphc_when_importable(name, module):
    pytest.importorskip(module)
    (peer,) = [p for p in peers.PEERS if p.name == name]
    res = run_workload(W12, True, "cpu", 1, 5.0, [peer], Progress(1, enabled=False), None,
                       scale=(2,))  # fmt: skip
    rows = {i.name: i for i in res.impls}
    for point in ("lstm T=2", "mlp L=2"):
        row = rows[f"{name} {point}"]
        assert row.status == "ok", row.reason
        assert row.compile_s > 0 and row.max_abs_err < 1e-4
