"""gc.nn.dynamic_rnn against TF1 (golden values of make_golden.py) on the reference and cpu
targets, with None batch and time dims, sequence lengths, time-major inputs and zero steps;
gradients through the loop against central differences; one loop op whatever the length;
errors."""

import json

import numpy as np
import pytest

import graphc as gc
from graphc.rnn import nest
from tests.rnn.golden import DYNAMIC_CASES, case, leaves, load_weights, make_cell, spec_of
from tests.rnn.test_cells import central_difference

rc = gc.nn.rnn_cell
TARGETS = ["reference", "cpu"]


def build(data, dtype=gc.float32):
    """The case's dynamic_rnn on placeholders with None batch and time; (cell, feed,
    outputs, final state leaves)."""
    meta = json.loads(str(data["meta"]))
    cell = make_cell(spec_of(data))
    xs = data["inputs"]
    x = gc.placeholder(dtype, (None, None, xs.shape[2]), name="x")
    feed = {x: xs}
    kwargs = {"time_major": meta["time_major"], "dtype": dtype}
    if meta["sequence_length"] is not None:
        lengths = gc.placeholder(gc.int32, (None,), name="lengths")
        feed[lengths] = data["sequence_length"]
        kwargs["sequence_length"] = lengths
    if meta["initial_state"]:
        phs = [gc.placeholder(dtype, (None, n)) for n in nest.flatten(cell.state_size)]
        feed.update(zip(phs, leaves(data, "state0_")))
        kwargs["initial_state"] = nest.pack_sequence_as(cell.state_size, phs)
    outputs, final = gc.nn.dynamic_rnn(cell, x, **kwargs)
    return cell, feed, outputs, nest.flatten(final)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", DYNAMIC_CASES)
