"""gc.gradients / gc.jacobian / gc.hessians: structure, semantics and numeric checks.

The per-op rules are checked by tests/ops/test_gradients_registry.py; here we test what the
graph transformation itself does: connectivity, summing, seeds, stops, broadcasting, dtypes,
second order, and that it builds nothing it does not need.
"""

import numpy as np
import pytest

import graphc as gc


def run(fetches, feed=None, target="reference"):
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feed)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f at float64 array x."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        g[i] = (f(plus) - f(minus)) / (2 * eps)
    return g


# -- connectivity -------------------------------------------------------------------------------
def test_unconnected_x_gets_none_and_zero_option():
    x = gc.placeholder(gc.float64, (3,), name="x")
    z = gc.placeholder(gc.float64, (3,), name="z")
    y = gc.reduce_sum(gc.sin(x))
    gx, gz = gc.gradients(y, [x, z])
    assert gz is None
    np.testing.assert_allclose(run(gx, {x: [0.0, 1.0, 2.0]}), np.cos([0.0, 1.0, 2.0]))
    (gz0,) = gc.gradients(y, [z], unconnected_gradients="zero")
    np.testing.assert_array_equal(run(gz0, {z: np.ones(3)}), np.zeros(3))


def test_x_downstream_of_y_is_unconnected():
    x = gc.placeholder(gc.float64, (), name="x")
    y = x * 2.0
    later = y * 3.0
    assert gc.gradients(y, later) == [None]


def test_gradient_of_y_with_respect_to_itself_is_the_seed():
    x = gc.placeholder(gc.float64, (2,), name="x")
    y = x * 3.0
    (g,) = gc.gradients(y, y)
    (gs,) = gc.gradients(y, y, grad_ys=gc.constant([2.0, 5.0], gc.float64))
    np.testing.assert_array_equal(run(g, {x: [1.0, 2.0]}), [1.0, 1.0])
    np.testing.assert_array_equal(run(gs, {x: [1.0, 2.0]}), [2.0, 5.0])


# -- sums over paths and ys; seeds -----------------------------------------------------------------
def test_several_paths_are_summed():
    x = gc.placeholder(gc.float64, (4,), name="x")
    a = x * x  # path 1
    b = gc.sin(x)  # path 2
    c = a * b  # both paths again
    y = gc.reduce_sum(c + a + x)
    (g,) = gc.gradients(y, x)
    xv = np.array([0.3, -1.2, 2.0, 0.0])
    expected = 2 * xv * np.sin(xv) + xv**2 * np.cos(xv) + 2 * xv + 1
    np.testing.assert_allclose(run(g, {x: xv}), expected, rtol=1e-12)


def test_list_of_ys_is_summed():
    x = gc.placeholder(gc.float64, (3,), name="x")
    y1 = gc.reduce_sum(x * x)
    y2 = gc.exp(x)  # a non-scalar y: seeded with ones
    (g,) = gc.gradients([y1, y2], x)
    xv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(run(g, {x: xv}), 2 * xv + np.exp(xv), rtol=1e-12)


def test_grad_ys_weights_each_y():
    x = gc.placeholder(gc.float64, (3,), name="x")
    y1 = x * x
    y2 = gc.reduce_sum(x)
    w1 = np.array([1.0, 2.0, -3.0])
    (g,) = gc.gradients([y1, y2], x, grad_ys=[w1, 0.5])
    xv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(run(g, {x: xv}), 2 * xv * w1 + 0.5, rtol=1e-12)
    gy = gc.placeholder(gc.float64, (3,), name="gy")
    (g2,) = gc.gradients(y1, x, grad_ys=gy)
    np.testing.assert_allclose(run(g2, {x: xv, gy: w1}), 2 * xv * w1, rtol=1e-12)
    with pytest.raises(ValueError, match="grad_ys"):
        gc.gradients([y1, y2], x, grad_ys=[w1])
    with pytest.raises(ValueError, match="grad_ys.*shape"):
        gc.gradients(y1, x, grad_ys=np.ones(4))


# -- stops -------------------------------------------------------------------------------------
def test_stop_gradient_op():
    x = gc.placeholder(gc.float64, (2,), name="x")
    b = gc.stop_gradient(x * x)
    y = gc.reduce_sum(b * x)  # d/dx with b constant: b = x^2
    (g,) = gc.gradients(y, x)
    xv = np.array([1.5, -2.0])
    np.testing.assert_allclose(run(g, {x: xv}), xv**2, rtol=1e-12)
    only_stopped = gc.reduce_sum(gc.stop_gradient(x) * 2.0)
    assert gc.gradients(only_stopped, x) == [None]


