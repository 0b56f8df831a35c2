"""Conversions to and from float16 on the cpu target: exact as numpy's, never a crash.

A float64 or integer -> float16 conversion used to compile to a runtime-library call the
JIT-loaded program could not resolve, and the process died (also every float16 random op,
which draws in float64). The renderer now rounds to float32 with round-to-odd, then to half
once, which gives numpy's correctly rounded result, ties included."""

import numpy as np
import pytest

import graphc as gc


def _halfway_points():
    h = np.arange(-60000, 60000, 13, dtype=np.float64).astype(np.float16)
    up = np.nextafter(h, np.float16(np.inf))
    mid = (h.astype(np.float64) + up.astype(np.float64)) / 2
    return np.concatenate([mid, mid + 1e-12, mid - 1e-12])


def test_float64_to_float16_rounds_like_numpy_ties_included():
    rng = np.random.default_rng(0)
    vals = np.concatenate(
        [
            rng.standard_normal(3000) * 10.0 ** rng.integers(-9, 6, 3000),
            [0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 1e6, -1e6],
            [6e-8, 2.98e-8, 5.96e-8, 1e-300, -1e-300],
            _halfway_points(),
        ]
    )
    x = gc.placeholder(gc.float64, (None,))
    y = gc.cast(x, gc.float16)
    got = gc.Session(target="cpu").run(y, {x: vals})
    with np.errstate(over="ignore"):
        want = vals.astype(np.float16)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    assert same.all(), (vals[~same][:5], got[~same][:5], want[~same][:5])


@pytest.mark.parametrize("dtype", [gc.int32, gc.int64])
def test_integers_to_float16_and_back(dtype):
    iv = np.array([0, 1, -1, 2049, 2051, 4097, 65504, 65519, 65520, 70000, -70000], dtype.np)
    x = gc.placeholder(dtype, (None,))
    sess = gc.Session(target="cpu")
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(
            sess.run(gc.cast(x, gc.float16), {x: iv}), iv.astype(np.float16)
        )
    hv = np.array([1.5, -2.5, 3.7, 65504, -65504, 0.1], np.float16)
    h = gc.placeholder(gc.float16, (None,))
    np.testing.assert_array_equal(sess.run(gc.cast(h, dtype), {h: hv}), hv.astype(dtype.np))


def test_float16_random_ops_run_on_cpu_as_on_the_reference():
    for make in (gc.random_uniform, gc.random_normal, gc.truncated_normal):
        gc.reset_default_graph()
        t = make((64,), dtype=gc.float16, seed=3)
        got = gc.Session(target="cpu").run(t)
        want = gc.Session(target="reference").run(t)
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=2e-3)
