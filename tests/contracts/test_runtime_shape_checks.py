"""Run-time shape contracts: fed sizes of ``None`` dims that break an op's shape rule raise
``InvalidArgumentError`` on the compiled targets exactly where ``target="reference"`` raises,
before any native code runs (no garbage, no out-of-bounds access).

Every registry example is built with all dims ``None`` and fed sizes that differ from the
example's (one dim of one input grown, shrunk, set to 0 or 1): one compiled executable per
example, many runs. Whatever the reference does (raise or compute), the cpu target must do
the same.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import REGISTRY
from tests.oracle import build_example

OPS = sorted(REGISTRY)
CASES = [
    (name, i)
    for name in OPS
    for i, ex in enumerate(REGISTRY[name].examples())
    if ex.dynamic and ex.inputs
]


def _resized(a: np.ndarray, shape) -> np.ndarray:
    """An array of ``shape`` whose values come from ``a`` (cyclically): indices stay indices."""
    if a.size == 0:
        return np.zeros(shape, a.dtype)
    return np.resize(a, shape).astype(a.dtype)


def perturbations(arrays):
    """Feeds that differ from ``arrays`` in one dim of one input (deterministic order)."""
    out = []
    for i, a in enumerate(arrays):
        for axis, s in enumerate(a.shape):
            for new in sorted({s + 1, max(s - 1, 0), 0, 1} - {s}):
                shape = list(a.shape)
                shape[axis] = new
                feeds = list(arrays)
                feeds[i] = _resized(a, tuple(shape))
                out.append((f"input {i} axis {axis}: {s} -> {new}", feeds))
    return out


def _outcome(sess, outs, feed_dict):
    try:
        return "ok", sess.run(outs, feed_dict)
    except gc.errors.InvalidArgumentError as e:
        return "raise", str(e)


def check_example(name, index, fusion=True):
    example = REGISTRY[name].examples()[index]
    g, phs, outs, arrays = build_example(example, dynamic=True)
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    with (
        gc.Session(graph=g, target="reference") as ref,
        gc.Session(graph=g, target="cpu", options=opts) as cpu,
    ):
        for what, feeds in perturbations(arrays):
            fd = dict(zip(phs, feeds))
            want = _outcome(ref, outs, fd)
            got = _outcome(cpu, outs, fd)
            if got[0] == "raise":  # names the op that refused and the user's line
                assert "built at" in got[1] and "oracle.py" in got[1], got[1]
            assert got[0] == want[0], (
                f"{name}[{index}] {what}: reference {want[0]} ({str(want[1])[:200]}), "
                f"cpu {got[0]} ({str(got[1])[:200]})"
            )
            if want[0] == "ok":
                for t, w, v in zip(outs, want[1], got[1]):
                    w, v = np.asarray(w), np.asarray(v)
                    assert v.shape == w.shape, f"{name}[{index}] {what}: {t.name} shape"
                    if w.dtype.kind == "f":
                        np.testing.assert_allclose(v, w, rtol=1e-4, atol=1e-5, err_msg=what)
                    else:
                        np.testing.assert_array_equal(v, w, err_msg=what)


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
def test_cpu_raises_where_reference_raises(name, index, fusion):
    check_example(name, index, fusion)