def test_stop_gradients_argument():
    a = gc.placeholder(gc.float64, (), name="a")
    b = a * 2.0
    y = a * b  # = 2 a^2
    (full,) = gc.gradients(y, a)
    (stopped,) = gc.gradients(y, a, stop_gradients=[b])  # b treated as a constant
    ga, gb = gc.gradients(y, [a, b], stop_gradients=b)
    full_v, stopped_v, ga_v, gb_v = run([full, stopped, ga, gb], {a: 3.0})
    assert full_v == pytest.approx(12.0)
    assert stopped_v == pytest.approx(6.0)  # = b
    assert ga_v == pytest.approx(6.0)
    assert gb_v == pytest.approx(3.0)  # = a: the gradient *at* a stop is still returned
    # Stopping an x does not cut its paths to y: a placeholder has nothing above it.
    (through_x,) = gc.gradients(y, a, stop_gradients=[a])
    assert run(through_x, {a: 3.0}) == pytest.approx(12.0)
    # The example of TF's documentation: [1.0, 1.0] instead of [3.0, 1.0].
    z = gc.constant(0.0)
    b2 = 2 * z
    tf_doc = gc.gradients(z + b2, [z, b2], stop_gradients=[z, b2])
    assert run(tf_doc) == [pytest.approx(1.0), pytest.approx(1.0)]


# -- broadcasting and dtypes -----------------------------------------------------------------------
@pytest.mark.parametrize("dynamic", [False, True])
def test_gradients_through_broadcasting(dynamic):
    def shape(s):
        return tuple(None for _ in s) if dynamic else s

    a = gc.placeholder(gc.float64, shape((3, 1)), name="a")
    b = gc.placeholder(gc.float64, shape((4,)), name="b")
    c = gc.placeholder(gc.float64, shape(()), name="c")
    y = gc.reduce_sum((a * b + c) ** 2)
    ga, gb, gc_ = gc.gradients(y, [a, b, c])
    rng = np.random.default_rng(0)
    av, bv, cv = rng.normal(size=(3, 1)), rng.normal(size=(4,)), np.float64(0.7)
    r = 2 * (av * bv + cv)  # d y / d (a*b+c), shape (3, 4)
    got = run([ga, gb, gc_], {a: av, b: bv, c: cv})
    assert got[0].shape == (3, 1) and got[1].shape == (4,) and np.shape(got[2]) == ()
    np.testing.assert_allclose(got[0], (r * bv).sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(got[1], (r * av).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got[2], r.sum(), rtol=1e-12)


def test_integer_inputs_get_none():
    i = gc.placeholder(gc.int32, (3,), name="i")
    x = gc.placeholder(gc.float32, (3,), name="x")
    y = gc.reduce_sum(gc.cast(i, gc.float32) * x)
    gi, gx = gc.gradients(y, [i, x])
    assert gi is None
    np.testing.assert_allclose(run(gx, {i: [1, 2, 3], x: np.ones(3)}), [1, 2, 3])
    # Through a float -> int -> float round trip nothing flows either (as TF).
    y2 = gc.reduce_sum(gc.cast(gc.cast(x, gc.int32), gc.float32))
    assert gc.gradients(y2, x) == [None]
    # An integer y has no gradient.
    assert gc.gradients(gc.reduce_sum(i), i) == [None]


def test_float32_gradients_keep_their_dtype():
    x = gc.placeholder(gc.float32, (2, 2), name="x")
    (g,) = gc.gradients(gc.reduce_mean(gc.tanh(x)), x)
    assert g.dtype == gc.float32
    assert run(g, {x: np.zeros((2, 2))}).dtype == np.float32


def test_variables_as_xs():
    w = gc.Variable(np.array([[1.0, 2.0], [3.0, 4.0]]), name="w")
    x = gc.constant(np.array([[0.5], [-1.0]]))
    y = gc.reduce_sum(gc.matmul(w, x) ** 2)
    (g,) = gc.gradients(y, w)
    wv = np.array([[1.0, 2.0], [3.0, 4.0]])
    xv = np.array([[0.5], [-1.0]])
    np.testing.assert_allclose(run(g), 2 * (wv @ xv) @ xv.T, rtol=1e-12)


def test_fresh_variable_reads_carry_the_gradient():
    w = gc.Variable(np.array([1.0, 2.0, 3.0]), name="w")
    fresh = w.read_value()
    y = gc.reduce_sum(fresh * fresh) + gc.reduce_sum(w * 2.0)
    (g,) = gc.gradients(y, w)
    np.testing.assert_allclose(run(g), [4.0, 6.0, 8.0])
    (g_stop,) = gc.gradients(y, w, stop_gradients=[fresh])
    np.testing.assert_allclose(run(g_stop), [2.0, 2.0, 2.0])
    # With respect to the read itself, the direct reads of w do not count.
    (g_read,) = gc.gradients(y, fresh)
    np.testing.assert_allclose(run(g_read), [2.0, 4.0, 6.0])


def test_bad_arguments():
    x = gc.placeholder(gc.float64, (), name="x")
    other = gc.Graph()
    with other.as_default():
        z = gc.placeholder(gc.float64, (), name="z")
    with pytest.raises(ValueError, match="another graph"):
        gc.gradients(x * 2.0, z)
    with pytest.raises(ValueError, match="at least one y"):
        gc.gradients([], x)
    with pytest.raises(TypeError, match="tensors"):
        gc.gradients(x, "not a tensor")


# -- second order --------------------------------------------------------------------------------
def _f_np(xv, wv):
    return np.sum(np.tanh(wv @ xv) ** 2) + np.sum(np.sin(xv) * xv**2)


def _f(x, w):
    return gc.reduce_sum(gc.tanh(gc.matmul(w, x)) ** 2) + gc.reduce_sum(gc.sin(x) * x * x)


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_hessian_vector_product_matches_finite_differences(target):
    rng = np.random.default_rng(1)
    wv = rng.normal(size=(3, 4))
    xv, vv = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    x = gc.placeholder(gc.float64, (4, 2), name="x")
    v = gc.placeholder(gc.float64, (4, 2), name="v")
    f = _f(x, gc.constant(wv))
    (g,) = gc.gradients(f, x)
    (hv,) = gc.gradients(g, x, grad_ys=v)  # H v by reverse-over-reverse
    (hv2,) = gc.gradients(gc.reduce_sum(g * v), x)  # the same, as the gradient of <g, v>
    with gc.Session(target=target) as sess:
        got, got2 = sess.run([hv, hv2], {x: xv, v: vv})
        eps = 1e-5
        gp = sess.run(g, {x: xv + eps * vv})
        gm = sess.run(g, {x: xv - eps * vv})
    expected = (gp - gm) / (2 * eps)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got2, got, rtol=1e-12, atol=1e-12)
    # And the first-order gradient itself, against the numpy function.
    np.testing.assert_allclose(
        gp, numeric_grad(lambda z: _f_np(z, wv), xv + eps * vv), rtol=1e-6, atol=1e-7
    )


