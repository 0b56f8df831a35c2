"""``x ** 0.5`` and ``x ** 0.75`` with a constant exponent compile to square roots on the cpu
(graphc/backends/llvm/emit_expr.py), which vectorise, instead of a scalar powf call (an ONNX
LRN's beta is 0.75). They must stay numpy's values (the reference): special values exactly,
others within 2 ulp; other exponents keep pow."""

import numpy as np
import pytest

import graphc as gc

SPECIAL = [0.0, -0.0, 1.0, 2.0, 1e-30, 1e30, np.inf, -np.inf, np.nan, -1.0, -5.5, 1e-40, 3.4e38]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("e", [0.5, 0.75, 0.7, -0.75])
def test_constant_exponent_pow_matches_numpy(dtype, e):
    rng = np.random.default_rng(0)
    xs = np.concatenate([SPECIAL, rng.uniform(0, 10, 300), np.exp(rng.uniform(-80, 80, 300))])
    xs = xs.astype(dtype)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.as_dtype(dtype), (len(xs),))
        z = gc.pow(x, gc.constant(dtype(e)))
        with gc.Session(target="cpu") as sess:
            got = sess.run(z, {x: xs})
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.power(xs, dtype(e))
    ulp = np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=2 * ulp, atol=0)
    known = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got)[known], np.signbit(want)[known])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("e,root", [(0.5, True), (0.75, True), (0.7, False)])
def test_root_exponents_call_no_pow(e, root):
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, (64,))
        z = gc.pow(x, gc.constant(np.float32(e)))
        with gc.Session(target="cpu") as sess:
            ir = sess.compile(z, [x]).dump_ir("llvm")
    assert ("llvm.pow" not in ir) == root
    assert ("llvm.sqrt" in ir) == root
