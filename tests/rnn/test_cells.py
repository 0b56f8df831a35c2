"""gc.nn.rnn_cell against TF1 (golden values of make_golden.py: same weights, same inputs) on
the reference and cpu targets; gradients against central differences; names, shapes and
errors."""

import numpy as np
import pytest

import graphc as gc
from graphc.rnn import nest
from tests.rnn.golden import CELL_CASES, case, leaves, load_weights, make_cell, spec_of

rc = gc.nn.rnn_cell
TARGETS = ["reference", "cpu"]


def build_two_steps(data, dtype=gc.float32):
    """The case's cell applied twice, from placeholders; (cell, x1, x2, state leaves, o1, o2,
    final state leaves)."""
    cell = make_cell(spec_of(data))
    depth = data["x1"].shape[1]
    x1 = gc.placeholder(dtype, (None, depth), name="x1")
    x2 = gc.placeholder(dtype, (None, depth), name="x2")
    sizes = nest.flatten(cell.state_size)
    s0 = [gc.placeholder(dtype, (None, n), name=f"s{i}") for i, n in enumerate(sizes)]
    o1, s1 = cell(x1, nest.pack_sequence_as(cell.state_size, s0))
    o2, s2 = cell(x2, s1)
    return cell, x1, x2, s0, o1, o2, nest.flatten(s2)


def central_difference(sess, loss, feed, t, base, idx, eps=1e-6):
    """(loss(t + eps e_idx) - loss(t - eps e_idx)) / 2 eps; ``t`` a fed placeholder or a
    variable (loaded, then restored to ``base``)."""
    out = []
    for delta in (eps, -eps):
        flat = base.reshape(-1).copy()
        flat[idx] += delta
        value = flat.reshape(base.shape)
        if t in feed:
            out.append(sess.run(loss, {**feed, t: value}))
        else:
            t.load(value, sess)
            out.append(sess.run(loss, feed))
            t.load(base, sess)
    return (out[0] - out[1]) / (2 * eps)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", CELL_CASES)
def test_cell_matches_tf1(name, target):
    data = case(name)
    cell, x1, x2, s0, o1, o2, s2 = build_two_steps(data)
    # TF1's variable names, in TF1's creation order
    assert [v.op.name for v in cell.variables] == [str(n) for n in data["var_names"]]
    feed = {x1: data["x1"], x2: data["x2"], **dict(zip(s0, leaves(data, "state0_")))}
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        load_weights(sess, data)
        got = sess.run([o1, o2, *s2], feed)
    want = [data["o1"], data["o2"], *leaves(data, "state2_")]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["lstm", "gru", "multi", "basic_rnn"])
def test_cell_gradients_match_finite_differences(name):
    """d(loss)/d(weights, inputs, state) of two steps, float64: the reference's gradients
    equal central differences, and (stacked LSTM + GRU) the cpu target's equal those."""
    data = case(name)
    cell, x1, x2, s0, o1, o2, s2 = build_two_steps(data, gc.float64)
    rng = np.random.default_rng(0)
    loss = gc.reduce_sum(o2 * rng.normal(size=(1, cell.output_size)))
    for s in s2:
        loss = loss + gc.reduce_sum(s * s) * 0.5
    wrt = [x1, s0[0], *cell.variables]
    grads = gc.gradients(loss, wrt)
    feed = {x1: data["x1"], x2: data["x2"], **dict(zip(s0, leaves(data, "state0_")))}
    feed = {k: v.astype(np.float64) for k, v in feed.items()}
    got_cpu = None
    if name == "multi":  # (an LSTM and a GRU; each cpu compile costs seconds)
        with gc.Session(target="cpu") as sess:
            sess.run(gc.global_variables_initializer())
            load_weights(sess, data, np.float64)
            got_cpu = sess.run(grads, feed)
    # differences on the reference target (nothing to compile per run)
    with gc.Session(target="reference") as sess:
        sess.run(gc.global_variables_initializer())
        load_weights(sess, data, np.float64)
        got = sess.run(grads, feed)
        for g, c in zip(got, got_cpu or []):
            np.testing.assert_allclose(c, g, rtol=1e-9, atol=1e-12)
        values = {v: sess.run(v) for v in cell.variables}
        for t, g in zip(wrt, got):
            base = feed[t] if t in feed else values[t]
            for idx in rng.choice(base.size, size=min(6, base.size), replace=False):
                fd = central_difference(sess, loss, feed, t, base, idx)
                np.testing.assert_allclose(
                    g.reshape(-1)[idx], fd, rtol=1e-5, atol=1e-7, err_msg=f"d/d {t.name}[{idx}]"
                )


def test_state_size_output_size_and_zero_state():
    x = gc.placeholder(gc.float32, (None, 3))
    lstm, gru, basic = rc.LSTMCell(4), rc.GRUCell(5), rc.BasicRNNCell(2)
    multi = rc.MultiRNNCell([rc.LSTMCell(3), rc.GRUCell(6)])
    assert lstm.state_size == rc.LSTMStateTuple(4, 4) and lstm.output_size == 4
    assert rc.LSTMCell(4, state_is_tuple=False).state_size == 8
    assert gru.state_size == 5 and basic.output_size == 2
    assert multi.state_size == (rc.LSTMStateTuple(3, 3), 6) and multi.output_size == 6
    z = lstm.zero_state(gc.shape(x)[0], gc.float32)
    assert isinstance(z, rc.LSTMStateTuple) and z.c.shape == (None, 4) and z.dtype == gc.float32
    zs = multi.zero_state(7, gc.float64)
    assert zs[0].h.shape == (7, 3) and zs[1].shape == (7, 6) and zs[1].dtype == gc.float64
    with gc.Session(target="cpu") as sess:
        got = sess.run(z, {x: np.full((5, 3), np.nan, np.float32)})
    assert got.c.shape == (5, 4) and not got.c.any() and not got.h.any()
    with pytest.raises(ValueError, match="computed at run time"):
        lstm.zero_state(gc.reduce_sum(gc.shape(x)), gc.float32)