def test_third_order_scalar():
    x = gc.placeholder(gc.float64, (), name="x")
    y = gc.sin(x) * x
    (d1,) = gc.gradients(y, x)
    (d2,) = gc.gradients(d1, x)
    (d3,) = gc.gradients(d2, x)
    xv = 0.7
    got = run([d1, d2, d3], {x: xv})
    np.testing.assert_allclose(got[0], np.cos(xv) * xv + np.sin(xv), rtol=1e-12)
    np.testing.assert_allclose(got[1], 2 * np.cos(xv) - xv * np.sin(xv), rtol=1e-12)
    np.testing.assert_allclose(got[2], -3 * np.sin(xv) - xv * np.cos(xv), rtol=1e-12)


def test_jacobian_matches_numeric():
    rng = np.random.default_rng(2)
    wv = rng.normal(size=(3, 4))
    x = gc.placeholder(gc.float64, (4,), name="x")
    y = gc.tanh(gc.matmul(gc.constant(wv), gc.reshape(x, (4, 1))))  # (3, 1)
    jac = gc.jacobian(y, x)
    assert jac.shape == (3, 1, 4)
    xv = rng.normal(size=(4,))
    got = run(jac, {x: xv})
    for i in range(3):
        row = numeric_grad(lambda z, i=i: np.tanh(wv @ z)[i], xv)
        np.testing.assert_allclose(got[i, 0], row, rtol=1e-6, atol=1e-8)
    # An x that y does not depend on gives zeros.
    z = gc.placeholder(gc.float64, (2,), name="z")
    np.testing.assert_array_equal(run(gc.jacobian(y, z), {x: xv}), np.zeros((3, 1, 2)))


