"""Every op example of the registry on target="cpu" (fused and unfused) equals the reference,
built with its placeholders' static shapes and again with every dim declared ``None`` (same
values fed), forward and (for differentiable examples) gradients.

Ops without a lowering declare ``kind = "host"`` on their OpDef, and ops whose lowering needs
some dims known at build time a ``dynamic_host_reason``: the cpu target runs them with the
labelled per-op host fallback (``backends/cpu/fallback.py``), which must name them in
``exe.stats["host_fallback_ops"]``; no other op may fall back.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import REGISTRY
from tests.oracle import build_example, run

OPS = sorted(REGISTRY)
CASES = [(name, i) for name in OPS for i in range(len(REGISTRY[name].examples()))]

#: the ops that may run on the host: those that declare no lowering (OpDef.host_reason)
#: or one that needs dims known at build time (OpDef.dynamic_host_reason)
HOST_OPS = {
    name for name, op_def in REGISTRY.items() if op_def.kind == "host" or op_def.dynamic_host_reason
}


def build_unknown_dims(example, float64=False, then=None):
    """``build_example`` with every placeholder dim ``None``; when the op needs some dims
    known at build time (``squeeze()`` of all size-1 dims, ``unstack`` without ``num``), as
    many dims as the build allows are ``None``, tried left to right. ``then(phs, outs)``,
    when given, builds more inside the graph (a gradient) and its result replaces ``outs``.
    Returns (graph, placeholders, outputs, arrays, the placeholders' declared shapes)."""
    arrays = [np.asarray(a) for a in example.inputs]
    if float64:
        arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]

    def build(shapes):
        g = gc.Graph()
        with g.as_default():
            phs = [
                gc.placeholder(gc.as_dtype(a.dtype), s, name=f"in{i}")
                for i, (a, s) in enumerate(zip(arrays, shapes))
            ]
            out = example.build(*phs)
            outs = list(out) if isinstance(out, list | tuple) else [out]
            if then is not None:
                outs = then(phs, outs)
        return g, phs, outs

    shapes = [tuple(None for _ in a.shape) for a in arrays]
    try:
        return (*build(shapes), arrays, shapes)
    except (ValueError, TypeError):
        pass
    shapes = [tuple(a.shape) for a in arrays]
    for i, a in enumerate(arrays):
        for d in range(a.ndim):
            trial = list(shapes)
            trial[i] = shapes[i][:d] + (None,) + shapes[i][d + 1 :]
            try:
                build(trial)
            except (ValueError, TypeError):
                continue
            shapes = trial
    return (*build(shapes), arrays, shapes)


def _compare(outs, want, got, example, what=""):
    for t, w, v in zip(outs, want, got):
        w, v = np.asarray(w), np.asarray(v)
        name = f"{what}{t.name}"
        assert v.dtype == w.dtype, f"{name}: dtype {v.dtype}, reference {w.dtype}"
        assert v.shape == w.shape, f"{name}: shape {v.shape}, reference {w.shape}"
        if w.dtype.kind == "f":
            tol = max(example.rtol, 2e-6 if w.dtype == np.float32 else 1e-12)
            atol = max(example.atol, 1e-6 if w.dtype == np.float32 else 1e-12)
            if w.dtype == np.float16:
                tol, atol = max(tol, 2e-3), max(atol, 2e-3)
            np.testing.assert_allclose(v, w, rtol=tol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(v, w, err_msg=name)


def _check_fallback(exe):
    fallback = set(exe.stats.get("host_fallback_ops", ()))
    assert fallback <= HOST_OPS, f"unexpected host fallback for {fallback}"
    if fallback:
        assert any(k.name.startswith("host_fallback:") for k in exe.kernels)


def _check(name, index, fusion, dynamic):
    example = REGISTRY[name].examples()[index]
    if dynamic:
        g, phs, outs, arrays, _ = build_unknown_dims(example)
    else:
        g, phs, outs, arrays = build_example(example)
    feeds = dict(zip(phs, arrays))
    want = run(g, outs, feeds, target="reference")
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(outs, feeds)
        _check_fallback(sess.compile(outs, phs))
    _compare(outs, want, got, example)


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
def test_cpu_matches_reference(name, index, fusion):
    _check(name, index, fusion, dynamic=False)


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
def test_cpu_matches_reference_unknown_dims(name, index, fusion):
    """Every dim of every placeholder ``None``: sizes are runtime arguments everywhere."""
    _check(name, index, fusion, dynamic=True)


GRAD_CASES = [
    (name, i)
    for name, i in CASES
    if REGISTRY[name].differentiable and REGISTRY[name].examples()[i].grad
]


@pytest.mark.parametrize("name,index", GRAD_CASES, ids=[f"{n}-{i}" for n, i in GRAD_CASES])
def test_cpu_gradients_match_reference_unknown_dims(name, index):
    """The gradient graph of a weighted sum of the example's float outputs w.r.t. its float
    inputs, every placeholder dim ``None``: fused and unfused cpu equal the reference."""
    example = REGISTRY[name].examples()[index]
    rng = np.random.default_rng(index)
    weights = [rng.uniform(0.5, 1.5) for _ in range(8)]
    float_in = [np.asarray(a).dtype.kind == "f" for a in example.inputs]

    def gradient(phs, outs):
        terms = [
            gc.reduce_sum(t * gc.constant(w, t.dtype)) + gc.reduce_sum(t * t) * 0.25
            for t, w in zip(outs, weights)
            if t.dtype.is_floating
        ]
        wrt = [p for p, f in zip(phs, float_in) if f]
        if not terms or not wrt:
            return []
        loss = terms[0]
        for term in terms[1:]:
            loss = loss + term
        return [gr for gr in gc.gradients(loss, wrt) if gr is not None]

    g, phs, grads, arrays, _ = build_unknown_dims(example, then=gradient)
    if not grads:
        pytest.skip("no input gets a gradient")
    feeds = dict(zip(phs, arrays))
    want = run(g, grads, feeds, target="reference")
    for fusion in (True, False):
        opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
        with gc.Session(graph=g, target="cpu", options=opts) as sess:
            got = sess.run(grads, feeds)
            _check_fallback(sess.compile(grads, phs))
        loose = type(example)(example.build, example.inputs, rtol=max(example.rtol, 1e-4),
                              atol=max(example.atol, 1e-4))  # fmt: skip
        _compare(grads, want, got, loose, what=f"fusion={fusion} d/d ")
