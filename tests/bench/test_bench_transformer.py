"""W9 (transformer encoder layer train step) at its quick sizes: it builds through the public
API, the fused cpu step matches the reference interpreter, its loss matches an independent
float64 numpy forward pass, and it runs only when named."""

import importlib.util
import math
from pathlib import Path

import numpy as np

from graphc.bench.measure import compare
from graphc.bench.runner import select
from graphc.bench.transformer import LN_EPSILON, TRANSFORMER_PARAMS, TransformerStep

_erf = np.vectorize(math.erf)

WORKLOAD = "W9"  # the workload of the `quick` fixture (conftest.py)


def _numpy_loss(sizes, p, x, y):
    """The encoder layer's mean squared error in float64 numpy."""
    s, d, h = sizes["seq"], sizes["d_model"], sizes["heads"]
    dh = d // h
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x2 = x.astype(np.float64).reshape(-1, d)

    def heads(t):
        return t.reshape(-1, s, h, dh).transpose(0, 2, 1, 3)

    def layer_norm(t, name):
        mu, var = t.mean(axis=-1, keepdims=True), t.var(axis=-1, keepdims=True)
        return (t - mu) / np.sqrt(var + LN_EPSILON) * p[f"{name}_gamma"] + p[f"{name}_beta"]

    q, k, v = heads(x2 @ p["wq"] + p["bq"]), heads(x2 @ p["wk"]), heads(x2 @ p["wv"] + p["bv"])
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    ctx = ((e / e.sum(axis=-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(-1, d)
    h1 = layer_norm(x2 + ctx @ p["wo"] + p["bo"], "ln1")
    a = h1 @ p["w1"] + p["b1"]
    ff = (0.5 * a * (1 + _erf(a / np.sqrt(2)))) @ p["w2"] + p["b2"]
    out = layer_norm(h1 + ff, "ln2")
    return np.mean((out - y.astype(np.float64).reshape(-1, d)) ** 2)


def test_w9_is_registered_and_runs_when_named(quick):
    w, sizes, inputs, case = quick
    assert isinstance(w, TransformerStep) and w.kind == "step" and w.missing() is None
    assert [v.op.name for v in case.variables] == list(TRANSFORMER_PARAMS)
    assert "W9" not in [x.id for x in select(None)]
    assert [x.id for x in select("w9")] == ["W9"]
    full = w.sizes(False)
    assert full == {"batch": 32, "seq": 128, "d_model": 256, "heads": 4, "ff": 1024}


def test_w9_fused_step_matches_reference_and_numpy(quick, one_step):
    w, sizes, inputs, case = quick
    expected = one_step(case, "reference")
    got = one_step(case, "cpu")
    err, problem = compare(got, expected, w.rtol, w.atol)
    assert problem is None, problem
    loss = _numpy_loss(sizes, inputs, inputs["x"], inputs["y"])
    np.testing.assert_allclose(got[0], loss, rtol=1e-5)
    # the step moved every parameter (Adam's first step is about lr * sign(grad))
    for name, value in zip(TRANSFORMER_PARAMS, got[1:]):
        assert np.all(np.isfinite(value)), name
        moved = np.abs(value - inputs[name])
        assert moved.max() > 0.5 * w.adam_lr and moved.max() < 1.5 * w.adam_lr, name


def test_profile_script_times_every_kernel_of_the_quick_step(capsys):
    """scripts/profile_step.py (the W9 profile of docs/benchmarks.md) at quick sizes, with the
    trace on the thread's CPU clock; the renderer is restored afterwards."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "profile_step.py"
    spec = importlib.util.spec_from_file_location("profile_step", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    now = script.render.Renderer._now
    script.main(["W9", "--quick", "--cpu-clock", "--runs", "2", "--top", "3"])
    assert script.render.Renderer._now is now
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("W9 transformer encoder layer: batch 2")
    assert "thread CPU time, 1 thread" in out[1] and "fused:" in out[1]
    assert len([line for line in out if " ms " in line and "%" in line]) == 3
    assert out[-1].startswith("compile seconds:") and '"total"' in out[-1]
