"""Conv2D on the cpu target as blocked im2col + GEMM (graphc/kernel/lower_nn.py
``_blocked_conv``): blocks of CONV_BLOCK_ROWS output pixels, each block's im2col rows then
its GEMM, the blocks a parallel loop. Pixel counts below one block, a multiple of it and
with a partial last block; SAME, VALID and explicit padding, strides, dilations; a run-time
batch size; a fused epilogue; gradients (Conv2DBackpropFilter blocked the same way, its
per-block partial sums added after; a stride-1 Conv2DBackpropInput as the convolution of the
gradient with the flipped filter): the cpu target equals the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.kernel import lower_nn

BLOCK = lower_nn.CONV_BLOCK_ROWS


@pytest.fixture(autouse=True)
def _im2col_path(monkeypatch):
    """The filters here are constants: without this the cpu target would take its packed
    convolution (tests/backends/test_cpu_conv_packed.py) instead of the blocked im2col."""
    monkeypatch.setattr(lower_nn, "PACKED_CONV", False)


def _check(x_shape, f_shape, strides, padding, dilations=1, dynamic=False, threads=None):
    rng = np.random.default_rng(1)
    xv = rng.standard_normal(x_shape).astype(np.float32)
    fv = rng.standard_normal(f_shape).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, None, None, x_shape[3]) if dynamic else x_shape)
        f = gc.constant(fv)
        y = gc.nn.relu(gc.nn.conv2d(x, f, strides, padding, dilations) + 0.5)
        dx, df = gc.gradients(gc.reduce_sum(y * y), [x, f])
    want = gc.Session(graph=g, target="reference").run([y, dx, df], {x: xv})
    opts = gc.CompileOptions(cache_dir=None, threads=threads)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run([y, dx, df], {x: xv})
        kernels = sess.compile([y], [x]).dump_ir("kernel")
        grad_kernels = sess.compile([df, dx], [x]).dump_ir("kernel")
    for w, v in zip(want, got):
        np.testing.assert_allclose(v, w, rtol=2e-4, atol=2e-4)
    return kernels, grad_kernels


def _gemm_indents(kernels) -> set:
    """Indentation of each GEMM call in the Kernel IR text (2: a kernel's top level)."""
    return {len(ln) - len(ln.lstrip()) for ln in kernels.splitlines() if "gemm(" in ln}


LEAST = lower_nn.CONV_BLOCK_ROWS * lower_nn.CONV_MIN_BLOCKS


@pytest.mark.parametrize(
    "x_shape,f_shape,strides,padding,dilations,blocked",
    [
        ((3, 45, 45, 5), (3, 3, 5, 7), 1, "SAME", 1, True),  # 6075 pixels: a partial block
        ((2, 64, 64, 6), (3, 3, 6, 4), 1, "SAME", 1, True),  # 8192: whole blocks
        ((1, 9, 11, 4), (3, 3, 4, 3), 1, "VALID", 1, False),  # 63: one GEMM
        ((4, 67, 70, 6), (3, 2, 6, 5), 2, [[0, 0], [1, 0], [2, 1], [0, 0]], 1, True),
        ((2, 50, 47, 6), (3, 2, 6, 5), 1, [[0, 0], [2, 0], [0, 1], [0, 0]], 1, True),
        ((2, 60, 60, 4), (3, 3, 4, 6), 1, "SAME", 2, True),
    ],
)
def test_blocked_conv_equals_the_reference(x_shape, f_shape, strides, padding, dilations,
                                           blocked):  # fmt: skip
    kernels, grad_kernels = _check(x_shape, f_shape, strides, padding, dilations)
    # the forward GEMM inside the block loop (blocked) or at the top level; the filter
    # gradient's GEMMs write per-block partial sums (blocked)
    assert (max(_gemm_indents(kernels)) > 2) == blocked
    assert ("buffer part" in grad_kernels) == blocked
    # a stride-1 input gradient: the convolution of the gradient with the flipped filter
    assert ("buffer flip" in grad_kernels) == (strides == 1)


def test_run_time_sizes_and_one_thread():
    # a run-time pixel count: both forms, the one not taken with zero trips; each taken once
    kernels, grad_kernels = _check((3, 45, 45, 5), (3, 3, 5, 7), 1, "SAME", dynamic=True)
    assert len(_gemm_indents(kernels)) == 2 and f">= {LEAST}" in kernels
    assert "buffer part" in grad_kernels
    _check((3, 25, 25, 5), (3, 3, 5, 7), 1, "SAME", dynamic=True)
    _check((3, 45, 45, 5), (3, 3, 5, 7), 2, "VALID", threads=1)
