"""Memory of loops: a forward loop keeps no per-iteration rows (its peak does not grow with
the trip count); with a gradient, the history grows linearly (one row per iteration, plus
the stacked copy being filled)."""

import tracemalloc

import numpy as np
import pytest

import graphc as gc

from .helpers import TARGETS

ROW = 8000 * 8  # bytes of one loop variable


def _peak(sess, fetch, feed) -> int:
    tracemalloc.start()
    try:
        sess.run(fetch, feed)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("target", TARGETS)
def test_peak_memory_of_a_loop_and_of_its_gradient(target):
    x = gc.placeholder(gc.float64, (8000,), name="x")
    n = gc.placeholder(gc.int32, (), name="n")
    _, y = gc.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, y * 0.999 + 1.0), (0, x))
    (g,) = gc.gradients(gc.reduce_sum(y), [x])
    ones = np.ones(8000)
    with gc.Session(target=target) as sess:
        sess.run([y, g], {x: ones, n: 2})  # compile first
        forward = [_peak(sess, y, {x: ones, n: t}) for t in (50, 250)]
        backward = [_peak(sess, g, {x: ones, n: t}) for t in (50, 250)]
        np.testing.assert_allclose(sess.run(g, {x: ones, n: 250}), np.full(8000, 0.999**250))
    assert forward[1] - forward[0] < 2 * ROW  # no row per iteration
    growth = (backward[1] - backward[0]) / (200 * ROW)  # rows per extra iteration
    assert 0.9 < growth < 2.2
