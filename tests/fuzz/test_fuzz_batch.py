"""Batched fuzzing (tests/fuzz/batch.py, ``scripts/fuzz.py --batch``): programs compiled
side by side agree as they do alone, and a wrong answer in a batch is still reported for
the seed of its program."""

import numpy as np

from tests.fuzz.batch import check_batch, fuzz_batched
from tests.fuzz.programs import generate

OPTS = {"cache_dir": None}


def test_a_batch_of_good_programs_passes_and_counts_each():
    seen = []
    failures = fuzz_batched(range(200, 206), 3, OPTS, on_program=lambda s, o: seen.append(s))
    assert failures == [] and seen == list(range(200, 206))


def test_a_wrong_answer_in_a_batch_is_found_per_program(monkeypatch):
    from graphc import session as session_mod

    assert check_batch([generate(s) for s in (210, 211)], OPTS) is None
    real_run = session_mod.Session.run

    def off_by_one(self, fetches, feeds=None, *args, **kwargs):
        out = real_run(self, fetches, feeds, *args, **kwargs)
        if self.target == "cpu" and not self.options.fusion:
            return [np.asarray(o) + 1 for o in out]
        return out

    monkeypatch.setattr(session_mod.Session, "run", off_by_one)
    out = check_batch([generate(s) for s in (210, 211)], OPTS)
    assert out is not None and out.kind == "mismatch" and out.target == "unfused", out
    failures = fuzz_batched([210, 211], 2, OPTS, shrink_budget_s=5.0, stop_after=1)
    assert failures and failures[0].seed == 210 and failures[0].outcome.target == "unfused"
