"""gc.nn against numpy formulas and direct loop implementations."""

import math

import numpy as np
import pytest

import graphc as gc
from graphc.expr import Arg, eval_expr
from graphc.ops.registry import Example, get_op_def
from tests.ops.test_gradients_registry import check_gradients


def _run(fetches, feeds=None):
    with gc.Session(target="reference") as sess:
        return sess.run(fetches, feeds)


# -- activations -------------------------------------------------------------------------------

_erf = np.vectorize(math.erf)
SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

ACTIVATIONS = {
    "relu": (gc.nn.relu, lambda x: np.maximum(x, 0)),
    "relu6": (gc.nn.relu6, lambda x: np.clip(x, 0, 6)),
    "leaky_relu": (lambda t: gc.nn.leaky_relu(t, 0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    "elu": (gc.nn.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
    "selu": (
        gc.nn.selu,
        lambda x: SELU_S * np.where(x > 0, x, SELU_A * np.expm1(np.minimum(x, 0))),
    ),
    "gelu": (gc.nn.gelu, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    "gelu_tanh": (
        lambda t: gc.nn.gelu(t, approximate=True),
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ),
    "silu": (gc.nn.silu, lambda x: x / (1 + np.exp(-x))),
    "softplus": (gc.nn.softplus, lambda x: np.logaddexp(0, x)),
    "softsign": (gc.nn.softsign, lambda x: x / (1 + np.abs(x))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_formula_and_is_fusable(name):
    build, formula = ACTIVATIONS[name]
    x = np.concatenate([np.linspace(-8, 8, 41), [-80.0, 80.0, 0.0]])
    out = build(gc.constant(x))
    op_def = out.op.op_def
    assert op_def.elementwise, f"{out.op.type} should be elementwise for fusion"
    # the scalar body fused kernels use is the op's meaning
    body = op_def.scalar([Arg(0)], out.op.attrs)
    np.testing.assert_allclose(eval_expr(body, [x]), formula(x), rtol=1e-12, atol=1e-12)
    got = _run(out)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, formula(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_float32_keeps_dtype(name):
    build, formula = ACTIVATIONS[name]
    x = np.linspace(-3, 3, 13).astype(np.float32)
    out = build(gc.constant(x))
    assert out.dtype == gc.float32
    got = _run(out)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, formula(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_relu_gradient_is_zero_at_zero_and_int_relu():
    x = gc.constant(np.array([-1.0, 0.0, 2.0]))
    (g,) = gc.gradients(gc.reduce_sum(gc.nn.relu(x)), [x])
    np.testing.assert_array_equal(_run(g), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(_run(gc.nn.relu(np.array([-2, 3], np.int32))), [0, 3])


def test_activation_rejects_integer_input_with_op_name():
    with pytest.raises(TypeError, match="Gelu"):
        gc.nn.gelu(gc.constant([1, 2]))


def test_activation_second_order():
    # d2/dx2 softplus = sigmoid'(x); d2/dx2 gelu known in closed form
    x_val = np.linspace(-2, 2, 7)
    x = gc.placeholder(gc.float64, (7,))
    (g1,) = gc.gradients(gc.reduce_sum(gc.nn.softplus(x)), [x])
    (g2,) = gc.gradients(gc.reduce_sum(g1), [x])
    s = 1 / (1 + np.exp(-x_val))
    np.testing.assert_allclose(_run(g2, {x: x_val}), s * (1 - s), rtol=1e-10)


# -- softmax and losses ------------------------------------------------------------------------


def _np_log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_rows_sum_to_one(rng, axis):
    x = rng.normal(size=(3, 4, 5)) * 5
    sm, lsm = gc.nn.softmax(x, axis=axis), gc.nn.log_softmax(x, axis=axis)
    got_sm, got_lsm = _run([sm, lsm])
    np.testing.assert_allclose(got_sm.sum(axis=axis), 1.0, rtol=1e-12)
    np.testing.assert_allclose(got_lsm, _np_log_softmax(x, axis), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_sm, np.exp(_np_log_softmax(x, axis)), rtol=1e-12)


def test_softmax_extreme_logits_float32():
    x = np.array([[1e4, -1e4, 0.0], [-1e30, -1e30, -1e30], [88.0, 89.0, 90.0]], np.float32)
    t = gc.constant(x)
    sm, lsm = _run([gc.nn.softmax(t), gc.nn.log_softmax(t)])
    assert np.all(np.isfinite(sm)) and np.all(np.isfinite(lsm))
    np.testing.assert_allclose(sm.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sm[1], 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(lsm, _np_log_softmax(x.astype(np.float64)), rtol=1e-5)


def test_softmax_gradients(rng):
    for fn in (gc.nn.softmax, gc.nn.log_softmax):
        check_gradients(Example(lambda t, fn=fn: fn(t, axis=0), [rng.normal(size=(4, 3))]))


def test_cross_entropies_extreme_logits_are_finite_with_correct_gradients():
    logits = np.array([[1e4, -1e4, 0.0], [-50.0, 50.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    onehot = np.eye(3, dtype=np.float32)[[1, 0, 2]]
    ids = np.array([1, 0, 2], np.int64)
    x = gc.constant(logits)
    losses = [
        gc.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=x),
        gc.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=x),
    ]
    grads = [gc.gradients(gc.reduce_sum(loss), [x])[0] for loss in losses]
    vals = _run(losses + grads)
    expected = -_np_log_softmax(logits.astype(np.float64))[np.arange(3), ids]
    sm = np.exp(_np_log_softmax(logits.astype(np.float64)))
    for v in vals:
        assert np.all(np.isfinite(v))
    np.testing.assert_allclose(vals[0], expected, rtol=1e-5)
    np.testing.assert_allclose(vals[1], expected, rtol=1e-5)
    np.testing.assert_allclose(vals[2], sm - onehot, atol=1e-6)
    np.testing.assert_allclose(vals[3], sm - onehot, atol=1e-6)


def test_sparse_cross_entropy_with_unknown_class_count(rng):
    logits = rng.normal(size=(4, 5))
    ids = np.array([0, 4, 2, 2], np.int32)
    x = gc.placeholder(gc.float64, (None, None))
    y = gc.placeholder(gc.int32, (None,))
    loss = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
    (g,) = gc.gradients(gc.reduce_sum(loss), [x])
    got, got_g = _run([loss, g], {x: logits, y: ids})
    np.testing.assert_allclose(got, -_np_log_softmax(logits)[np.arange(4), ids], rtol=1e-12)
    np.testing.assert_allclose(got_g, np.exp(_np_log_softmax(logits)) - np.eye(5)[ids], atol=1e-12)


def test_sparse_cross_entropy_out_of_range_label_raises(rng):
    logits = rng.normal(size=(3, 4))
    for shape in [(3, 4), (None, None)]:
        x = gc.placeholder(gc.float64, shape)
        y = gc.placeholder(gc.int32, (None,))
        loss = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
        (g,) = gc.gradients(gc.reduce_sum(loss), [x])
        with pytest.raises(gc.errors.InvalidArgumentError, match="outside the valid range"):
            _run([loss, g], {x: logits, y: np.array([1, 4, -1], np.int32)})


def test_cross_entropy_shape_errors():
    x = gc.placeholder(gc.float32, (4, 3))
    with pytest.raises(ValueError, match="labels"):
        gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=gc.placeholder(gc.int32, (5,)), logits=x
        )
    with pytest.raises(TypeError, match="integer"):
        gc.nn.sparse_softmax_cross_entropy_with_logits(labels=x, logits=x)
    with pytest.raises(ValueError, match="same shape"):
        gc.nn.softmax_cross_entropy_with_logits(labels=np.ones((4, 2), np.float32), logits=x)


def test_sigmoid_cross_entropy_stable_and_exact_gradient_at_zero():
    x_val = np.array([-1e4, -30.0, 0.0, 0.0, 30.0, 1e4], np.float32)
    z_val = np.array([0.0, 1.0, 0.3, 1.0, 0.0, 1.0], np.float32)
    x = gc.constant(x_val)
    loss = gc.nn.sigmoid_cross_entropy_with_logits(labels=z_val, logits=x)
    (g,) = gc.gradients(gc.reduce_sum(loss), [x])
    got, got_g = _run([loss, g])
    xd, zd = x_val.astype(np.float64), z_val.astype(np.float64)
    expected = np.maximum(xd, 0) - xd * zd + np.log1p(np.exp(-np.abs(xd)))
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(got_g))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    sig = np.exp(-np.logaddexp(0, -xd))
    np.testing.assert_allclose(got_g, sig - zd, atol=1e-6)


def test_cross_entropy_gradients_central_differences(rng):
    labels = rng.dirichlet(np.ones(4), size=3)
    check_gradients(Example(lambda z, x: gc.nn.softmax_cross_entropy_with_logits_v2(
        labels=z, logits=x), [labels, rng.normal(size=(3, 4))]))  # fmt: skip
    check_gradients(Example(lambda x: gc.nn.softmax_cross_entropy_with_logits(
        labels=labels, logits=x), [rng.normal(size=(3, 4))]))  # fmt: skip
    check_gradients(Example(lambda z, x: gc.nn.sigmoid_cross_entropy_with_logits(
        labels=z, logits=x), [rng.uniform(size=(3, 4)), rng.normal(size=(3, 4))]))  # fmt: skip
    ids = np.array([[1, 3], [0, 2]], np.int32)
    check_gradients(Example(lambda y, x: gc.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=x), [ids, rng.normal(size=(2, 2, 4))]))  # fmt: skip


def test_l2_loss_and_l2_normalize(rng):
    x = rng.normal(size=(3, 4))
    loss, n0, n1 = _run([gc.nn.l2_loss(x), gc.nn.l2_normalize(x, axis=0), gc.nn.l2_normalize(x, 1)])
    np.testing.assert_allclose(loss, (x**2).sum() / 2, rtol=1e-12)
    np.testing.assert_allclose(n0, x / np.linalg.norm(x, axis=0, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(n1, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(_run(gc.nn.l2_normalize(np.zeros(3))), np.zeros(3))
    check_gradients(Example(lambda t: gc.nn.l2_normalize(t, axis=1), [x]))


# -- normalisation -----------------------------------------------------------------------------


def test_moments(rng):
    x = rng.normal(size=(4, 3, 5)) * 3 + 1
    mean, var = gc.nn.moments(x, axes=[0, 2])
    assert mean.shape == (3,) and var.shape == (3,)
    m, v = _run([mean, var])
    np.testing.assert_allclose(m, x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(v, x.var(axis=(0, 2)), rtol=1e-12)
    mk, vk = gc.nn.moments(x, axes=[1], keepdims=True)
    assert mk.shape == (4, 1, 5) and vk.shape == (4, 1, 5)
    check_gradients(Example(lambda t: gc.nn.moments(t, axes=[0]), [x[:, :, :2]]))


def test_layer_norm(rng):
    x = rng.normal(size=(4, 6)) * 2 + 3
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    out = _run(gc.nn.layer_norm(x, gamma, beta))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(out, (x - mu) / np.sqrt(var + 1e-5) * gamma + beta, rtol=1e-10)
    check_gradients(Example(lambda t, g, b: gc.nn.layer_norm(t, g, b), [x, gamma, beta]))
    # several axes, unknown batch
    p = gc.placeholder(gc.float64, (None, 3, 4))
    y = gc.nn.layer_norm(p, axis=[1, 2], epsilon=1e-3)
    v = rng.normal(size=(2, 3, 4))
    mu, var = v.mean((1, 2), keepdims=True), v.var((1, 2), keepdims=True)
    np.testing.assert_allclose(_run(y, {p: v}), (v - mu) / np.sqrt(var + 1e-3), rtol=1e-10)


def test_batch_normalization_and_bias_add(rng):
    x = rng.normal(size=(2, 3, 4))
    mean, var = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    off, scale = rng.normal(size=4), rng.normal(size=4)
    out = gc.nn.batch_normalization(x, mean, var, off, scale, 1e-3)
    expected = (x - mean) / np.sqrt(var + 1e-3) * scale + off
    np.testing.assert_allclose(_run(out), expected, rtol=1e-10)
    plain = gc.nn.batch_normalization(x, mean, var, None, None, 1e-3)
    np.testing.assert_allclose(_run(plain), (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10)
    b = rng.normal(size=4)
    np.testing.assert_allclose(_run(gc.nn.bias_add(x, b)), x + b)
    with pytest.raises(ValueError, match="bias_add"):
        gc.nn.bias_add(x, np.ones(3))
    with pytest.raises(ValueError, match="rank 1"):
        gc.nn.bias_add(x, np.ones((1, 4)))


# -- dropout -----------------------------------------------------------------------------------


def test_dropout_keeps_expected_value_and_is_seeded():
    x = gc.placeholder(gc.float32, (None, 500))
    y = gc.nn.dropout(x, rate=0.3, seed=7)
    assert y.shape == (None, 500)
    ones = np.ones((40, 500), np.float32)
    a = _run(y, {x: ones})
    b = _run(y, {x: ones})
    np.testing.assert_array_equal(a, b)  # same seed, fresh session: same stream
    kept = a != 0
    np.testing.assert_allclose(a[kept], 1 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.01
    assert abs(a.mean() - 1.0) < 0.02
    with gc.Session(target="reference") as sess:
        first, second = sess.run(y, {x: ones}), sess.run(y, {x: ones})
    assert not np.array_equal(first, second)  # each run draws a new mask


def test_dropout_rate_tensor_noise_shape_and_errors():
    x = np.arange(1, 61, dtype=np.float32).reshape(6, 10)
    rate = gc.placeholder_with_default(np.float32(0.5), ())
    y = gc.nn.dropout(gc.constant(x), rate=rate, noise_shape=(1, 10), seed=3)
    with gc.Session(target="reference") as sess:
        out = sess.run(y)
        same = sess.run(y, {rate: np.float32(0.0)})
    np.testing.assert_array_equal(same, x)
    col_kept = out[0] != 0
    assert np.all((out != 0) == col_kept[None, :])  # one decision per column
    np.testing.assert_allclose(out[:, col_kept], 2 * x[:, col_kept])
    assert gc.nn.dropout(gc.constant(x), 0.0) is not None
    with pytest.raises(ValueError, match="rate"):
        gc.nn.dropout(gc.constant(x), 1.0)
    with pytest.raises(ValueError, match="noise_shape"):
        gc.nn.dropout(gc.constant(x), 0.5, noise_shape=(3, 10))
    kp = gc.nn.dropout(gc.constant(np.ones((100, 100), np.float32)), keep_prob=0.8, seed=1)
    assert abs((_run(kp) != 0).mean() - 0.8) < 0.02


def test_dropout_gradient_uses_the_same_mask():
    x = gc.constant(np.ones((20, 20)))
    y = gc.nn.dropout(x, 0.5, seed=11)
    (g,) = gc.gradients(gc.reduce_sum(y), [x])
    with gc.Session(target="reference") as sess:
        out, grad = sess.run([y, g])
    np.testing.assert_allclose(grad, out)  # y = x * mask / (1 - rate) with x = 1


# -- convolution -------------------------------------------------------------------------------


def _tf_same(n, k, s, d):
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return out, total // 2


def conv_loop(x, f, s, padding, d):
    """Direct definition of TF's conv2d: out[n, y, x, o] = sum x[n, y*s+ky*d-pt, ...] f[...]."""
    n, h, w, c = x.shape
    kh, kw, _, o = f.shape
    if padding == "SAME":
        oh, pt = _tf_same(h, kh, s[0], d[0])
        ow, pl = _tf_same(w, kw, s[1], d[1])
    else:
        oh, ow, pt, pl = (
            (h - (kh - 1) * d[0] - 1) // s[0] + 1,
            (w - (kw - 1) * d[1] - 1) // s[1] + 1,
            0,
            0,
        )
    out = np.zeros((n, oh, ow, o))
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * s[0] + ky * d[0] - pt, ox * s[1] + kx * d[1] - pl
                    if 0 <= iy < h and 0 <= ix < w:
                        out[:, oy, ox, :] += x[:, iy, ix, :] @ f[ky, kx]
    return out


CONV_CASES = [
    ((2, 7, 6, 3), (3, 3, 3, 4), 1, "SAME", 1),
    ((2, 7, 6, 3), (3, 3, 3, 4), 1, "VALID", 1),
    ((2, 7, 6, 3), (3, 3, 3, 4), 2, "SAME", 1),
    ((2, 7, 6, 3), (3, 2, 3, 4), 2, "VALID", 1),
    ((1, 8, 8, 2), (4, 4, 2, 3), 2, "SAME", 1),  # even kernel: TF puts the odd pad after
    ((1, 9, 8, 2), (3, 3, 2, 2), 1, "SAME", 2),
    ((1, 9, 8, 2), (3, 2, 2, 2), 1, "VALID", 2),
    ((2, 6, 7, 1), (1, 1, 1, 3), [1, 3, 2, 1], "SAME", 1),
]


@pytest.mark.parametrize("xs,fs,strides,padding,dil", CONV_CASES)
def test_conv2d_matches_direct_loop(rng, xs, fs, strides, padding, dil):
    x, f = rng.normal(size=xs), rng.normal(size=fs)
    out = gc.nn.conv2d(x, f, strides=strides, padding=padding, dilations=dil)
    s = (strides, strides) if isinstance(strides, int) else tuple(strides[1:3])
    expected = conv_loop(x, f, s, padding, (dil, dil))
    assert out.shape == expected.shape
    np.testing.assert_allclose(_run(out), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("xs,fs,strides,padding,dil", CONV_CASES[:6])
def test_conv2d_gradients_with_unknown_batch(rng, xs, fs, strides, padding, dil):
    x_val, f_val = rng.normal(size=xs), rng.normal(size=fs)
    x = gc.placeholder(gc.float64, (None, None, None, xs[3]))
    f = gc.placeholder(gc.float64, fs)
    out = gc.nn.conv2d(x, f, strides, padding, dil)
    w = gc.placeholder(gc.float64, (None, None, None, None))
    gx, gf = gc.gradients(gc.reduce_sum(out * w), [x, f])
    s = (strides, strides) if isinstance(strides, int) else tuple(strides[1:3])
    w_val = rng.normal(size=conv_loop(x_val, f_val, s, padding, (dil, dil)).shape)
    got_x, got_f = _run([gx, gf], {x: x_val, f: f_val, w: w_val})
    # the loss is linear in x (and in f): its gradient is exact by finite differences of 1
    num_x = np.zeros_like(x_val)
    for idx in np.ndindex(*x_val.shape):
        e = np.zeros_like(x_val)
        e[idx] = 1.0
        num_x[idx] = (conv_loop(e, f_val, s, padding, (dil, dil)) * w_val).sum()
    num_f = np.zeros_like(f_val)
    for idx in np.ndindex(*f_val.shape):
        e = np.zeros_like(f_val)
        e[idx] = 1.0
        num_f[idx] = (conv_loop(x_val, e, s, padding, (dil, dil)) * w_val).sum()
    np.testing.assert_allclose(got_x, num_x, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(got_f, num_f, rtol=1e-9, atol=1e-10)


def test_conv2d_second_order(rng):
    # loss = sum(conv(x, f)^2) is quadratic; check d/dx of sum(d loss/d f * v) numerically
    x_val, f_val = rng.normal(size=(1, 5, 5, 2)), rng.normal(size=(3, 3, 2, 2))
    v = rng.normal(size=f_val.shape)
    x, f = gc.placeholder(gc.float64, x_val.shape), gc.placeholder(gc.float64, f_val.shape)
    loss = gc.reduce_sum(gc.square(gc.nn.conv2d(x, f, 2, "SAME")))
    (gf,) = gc.gradients(loss, [f])
    (hx,) = gc.gradients(gc.reduce_sum(gf * v), [x])
    with gc.Session(target="reference") as sess:
        got = sess.run(hx, {x: x_val, f: f_val})
        eps = 1e-5
        num = np.zeros_like(x_val)
        for idx in np.ndindex(*x_val.shape):
            e = np.zeros_like(x_val)
            e[idx] = eps
            hp = (sess.run(gf, {x: x_val + e, f: f_val}) * v).sum()
            hm = (sess.run(gf, {x: x_val - e, f: f_val}) * v).sum()
            num[idx] = (hp - hm) / (2 * eps)
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)


def test_conv2d_errors_name_op_and_shapes():
    x = gc.placeholder(gc.float32, (None, 8, 8, 3))
    with pytest.raises(ValueError) as exc:
        gc.nn.conv2d(x, gc.placeholder(gc.float32, (3, 3, 4, 8)), 1, "SAME")
    msg = str(exc.value)
    assert "Conv2D" in msg and "channels" in msg and "(3, 3, 4, 8)" in msg and "test_nn.py" in msg
    with pytest.raises(ValueError, match="VALID window"):
        gc.nn.conv2d(x, gc.placeholder(gc.float32, (9, 9, 3, 8)), 1, "VALID")
    with pytest.raises(ValueError, match="padding"):
        gc.nn.conv2d(x, gc.placeholder(gc.float32, (3, 3, 3, 8)), 1, "FULL")
    with pytest.raises(ValueError, match="batch and channel"):
        gc.nn.conv2d(x, gc.placeholder(gc.float32, (3, 3, 3, 8)), [2, 1, 1, 1], "SAME")
    with pytest.raises(ValueError, match="rank 4"):
        gc.nn.conv2d(
            gc.placeholder(gc.float32, (8, 8, 3)), np.ones((3, 3, 3, 8), np.float32), 1, "SAME"
        )


@pytest.mark.parametrize(
    "out_hw,strides,padding",
    [((8, 8), 2, "SAME"), ((7, 9), 2, "SAME"), ((9, 7), 2, "VALID"), ((5, 5), 1, "VALID")],
)
def test_conv2d_transpose_is_the_adjoint_of_conv2d(rng, out_hw, strides, padding):
    n, c_out, c_in = 2, 3, 4
    f = rng.normal(size=(3, 3, c_out, c_in))
    y_val = rng.normal(size=(n, *out_hw, c_out))
    fwd = conv_loop(y_val, f, (strides, strides), padding, (1, 1))
    x_val = rng.normal(size=fwd.shape)
    x = gc.placeholder(gc.float64, (None, *fwd.shape[1:]))
    out = gc.nn.conv2d_transpose(x, f, [None, *out_hw, c_out], strides, padding)
    assert out.shape == (None, *out_hw, c_out)
    got = _run(out, {x: x_val})
    # <conv(y), x> == <y, conv_transpose(x)> for every y: the defining property
    np.testing.assert_allclose((fwd * x_val).sum(), (y_val * got).sum(), rtol=1e-10)
    e = np.zeros_like(y_val)
    e[1, 2, 3, 1] = 1.0
    np.testing.assert_allclose(
        got[1, 2, 3, 1],
        (conv_loop(e, f, (strides, strides), padding, (1, 1)) * x_val).sum(),
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match="channels"):
        gc.nn.conv2d_transpose(x, f, [None, *out_hw, c_out + 1], strides, padding)


# -- pooling -----------------------------------------------------------------------------------


def pool_loop(x, k, s, padding, reduce):
    n, h, w, c = x.shape
    if padding == "SAME":
        oh, pt = _tf_same(h, k[0], s[0], 1)
        ow, pl = _tf_same(w, k[1], s[1], 1)
    else:
        oh, ow, pt, pl = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1, 0, 0
    out = np.zeros((n, oh, ow, c))
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * s[0] - pt, ox * s[1] - pl
            win = x[:, max(y0, 0) : y0 + k[0], max(x0, 0) : x0 + k[1], :]
            out[:, oy, ox, :] = reduce(win, axis=(1, 2))
    return out


POOL_CASES = [((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), "SAME"), ((3, 2), (1, 2), "SAME"),
              ((2, 2), (1, 1), "VALID"), ((3, 3), (3, 3), "SAME")]  # fmt: skip


@pytest.mark.parametrize("k,s,padding", POOL_CASES)
def test_pooling_matches_direct_loop(rng, k, s, padding):
    x = rng.normal(size=(2, 7, 8, 3))
    mx = gc.nn.max_pool2d(x, k, s, padding)
    av = gc.nn.avg_pool2d(x, list(k), [1, *s, 1], padding)
    got_mx, got_av = _run([mx, av])
    # SAME average pooling divides by the number of real elements (the loop's window is clipped)
    np.testing.assert_allclose(got_mx, pool_loop(x, k, s, padding, np.max), rtol=1e-12)
    np.testing.assert_allclose(got_av, pool_loop(x, k, s, padding, np.mean), rtol=1e-12)


def test_max_pool_gradient_goes_to_first_maximum_and_sums_overlaps():
    x = np.array([[1.0, 5.0, 2.0], [5.0, 0.0, 3.0], [4.0, 4.0, 1.0]]).reshape(1, 3, 3, 1)
    t = gc.constant(x)
    y = gc.nn.max_pool2d(t, 2, 1, "VALID")  # windows overlap
    (g,) = gc.gradients(gc.reduce_sum(y), [t])
    got = _run(g)[0, :, :, 0]
    # windows: [[1,5],[5,0]] -> first 5 at (0,1); [[5,2],[0,3]] -> (0,1);
    #          [[5,0],[4,4]] -> (1,0); [[0,3],[4,1]] -> (2,1)
    np.testing.assert_array_equal(got, [[0, 2, 0], [1, 0, 0], [0, 1, 0]])


def test_pool_gradients_and_second_order(rng):
    x_val = rng.permutation(2 * 5 * 6 * 2).reshape(2, 5, 6, 2) / 10.0  # no ties
    for pool in (gc.nn.max_pool2d, gc.nn.avg_pool2d):
        check_gradients(Example(lambda t, p=pool: p(t, 3, 2, "SAME"), [x_val]))
    xs = x_val[:1, :4, :4, :]
    v, w = rng.normal(size=(1, 2, 2, 2)), rng.normal(size=xs.shape)
    for pool in (gc.nn.max_pool2d, gc.nn.avg_pool2d):
        x = gc.placeholder(gc.float64, xs.shape)
        (g1,) = gc.gradients(gc.reduce_sum(gc.square(pool(x, 3, 2, "SAME")) * v), [x])
        (g2,) = gc.gradients(gc.reduce_sum(g1 * w), [x])
        with gc.Session(target="reference") as sess:
            got = sess.run(g2, {x: xs})
            num = np.zeros_like(xs)
            for idx in np.ndindex(*xs.shape):
                e = np.zeros_like(xs)
                e[idx] = 1e-5
                hp = (sess.run(g1, {x: xs + e}) * w).sum()
                hm = (sess.run(g1, {x: xs - e}) * w).sum()
                num[idx] = (hp - hm) / 2e-5
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)


def test_pooling_with_unknown_spatial_dims(rng):
    x = gc.placeholder(gc.float32, (None, None, None, 3))
    y = gc.nn.max_pool2d(x, 2, 2, "SAME")
    assert y.shape == (None, None, None, 3)
    v = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(y, {x: v}), pool_loop(v, (2, 2), (2, 2), "SAME", np.max))


# -- embeddings --------------------------------------------------------------------------------


def test_embedding_lookup(rng):
    import graphc.ops.indexing as indexing_ops

    if not hasattr(indexing_ops, "gather"):
        pytest.skip("gather is not available yet")
    params = rng.normal(size=(10, 4))
    ids = np.array([[1, 9], [0, 1]], np.int32)
    p = gc.placeholder(gc.float64, (10, 4))
    out = gc.nn.embedding_lookup(p, ids)
    (g,) = gc.gradients(gc.reduce_sum(out), [p])
    got, got_g = _run([out, g], {p: params})
    np.testing.assert_allclose(got, params[ids])
    expected_g = np.zeros_like(params)
    np.add.at(expected_g, ids.reshape(-1), 1.0)
    np.testing.assert_allclose(got_g, expected_g)


def test_nn_ops_are_registered_with_examples():
    names = ["Relu", "Gelu", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MaxPool"]
    for name in [*names, "MaxPoolGrad", "MaxPoolGradGrad", "AvgPool", "AvgPoolGrad"]:
        assert get_op_def(name).examples()


# -- second-order gradients of every op in linalg/ and nn/ ------------------------------------


def check_second_order(example, eps=1e-5, tol=1e-5):
    """Hessian-vector product of sum(w * out^2) against central differences of the gradient."""
    from tests.oracle import build_example

    g, phs, outs, arrays = build_example(example, float64=True)
    rng = np.random.default_rng(11)
    wrt = [(p, a) for p, a in zip(phs, arrays) if a.dtype.kind == "f"]
    vs = [rng.normal(size=a.shape) for _, a in wrt]
    with g.as_default():
        loss = None
        for t in outs:
            if t.dtype.is_floating:
                term = gc.reduce_sum(t * t * rng.uniform(0.5, 1.5))
                loss = term if loss is None else loss + term
        grads = gc.gradients(loss, [p for p, _ in wrt])
        dot = None
        for gr, v in zip(grads, vs):
            if gr is not None:
                term = gc.reduce_sum(gr * v)
                dot = term if dot is None else dot + term
        if dot is None:
            return
        hvp = gc.gradients(dot, [p for p, _ in wrt])
    feed = dict(zip(phs, arrays))
    with gc.Session(graph=g, target="reference") as sess:
        got = [np.zeros_like(a) if h is None else sess.run(h, feed) for h, (_, a) in zip(hvp, wrt)]
        live = [gr for gr in grads if gr is not None]

        def grads_at(sign):
            f = dict(feed)
            for (p, a), v in zip(wrt, vs):
                f[p] = a + sign * eps * v
            vals = iter(sess.run(live, f))
            return [
                np.zeros_like(a) if gr is None else next(vals) for gr, (_, a) in zip(grads, wrt)
            ]

        plus, minus = grads_at(1), grads_at(-1)
    for (p, _), h, gp, gm in zip(wrt, got, plus, minus):
        numeric = (gp - gm) / (2 * eps)
        np.testing.assert_allclose(h, numeric, rtol=tol, atol=tol, err_msg=f"H v for {p.name}")


SECOND_ORDER_OPS = [
    "MatMul", "Einsum", "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Gelu", "Silu", "Softplus",
    "Softsign", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MaxPool",
    "MaxPoolGrad", "MaxPoolGradGrad", "AvgPool", "AvgPoolGrad",
]  # fmt: skip
SECOND_ORDER_CASES = [
    (name, i)
    for name in SECOND_ORDER_OPS
    for i, ex in enumerate(get_op_def(name).examples())
    if ex.grad
]


@pytest.mark.parametrize(
    "name,index", SECOND_ORDER_CASES, ids=[f"{n}-{i}" for n, i in SECOND_ORDER_CASES]
)
def test_second_order_gradients(name, index):
    check_second_order(get_op_def(name).examples()[index])


def test_second_order_of_composites(rng):
    x = rng.normal(size=(3, 4))
    labels = rng.dirichlet(np.ones(4), size=3)
    for build in [
        lambda t: gc.nn.softmax(t),
        lambda t: gc.nn.log_softmax(t, axis=0),
        lambda t: gc.nn.layer_norm(t),
        lambda t: gc.nn.softmax_cross_entropy_with_logits(labels=labels, logits=t),
        lambda t: gc.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=t),
        lambda t: gc.nn.l2_normalize(t, axis=1),
    ]:
        check_second_order(Example(build, [x]))
