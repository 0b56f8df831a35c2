"""Deep graphs compile on cpu without RecursionError: chains of thousands of ops, a 256-layer
MLP, the W12 training steps (a 64-layer MLP, an unrolled LSTM), with the same values as the
reference and size statistics that stay short expressions."""

import numpy as np
import pytest

import graphc as gc
from graphc.bench.scaling import build_lstm_step, build_mlp_step, lstm_inputs, mlp_inputs
from graphc.passes.fusion import MAX_KERNEL_OPS


def _chain(n):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None,), name="x")
        y = x
        for _ in range(n // 2):
            y = y * 1.0001 + 0.5
    return g, x, y


def _run_chain(n):
    g, x, y = _chain(n)
    xs = np.linspace(-2, 2, 37).astype(np.float32)
    with gc.Session(graph=g, options=gc.CompileOptions(cache_dir=None)) as sess:
        exe = sess.compile([y], [x])
        got = sess.run(y, {x: xs})
    want = xs.astype(np.float64)
    for _ in range(n // 2):
        want = want * np.float32(1.0001) + 0.5
    np.testing.assert_allclose(got, want, rtol=2e-6)
    return exe


def test_a_chain_of_3000_ops_compiles_and_is_cut_into_kernels():
    exe = _run_chain(3000)
    # a kernel takes at most MAX_KERNEL_OPS ops: the chain is cut, not one huge loop
    assert len(exe.kernels) == -(-3000 // MAX_KERNEL_OPS)
    assert max(len(k.ops) for k in exe.kernels) == MAX_KERNEL_OPS


@pytest.mark.slow
def test_a_chain_of_20000_ops_compiles():
    exe = _run_chain(20000)
    assert len(exe.source.nodes) > 20000


def test_a_256_layer_mlp_forward_compiles():
    rng = np.random.default_rng(0)
    width, layers = 16, 256
    ws = [(rng.standard_normal((width, width)) / np.sqrt(width) * 1.2).astype(np.float32)
          for _ in range(layers)]  # fmt: skip
    bs = [(rng.standard_normal(width) * 0.1).astype(np.float32) for _ in range(layers)]
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, width), name="x")
        h = x
        for w, b in zip(ws, bs):
            h = gc.nn.relu(gc.matmul(h, gc.constant(w)) + gc.constant(b)) + 0.01
    xs = rng.standard_normal((5, width)).astype(np.float32)
    with gc.Session(graph=g, options=gc.CompileOptions(cache_dir=None)) as sess:
        got = sess.run(h, {x: xs})
    want = xs
    for w, b in zip(ws, bs):
        want = np.maximum(want @ w + b, 0) + np.float32(0.01)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def _stats_are_short(exe):
    # sizes over the runtime batch stay short expressions, not chains as long as the program
    for key in ("bytes_moved", "peak_temp_bytes", "buffer_bytes"):
        assert len(str(exe.stats[key])) < 2000, key


def _step_matches_reference(g, feeds, fetches, variables, init):
    values = {}
    for target in ("reference", "cpu"):
        with gc.Session(graph=g, target=target, options=gc.CompileOptions(cache_dir=None)) as s:
            s.run(init)
            exe = s.compile(fetches, list(feeds)) if target == "cpu" else None
            loss, _ = s.run(fetches, feeds)
            values[target] = [loss, *s.run(variables)]
            if exe is not None:
                _stats_are_short(exe)
    for got, want in zip(values["cpu"], values["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_the_64_layer_mlp_adam_step_compiles():
    rng = np.random.default_rng(0)
    inputs = mlp_inputs(64, 16, 10, 4, rng)
    g, (x, labels), loss, step, params, init = build_mlp_step(64, 16, 10, inputs)
    feeds = {x: inputs["x"], labels: inputs["labels"]}
    _step_matches_reference(g, feeds, [loss, step], params, init)


@pytest.mark.slow
def test_a_24_step_unrolled_lstm_adam_step_compiles():
    # (16 steps raised RecursionError; `graphc bench --suite W12` compiles 64)
    rng = np.random.default_rng(0)
    inputs = lstm_inputs(24, 11, 8, 3, rng)
    g, (ids, targets), loss, step, params, init = build_lstm_step(24, 11, 8, inputs)
    feeds = {ids: inputs["ids"], targets: inputs["targets"]}
    _step_matches_reference(g, feeds, [loss, step], params, init)
