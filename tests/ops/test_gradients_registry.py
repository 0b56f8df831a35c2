"""Every differentiable op's VJP rule against float64 central differences."""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import REGISTRY
from tests.oracle import build_example

CASES = [
    (name, i)
    for name in sorted(REGISTRY)
    for i, ex in enumerate(REGISTRY[name].examples())
    if REGISTRY[name].differentiable and ex.grad
]
MAX_ELEMENTS = 24  # elements probed per input, to keep the suite fast


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_differentiable_ops_have_a_gradient_example(name):
    op_def = REGISTRY[name]
    if not op_def.differentiable or op_def.no_examples_reason:
        return
    assert any(ex.grad for ex in op_def.examples()), (
        f"{name} is differentiable but no example checks its gradient; add one, or mark the "
        "op differentiable = False"
    )


def check_gradients(example, tol=None):
    g, phs, outs, arrays = build_example(example, float64=example.float64)
    rng = np.random.default_rng(7)
    with g.as_default():
        weights = []
        loss_terms = []
        for t in outs:
            if not t.dtype.is_floating:
                continue
            w = rng.uniform(0.5, 1.5, size=()).astype(np.float64)
            weights.append(w)
            loss_terms.append(gc.reduce_sum(t * t) * w)
        loss = loss_terms[0]
        for term in loss_terms[1:]:
            loss = loss + term
        wrt = [(p, a) for p, a in zip(phs, arrays) if a.dtype.kind == "f"]
        grads = gc.gradients(loss, [p for p, _ in wrt])
    tol = tol or example.grad_tol
    with gc.Session(graph=g, target="reference") as sess:
        feed = dict(zip(phs, arrays))
        fetch = [gr for gr in grads if gr is not None]
        analytic = iter(sess.run(fetch, feed))
        for (p, a), gr in zip(wrt, grads):
            got = np.zeros_like(a) if gr is None else np.asarray(next(analytic))
            assert got.shape == a.shape, f"gradient of {p.name}: shape {got.shape} != {a.shape}"
            flat = a.reshape(-1)
            idx = np.arange(flat.size)
            if flat.size > MAX_ELEMENTS:
                idx = np.random.default_rng(0).choice(flat.size, MAX_ELEMENTS, replace=False)
            for i in idx:
                eps = (1e-6 if a.dtype == np.float64 else 1e-2) * max(1.0, abs(flat[i]))
                plus, minus = flat.copy(), flat.copy()
                plus[i] += eps
                minus[i] -= eps
                fp = sess.run(loss, {**feed, p: plus.reshape(a.shape)})
                fm = sess.run(loss, {**feed, p: minus.reshape(a.shape)})
                numeric = (fp - fm) / (2 * eps)
                g_i = got.reshape(-1)[i]
                assert abs(g_i - numeric) <= tol * max(1.0, abs(numeric)), (
                    f"d loss / d {p.name}[{i}]: rule gives {g_i}, central difference {numeric}"
                )


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_vjp_matches_central_differences(name, index):
    check_gradients(REGISTRY[name].examples()[index])
