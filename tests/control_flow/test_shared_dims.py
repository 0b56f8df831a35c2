"""Loop bodies compiled with shared size symbols (graphc/backends/cpu/body_dims.py): the
batch size of every loop variable and per-step slice is one run-time size, so a gradient
body has no run-time SumToShape and fuses; results still match the reference interpreter
and central differences; sizes that differ at run time run the plain body (or fail as
before, with the same clear error)."""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu import loop_bodies
from graphc.errors import InvalidArgumentError
from tests.control_flow.helpers import line_of, numeric_grad, run, run_both


def _lstm_step(dtype=gc.float64):
    """A small LSTM over x [None batch, None time, 3] with its gradients: (x, loss, grads)."""
    x = gc.placeholder(dtype, (None, None, 3), name="x")
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((3 + 4, 16)) * 0.4).astype(dtype.np)
    cell = gc.nn.rnn_cell.LSTMCell(4, initializer=lambda shape, dtype: gc.constant(w))
    outputs, state = gc.nn.dynamic_rnn(cell, x, dtype=dtype)
    loss = gc.reduce_sum(outputs * outputs) + gc.reduce_sum(gc.tanh(state.c))
    grads = gc.gradients(loss, [x, *cell.variables])
    return x, loss, grads


def _grad_body_kernels(exe) -> list:
    return [k for k in exe.kernels if "While_grad/While/body/" in k.name]


def _compile(fetches, feed):
    with gc.Session(target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        return sess.compile(fetches, feed)


def test_gradient_body_has_no_runtime_sum_to_shape(monkeypatch):
    with gc.Graph().as_default():
        x, loss, grads = _lstm_step()
        feed = {x: np.zeros((2, 3, 3))}
        shared = _grad_body_kernels(_compile([loss, *grads], feed))
        with monkeypatch.context() as m:  # the same loop with a size symbol per input
            m.setattr(loop_bodies, "share_dims", lambda *a: None)
            plain = _grad_body_kernels(_compile([loss, *grads], feed))
    assert [k.name for k in shared if "SumToShape" in k.op_types] == []
    assert any("SumToShape" in k.op_types for k in plain)
    assert len(shared) <= len(plain) - 8, (len(shared), len(plain))


@pytest.mark.parametrize("batch,steps", [(3, 4), (1, 2), (2, 1)])
def test_values_and_gradients_match_reference(batch, steps):
    with gc.Graph().as_default():
        x, loss, grads = _lstm_step()
        xs = np.random.default_rng(batch).standard_normal((batch, steps, 3))
        run_both([loss, *grads], {x: xs})


def test_gradient_matches_central_differences():
    with gc.Graph().as_default():
        x, loss, grads = _lstm_step()
        xs = np.random.default_rng(5).standard_normal((2, 3, 3))
        with gc.Session(target="cpu") as sess:
            sess.run(gc.global_variables_initializer())
            gx = sess.run(grads[0], {x: xs})
            want = numeric_grad(lambda v: sess.run(loss, {x: v}), xs)
    np.testing.assert_allclose(gx, want, rtol=1e-6, atol=1e-7)


def _scan_product():
    a = gc.placeholder(gc.float32, (None, None, 2), name="a")
    b = gc.placeholder(gc.float32, (None, None, 2), name="b")

    def step(acc, ab):
        return acc + ab[0] * ab[1]  # step-here

    out = gc.scan(step, (a, b), initializer=gc.zeros_like(a[0]))
    return a, b, out


def test_sizes_that_broadcast_run_the_plain_body():
    """a's batch 2 and b's batch 1 broadcast in the body: the guess that they are one size
    fails at the loop's entry, the body without shared dims runs."""
    with gc.Graph().as_default():
        a, b, out = _scan_product()
        rng = np.random.default_rng(1)
        feeds = [
            {a: rng.standard_normal((3, 2, 2)), b: rng.standard_normal((3, 2, 2))},
            {a: rng.standard_normal((3, 2, 2)), b: rng.standard_normal((3, 1, 2))},
        ]
        for feed in feeds:
            ref, _ = run_both(out, feed)
            np.testing.assert_allclose(
                ref, np.cumsum(feed[a] * feed[b], axis=0), rtol=1e-5, atol=1e-6
            )


def test_mismatching_sizes_raise_a_clear_error():
    with gc.Graph().as_default():
        a, b, out = _scan_product()
        feed = {a: np.ones((3, 2, 2), np.float32), b: np.ones((3, 3, 2), np.float32)}
        for target in ("reference", "cpu"):
            with pytest.raises(InvalidArgumentError) as info:
                run(out, feed, target)
        assert "broadcast" in str(info.value)
        assert f"test_shared_dims.py:{line_of('step-here')}" in str(info.value)


def test_loop_variable_that_grows_keeps_its_own_size():
    """v starts with c's size but grows each iteration: it must not share c's symbol."""
    with gc.Graph().as_default():
        c = gc.placeholder(gc.float32, (None,), name="c")
        i0 = gc.constant(0)
        _, v = gc.while_loop(
            lambda i, v: i < 3,
            lambda i, v: (i + 1, gc.concat([v * 2.0, c[:1] + gc.reduce_sum(c)], 0)),
            [i0, gc.zeros_like(c) + c],
            shape_invariants=[(), (None,)],
        )
        cs = np.array([1.0, 2.0], np.float32)
        ref, cpu = run_both(v, {c: cs})
        assert cpu.shape == (5,)


def test_sequence_lengths_share_the_batch_size():
    """dynamic_rnn with per-example lengths (a [None] input read in the body): same values
    and gradients as the reference, and the gradient body still has no SumToShape."""
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, (None, None, 3), name="x")
        lengths = gc.placeholder(gc.int32, (None,), name="lengths")
        rng = np.random.default_rng(2)
        w = rng.standard_normal((3 + 4, 16)) * 0.4
        cell = gc.nn.rnn_cell.LSTMCell(4, initializer=lambda shape, dtype: gc.constant(w))
        outputs, state = gc.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=gc.float64)
        loss = gc.reduce_sum(outputs * outputs) + gc.reduce_sum(state.h)
        grads = gc.gradients(loss, [x, *cell.variables])
        feed = {x: rng.standard_normal((3, 5, 3)), lengths: np.array([5, 2, 0], np.int32)}
        run_both([loss, *grads], feed)
        kernels = _grad_body_kernels(_compile([loss, *grads], feed))
    assert kernels and not [k.name for k in kernels if "SumToShape" in k.op_types]
