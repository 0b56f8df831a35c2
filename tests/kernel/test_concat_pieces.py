"""A fused loop kernel whose output is a concat computes each input's piece in a loop nest
of its own (graphc/kernel/lower_rows.py), not every piece at every element with a select."""

import numpy as np
import pytest

import graphc as gc


def _compile_and_run(fetch, feed):
    with gc.Session(target="cpu") as sess:
        exe = sess.compile(fetch, feed)
        return exe.dump_ir("kernel"), sess.run(fetch, feed)


def test_concat_along_the_last_axis_is_one_nest_per_piece():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (None, 3))
        y = gc.placeholder(gc.float32, (None, 5))
        z = gc.concat([gc.tanh(x) * 2.0, gc.sigmoid(y) + 1.0, x * x], axis=1)
        rng = np.random.default_rng(0)
        xs, ys = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
        feed = {x: xs.astype(np.float32), y: ys.astype(np.float32)}
        ir, got = _compile_and_run(z, feed)
    kernel = ir[ir.index("ConcatV2") :]
    assert "select" not in kernel
    assert kernel.count("for parallel") == 3
    want = np.concatenate([np.tanh(xs) * 2, 1 / (1 + np.exp(-ys)) + 1, xs * xs], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rows", [(2, 3), (0, 3), (2, 0), (0, 0)])
def test_concat_of_run_time_sizes(rows):
    with gc.Graph().as_default():
        a = gc.placeholder(gc.float32, (None, 4))
        b = gc.placeholder(gc.float32, (None, 4))
        z = gc.concat([gc.exp(a), b * 2.0], axis=0)
        rng = np.random.default_rng(1)
        av = rng.standard_normal((rows[0], 4)).astype(np.float32)
        bv = rng.standard_normal((rows[1], 4)).astype(np.float32)
        _, got = _compile_and_run(z, {a: av, b: bv})
    np.testing.assert_allclose(got, np.concatenate([np.exp(av), bv * 2]), rtol=1e-6)
