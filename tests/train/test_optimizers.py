"""Optimizers against a numpy re-implementation of TF1's update rules, over several steps."""

import numpy as np
import pytest

import graphc as gc

TARGETS = ["reference", "cpu"]
STEPS = 5


# -- the problem: loss = sum(c * w^2 + d * sin(w)) summed over two variables ------------------
def _problem(dtype=np.float64):
    rng = np.random.default_rng(3)
    w0 = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    b0 = rng.uniform(-1, 1, (4,)).astype(dtype)
    c = rng.uniform(0.5, 2, (3, 4)).astype(dtype)
    d = rng.uniform(-1, 1, (4,)).astype(dtype)
    return w0, b0, c, d


def _grads(w, b, c, d):
    return 2 * c * w + d * np.cos(w), 2 * b + 3 * np.cos(b)


def _build(dtype=np.float64):
    w0, b0, c, d = _problem(dtype)
    w = gc.Variable(w0, name="w")
    b = gc.Variable(b0, name="b")
    loss = gc.reduce_sum(c * w * w + d * gc.sin(w)) + gc.reduce_sum(b * b + 3 * gc.sin(b))
    return w, b, loss, (w0, b0, c, d)


# -- numpy versions of the TF1 kernels ---------------------------------------------------------
def np_sgd(lr):
    def step(p, g, s, t):
        return p - lr(t) * g

    return step


def np_momentum(lr, m, nesterov=False):
    def step(p, g, s, t):
        s["a"] = s.get("a", np.zeros_like(p)) * m + g
        if nesterov:
            return p - (g * lr(t) + s["a"] * m * lr(t))
        return p - lr(t) * s["a"]

    return step


def np_adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, s, t):  # t counts from 1
        s["m"] = b1 * s.get("m", np.zeros_like(p)) + (1 - b1) * g
        s["v"] = b2 * s.get("v", np.zeros_like(p)) + (1 - b2) * g * g
        lr_t = lr(t) * np.sqrt(1 - b2**t) / (1 - b1**t)
        return p - lr_t * s["m"] / (np.sqrt(s["v"]) + eps)

    return step


def np_rmsprop(lr, rho=0.9, mom=0.0, eps=1e-10, centered=False):
    def step(p, g, s, t):
        s["ms"] = rho * s.get("ms", np.ones_like(p)) + (1 - rho) * g * g
        denom = s["ms"]
        if centered:
            s["mg"] = rho * s.get("mg", np.zeros_like(p)) + (1 - rho) * g
            denom = s["ms"] - s["mg"] ** 2
        s["mom"] = mom * s.get("mom", np.zeros_like(p)) + lr(t) * g / np.sqrt(denom + eps)
        return p - s["mom"]

    return step


def np_adagrad(lr, init=0.1):
    def step(p, g, s, t):
        s["acc"] = s.get("acc", np.full_like(p, init)) + g * g
        return p - lr(t) * g / np.sqrt(s["acc"])

    return step


def _const(v):
    return lambda t: v


CASES = {
    "sgd": (lambda: gc.train.GradientDescentOptimizer(0.1), np_sgd(_const(0.1))),
    "momentum": (lambda: gc.train.MomentumOptimizer(0.05, 0.9), np_momentum(_const(0.05), 0.9)),
    "nesterov": (
        lambda: gc.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
        np_momentum(_const(0.05), 0.9, nesterov=True),
    ),
    "adam": (lambda: gc.train.AdamOptimizer(0.1), np_adam(_const(0.1))),
    "adam_hyper": (
        lambda: gc.train.AdamOptimizer(lr=0.02, beta1=0.5, beta2=0.9, epsilon=1e-3),
        np_adam(_const(0.02), 0.5, 0.9, 1e-3),
    ),
    "rmsprop": (lambda: gc.train.RMSPropOptimizer(0.01), np_rmsprop(_const(0.01))),
    "rmsprop_mom_centered": (
        lambda: gc.train.RMSPropOptimizer(
            0.01, decay=0.8, momentum=0.5, epsilon=1e-6, centered=True
        ),
        np_rmsprop(_const(0.01), 0.8, 0.5, 1e-6, centered=True),
    ),  # fmt: skip
    "adagrad": (lambda: gc.train.AdagradOptimizer(0.3), np_adagrad(_const(0.3))),
    "adagrad_init": (
        lambda: gc.train.AdagradOptimizer(0.3, initial_accumulator_value=1.0),
        np_adagrad(_const(0.3), 1.0),
    ),
}


