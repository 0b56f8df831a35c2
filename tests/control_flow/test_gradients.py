"""gc.gradients through while_loop, cond, scan, map_fn and foldl: finite differences in
float64 on the reference and cpu targets, run-time trip counts (0 included), None batch
dims, nesting, second order, back_prop=False, and refusals of bodies with effects."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArgumentError, UnimplementedError

from .helpers import TARGETS, numeric_grad

F64 = gc.float64


def _check(loss, xs, feed, target, rtol=1e-6, atol=1e-8):
    """Each gradient of ``loss`` w.r.t. the placeholders ``xs`` against central
    differences of the same graph on the same target."""
    grads = gc.gradients(loss, xs)
    with gc.Session(target=target) as sess:
        got = sess.run(grads, feed)
        for x, g in zip(xs, got):

            def f(value, x=x):
                return float(sess.run(loss, {**feed, x: value}))

            np.testing.assert_allclose(g, numeric_grad(f, feed[x]), rtol=rtol, atol=atol)
    return got


@pytest.mark.parametrize("target", TARGETS)
def test_while_gradients_with_run_time_trip_counts_and_batch_sizes(target):
    x = gc.placeholder(F64, (None, 2), name="x")
    w = gc.placeholder(F64, (2,), name="w")
    n = gc.placeholder(gc.int32, (), name="n")

    def body(i, y, s):
        y2 = gc.tanh(y * w) + 0.5 * y
        return i + 1, y2, s + gc.reduce_sum(y2 * y2)

    _, y, s = gc.while_loop(lambda i, y, s: i < n, body, (0, x, gc.constant(0.0, F64)))
    loss = gc.reduce_sum(y) + s
    rng = np.random.default_rng(0)
    for trips, batch in ((0, 3), (1, 1), (5, 4)):
        feed = {x: rng.uniform(-1, 1, (batch, 2)), w: rng.uniform(0.5, 1.5, 2), n: trips}
        got = _check(loss, [x, w], feed, target)
        if trips == 0:
            np.testing.assert_allclose(got[0], np.ones((batch, 2)))
            np.testing.assert_allclose(got[1], 0.0)


@pytest.mark.parametrize("target", TARGETS)
def test_nested_loops_and_cond_in_a_loop_are_differentiable(target):
    x = gc.placeholder(F64, (3,), name="x")
    w = gc.placeholder(F64, (), name="w")

    def outer(i, y):
        def inner(j, z):
            return j + 1, gc.sin(z) * w

        _, z = gc.while_loop(lambda j, z: j < i, inner, (0, y))
        z = gc.cond(gc.equal(i % 2, 0), lambda: z * w, lambda: z + gc.exp(-z * z))
        return i + 1, z

    _, y = gc.while_loop(lambda i, y: i < 4, outer, (0, x))
    feed = {x: np.array([0.2, -0.5, 0.9]), w: 0.9}
    _check(gc.reduce_sum(y * y), [x, w], feed, target)


@pytest.mark.parametrize("target", TARGETS)
def test_scan_map_fn_foldl_gradients(target):
    e = gc.placeholder(F64, (None, 2), name="e")
    w = gc.placeholder(F64, (2,), name="w")
    structured = gc.scan(
        lambda acc, x: {"a": acc["a"] * x["p"] + w, "b": acc["b"] + gc.sin(x["q"])},
        {"p": e, "q": e * 2.0},
        initializer={"a": gc.ones_like(w), "b": gc.zeros_like(w)},
    )
    no_init = gc.scan(lambda a, x: a * x + w, e, reverse=True)
    m = gc.map_fn(lambda x: (gc.reduce_sum(x * w), x * x), e)
    f = gc.foldl(lambda a, x: a * gc.cos(x) + w, e)
    loss = (gc.reduce_sum(structured["a"]) + gc.reduce_sum(structured["b"] ** 2)
            + gc.reduce_sum(no_init) + gc.reduce_sum(m[0] ** 2) + gc.reduce_sum(m[1])
            + gc.reduce_sum(f))  # fmt: skip
    feed = {e: np.random.default_rng(3).uniform(-1, 1, (4, 2)), w: np.array([0.3, -0.8])}
    _check(loss, [e, w], feed, target)


def test_scan_shapes_and_values_follow_tf1():
    e = gc.constant(np.arange(1.0, 5.0))
    cum = gc.scan(lambda a, x: a + x, e)
    rev = gc.scan(lambda a, x: a + x, e, reverse=True)
    init = gc.scan(lambda a, x: a * x, e, initializer=gc.constant(1.0, F64))
    m = gc.map_fn(lambda x: gc.cast(x, gc.int32) * 2, e, dtype=gc.int32)
    f = gc.foldl(lambda a, x: a - x, e)
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            got = sess.run([cum, rev, init, m, f])
        np.testing.assert_allclose(got[0], [1, 3, 6, 10])
        np.testing.assert_allclose(got[1], [10, 9, 7, 4])
        np.testing.assert_allclose(got[2], [1, 2, 6, 24])
        np.testing.assert_array_equal(got[3], [2, 4, 6, 8])
        assert got[4] == 1 - 2 - 3 - 4
    with pytest.raises(TypeError, match="dtype says"):
        gc.map_fn(lambda x: x, e, dtype=gc.int32)
    with pytest.raises(ValueError, match="different lengths"):
        gc.map_fn(lambda x: x[0], (e, gc.zeros((3,))))


@pytest.mark.parametrize("target", TARGETS)
def test_second_order_through_a_loop(target):
    x = gc.placeholder(F64, (2,), name="x")
    _, y = gc.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, gc.sin(y) * y), (0, x))
    loss = gc.reduce_sum(y * y)
    (g,) = gc.gradients(loss, [x])
    (h,) = gc.hessians(loss, [x])
    xv = np.array([0.4, -1.1])
    with gc.Session(target=target) as sess:
        hv = sess.run(h, {x: xv})

        def gi(value, i):
            return sess.run(g, {x: value})[i]

        for i in range(2):
            np.testing.assert_allclose(hv[i], numeric_grad(lambda v, i=i: gi(v, i), xv), rtol=1e-6)


def _body_matmuls(loss, wrt):
    """The MatMul count of each gradient loop's body (gradients of ``loss`` w.r.t. ``wrt``)."""
    grads = gc.gradients(loss, wrt)
    ops = gc.get_default_graph().get_operations()
    loops = [op for op in ops if op.type == "While" and "grad" in op.name]
    return grads, [sum(n.op == "MatMul" for n in op.attrs["body"].nodes) for op in loops]


