"""A loop group emitted as a loop nest unrolls an innermost extent of at most
``lower_rows.UNROLL_INNER`` (static) into the loop above it
(graphc/kernel/lower_rows.py ``_nest_unrolled_tail``), so that loop vectorises with
interleaved accesses: an ONNX model's NCHW -> NHWC input transpose of 3 channels was one
masked gather per pixel. Equal to the reference interpreter, fused and unfused, static and
run-time (None) dims."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.kernel import lower_rows


def _run(build, shapes, values, fusion=True):
    out = {}
    ir = ""
    for target in ("reference", "cpu"):
        g = gc.Graph()
        with g.as_default():
            phs = [gc.placeholder(gc.float32, s) for s in shapes]
            y = build(*phs)
        feed = dict(zip(phs, values))
        opts = gc.CompileOptions(cache_dir=None, fusion=fusion) if target == "cpu" else None
        with gc.Session(graph=g, target=target, options=opts) as sess:
            out[target] = sess.run(y, feed)
            if target == "cpu":
                ir = sess.compile(y, phs).dump_ir("kernel")
    return ir, out["cpu"], out["reference"]


def _loop_extents(ir):
    """The stop of every loop in the Kernel IR text ('for i3 in 0..3:' -> '3')."""
    return [ln.split("..")[-1].rstrip(":") for ln in ir.splitlines() if " in 0.." in ln]


@pytest.mark.parametrize("fusion", [True, False])
@pytest.mark.parametrize("batch", [2, None])
@pytest.mark.parametrize("channels", [3, lower_rows.UNROLL_INNER, lower_rows.UNROLL_INNER + 1])
def test_nchw_to_nhwc_transpose(channels, batch, fusion):
    x = np.random.default_rng(0).standard_normal((2, channels, 6, 7)).astype(np.float32)
    ir, got, want = _run(lambda a: gc.transpose(a, (0, 2, 3, 1)) * 2.0,
                         [(batch, channels, 6, 7)], [x], fusion)  # fmt: skip
    np.testing.assert_array_equal(got, want)
    unrolled = channels <= lower_rows.UNROLL_INNER
    assert (str(channels) not in _loop_extents(ir)) == unrolled, ir


@pytest.mark.parametrize("batch", [3, None])
def test_broadcast_with_a_short_last_axis(batch):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 7, 2)).astype(np.float32)
    b = rng.standard_normal((7, 1)).astype(np.float32)
    c = rng.standard_normal((3, 1, 2)).astype(np.float32)
    ir, got, want = _run(lambda x, y, z: gc.tanh(x * y + z) - x,
                         [(batch, 7, 2), (7, 1), (batch, 1, 2)], [a, b, c])  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_empty_run_time_batch():
    x = np.zeros((0, 3, 4, 4), np.float32)
    _, got, want = _run(lambda a: gc.transpose(a, (0, 2, 3, 1)) + 1.0, [(None, 3, 4, 4)], [x])
    assert got.shape == want.shape == (0, 4, 4, 3)
