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


def test_gemm_epilogue_with_a_reader_kernel_that_reaches_it():
    # seed 16090: a GEMM read by two kernels was merged into one of them as its epilogue
    # while the other, which read the product, also computed a value that first kernel
    # read, with no data path between the two nodes: a cycle of kernels ("fusion groups
    # form a cycle"); the check now walks kernels, not nodes
    v0 = gc.placeholder(gc.float32, (4,))
    v1 = gc.placeholder(gc.float32, (None, None, None))
    v2 = gc.transpose(v1, [0, 2, 1])
    v3 = gc.reshape(v2, [-1])
    v4 = gc.placeholder(gc.float32, (None, 1, None))
    v6 = gc.reduce_sum(v2 / (gc.square(v4) + 1.0), [0], keepdims=False)
    v8 = gc.matmul(gc.transpose(v6, [1, 0]), v6)
    c0 = gc.placeholder(gc.float32, (None,))
    c1 = gc.placeholder(gc.float32, (None, None))
    loss = gc.reduce_sum(v3 * c0) + gc.reduce_sum(v8 * c1)
    grads = [g for g in gc.gradients(loss, [v0, v1, v4]) if g is not None]
    phs = [v0, v1, v4, c0, c1]
    sizes = [[(4,), (4, 4, 5), (4, 1, 4), (80,), (4, 4)],
             [(4,), (7, 7, 4), (7, 1, 7), (196,), (7, 7)]]  # fmt: skip
    feeds = [{p: _data(k, s) for k, (p, s) in enumerate(zip(phs, shapes))} for shapes in sizes]
    assert_agree([v3, v8, *grads], feeds)
