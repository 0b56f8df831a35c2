"""The differential fuzzer in the test suite: a bounded run over fixed seeds (fused cpu,
unfused cpu and the reference agree on random programs, forward and gradients), and the
fuzzer's own machinery (determinism, valid programs, shrinking, reproducers).

The long run: ``make fuzz SEED=... N=...`` (scripts/fuzz.py).
"""

import numpy as np
import pytest

import graphc as gc
from tests.fuzz.differential import Outcome, build, check, fuzz, reproducer, shrink
from tests.fuzz.programs import generate

#: programs of the bounded run (about 80 s on one core)
SEEDS = range(150)
CHUNKS = 5


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_programs_agree_fused_unfused_and_reference(chunk):
    seeds = [s for s in SEEDS if s % CHUNKS == chunk]
    failures = fuzz(seeds, options={"cache_dir": None}, shrink_budget_s=60.0, stop_after=1)
    assert not failures, "\n\n".join(f.report() for f in failures)


def test_programs_are_deterministic_per_seed():
    assert generate(7).source() == generate(7).source()
    assert generate(7).source() != generate(8).source()


def test_generated_programs_build_and_the_reference_runs_them():
    for seed in range(200, 260):
        p = generate(seed)
        g, ns = build(p)
        assert len(ns["SIZES"]) == 2 and len(ns["SIZES"][0]) == len(ns["phs"])
        for shapes in ns["SIZES"]:
            feeds = {ph: np.ones(s, p.dtype) for ph, s in zip(ns["phs"], shapes)}
            with gc.Session(graph=g, target="reference") as sess:
                sess.run(ns["fetch"], feeds)


def test_shrinking_keeps_the_failure_and_removes_the_rest():
    # a stand-in bug: "any program holding a transpose fails"
    def test(p, options=None):
        if any(n.kind == "transpose" for n in p.nodes):
            return Outcome("mismatch", "fused", "has a transpose")
        return None

    seed = next(s for s in range(1000) if test(generate(s)) and len(generate(s).nodes) > 8)
    p = generate(seed)
    small, out = shrink(p, test(p), budget_s=60, test=test)
    assert out.signature() == ("mismatch", "fused", "")
    kinds = [n.kind for n in small.nodes]
    assert kinds.count("transpose") == 1 and len(kinds) <= 3, kinds
    assert len(small.outputs) == 1 and len(small.sizes) == 1


def test_the_reproducer_is_a_runnable_script(capsys):
    p = generate(3)
    src = reproducer(p, Outcome("mismatch", "fused", "run 0: an example"))
    exec(compile(src, "<reproducer>", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out
    assert "fused" in printed and "unfused" in printed
    assert "# expected failure: mismatch on fused" in src


def test_check_reports_a_wrong_result(monkeypatch):
    # the comparison itself: a backend answer off by one is a mismatch on that target
    from graphc import session as session_mod

    p = generate(5)
    assert check(p, {"cache_dir": None}) is None
    real_run = session_mod.Session.run

    def off_by_one(self, fetches, feeds=None, *args, **kwargs):
        out = real_run(self, fetches, feeds, *args, **kwargs)
        if self.target == "cpu" and self.options.fusion:
            return [np.asarray(o) + 1 for o in out]
        return out

    monkeypatch.setattr(session_mod.Session, "run", off_by_one)
    out = check(p, {"cache_dir": None})
    assert out is not None and out.kind == "mismatch" and out.target == "fused", out