def _numpy_run(step_fn, steps, dtype=np.float64):
    w, b, c, d = _problem(dtype)
    w, b = w.astype(np.float64), b.astype(np.float64)
    c, d = c.astype(np.float64), d.astype(np.float64)
    sw, sb = {}, {}
    history = []
    for t in range(1, steps + 1):
        gw, gb = _grads(w, b, c, d)
        w, b = step_fn(w, gw, sw, t), step_fn(b, gb, sb, t)
        history.append((w.copy(), b.copy()))
    return history


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_numpy_tf1_rule(case, target):
    make, step_fn = CASES[case]
    w, b, loss, _ = _build()
    train = make().minimize(loss)
    expected = _numpy_run(step_fn, STEPS)
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        first = sess.run(loss)
        for t in range(STEPS):
            sess.run(train)
            got_w, got_b = sess.run([w, b])
            np.testing.assert_allclose(got_w, expected[t][0], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(got_b, expected[t][1], rtol=1e-10, atol=1e-12)
        assert sess.run(loss) < first


@pytest.mark.parametrize("case", ["adam", "momentum", "rmsprop"])
def test_float32_variables(case):
    make, step_fn = CASES[case]
    w, b, loss, _ = _build(np.float32)
    train = make().minimize(loss)
    expected = _numpy_run(step_fn, STEPS, np.float32)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(STEPS):
            sess.run(train)
        got_w, got_b = sess.run([w, b])
    assert got_w.dtype == np.float32
    np.testing.assert_allclose(got_w, expected[-1][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_b, expected[-1][1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", TARGETS)
def test_learning_rate_tensor_fed_per_step(target):
    lr = gc.placeholder(gc.float32, (), name="lr")
    w, b, loss, _ = _build()
    train = gc.train.AdamOptimizer(learning_rate=lr).minimize(loss)
    rates = [0.1, 0.05, 0.2, 0.01]
    expected = _numpy_run(np_adam(lambda t: rates[t - 1]), len(rates))
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        for r in rates:
            sess.run(train, {lr: r})
        got = sess.run([w, b])
    # lr goes through float32 (its dtype) before the float64 update: 1e-7 relative.
    np.testing.assert_allclose(got[0], expected[-1][0], rtol=1e-6)
    np.testing.assert_allclose(got[1], expected[-1][1], rtol=1e-6)


def test_global_step_increments_after_updates():
    w, b, loss, _ = _build()
    step = gc.train.get_or_create_global_step()
    assert gc.train.get_or_create_global_step() is step
    assert gc.train.get_global_step() is step
    assert step.dtype == gc.int64 and step.shape == () and not step.trainable
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        for i in range(3):
            sess.run(train)
            assert sess.run(step) == i + 1


def test_tf1_positional_global_step():
    w, b, loss, _ = _build()
    step = gc.train.get_or_create_global_step()
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, step)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(train)
        assert sess.run(step) == 1


def test_global_step_none_when_absent():
    assert gc.train.get_global_step() is None
    gc.train.create_global_step()
    with pytest.raises(ValueError, match="already"):
        gc.train.create_global_step()


def test_slot_variable_names_and_collections():
    w, b, loss, _ = _build()
    opt = gc.train.AdamOptimizer()
    opt.minimize(loss)
    names = {v.op.name for v in gc.global_variables()}
    assert {"w/Adam", "w/Adam_1", "b/Adam", "b/Adam_1", "beta1_power", "beta2_power"} <= names
    assert {v.op.name for v in gc.trainable_variables()} == {"w", "b"}
    assert opt.get_slot(w, "m").op.name == "w/Adam"
    assert opt.get_slot(w, "v").op.name == "w/Adam_1"
    assert opt.get_slot(w, "m").shape == w.shape
    assert opt.get_slot_names() == ["m", "v"]
    assert len(opt.variables()) == 6

    m = gc.train.MomentumOptimizer(0.1, 0.9)
    m.minimize(loss)
    assert m.get_slot(w, "momentum").op.name == "w/Momentum"
    r = gc.train.RMSPropOptimizer(0.1)
    r.minimize(loss)
    assert r.get_slot(b, "rms").op.name == "b/RMSProp"
    assert r.get_slot(b, "momentum").op.name == "b/RMSProp_1"
    a = gc.train.AdagradOptimizer(0.1)
    a.minimize(loss)
    assert a.get_slot(b, "accumulator").op.name == "b/Adagrad"


def test_slots_live_in_the_session_and_start_from_zero():
    w, b, loss, (w0, b0, c, d) = _build()
    opt = gc.train.MomentumOptimizer(0.1, 0.9)
    train = opt.minimize(loss)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(opt.get_slot(w, "momentum")), 0)
        sess.run(train)
        gw, _ = _grads(w0, b0, c, d)
        np.testing.assert_allclose(sess.run(opt.get_slot(w, "momentum")), gw, rtol=1e-12)
    with gc.Session() as other:  # another session has its own slots
        other.run(gc.global_variables_initializer())
        np.testing.assert_array_equal(other.run(opt.get_slot(w, "momentum")), 0)


def test_var_list_restricts_updates():
    w, b, loss, (w0, b0, _, _) = _build()
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[b])
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(train)
        np.testing.assert_array_equal(sess.run(w), w0)
        assert not np.allclose(sess.run(b), b0)


def test_compute_and_apply_gradients_with_clipping():
    w, b, loss, (w0, b0, c, d) = _build()
    unused = gc.Variable(np.ones(2), name="unused")
    opt = gc.train.GradientDescentOptimizer(1.0)
    gvs = opt.compute_gradients(loss, var_list=[w, b, unused])
    assert [v for _, v in gvs] == [w, b, unused]
    assert gvs[2][0] is None
    clipped, norm = gc.clip_by_global_norm([g for g, _ in gvs], 0.5)
    assert clipped[2] is None
    train = opt.apply_gradients(list(zip(clipped, [w, b, unused])))
    gw, gb = _grads(w0, b0, c, d)
    n = np.sqrt((gw**2).sum() + (gb**2).sum())
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        np.testing.assert_allclose(sess.run(norm), n, rtol=1e-12)
        sess.run(train)
        np.testing.assert_allclose(sess.run(w), w0 - gw * 0.5 / n, rtol=1e-12)
        np.testing.assert_allclose(sess.run(b), b0 - gb * 0.5 / n, rtol=1e-12)
        np.testing.assert_array_equal(sess.run(unused), np.ones(2))


def test_no_gradient_errors():
    v = gc.Variable(np.ones(3), name="v")
    other = gc.Variable(np.ones(3), name="other")
    loss = gc.reduce_sum(other * 2.0)
    opt = gc.train.GradientDescentOptimizer(0.1)
    with pytest.raises(ValueError, match="No gradients provided for any variable.*v"):
        opt.minimize(loss, var_list=[v])
    with pytest.raises(ValueError, match="No gradients"):
        opt.apply_gradients([(None, v)])
    with pytest.raises(TypeError, match="Variable"):
        opt.apply_gradients([(loss, loss)])
    with pytest.raises(ValueError, match="No variables to optimize"):
        opt.minimize(loss, var_list=[])
    with pytest.raises(TypeError, match="floating"):
        opt.minimize(gc.cast(gc.reduce_sum(v), gc.int32))


def test_integer_variables_are_not_trained():
    v = gc.Variable(np.ones(3), name="v")
    counter = gc.Variable(np.int32(3), name="counter")
    loss = gc.reduce_sum(v * gc.cast(counter, gc.float64))
    gvs = gc.train.GradientDescentOptimizer(0.1).compute_gradients(loss)
    assert dict((var.op.name, g) for g, var in gvs)["counter"] is None


def test_two_minimize_calls_share_adam_powers_per_graph():
    w, b, loss, _ = _build()
    opt = gc.train.AdamOptimizer(0.1)
    t1 = opt.minimize(loss, var_list=[w])
    t2 = opt.minimize(loss, var_list=[b])
    assert len([v for v in gc.global_variables() if "beta1_power" in v.op.name]) == 1
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        sess.run([t1, t2])


def test_training_reduces_a_regression_loss():
    # A least-squares fit: every optimizer must make progress on it.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    w = gc.Variable(np.zeros(3), name="w")
    bias = gc.Variable(0.0, dtype=gc.float64, name="bias")
    pred = gc.reduce_sum(gc.constant(x) * w, axis=1) + bias
    loss = gc.reduce_mean(gc.square(pred - y))
    for make in [
        lambda: gc.train.GradientDescentOptimizer(0.1),
        lambda: gc.train.MomentumOptimizer(0.05, 0.9),
        lambda: gc.train.AdamOptimizer(0.1),
        lambda: gc.train.RMSPropOptimizer(0.05),
        lambda: gc.train.AdagradOptimizer(0.5),
    ]:
        train = make().minimize(loss)
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            start = sess.run(loss)
            for _ in range(60):
                sess.run(train)
            assert sess.run(loss) < 0.05 * start


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="learning_rate"):
        gc.train.GradientDescentOptimizer(-1.0)
    with pytest.raises(ValueError, match="beta1"):
        gc.train.AdamOptimizer(beta1=1.5)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        gc.train.AdagradOptimizer(0.1, initial_accumulator_value=0.0)
    with pytest.raises(TypeError, match="momentum"):
        gc.train.MomentumOptimizer(0.1)