def test_hessians_match_numeric():
    rng = np.random.default_rng(3)
    wv = rng.normal(size=(3, 2))
    x = gc.placeholder(gc.float64, (2, 2), name="x")
    w = gc.placeholder(gc.float64, (3, 2), name="w")
    z = gc.placeholder(gc.float64, (3,), name="z")
    f = _f(x, w)
    hx, hz = gc.hessians(f, [x, z])
    assert hx.shape == (2, 2, 2, 2) and hz.shape == (3, 3)
    xv = rng.normal(size=(2, 2))
    got, got_z = run([hx, hz], {x: xv, w: wv, z: np.zeros(3)})
    eps = 1e-4
    for i in np.ndindex(2, 2):
        # Column i of the Hessian: numeric derivative of the numeric gradient along e_i.
        e = np.zeros((2, 2))
        e[i] = eps
        gp = numeric_grad(lambda q: _f_np(q, wv), xv + e, eps=1e-5)
        gm = numeric_grad(lambda q: _f_np(q, wv), xv - e, eps=1e-5)
        np.testing.assert_allclose(got[:, :, i[0], i[1]], (gp - gm) / (2 * eps), atol=1e-4)
    np.testing.assert_allclose(got.reshape(4, 4), got.reshape(4, 4).T, atol=1e-10)  # symmetric
    np.testing.assert_array_equal(got_z, np.zeros((3, 3)))


def test_jacobian_needs_static_shapes():
    x = gc.placeholder(gc.float64, (None,), name="x")
    with pytest.raises(ValueError, match="static shape"):
        gc.jacobian(x * 2.0, x)


# -- what gets built -----------------------------------------------------------------------------
def _new_ops(graph, before):
    return graph.get_operations()[before:]


def test_no_gradient_work_for_branches_not_reaching_xs():
    g = gc.get_default_graph()
    x = gc.placeholder(gc.float64, (3,), name="x")
    c = gc.placeholder(gc.float64, (3,), name="c")
    side = c
    for k in range(5):  # a long branch that depends only on c
        side = gc.exp(side, name=f"side{k}")
    dead = gc.sin(x, name="dead_end")  # reached from x but not used by y
    y = gc.reduce_sum(x * x + side, name="y")
    before = len(g.get_operations())
    (gx,) = gc.gradients(y, x)
    new = _new_ops(g, before)
    names = " ".join(op.name for op in new)
    assert "side" not in names and "dead_end" not in names
    assert all(op.name.startswith("gradients") for op in new)
    # Only the ops of the x -> y path were differentiated: y, add, mul, and the seed.
    assert len(new) <= 12, names
    np.testing.assert_allclose(run(gx, {x: [1.0, 2.0, 3.0], c: np.zeros(3)}), [2.0, 4.0, 6.0])
    assert dead.op.type  # keep the dead branch alive in the graph


def test_nothing_is_built_for_an_unconnected_x():
    g = gc.get_default_graph()
    x = gc.placeholder(gc.float64, (3,), name="x")
    z = gc.placeholder(gc.float64, (3,), name="z")
    y = gc.reduce_sum(gc.exp(x))
    before = len(g.get_operations())
    assert gc.gradients(y, z) == [None]
    assert _new_ops(g, before) == []  # not even a seed for y


def test_gradient_graph_compiles_and_agrees_on_cpu():
    rng = np.random.default_rng(4)
    x = gc.placeholder(gc.float32, (None, 5), name="x")
    w = gc.Variable(rng.normal(size=(5, 3)).astype(np.float32), name="w")
    logits = gc.matmul(x, w)
    loss = gc.reduce_mean(gc.reduce_logsumexp(logits, axis=1) - logits[:, 0])
    (g,) = gc.gradients(loss, w)
    xv = rng.normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(
        run(g, {x: xv}, target="cpu"), run(g, {x: xv}, target="reference"), rtol=1e-5, atol=1e-6
    )


def test_a_rule_returning_the_wrong_shape_is_reported(monkeypatch):
    from graphc.ops import registry

    class BadGrad(registry.OpDef):
        type = "BadGradForTest"
        no_examples_reason = "test-only op"

        def infer(self, specs, attrs):
            return [specs[0]]

        def ref(self, xs, attrs):
            return xs[0]

        def vjp(self, op, grads):
            return [gc.reduce_sum(grads[0])]  # forgets the shape of the input

    monkeypatch.setitem(registry.REGISTRY, "BadGradForTest", BadGrad())
    x = gc.placeholder(gc.float64, (3,), name="x")
    y = registry.apply1("BadGradForTest", [x])
    with pytest.raises(AssertionError, match=r"BadGradForTest.*shape \(\).*shape \(3,\)"):
        gc.gradients(gc.reduce_sum(y), x)
