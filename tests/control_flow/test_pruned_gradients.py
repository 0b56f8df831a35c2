"""A loop computes only what is read (``While.body_for_needed``, ``passes/narrow.py``,
``backends/cpu/loop_invariant.py``): a gradient loop whose input gradient nobody asked for
does not compute it (its share of the per-step product goes), a loop variable nothing
reads after the loop or in a later iteration is not computed, work that is the same at
every iteration runs once; values and gradients still match the reference interpreter
and central differences."""

import numpy as np

import graphc as gc
from graphc.backends.cpu import control
from tests.control_flow.helpers import numeric_grad, run, run_both


def _lstm(want_x):
    """A small LSTM over x [batch, time, 5]; (x, loss, grads) with or without x's grad."""
    x = gc.placeholder(gc.float64, (None, None, 5), name="x")
    w = (np.random.default_rng(0).standard_normal((5 + 4, 16)) * 0.4).astype(np.float64)
    cell = gc.nn.rnn_cell.LSTMCell(4, initializer=lambda shape, dtype: gc.constant(w))
    outputs, state = gc.nn.dynamic_rnn(cell, x, dtype=gc.float64)
    loss = gc.reduce_sum(outputs * outputs) + gc.reduce_sum(gc.tanh(state.c))
    grads = gc.gradients(loss, ([x] if want_x else []) + list(cell.variables))
    return x, loss, grads


def _gemm_work(monkeypatch, fetches, feed) -> int:
    """Sum over the MatMuls of the compiled gradient loop body of K * N (its work per row
    of the batch), as the cpu target compiles it."""
    bodies = []
    init = control.ControlStep.__init__

    def spy(self, node, options, needed, compile_body, in_dims=None):
        def record(program):
            if "While_grad" in node.name:
                bodies.append(program)
            return compile_body(program)

        init(self, node, options, needed, record, in_dims)

    monkeypatch.setattr(control.ControlStep, "__init__", spy)
    run(fetches, feed, "cpu")
    work = 0
    for body in bodies:
        for n in body.nodes:
            if n.op == "MatMul":
                k, m = body.spec(n.inputs[1]).shape
                work += k * m
    return work


def test_unrequested_input_gradient_is_not_computed(monkeypatch):
    xs = np.random.default_rng(1).standard_normal((3, 4, 5))
    with gc.Graph().as_default():
        x, loss, with_x = _lstm(True)
        full = _gemm_work(monkeypatch, [loss, *with_x], {x: xs})
        want = run(with_x[1:], {x: xs}, "reference")
    with gc.Graph().as_default():
        x, loss, grads = _lstm(False)
        lean = _gemm_work(monkeypatch, [loss, *grads], {x: xs})
        _, got = run_both(grads, {x: xs})
    # the step's product g @ W^T: [16, 5 + 4] columns with dx, [16, 4] without
    assert (full, lean) == (16 * 9, 16 * 4)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gradient_without_input_gradient_matches_central_differences():
    xs = np.random.default_rng(2).standard_normal((2, 3, 5))
    with gc.Graph().as_default():
        x, loss, (gk, gb) = _lstm(False)
        bias = gc.trainable_variables()[1]
        with gc.Session(target="cpu") as sess:
            sess.run(gc.global_variables_initializer())
            got = sess.run(gb, {x: xs})
            b0 = sess.run(bias)

            def f(v):
                bias.load(v, sess)
                return sess.run(loss, {x: xs})

            want = numeric_grad(f, b0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def _two_vars(carried):
    """A loop over (i, a, b); ``carried``: a reads b (b is needed at the next step)."""
    a0 = gc.placeholder(gc.float64, (None,), name="a0")

    def body(i, a, b):
        return i + 1, (a + b if carried else a * 1.5), b * 2.0 + a

    return a0, gc.while_loop(lambda i, a, b: i < 4, body, [0, a0, a0 + 1.0])


def test_unread_loop_variable_is_not_computed_but_carried_one_is():
    v = np.array([0.5, -1.0, 2.0])
    for carried in (False, True):
        with gc.Graph().as_default():
            a0, (_, a, b) = _two_vars(carried)
            _, cpu_a = run_both(a, {a0: v})  # b unread (read by a when carried)
            ref_ab, _ = run_both([a, b], {a0: v})
            np.testing.assert_allclose(cpu_a, ref_ab[0], rtol=1e-12)


def test_unread_variable_passes_its_input_through(monkeypatch):
    with gc.Graph().as_default():
        a0, (_, a, b) = _two_vars(False)
        steps = []
        init = control.ControlStep.__init__

        def spy(self, *args, **kw):
            init(self, *args, **kw)
            steps.append(self)

        monkeypatch.setattr(control.ControlStep, "__init__", spy)
        run(a, {a0: np.ones(2)}, "cpu")
    (step,) = steps
    body = step.outputs["body"]
    assert body.src is not None and body.src[2] == -3  # b returns input 2, not b * 2 + a
    assert len(body.program.fetches) == 3  # i, a, the condition: nothing computes b


def test_narrowed_product_outside_loops():
    """concat([x, h]) @ W where only dh is read: the gradient multiplies by W's h rows."""
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, (None, 3), name="x")
        h = gc.placeholder(gc.float64, (None, 2), name="h")
        w = gc.constant(np.random.default_rng(3).standard_normal((5, 4)))
        loss = gc.reduce_sum(gc.tanh(gc.matmul(gc.concat([x, h], 1), w)))
        (dh,) = gc.gradients(loss, [h])
        feed = {x: np.ones((2, 3)), h: np.full((2, 2), 0.5)}
        run_both(dh, feed)
        with gc.Session(target="cpu") as sess:
            exe = sess.compile([dh], feed)
    assert not any("SplitLike" in k.op_types for k in exe.kernels)


