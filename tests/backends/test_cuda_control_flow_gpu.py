"""Control flow on a real GPU (marked ``cuda``: skipped without a GPU and pycuda; run by
scripts/gpu_check.sh). The same checks as test_cuda_control_flow_emulated.py, on the
device: while_loop, cond, nested loops and a dynamic_rnn LSTM forward and gradient, each
compared with the reference interpreter; the per-step time of a scan is printed."""

from __future__ import annotations

import time

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.cuda

OPTS = gc.CompileOptions(cache_dir=None)


def _both(graph, fetches, feed, init=False, rtol=1e-5, atol=1e-6):
    out = {}
    for target in ("reference", "cuda"):
        with gc.Session(graph=graph, target=target, options=OPTS) as s:
            if init:
                s.run(gc.global_variables_initializer())
            out[target] = s.run(fetches, feed)
    for w, g in zip(out["reference"], out["cuda"]):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return out["cuda"]


def test_while_loop_cond_and_nested_loops_on_the_gpu():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 3))
        limit = gc.placeholder(gc.float32, ())
        p = gc.placeholder(gc.bool, ())
        i, v = gc.while_loop(lambda i, v: gc.reduce_sum(v) < limit,
                             lambda i, v: (i + 1, v * 1.5 + 0.25), [gc.constant(0), x])  # fmt: skip
        y = gc.cond(p, lambda: gc.nn.softmax(v), lambda: gc.tanh(v) - 1.0)

        def outer(k, acc):
            _, a = gc.while_loop(lambda j, a: j < k, lambda j, a: (j + 1, a + x * 0.5),
                                 (gc.constant(0), acc))  # fmt: skip
            return k + 1, a

        _, acc = gc.while_loop(lambda k, a: k < 4, outer, (gc.constant(0), gc.zeros_like(x)))
    a = np.linspace(0.1, 0.6, 6, dtype=np.float32).reshape(2, 3)
    for lim, pred in ((40.0, True), (1.0, False)):
        _both(g, [i, v, y, acc], {x: a, limit: np.float32(lim), p: pred})


@pytest.mark.parametrize("batch,steps", [(3, 6), (1, 2), (2, 0)])
def test_dynamic_rnn_lstm_forward_and_gradient_on_the_gpu(batch, steps):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, (None, None, 5), name="x")
        w = (np.random.default_rng(0).standard_normal((5 + 4, 16)) * 0.4).astype(np.float64)
        cell = gc.nn.rnn_cell.LSTMCell(4, initializer=lambda shape, dtype: gc.constant(w))
        outputs, state = gc.nn.dynamic_rnn(cell, x, dtype=gc.float64)
        loss = gc.reduce_sum(outputs * outputs) + gc.reduce_sum(gc.tanh(state.c))
        grads = gc.gradients(loss, [x] + list(cell.variables))
    xs = np.random.default_rng(batch).standard_normal((batch, steps, 5))
    _both(g, [loss, outputs, *grads], {x: xs}, init=True, rtol=1e-9, atol=1e-11)


def test_scan_step_time_on_the_gpu():
    """A tanh RNN step (batch 32, 256 units) as a scan of 200 steps, forward and with its
    gradient: the values match the reference; the time per step is printed (-s)."""
    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float32, (None, 32, 256))
        w = gc.constant((rng.standard_normal((256, 256)) * 0.05).astype(np.float32))
        hs = gc.scan(lambda h, x: gc.tanh(gc.matmul(h, w) + x), xs,
                     initializer=gc.zeros((32, 256)))  # fmt: skip
        loss = gc.reduce_sum(hs[-1])
        grad = gc.gradients(loss, [xs])[0]
    feed = {xs: rng.standard_normal((200, 32, 256)).astype(np.float32)}
    _both(g, [loss, grad], feed, rtol=1e-3, atol=1e-4)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        for fetches, name in ((loss, "forward"), ([loss, grad], "forward and gradient")):
            s.run(fetches, feed)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                s.run(fetches, feed)
                times.append(time.perf_counter() - t0)
            print(f"scan of 200 tanh RNN steps on the GPU, {name}: "
                  f"{np.median(times) / 200 * 1e6:.1f} us per step")  # fmt: skip
