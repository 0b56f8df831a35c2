"""Loops with a known trip count run their iterations after the first in one native call
on cpu (``graphc/backends/cpu/native_loop.py``, ``llvm/loopdrive.py``): values and
gradients equal the reference interpreter's and the same loops run from Python, for forward
and reverse scans, several sliced inputs and accumulators, map_fn, foldl, dynamic_rnn and
its gradient, run-time batch sizes and trip counts 0, 1, 2 and more; a body that is not
lean (a random draw) stays in Python."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu import control, native_loop


@pytest.fixture
def drives(monkeypatch):
    """Counts the loops ``drive`` ran natively."""
    count = [0]

    def counted(*args):
        out = native_loop.drive(*args)
        count[0] += out is not None
        return out

    monkeypatch.setattr(control, "drive", counted)
    return count


def _compare(fetches, feeds, monkeypatch, rtol=1e-5, atol=1e-5):
    want = gc.Session(target="reference").run(fetches, feeds)
    got = {}
    for native in (True, False):
        monkeypatch.setattr(native_loop, "NATIVE_LOOP", native)
        with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
            got[native] = sess.run(fetches, feeds)
            again = sess.run(fetches, feeds)  # a second run: the arrays of the first reused
        for w, v, v2 in zip(want, got[native], again):
            assert np.shape(v) == np.shape(w)
            np.testing.assert_allclose(v, w, rtol=rtol, atol=atol)
            np.testing.assert_array_equal(v2, v)
    monkeypatch.setattr(native_loop, "NATIVE_LOOP", True)
    return got[True]


def _scan_graph(reverse):
    xs = gc.placeholder(gc.float32, (None, None, 5))
    ys = gc.placeholder(gc.float32, (None, None, 3))
    h0 = gc.placeholder(gc.float32, (None, 4))
    w = gc.constant(np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4))
    u = gc.constant(np.linspace(-0.5, 0.5, 16, dtype=np.float32).reshape(4, 4))
    v = gc.constant(np.linspace(0.2, -0.3, 12, dtype=np.float32).reshape(3, 4))

    def step(acc, elems):
        h, total = acc
        x, y = elems
        h = gc.tanh(gc.matmul(x, w) + gc.matmul(h, u, transpose_b=True) + gc.matmul(y, v))
        return h, total + gc.reduce_sum(h, axis=1)

    hs, totals = gc.scan(step, (xs, ys), initializer=(h0, gc.zeros_like(h0[:, 0])),
                         reverse=reverse)  # fmt: skip
    loss = gc.reduce_sum(hs * hs) + gc.reduce_sum(totals)
    grads = gc.gradients(loss, [xs, ys, h0])
    return (xs, ys, h0), [hs, totals, loss, *grads]


@pytest.mark.parametrize(
    "trips,batch,reverse",
    [(0, 3, False), (1, 3, True), (2, 1, False), (2, 2, True), (7, 3, False), (6, 33, True)],
)
def test_scan_and_its_gradient(trips, batch, reverse, monkeypatch, drives):
    (xs, ys, h0), fetches = _scan_graph(reverse)
    rng = np.random.default_rng(trips * 100 + batch)
    feeds = {xs: rng.standard_normal((trips, batch, 5)).astype(np.float32),
             ys: rng.standard_normal((trips, batch, 3)).astype(np.float32),
             h0: rng.standard_normal((batch, 4)).astype(np.float32)}  # fmt: skip
    _compare(fetches, feeds, monkeypatch)
    if trips >= 2:
        assert drives[0] >= 2  # the forward loop and its gradient, natively


def test_map_fn_and_foldl(monkeypatch, drives):
    xs = gc.placeholder(gc.float32, (None, 6))
    sq = gc.map_fn(lambda r: gc.exp(r) * 2.0, xs)
    fold = gc.foldl(lambda a, r: a * 0.5 + r, xs, initializer=gc.zeros((6,)))
    feeds = {xs: np.arange(30, dtype=np.float32).reshape(5, 6) / 10}
    _compare([sq, fold], feeds, monkeypatch)
    assert drives[0] >= 2


@pytest.mark.parametrize("batch", [1, 4])
def test_dynamic_rnn_and_its_gradient(batch, monkeypatch, drives):
    x = gc.placeholder(gc.float32, (None, None, 7))
    cell = gc.nn.rnn_cell.LSTMCell(12)
    out, state = gc.nn.dynamic_rnn(cell, x, dtype=gc.float32)
    loss = gc.reduce_sum(out * out) + gc.reduce_sum(state.c)
    grads = gc.gradients(loss, [x, *cell.variables])
    feeds = {x: np.random.default_rng(batch).standard_normal((batch, 9, 7)).astype(np.float32)}
    want_init = gc.global_variables_initializer()
    ref = gc.Session(target="reference")
    ref.run(want_init)
    want = ref.run([out, loss, *grads], feeds)
    for native in (True, False):
        monkeypatch.setattr(native_loop, "NATIVE_LOOP", native)
        with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
            sess.run(want_init)
            got = sess.run([out, loss, *grads], feeds)
        for w, v in zip(want, got):
            np.testing.assert_allclose(v, w, rtol=1e-4, atol=1e-5)
    assert drives[0] >= 2


def test_a_body_drawing_random_numbers_stays_in_python(monkeypatch, drives):
    xs = gc.placeholder(gc.float32, (None, 3))
    noisy = gc.map_fn(lambda r: r + gc.random_uniform((3,), seed=1), xs)
    feeds = {xs: np.zeros((4, 3), np.float32)}
    want = gc.Session(target="reference").run(noisy, feeds)
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        got = sess.run(noisy, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert len({tuple(r) for r in got}) == 4  # fresh numbers at every iteration
    assert drives[0] == 0
