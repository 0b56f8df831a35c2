"""Programs the differential fuzzer (tests/fuzz) found wrong, shrunk, with the root cause of
each; fused cpu, unfused cpu and the reference must agree on them."""

import numpy as np

import graphc as gc
from tests.fuzz.differential import assert_agree


def _data(seed, shape):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_softmax_over_a_size_1_axis_between_unknown_dims():
    # the column layout of a reduction kernel (cpu) took softmax's exp(x - max) for an
    # epilogue of the max's row (over a size-1 axis the full space is the row shape) and
    # failed to lower the sum of it: "Max is read before its row is reduced"
    x = gc.placeholder(gc.float32, (None, 1, None))
    y = gc.nn.softmax(x, axis=1)
    (g,) = gc.gradients(gc.reduce_sum(y * y), [x])
    assert_agree([y, g], [{x: _data(0, (6, 1, 6))}, {x: _data(1, (2, 1, 2))}])