@pytest.mark.parametrize("target", TARGETS)
def test_updates_use_the_values_from_before_the_step(target):
    # Each layer's gradient reads the other layer's weights: a backend that let an update
    # land before another variable's gradient was computed would fail this.
    rng = np.random.default_rng(5)
    xv = rng.normal(size=(4, 3))
    w1v, w2v = rng.normal(size=(3, 5)), rng.normal(size=(5, 2))
    w1 = gc.Variable(w1v, name="w1")
    w2 = gc.Variable(w2v, name="w2")
    out = gc.matmul(gc.tanh(gc.matmul(gc.constant(xv), w1)), w2)
    loss = gc.reduce_sum(out * out)
    train = gc.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
    a1, a2 = np.zeros_like(w1v), np.zeros_like(w2v)
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(3):
            h = np.tanh(xv @ w1v)
            o = h @ w2v
            g2 = h.T @ (2 * o)
            g1 = xv.T @ ((2 * o) @ w2v.T * (1 - h * h))
            _, fetched_loss = sess.run([train, loss])
            assert fetched_loss == pytest.approx((o * o).sum(), rel=1e-12)  # pre-update loss
            a1, a2 = a1 * 0.9 + g1, a2 * 0.9 + g2
            w1v, w2v = w1v - 0.01 * a1, w2v - 0.01 * a2
            np.testing.assert_allclose(sess.run(w1), w1v, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(sess.run(w2), w2v, rtol=1e-10, atol=1e-12)
