"""Fusion legality from facts (``graphc/passes/fusion_legality.py``) against the lowering it
replaces: every decision the facts make must be the lowering's (``verify=True`` lowers each
candidate too and raises on a disagreement), on hand-written row kernels whose reductions
are read through broadcasts, reshapes and transposes, and on the differential fuzzer's
random programs with their gradients, in both reduction layouts."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.options import CompileOptions
from graphc.passes import fusion as F
from graphc.passes.manager import optimize
from graphc.program import extract
from tests.fuzz.differential import build
from tests.fuzz.programs import generate


def _fuse_checked(fetches, feeds, layout="rows", monkeypatch=None):
    """Fuse the optimised program of ``fetches`` with every fact checked by a lowering;
    returns (plan, how many questions the facts decided, how many they left open)."""
    program = extract(fetches, [], feeds)
    options = CompileOptions(verify=True, cache_dir=None)
    program = optimize(program, options).program
    counts = {"facts": 0, "undecided": 0}
    real = F.legality

    def counting(*a, **k):
        why = real(*a, **k)
        counts["undecided" if why is F.UNDECIDED else "facts"] += 1
        return why

    if monkeypatch is not None:
        monkeypatch.setattr(F, "legality", counting)
    plan = F.fuse(program, options, layout)
    return plan, counts


def _total(tensors):
    out = tensors[0]
    for t in tensors[1:]:
        out = out + t
    return out


def _graph(build_fn):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 16), name="x")
        fetches = build_fn(x)
    return g, x, fetches


ROW_KERNELS = {
    # softmax and layer norm: the row values read back at the full index (keepdims)
    "softmax": lambda x: [gc.nn.softmax(x)],
    "layer_norm": lambda x: [
        (x - gc.reduce_mean(x, 1, keepdims=True))
        * gc.rsqrt(
            gc.reduce_mean(gc.square(x - gc.reduce_mean(x, 1, keepdims=True)), 1, keepdims=True)
            + 1e-5
        )  # fmt: skip
    ],
    # a row value without keepdims, reshaped back to a column
    "reshaped_row": lambda x: [x - gc.reshape(gc.reduce_max(x, 1), (-1, 1))],
    # a row of a reduction over the leading axis, broadcast along it
    "column_row": lambda x: [x * gc.reduce_sum(x, 0)],
    # a row read transposed: another row's value (the facts leave it open; not one kernel)
    "transposed_row": lambda x: [
        gc.transpose(gc.reduce_sum(gc.reshape(x, (-1, 4, 4)), 0)) + gc.reduce_sum(x, 0)[:4] * 0.5
    ],
    # a leading-axis row reshaped with its trailing dims kept, read at the full index
    "reshaped_column_row": lambda x: [
        gc.reshape(x, (-1, 4, 4))
        * gc.reshape(gc.reduce_sum(gc.reshape(x, (-1, 4, 4)), 0), (1, 4, 4))
    ],
    # a row read at another row through a reshape: refused by the facts themselves
    "misread_row": lambda x: [
        gc.reshape(x, (-1, 4, 4)) - gc.expand_dims(gc.reduce_sum(gc.reshape(x, (-1, 4, 4)), 1), 2)
    ],
    # two reductions of different axes and a scalar total
    "mixed": lambda x: [gc.reduce_sum(x, 1) * 2.0, gc.reduce_sum(x, 0), gc.reduce_sum(x) * x],
}


@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("name", sorted(ROW_KERNELS))
def test_row_kernels_facts_agree_with_lowering_and_results_match(name, layout, monkeypatch):
    g, x, fetches = _graph(ROW_KERNELS[name])
    with g.as_default():
        loss = _total([gc.reduce_sum(f * f) for f in fetches])
        grads = gc.gradients(loss, [x])
        plan, counts = _fuse_checked(fetches + grads, [x], layout, monkeypatch)
    assert counts["facts"] + counts["undecided"] > 0
    feed = {x: np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)}
    with gc.Session(graph=g, target="reference") as s:
        want = s.run(fetches + grads, feed)
    with gc.Session(graph=g, options=gc.CompileOptions(verify=True, cache_dir=None)) as s:
        got = s.run(fetches + grads, feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_softmax_and_layer_norm_are_decided_without_lowering(monkeypatch):
    for name in ("softmax", "layer_norm"):
        g, x, fetches = _graph(ROW_KERNELS[name])
        with g.as_default():
            _, counts = _fuse_checked(fetches, [x], "rows", monkeypatch)
        assert counts["undecided"] == 0 and counts["facts"] > 0, (name, counts)


def test_a_row_read_at_another_row_is_refused_by_the_facts(monkeypatch):
    g, x, fetches = _graph(ROW_KERNELS["misread_row"])
    with g.as_default():
        plan, counts = _fuse_checked(fetches, [x], "rows", monkeypatch)
    assert counts["undecided"] == 0 and counts["facts"] > 0, counts
    assert any("read at another row" in why for _, d, why in plan.decisions if d == "refuse")


def test_a_row_read_transposed_is_left_to_the_lowering(monkeypatch):
    g, x, fetches = _graph(ROW_KERNELS["transposed_row"])
    with g.as_default():
        plan, counts = _fuse_checked(fetches, [x], "rows", monkeypatch)
    assert counts["undecided"] >= 1, counts
    assert any("read at another row" in why for _, d, why in plan.decisions if d == "refuse")


@pytest.mark.parametrize("chunk", range(3))
def test_facts_agree_with_lowering_on_random_programs(chunk):
    for seed in range(chunk, 90, 3):
        p = generate(seed)
        g, ns = build(p)
        with g.as_default():
            fetch = ns["fetch"]
            fetches = list(fetch) if isinstance(fetch, list | tuple) else [fetch]
            floats = [t for t in ns["phs"] if t.dtype.is_floating]
            if floats:
                parts = [gc.reduce_sum(f) for f in fetches if f.dtype == floats[0].dtype]
                if parts:
                    grads = gc.gradients(_total(parts), floats)
                    fetches += [d for d in grads if d is not None]
            for layout in ("rows", "columns"):
                _fuse_checked(fetches, list(ns["phs"]), layout)