def test_loop_invariant_work_runs_once_and_matches():
    with gc.Graph().as_default():
        xs = gc.placeholder(gc.float32, (None, 3), name="xs")
        w = gc.placeholder(gc.float32, (3, 3), name="w")

        def step(acc, x):
            return acc + gc.matmul(gc.expand_dims(x, 0), gc.transpose(w) * 2.0)[0]

        out = gc.scan(step, xs, initializer=gc.zeros((3,), gc.float32))
        rng = np.random.default_rng(4)
        feed = {xs: rng.standard_normal((5, 3)).astype(np.float32),
                w: rng.standard_normal((3, 3)).astype(np.float32)}  # fmt: skip
        run_both(out, feed)
        empty = {xs: np.zeros((0, 3), np.float32), w: feed[w]}
        run_both(out, empty)
        with gc.Session(target="cpu") as sess:
            exe = sess.compile([out], feed)
    names = [k.name for k in exe.kernels]
    assert any("/prologue/" in n for n in names), names


def test_unrequested_weight_gradient_accumulator_is_dead(monkeypatch):
    """Only the kernel's gradient: the bias's accumulator (a loop variable of the gradient
    loop) is read by nothing, so the gradient body passes it through."""
    xs = np.random.default_rng(6).standard_normal((2, 3, 5))
    with gc.Graph().as_default():
        x, loss, _ = _lstm(False)
        kernel, bias = gc.trainable_variables()
        (gk,) = gc.gradients(loss, [kernel])
        steps = []
        init = control.ControlStep.__init__

        def spy(self, node, *args, **kw):
            init(self, node, *args, **kw)
            if "While_grad" in node.name:
                steps.append(self)

        monkeypatch.setattr(control.ControlStep, "__init__", spy)
        _, got = run_both(gk, {x: xs})
        with_bias, _ = run(gc.gradients(loss, [kernel, bias]), {x: xs}, "cpu")
    step = steps[0]  # the program fetching gk only
    src = step.outputs["body"].src
    assert src is not None and any(k < 0 for k in src[: step.node.attrs["n_vars"]])
    both = steps[-1].outputs["body"].src  # with the bias's gradient read: every variable
    assert both is None or all(k >= 0 for k in both[: steps[-1].node.attrs["n_vars"]])
    np.testing.assert_allclose(got, with_bias, rtol=1e-12, atol=1e-14)
