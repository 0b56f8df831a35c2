"""Fusion's cost grows with the size of a program, not faster: legality is decided from
facts (``fusion_legality.py``), without lowering the candidate group, and where the facts
leave it open the lowering is memoised on the group up to node ids (steps of an unrolled
loop read different outputs of one unstack); a kernel takes at most MAX_KERNEL_REDUCTIONS
reductions (a gradient summed over the steps would otherwise be re-checked per step)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.passes import fusion as F
from graphc.passes.fusion_policy import MAX_KERNEL_REDUCTIONS
from graphc.program import extract


def _unrolled(steps: int):
    """A small unrolled RNN train step: (fetches, feeds, placeholders)."""
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float32, (None, steps, 8), name="xs")
        w = gc.Variable(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32) * 0.3)
        b = gc.Variable(np.zeros(8, np.float32))
        h = gc.zeros_like(xs[:, 0, :])
        loss = 0.0
        for x in gc.unstack(xs, axis=1):
            h = gc.tanh(gc.matmul(gc.concat([x, h], axis=1), w) + b)
            loss = loss + gc.reduce_mean(h * h)
        grads = gc.gradients(loss, [w, b])
    return g, xs, [loss] + grads


def _decisions(steps: int, monkeypatch) -> tuple:
    """(legality questions, of those the facts left to a lowering, lowerings) of fusing the
    unrolled step."""
    g, xs, fetches = _unrolled(steps)
    with g.as_default():
        program = extract(fetches, [], [xs])
    asked, undecided, lowered = [], [], []
    real_legality, real_emit = F.legality, F.emit_group

    def legality(*a, **k):
        why = real_legality(*a, **k)
        asked.append(1)
        if why is F.UNDECIDED:
            undecided.append(1)
        return why

    def emit(*a, **k):
        lowered.append(1)
        return real_emit(*a, **k)

    monkeypatch.setattr(F, "legality", legality)
    monkeypatch.setattr(F, "emit_group", emit)
    F.fuse(program)
    return len(asked), len(undecided), len(lowered)


def test_legality_is_decided_from_facts_without_lowering(monkeypatch):
    a8, u8, l8 = _decisions(8, monkeypatch)
    a32, u32, l32 = _decisions(32, monkeypatch)
    assert a8 > 0 and u8 == u32 == 0 and l8 == l32 == 0, (a8, u8, l8, u32, l32)
    # the questions grow with the steps, linearly: a bounded number per step
    assert a32 < 4 * a8 + 40, (a8, a32)


@pytest.mark.parametrize("steps", [3, 24])
def test_unrolled_step_matches_reference(steps):
    g, xs, fetches = _unrolled(steps)
    feed = {xs: np.random.default_rng(1).standard_normal((5, steps, 8)).astype(np.float32)}
    with g.as_default():
        init = gc.global_variables_initializer()
    results = []
    for target in ("reference", "cpu"):
        with gc.Session(graph=g, target=target) as s:
            s.run(init)
            results.append(s.run(fetches, feed))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)


def test_a_kernel_takes_at_most_max_kernel_reductions():
    n = 2 * MAX_KERNEL_REDUCTIONS + 5
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, n, 6), name="x")
        total = 0.0
        for t, xt in enumerate(gc.unstack(x, axis=1)):
            total = total + gc.reduce_sum(xt * float(t + 1), axis=0)
        program = extract([total], [], [x])
    plan = F.fuse(program)
    for grp in plan.groups:
        reductions = [i for i in grp.nodes if program.node(i).op == "Sum"]
        assert len(reductions) <= MAX_KERNEL_REDUCTIONS
    assert any("MAX_KERNEL_REDUCTIONS" in why for _, d, why in plan.decisions if d == "refuse")
    feed = {x: np.random.default_rng(2).standard_normal((7, n, 6)).astype(np.float32)}
    with gc.Session(graph=g) as s:
        got = s.run(total, feed)
    with gc.Session(graph=g, target="reference") as s:
        np.testing.assert_allclose(got, s.run(total, feed), rtol=1e-5, atol=1e-5)


def _mlp_adam_probes(layers: int, monkeypatch, facts: bool = True) -> int:
    """Lowerings fusion makes to decide legality for an MLP Adam step of ``layers`` layers;
    ``facts=False``: with the facts left out (every question lowered, memoised)."""
    g = gc.Graph()
    rng = np.random.default_rng(0)
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 8), name="x")
        h = x
        for _ in range(layers):
            w = gc.Variable((rng.standard_normal((8, 8)) * 0.3).astype(np.float32))
            b = gc.Variable(np.zeros(8, np.float32))
            h = h + gc.nn.relu(gc.matmul(h, w) + b)
        loss = gc.reduce_mean(h * h)
        step = gc.train.AdamOptimizer(0.01).minimize(loss)
        program = extract([loss], [step], [x])
    calls = []
    real, legality = F.emit_group, F.legality
    monkeypatch.setattr(F, "emit_group", lambda *a, **k: calls.append(1) or real(*a, **k))
    if not facts:
        monkeypatch.setattr(F, "legality", lambda *a, **k: F.UNDECIDED)
    F.fuse(program)
    monkeypatch.setattr(F, "emit_group", real)
    monkeypatch.setattr(F, "legality", legality)
    return len(calls)


def test_optimizer_updates_need_no_lowering_to_fuse(monkeypatch):
    assert _mlp_adam_probes(4, monkeypatch) == _mlp_adam_probes(16, monkeypatch) == 0


def test_optimizer_updates_of_same_shaped_parameters_share_their_probes(monkeypatch):
    """Where the facts leave a question open the lowering decides, memoised: each
    parameter's Adam update names its own variable; the memo numbers variables by first use,
    so the layers' updates are lowered once for all (what still grows are the sibling merges
    of growing kernels: about 2 lowerings a layer, against 20 before)."""
    p4 = _mlp_adam_probes(4, monkeypatch, facts=False)
    p16 = _mlp_adam_probes(16, monkeypatch, facts=False)
    assert 0 < p4 and p16 < 2 * p4, (p4, p16)
