"""NCHW epilogues of an NHWC convolution (the ONNX models of W13):

* a parallel loop nest gives no loop to leading extents of 1 (graphc/kernel/builder.py), so
  a batch-1 epilogue shares its channels over the threads instead of running its one batch
  index on one thread;
* a constant Pad of a static, non-empty input reads it at clamped multi-indices
  (graphc/kernel/lower_index.py), so an LRN's channel window over the transposed convolution
  output indexes the NHWC buffer directly, without unflattening an NCHW flat index per tap.
"""

import re

import numpy as np
import pytest

import graphc as gc


def _conv_to_nchw(batch, filters, fetch_extra=False):
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((batch, 6, 7, 3)).astype(np.float32)
    fs = rng.standard_normal((3, 3, 3, filters)).astype(np.float32)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (batch, 6, 7, 3))
        y = gc.nn.conv2d(x, gc.constant(fs), strides=[1, 1, 1, 1], padding="SAME")
        z = gc.transpose(gc.nn.relu(y), [0, 3, 1, 2])
        with gc.Session(target="cpu") as sess:
            ir = sess.compile(z, [x]).dump_ir("kernel")
            got = sess.run(z, {x: xs})
    # the reference: numpy's convolution through the same zero padding
    pad = np.pad(xs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((batch, 6, 7, filters), np.float32)
    for i in range(3):
        for j in range(3):
            want += np.einsum("bhwc,co->bhwo", pad[:, i : i + 6, j : j + 7], fs[i, j])
    return ir, got, np.maximum(want, 0).transpose(0, 3, 1, 2)


def _parallel_extents(ir):
    return [int(m) for m in re.findall(r"for parallel \w+ in 0\.\.(\d+):", ir)]


@pytest.mark.parametrize("batch", [1, 2])
def test_batch_one_epilogue_is_parallel_over_channels(batch):
    ir, got, want = _conv_to_nchw(batch, 5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    extents = _parallel_extents(ir)
    assert 1 not in extents, ir
    # the transposing epilogue's parallel loop: the batch, or the channels at batch 1
    assert (5 if batch == 1 else batch) in extents, ir


def test_channel_window_over_a_transposed_conv_has_no_divmods():
    """LRN's pattern (onnx import): squares padded along NCHW's channel axis, a window sum of
    shifted slices, then back to NHWC. The tap loads index the NHWC product directly."""
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((1, 5, 4, 3)).astype(np.float32)
    fs = rng.standard_normal((1, 1, 3, 6)).astype(np.float32)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (1, 5, 4, 3))
        y = gc.transpose(gc.nn.conv2d(x, gc.constant(fs), 1, "VALID"), [0, 3, 1, 2])
        p = gc.pad(y * y, [[0, 0], [1, 1], [0, 0], [0, 0]])
        s = p[:, 0:6] + p[:, 1:7] + p[:, 2:8]
        z = gc.transpose(y / (1.0 + s), [0, 2, 3, 1])
        with gc.Session(target="cpu") as sess:
            ir = sess.compile(z, [x]).dump_ir("kernel")
            got = sess.run(z, {x: xs})
    yn = np.einsum("bhwc,co->bohw", xs, fs[0, 0])
    pn = np.pad(yn * yn, ((0, 0), (1, 1), (0, 0), (0, 0)))
    want = (yn / (1 + pn[:, 0:6] + pn[:, 1:7] + pn[:, 2:8])).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert "//" not in ir and "%" not in ir, ir


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (3, 4)])
def test_constant_pad_of_empty_and_non_empty_inputs(shape):
    xs = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, shape)
        z = gc.transpose(gc.pad(gc.transpose(x) * 2.0, [[1, 2], [0, 1]], constant_values=-1.0))
        with gc.Session(target="cpu") as sess:
            got = sess.run(z, {x: xs})
    want = np.pad(xs.T * 2, ((1, 2), (0, 1)), constant_values=-1).T
    np.testing.assert_array_equal(got, want)
