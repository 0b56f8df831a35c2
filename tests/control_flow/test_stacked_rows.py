"""Stacked outputs of a loop whose trip count is known (scan, map_fn) are filled as the
rows come (graphc/ops/control_runtime.py ``_RowsAt``): on cpu the body writes each row
straight into the stacked array (``SubContext.into``), and a history row that is a body
input is that input (graphc/backends/cpu/control.py ``_Outputs``), not a copy."""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu import control
from graphc.backends.llvm.runtime import LLVMRunner
from graphc.errors import InvalidArgumentError
from graphc.ops.control_runtime import run_while
from tests.control_flow.helpers import run, run_both

ATTRS = {"n_vars": 1, "n_sliced": 1, "stacked": (((None,), "float64"),), "cond": None,
         "n_history": 0, "location": ("here.py", 1)}  # fmt: skip


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_rows_go_to_their_place(reverse, in_place):
    xs = np.arange(12.0).reshape(4, 3)
    offered = []

    def call(attr, feeds, iteration=None, into=None):
        acc, row = feeds
        new = acc + row
        offered.append(sorted(into or ()))
        if in_place and into:
            into[1][...] = new * 2
            return [new, into[1]]
        return [new, new * 2]

    acc, stacked = run_while(dict(ATTRS, reverse=reverse), [np.zeros(3), xs], call)
    order = xs[::-1] if reverse else xs
    want = np.cumsum(order, axis=0) * 2
    np.testing.assert_allclose(stacked, want[::-1] if reverse else want)
    np.testing.assert_allclose(acc, order.sum(0))
    assert offered == [[]] + [[1]] * 3  # from the second iteration on


def test_rows_of_different_shapes_are_refused():
    def call(attr, feeds, iteration=None, into=None):
        return [feeds[0], np.zeros(iteration + 1)]

    with pytest.raises(InvalidArgumentError, match="cannot be stacked"):
        run_while(ATTRS, [np.zeros(1), np.zeros((3, 1))], call)


def test_cpu_body_writes_stacked_rows_in_place(monkeypatch):
    x = gc.placeholder(gc.float32, (None, None, 8), name="x")
    outs = gc.scan(lambda acc, r: gc.tanh(acc * 0.5 + r), x, initializer=gc.zeros_like(x[0]))
    made = []
    real = LLVMRunner._output_array

    def counted(self, root, shape, npdt):
        made.append(root)
        return real(self, root, shape, npdt)

    xs = np.random.default_rng(0).standard_normal((40, 3, 8)).astype(np.float32)
    with gc.Session(target="cpu") as sess:
        sess.run(outs, {x: xs})
        monkeypatch.setattr(LLVMRunner, "_output_array", counted)
        got = sess.run(outs, {x: xs})
    # the body's one output is the carried value and the stacked row: a new array only on
    # the first iteration (then each iteration writes into the next row)
    assert len(made) < 10, len(made)
    want = run(outs, {x: xs}, "reference")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_history_rows_are_the_body_inputs():
    x = gc.placeholder(gc.float64, (None, None, 2), name="x")
    w = gc.Variable(np.array([[0.5, -0.2], [0.1, 0.3]]), name="w")
    outs = gc.scan(lambda h, r: gc.tanh(gc.matmul(h, w) + r), x, initializer=gc.zeros_like(x[0]))
    (gw,) = gc.gradients(gc.reduce_sum(outs * outs), [w])
    steps = []
    real = control.ControlStep.__init__

    def init(self, *a, **k):
        real(self, *a, **k)
        steps.append(self)

    control.ControlStep.__init__ = init
    try:
        xs = np.random.default_rng(1).standard_normal((5, 3, 2))
        run_both([outs, gw], {x: xs})
    finally:
        control.ControlStep.__init__ = real
    forward = [s for s in steps if "grad" not in s.node.name and s.history]
    assert forward
    body = forward[0].outputs["body"]
    assert body.src is not None and min(body.src) < 0  # an input passed through, not copied
    assert not any(body.program.node(r[0]).op == "Feed" for r in body.program.fetches)


def test_branch_passing_a_value_through_returns_the_input(monkeypatch):
    """A cond branch returning its captured input hands that array on (the runner copies
    nothing); what the Session fetches is still a copy, never the caller's array."""
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    p = gc.placeholder(gc.bool, (), name="p")
    y = gc.cond(p, lambda: x, lambda: x * 2.0)
    z = y + 1.0
    steps = []
    real = control.ControlStep.__init__

    def init(self, *a, **k):
        real(self, *a, **k)
        steps.append(self)

    monkeypatch.setattr(control.ControlStep, "__init__", init)
    xs = np.arange(6, dtype=np.float32).reshape(2, 3)
    with gc.Session(target="cpu") as sess:
        got_y, got_z = sess.run([y, z], {x: xs, p: True})
        assert not np.shares_memory(got_y, xs)
        np.testing.assert_array_equal(got_y, xs)
        np.testing.assert_array_equal(got_z, xs + 1)
        np.testing.assert_array_equal(sess.run(y, {x: xs, p: False}), xs * 2)
    for step in steps:  # one per compiled fetch list
        assert step.outputs["then"].src == [-1]  # the input itself
        assert step.outputs["else"].src is None
