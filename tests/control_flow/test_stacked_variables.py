"""A loop variable whose new value is also stacked is written by the native loop driver
straight into its stacked row and read back from the previous row (``native_loop.py``): no
copy per iteration. Values equal the reference interpreter's for forward and reverse scans,
trip counts 2 and more; the final variable is its own array (not a view of the stack, which
a later run reuses)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu import native_loop


@pytest.fixture
def copies(monkeypatch):
    """The per-iteration copies each native loop ran, as a list per loop."""
    seen: list = []
    original = native_loop._driver

    def driver():
        run = original()

        def call(entry, table, dims, nth, i0, trips, rev, moves, nm, cps, nc):
            seen.append(nc)
            return run(entry, table, dims, nth, i0, trips, rev, moves, nm, cps, nc)

        return call

    monkeypatch.setattr(native_loop, "_driver", driver)
    return seen


def _opts():
    return gc.CompileOptions(cache_dir=None)


@pytest.mark.parametrize("trips,reverse", [(2, False), (2, True), (9, False), (8, True)])
def test_scanned_carry_written_into_its_rows(trips, reverse, copies):
    xs = gc.placeholder(gc.float32, (None, 3, 4))
    w = gc.constant(np.linspace(-0.5, 0.5, 16, dtype=np.float32).reshape(4, 4))
    ys = gc.scan(lambda a, x: gc.tanh(gc.matmul(a, w) + x), xs,
                 initializer=gc.zeros((3, 4)), reverse=reverse)  # fmt: skip
    feeds = {xs: np.random.default_rng(trips).standard_normal((trips, 3, 4)).astype(np.float32)}
    want = gc.Session(target="reference").run(ys, feeds)
    with gc.Session(target="cpu", options=_opts()) as sess:
        got = sess.run(ys, feeds)
        again = sess.run(ys, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again, got)
    assert copies and copies[0] == 0


def test_dynamic_rnn_final_state_is_its_own_array(copies):
    x = gc.placeholder(gc.float32, (None, None, 5))
    cell = gc.nn.rnn_cell.LSTMCell(6)
    out, state = gc.nn.dynamic_rnn(cell, x, dtype=gc.float32)
    init = gc.global_variables_initializer()
    feeds = {x: np.random.default_rng(0).standard_normal((2, 7, 5)).astype(np.float32)}
    ref = gc.Session(target="reference")
    ref.run(init)
    want = ref.run([out, state.h, state.c], feeds)
    with gc.Session(target="cpu", options=_opts()) as sess:
        sess.run(init)
        got = sess.run([out, state.h, state.c], feeds)
        h = got[1]
        assert h.base is None or not np.shares_memory(h, got[0])
        again = sess.run([out, state.h, state.c], feeds)
    for w, g, a in zip(want, got, again):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a, g)
    np.testing.assert_array_equal(got[0][:, -1], got[1])
    assert copies and max(copies) == 0  # h written into the outputs stack, not copied
    assert ctypes.sizeof(native_loop._Copy) == 48  # (the fixture reads the table)
