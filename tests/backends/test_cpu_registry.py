"""Every op example of the registry on target="cpu" (fused and unfused) equals the reference.

Ops the lowering cannot express yet are listed in KNOWN_GAPS: the cpu target runs them with
the labelled per-op host fallback (``backends/cpu/fallback.py``), which must name them in
``exe.stats["host_fallback_ops"]``; no other op may fall back.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import REGISTRY
from tests.oracle import build_example, run

OPS = sorted(REGISTRY)
CASES = [(name, i) for name in OPS for i in range(len(REGISTRY[name].examples()))]

#: op type -> why the cpu target refuses it (UnimplementedError expected)
_NO_LOWERING = "kernel.lower has no lowering for this op yet: host fallback"
KNOWN_GAPS: dict = {
    name: _NO_LOWERING
    for name in (
        "AvgPool", "AvgPoolGrad", "Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput",
        "Einsum", "GatherGrad", "GatherNd", "GatherNdGrad", "MaxPool", "MaxPoolGrad",
        "MaxPoolGradGrad", "PadGrad", "ScatterNd", "SplitLike", "StridedSliceGrad", "TileGrad",
        "UnsortedSegmentSum",
    )
}  # fmt: skip


def _check(name, index, fusion, dynamic):
    example = REGISTRY[name].examples()[index]
    if dynamic and not example.dynamic:
        pytest.skip("example needs static shapes")
    g, phs, outs, arrays = build_example(example, dynamic=dynamic)
    feeds = dict(zip(phs, arrays))
    want = run(g, outs, feeds, target="reference")
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(outs, feeds)
        exe = sess.compile(outs, phs)
    fallback = set(exe.stats.get("host_fallback_ops", ()))
    assert fallback <= set(KNOWN_GAPS), f"unexpected host fallback for {fallback}"
    if fallback:
        assert any(k.name.startswith("host_fallback:") for k in exe.kernels)
    for t, w, v in zip(outs, want, got):
        w, v = np.asarray(w), np.asarray(v)
        assert v.dtype == w.dtype, f"{t.name}: dtype {v.dtype}, reference {w.dtype}"
        assert v.shape == w.shape, f"{t.name}: shape {v.shape}, reference {w.shape}"
        if w.dtype.kind == "f":
            tol = max(example.rtol, 2e-6 if w.dtype == np.float32 else 1e-12)
            atol = max(example.atol, 1e-6 if w.dtype == np.float32 else 1e-12)
            if w.dtype == np.float16:
                tol, atol = max(tol, 2e-3), max(atol, 2e-3)
            np.testing.assert_allclose(v, w, rtol=tol, atol=atol, err_msg=t.name)
        else:
            np.testing.assert_array_equal(v, w, err_msg=t.name)


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
def test_cpu_matches_reference(name, index, fusion):
    _check(name, index, fusion, dynamic=False)


@pytest.mark.slow
@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_cpu_matches_reference_dynamic_shapes(name, index):
    _check(name, index, True, dynamic=True)


def test_known_gaps_are_registered_ops():
    assert set(KNOWN_GAPS) <= set(REGISTRY)
