"""Registry-driven checks of every op: examples exist, static inference agrees with the
numpy reference (static and unknown-dim placeholders), and the op type is really built."""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import REGISTRY
from tests.oracle import build_example, run

OPS = sorted(REGISTRY)
CASES = [(name, i) for name in OPS for i in range(len(REGISTRY[name].examples()))]


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_examples_or_a_reason(name):
    op_def = REGISTRY[name]
    assert op_def.examples() or op_def.no_examples_reason, (
        f"op {name} has no examples(); add some or set no_examples_reason"
    )


def _compatible(static, actual):
    if static is None:
        return True
    return len(static) == len(actual) and all(s is None or s == a for s, a in zip(static, actual))


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_infer_agrees_with_reference(name, index, dynamic):
    example = REGISTRY[name].examples()[index]
    if dynamic and not example.dynamic:
        pytest.skip("example needs static shapes")
    g, phs, outs, arrays = build_example(example, dynamic=dynamic)
    assert any(op.type == name for op in g.get_operations()), f"example did not build a {name}"
    values = run(g, outs, dict(zip(phs, arrays)))
    for t, v in zip(outs, values):
        v = np.asarray(v)
        assert v.dtype == t.dtype.np, f"{t.name}: ref dtype {v.dtype} != inferred {t.dtype}"
        assert _compatible(t.shape, v.shape), f"{t.name}: ref shape {v.shape} vs {t.shape}"
    if not dynamic:
        for t in outs:
            assert t.shape is not None and None not in t.shape, (
                f"{t.name}: static inputs should give a fully known shape, got {t.shape}"
            )


def test_registry_covers_public_elementwise_names():
    for fn in ["exp", "log", "tanh", "sigmoid", "erf", "where", "cast", "maximum", "pow"]:
        assert callable(getattr(gc, fn))