@pytest.mark.parametrize("target", TARGETS)
def test_rnn_gradient_reads_stored_products_and_sums_the_weight_gradient_after_the_loop(
    target,
):
    """A tanh RNN ``h' = tanh(h @ w + x_t)``: the forward loop stores ``h @ w`` and the
    gradient loop does not compute it again; its one product per step is ``g @ w^T``, the
    weight's gradient is one product after the loop. First and second order against
    central differences."""
    x = gc.placeholder(F64, (None, None, 3), name="x")
    w = gc.placeholder(F64, (3, 3), name="w")
    h0 = gc.placeholder(F64, (None, 3), name="h0")
    hs = gc.scan(lambda h, xt: gc.tanh(gc.matmul(h, w) + xt), x, initializer=h0)
    loss = gc.reduce_sum(hs * hs) + gc.reduce_sum(hs)
    (gw, gh), counts = _body_matmuls(loss, [w, h0])
    assert counts == [1]
    rng = np.random.default_rng(1)
    feed = {x: rng.uniform(-1, 1, (4, 2, 3)), w: rng.uniform(-1, 1, (3, 3)),
            h0: rng.uniform(-1, 1, (2, 3))}  # fmt: skip
    _check(loss, [x, w, h0], feed, target)
    _check(loss, [w], {**feed, x: np.zeros((0, 2, 3))}, target)  # no step: zero gradient
    second = gc.reduce_sum(gw * gw) + gc.reduce_sum(gh * gh)
    _check(second, [w, h0], feed, target, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("target", TARGETS)
def test_weight_read_twice_in_a_loop_is_accumulated(target):
    x = gc.placeholder(F64, (None, 2, 3), name="x")
    w = gc.placeholder(F64, (3, 3), name="w")
    hs = gc.scan(lambda h, xt: gc.sin(gc.matmul(h, w) + gc.matmul(xt, w)), x,
                 initializer=gc.ones((2, 3), F64))  # fmt: skip
    loss = gc.reduce_sum(hs * hs)
    rng = np.random.default_rng(2)
    _check(loss, [x, w], {x: rng.uniform(-1, 1, (3, 2, 3)), w: rng.uniform(-1, 1, (3, 3))},
           target)  # fmt: skip


def test_back_prop_false_gives_no_gradient():
    x = gc.placeholder(F64, (), name="x")
    y = gc.while_loop(lambda v: v < 10.0, lambda v: v * 2.0, [x], back_prop=False)
    assert gc.gradients(y, [x]) == [None]
    op = y.op
    assert op.attrs["n_history"] == 0 and len(op.outputs) == 1


def test_gradients_refuse_bodies_with_effects():
    v = gc.Variable(np.float64(1.0), name="v")
    x = gc.placeholder(F64, (), name="x")
    y = gc.while_loop(lambda i, s: i < 3, lambda i, s: (i + 1, s + v.assign_add(x)), (0, x))[1]
    with pytest.raises(UnimplementedError, match="AssignAdd"):
        gc.gradients(y, [x])
    r = gc.while_loop(lambda s: s < 3.0, lambda s: s + gc.random_uniform((), dtype=F64), [x])
    with pytest.raises(UnimplementedError, match="gradient would run again"):
        gc.gradients(r, [x])


def test_history_is_kept_only_when_the_gradient_reads_it():
    x = gc.placeholder(F64, (None,), name="x")
    y = gc.while_loop(lambda v: gc.reduce_sum(v) < 100.0, lambda v: v * 2.0 + 1.0, [x])
    (g,) = gc.gradients(gc.reduce_sum(y), [x])
    with gc.Session(target="cpu") as sess:
        forward = sess.compile(y, [x])
        both = sess.compile([y, g], [x])
        np.testing.assert_allclose(sess.run(g, {x: [1.0, 2.0]}), [2.0**5] * 2)  # five iterations

    def forward_steps(exe):
        return [s[2] for s in exe.runner.steps if s[0] == "host" and s[1].op == "While"]

    (fwd,) = forward_steps(forward)
    assert fwd.needed == {0}  # the final value only: no history rows are kept ...
    assert fwd.history is False  # ... nor even computed: its body returns the new v and cond
    assert len(fwd.node.attrs["body"].fetches) == 3  # (what the gradient would need)
    (with_grad,) = [s for s in forward_steps(both) if s.needed == {0, 1}]
    assert with_grad.history is True


@pytest.mark.parametrize("target", TARGETS)
def test_gradient_of_a_variable_read_in_the_body(target):
    w = gc.Variable(np.array([0.7, -0.3]), name="w")
    x = gc.placeholder(F64, (None, 2), name="x")
    _, h = gc.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, gc.tanh(h * w + x)), (0, x))
    loss = gc.reduce_sum(h * h)
    (gw,) = gc.gradients(loss, [w])
    xv = np.array([[0.1, 0.2], [-0.5, 0.4]])
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run(gw, {x: xv})

        def f(value):
            w.load(value, sess)
            return float(sess.run(loss, {x: xv}))

        np.testing.assert_allclose(got, numeric_grad(f, [0.7, -0.3]), rtol=1e-6)