def test_variable_names_follow_tf1_scopes():
    x = gc.placeholder(gc.float32, (None, 3))
    a, b = rc.LSTMCell(4), rc.LSTMCell(4)
    a(x, a.zero_state(2, gc.float32))
    b(x, b.zero_state(2, gc.float32))
    c = rc.GRUCell(2)
    c(x, c.zero_state(2, gc.float32), scope="decoder")
    basic = rc.BasicLSTMCell(2, name="mine")
    basic(x, basic.zero_state(2, gc.float32))
    names = [v.op.name for v in gc.global_variables()]
    assert names == [
        "lstm_cell/kernel", "lstm_cell/bias", "lstm_cell_1/kernel", "lstm_cell_1/bias",
        "decoder/gates/kernel", "decoder/gates/bias", "decoder/candidate/kernel",
        "decoder/candidate/bias", "mine/kernel", "mine/bias",
    ]  # fmt: skip
    assert [v.shape for v in a.variables] == [(7, 16), (16,)]
    assert len(gc.trainable_variables()) == len(names)


def test_second_call_reuses_weights():
    x = gc.placeholder(gc.float32, (None, 3))
    cell = rc.GRUCell(3)
    o1, s1 = cell(x, cell.zero_state(gc.shape(x)[0], gc.float32))
    o2, _ = cell(x, s1)
    assert len(gc.global_variables()) == 4
    with gc.Session(target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        a, b = sess.run([o1, o2], {x: np.ones((2, 3), np.float32)})
    assert a.shape == b.shape == (2, 3) and not np.allclose(a, b)


def test_default_initializers_are_tf1s():
    x = gc.placeholder(gc.float32, (None, 3))
    gc.set_random_seed(1)
    gru = rc.GRUCell(4)
    gru(x, gru.zero_state(1, gc.float32))
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        gk, gb, ck, cb = sess.run(gru.variables)
    limit = np.sqrt(6 / (7 + 8))
    assert np.abs(gk).max() <= limit and gk.std() > limit / 4
    np.testing.assert_array_equal(gb, np.ones(8, np.float32))
    np.testing.assert_array_equal(cb, np.zeros(4, np.float32))
    assert np.abs(ck).max() <= np.sqrt(6 / (7 + 4))


def test_cell_errors_name_the_line():
    x = gc.placeholder(gc.float32, (None, 3))
    cell = rc.LSTMCell(4)
    with pytest.raises(ValueError, match="state vs state_size"):
        cell(x, gc.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expected \[batch, 4\].*test_cells.py"):
        cell(x, rc.LSTMStateTuple(gc.zeros((2, 5)), gc.zeros((2, 4))))
    cell(x, cell.zero_state(2, gc.float32))
    with pytest.raises(ValueError, match="built for inputs of depth 3.*test_cells.py"):
        cell(gc.zeros((2, 5)), cell.zero_state(2, gc.float32))
    with pytest.raises(ValueError, match="known depth"):
        cell(gc.placeholder(gc.float32, (None, None)), cell.zero_state(2, gc.float32))
    with pytest.raises(TypeError, match="floating"):
        rc.GRUCell(2)(gc.zeros((2, 3), gc.int32), gc.zeros((2, 2), gc.int32))
    with pytest.raises(ValueError, match="num_units"):
        rc.BasicRNNCell(0)
    with pytest.raises(ValueError, match="same cell object"):
        rc.MultiRNNCell([cell, cell])
    with pytest.raises(ValueError, match="already exists"):
        other = rc.LSTMCell(4)
        other(x, other.zero_state(2, gc.float32), scope="lstm_cell")


def test_cells_follow_gc_variable_scope():
    """An enclosing gc.variable_scope prefixes the names; reuse=True makes a new cell share
    the weights (TF1's way of building a second graph path, e.g. a sampler); the scope's
    initializer is the kernels' default."""
    x = gc.placeholder(gc.float32, (None, None, 3))
    with gc.variable_scope("encoder", initializer=gc.initializers.constant(0.5)):
        gc.nn.dynamic_rnn(rc.GRUCell(2), x, dtype=gc.float32)
    names = [v.op.name for v in gc.global_variables()]
    assert names[0] == "encoder/rnn/gru_cell/gates/kernel" and len(names) == 4
    with gc.variable_scope("encoder", reuse=True):
        shared = rc.GRUCell(2)
        out, _ = gc.nn.dynamic_rnn(shared, x[:, :2], dtype=gc.float32)
    assert len(gc.global_variables()) == 4
    assert [v.op.name for v in shared.variables] == names
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        kernel, bias = sess.run(shared.variables[:2])
        assert sess.run(out, {x: np.ones((1, 3, 3), np.float32)}).shape == (1, 2, 2)
    assert (kernel == 0.5).all() and (bias == 1).all()  # the gate bias keeps its own