def test_dynamic_rnn_matches_tf1(name, target):
    data = case(name)
    cell, feed, outputs, final = build(data)
    assert [v.op.name for v in cell.variables] == [str(n) for n in data["var_names"]]
    assert [v.op.name for v in gc.global_variables()][0].startswith("rnn/")
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        load_weights(sess, data)
        got = sess.run([outputs, *final], feed)
    want = [data["outputs"], *leaves(data, "final_")]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_sequence_length_zeros_and_copies_state():
    data = case("dyn_lstm")  # lengths [5, 2, 0]
    _, feed, outputs, final = build(data)
    with gc.Session(target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        load_weights(sess, data)
        out, c, h = sess.run([outputs, *final], feed)
    assert not out[1, 2:].any() and not out[2].any() and out[1, :2].all()
    np.testing.assert_array_equal(h[1], out[1, 1])  # state after row 1's last step
    assert not c[2].any() and not h[2].any()  # length 0: the (zero) initial state


@pytest.mark.parametrize("target", TARGETS)
def test_new_sizes_reuse_the_compiled_program(target):
    data = case("dyn_multi")
    _, feed, outputs, final = build(data)
    x, lengths = [p for p in feed if p.op.name in ("x", "lengths")]
    states = [p for p in feed if p not in (x, lengths)]
    rng = np.random.default_rng(3)
    runs = []
    for batch, steps in [(3, 4), (5, 9), (1, 1)]:
        f = {
            x: rng.normal(size=(batch, steps, 2)).astype(np.float32),
            lengths: rng.integers(0, steps + 1, batch).astype(np.int32),
        }
        f.update({p: rng.normal(size=(batch, p.shape[1])).astype(np.float32) for p in states})
        runs.append(f)
    got = {}
    for t in ("reference", target):
        with gc.Session(target=t) as sess:
            sess.run(gc.global_variables_initializer())
            load_weights(sess, data)
            got[t] = [sess.run([outputs, *final], f) for f in runs]
            if t == "cpu":
                assert sess.cache_info()["compiles"] <= 2  # the initializer and the rnn
    for a, b, f in zip(got["reference"], got[target], runs):
        assert a[0].shape == (f[x].shape[0], f[x].shape[1], 2)
        for u, v in zip(a, b):
            np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("time_major", [False, True])
def test_zero_steps_give_empty_outputs_and_the_initial_state(target, time_major):
    cell = rc.GRUCell(3)
    x = gc.placeholder(gc.float32, (None, None, 2))
    s0 = gc.placeholder(gc.float32, (None, 3))
    outputs, final = gc.nn.dynamic_rnn(cell, x, initial_state=s0, time_major=time_major)
    init = np.arange(6, dtype=np.float32).reshape(2, 3)
    xs = np.zeros((0, 2, 2) if time_major else (2, 0, 2), np.float32)
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        out, fin = sess.run([outputs, final], {x: xs, s0: init})
    assert out.shape == ((0, 2, 3) if time_major else (2, 0, 3))
    np.testing.assert_array_equal(fin, init)


def test_static_shapes_and_time_major():
    cell = rc.BasicRNNCell(4)
    x = gc.placeholder(gc.float32, (6, 2, 3))  # [time, batch, depth]
    outputs, final = gc.nn.dynamic_rnn(cell, x, dtype=gc.float32, time_major=True)
    assert outputs.shape[1:] == (2, 4) and final.shape[-1] == 4
    xs = np.random.default_rng(0).normal(size=(6, 2, 3)).astype(np.float32)
    with gc.Session(target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        out, fin = sess.run([outputs, final], {x: xs})
        k, b = sess.run(cell.variables)
    h = np.zeros((2, 4), np.float32)
    for t in range(6):  # numpy recurrence
        h = np.tanh(np.concatenate([xs[t], h], 1) @ k + b)
        np.testing.assert_allclose(out[t], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fin, h, rtol=1e-5, atol=1e-6)


def test_one_loop_op_whatever_the_length():
    """Built on the While op: the graph does not grow with the number of steps."""
    counts = []
    for steps in (3, 50):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (2, steps, 3))
            gc.nn.dynamic_rnn(rc.LSTMCell(4), x, dtype=gc.float32)
            types = [op.type for op in g.get_operations()]
        counts.append(len(types))
        assert types.count("While") == 1
    assert counts[0] == counts[1]


def test_lstm_gradient_loop_runs_one_product_a_step():
    """The forward loop stores each step's concat([x, h]) @ kernel, so its gradient loop
    runs none of the forward's products again; the kernel's gradient is one product after
    the loop: each loop body holds one product."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, None, 3))
        out, _ = gc.nn.dynamic_rnn(rc.LSTMCell(4), x, dtype=gc.float32)
        gc.gradients(gc.reduce_sum(out), gc.trainable_variables())
        loops = [op for op in g.get_operations() if op.type == "While"]
    assert len(loops) == 2
    for loop in loops:
        assert sum(n.op == "MatMul" for n in loop.attrs["body"].nodes) == 1


@pytest.mark.parametrize("name", ["dyn_lstm", "dyn_gru_time_major"])
def test_gradients_through_the_loop(name):
    """float64 gradients w.r.t. inputs, initial state and weights: the reference's equal
    central differences; the cpu target's equal the reference's."""
    data = case(name)
    cell, feed, outputs, final = build(data, gc.float64)
    feed = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in feed.items()}
    rng = np.random.default_rng(1)
    loss = gc.reduce_sum(outputs * rng.normal(size=(1, 1, cell.output_size)))
    loss = loss + gc.reduce_sum(final[-1] * final[-1])
    x = next(p for p in feed if p.op.name == "x")
    wrt = [x, *[p for p in feed if p.dtype == gc.float64 and p is not x], *cell.variables]
    grads = gc.gradients(loss, wrt)
    assert all(g is not None for g in grads)
    results = {}
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            sess.run(gc.global_variables_initializer())
            load_weights(sess, data, np.float64)
            results[target] = sess.run(grads, feed)
            if target == "reference":
                values = {v: sess.run(v) for v in cell.variables}
                for t, g in zip(wrt, results[target]):
                    base = feed[t] if t in feed else values[t]
                    for idx in rng.choice(base.size, size=min(5, base.size), replace=False):
                        fd = central_difference(sess, loss, feed, t, base, idx)
                        np.testing.assert_allclose(
                            g.reshape(-1)[idx], fd, rtol=1e-5, atol=1e-7,
                            err_msg=f"d/d {t.name}[{idx}]",
                        )  # fmt: skip
    for a, b in zip(results["reference"], results["cpu"]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    if name == "dyn_lstm":  # lengths [5, 2, 0]: no gradient reaches inputs past a row's end
        dx = results["cpu"][0]
        assert not dx[1, 2:].any() and not dx[2].any()


def test_errors_name_the_line():
    x = gc.placeholder(gc.float32, (None, None, 3))
    with pytest.raises(ValueError, match="give the state's dtype.*test_dynamic_rnn.py"):
        gc.nn.dynamic_rnn(rc.GRUCell(2), x)
    with pytest.raises(ValueError, match="known depth"):
        gc.nn.dynamic_rnn(rc.GRUCell(2), gc.placeholder(gc.float32, (2, 3)), dtype=gc.float32)
    with pytest.raises(TypeError, match="inputs are float32 but the state is float64"):
        gc.nn.dynamic_rnn(rc.GRUCell(2), x, dtype=gc.float64)
    with pytest.raises(ValueError, match="3 entries for a batch of 2"):
        gc.nn.dynamic_rnn(
            rc.GRUCell(2), gc.zeros((2, 4, 3)), sequence_length=[1, 2, 3], dtype=gc.float32
        )
    with pytest.raises(ValueError, match="initial_state"):
        gc.nn.dynamic_rnn(rc.LSTMCell(2), x, initial_state=gc.zeros((2, 2)))
    with pytest.raises(TypeError, match="gc.nn.rnn_cell cell"):
        gc.nn.dynamic_rnn(lambda a, b: (a, b), x, dtype=gc.float32)
    gc.nn.dynamic_rnn(rc.LSTMCell(2), x, dtype=gc.float32)
    with pytest.raises(ValueError, match="rnn/lstm_cell/kernel already exists"):
        gc.nn.dynamic_rnn(rc.LSTMCell(2), x, dtype=gc.float32)  # TF1 refuses it too
    out, _ = gc.nn.dynamic_rnn(rc.LSTMCell(2), x, dtype=gc.float32, scope="second")
    assert "second/lstm_cell/kernel" in [v.op.name for v in gc.global_variables()]


def test_sequence_length_of_the_wrong_size_fails_at_run_time():
    x = gc.placeholder(gc.float32, (None, None, 3))
    lengths = gc.placeholder(gc.int32, (None,))
    out, _ = gc.nn.dynamic_rnn(rc.GRUCell(2), x, sequence_length=lengths, dtype=gc.float32)
    feed = {x: np.zeros((2, 3, 3), np.float32), lengths: np.array([1, 2, 3], np.int32)}
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            sess.run(gc.global_variables_initializer())
            with pytest.raises(gc.errors.InvalidArgumentError):
                sess.run(out, feed)


class MinimalRNNCell(rc.RNNCell):
    """A cell written against TF1's subclassing interface: h' = tanh(x W + h U)."""

    def __init__(self, units):
        super().__init__()
        self.units = units

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def build(self, inputs_shape):
        self.w = self.add_variable("w", (inputs_shape[1], self.units))
        self.u = self.add_variable(
            "u", (self.units, self.units), initializer=gc.initializers.identity()
        )

    def call(self, inputs, state):
        h = gc.tanh(gc.matmul(inputs, self.w) + gc.matmul(state, self.u))
        return h, h


@pytest.mark.parametrize("target", TARGETS)
def test_a_cell_written_by_the_user(target):
    x = gc.placeholder(gc.float64, (None, None, 2))
    cell = MinimalRNNCell(3)
    outputs, final = gc.nn.dynamic_rnn(cell, x, dtype=gc.float64)
    assert [v.op.name for v in cell.variables] == [
        "rnn/minimal_rnn_cell/w",
        "rnn/minimal_rnn_cell/u",
    ]
    (dw,) = gc.gradients(gc.reduce_sum(final), [cell.w])
    xs = np.random.default_rng(2).normal(size=(2, 4, 2))
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        out, fin, g, w, u = sess.run([outputs, final, dw, cell.w, cell.u], {x: xs})
        loss = lambda: sess.run(gc.reduce_sum(final), {x: xs})  # noqa: E731
        w2 = w.copy()
        w2[1, 2] += 1e-6
        cell.w.load(w2, sess)
        up = loss()
        w2[1, 2] -= 2e-6
        cell.w.load(w2, sess)
        down = loss()
    np.testing.assert_array_equal(u, np.eye(3))
    h = np.zeros((2, 3))
    for t in range(4):
        h = np.tanh(xs[:, t] @ w + h @ u)
        np.testing.assert_allclose(out[:, t], h, rtol=1e-12)
    np.testing.assert_allclose(fin, h, rtol=1e-12)
    np.testing.assert_allclose(g[1, 2], (up - down) / 2e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="only for build"):
        cell.add_variable("late", (1,))


@pytest.mark.parametrize("target", TARGETS)
def test_dynamic_rnn_inside_a_cond_branch(target):
    """Built inside a control-flow body: the inputs are captured, the variables stay in the
    outer graph, shared with a call outside; gradients flow through the branch."""
    x = gc.placeholder(gc.float32, (None, None, 3))
    take_all = gc.placeholder(gc.bool, ())
    cell = rc.GRUCell(4)
    _, direct = gc.nn.dynamic_rnn(cell, x, dtype=gc.float32)
    state = gc.cond(
        take_all,
        lambda: gc.nn.dynamic_rnn(cell, x, dtype=gc.float32)[1],
        lambda: gc.nn.dynamic_rnn(cell, x[:, :1], dtype=gc.float32)[1],
    )
    grads = gc.gradients(gc.reduce_sum(state), cell.variables)
    assert len(gc.global_variables()) == 4
    xs = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        both, want = sess.run([state, direct], {x: xs, take_all: True})
        first = sess.run(state, {x: xs, take_all: False})
        want_first = sess.run(direct, {x: xs[:, :1]})
        g = sess.run(grads, {x: xs, take_all: True})
    np.testing.assert_allclose(both, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(first, want_first, rtol=1e-6, atol=1e-7)
    assert all(np.isfinite(a).all() and a.any() for a in g)