def test_gradient_through_a_shape_changing_loop_variable_fails_at_run_time():
    x = gc.placeholder(F64, (1,), name="x")
    _, v = gc.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, gc.concat([v, v * 2.0], 0)),
                         (0, x), shape_invariants=((), (None,)))  # fmt: skip
    (g,) = gc.gradients(gc.reduce_sum(v), [x])
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            assert sess.run(v, {x: [1.0]}).shape == (8,)  # the forward alone runs
            with pytest.raises(InvalidArgumentError, match="cannot be stacked"):
                sess.run(g, {x: [1.0]})


def test_sliced_inputs_checked_at_run_time_and_empty_elems():
    a = gc.placeholder(F64, (None,), name="a")
    b = gc.placeholder(F64, (None,), name="b")
    m = gc.map_fn(lambda r: r[0] * r[1], (a, b))
    s = gc.scan(lambda acc, e: acc + e, a, initializer=gc.constant(1.0, F64))
    f = gc.foldl(lambda acc, e: acc + e, a, initializer=gc.constant(1.0, F64))
    (gs,) = gc.gradients(gc.reduce_sum(s) + f, [a])
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            np.testing.assert_allclose(sess.run(m, {a: [1.0, 2.0], b: [3.0, 4.0]}), [3.0, 8.0])
            with pytest.raises(InvalidArgumentError, match="different lengths"):
                sess.run(m, {a: [1.0, 2.0], b: [3.0]})
            got = sess.run([s, f, gs], {a: np.zeros(0)})
            assert got[0].shape == (0,) and got[1] == 1.0 and got[2].shape == (0,)


def test_training_through_a_loop_matches_across_targets():
    rng = np.random.default_rng(0)
    xs = gc.placeholder(gc.float32, (None, None, 3), name="xs")  # [time, batch, 3]
    w = gc.Variable(rng.normal(0, 0.3, (3, 3)).astype(np.float32), name="w")
    h = gc.foldl(lambda h, x: gc.tanh(gc.matmul(h, w) + x), xs, initializer=gc.zeros_like(xs[0]))
    loss = gc.reduce_mean((h - 0.5) ** 2)
    train = gc.train.GradientDescentOptimizer(0.5).minimize(loss)
    data = rng.normal(0, 1, (6, 4, 3)).astype(np.float32)
    losses = {}
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            sess.run(gc.global_variables_initializer())
            losses[target] = [sess.run(loss, {xs: data})]
            for _ in range(10):
                sess.run(train, {xs: data})
            losses[target].append(sess.run(loss, {xs: data}))
    assert losses["reference"][1] < 0.8 * losses["reference"][0]
    np.testing.assert_allclose(losses["cpu"], losses["reference"], rtol=1e-5)
