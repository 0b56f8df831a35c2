"""gc.cond and gc.case forward: only the taken branch runs (assignments included), nested
structures, captures, and build errors naming the user's line."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArgumentError

from .helpers import TARGETS, line_of, run, run_both


def test_cond_picks_a_branch_at_run_time():
    p = gc.placeholder(gc.bool, (), name="p")
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    y = gc.cond(p, lambda: x * 2.0, lambda: x - 1.0)
    data = np.arange(4.0).reshape(2, 2)
    for pv, want in ((True, data * 2), (False, data - 1)):
        ref, cpu = run_both(y, {p: pv, x: data})
        np.testing.assert_allclose(cpu, want)


def test_cond_structures_and_strict():
    p = gc.placeholder(gc.bool, (), name="p")
    a = gc.constant(1.0)
    out = gc.cond(p, lambda: {"u": (a, a + 1.0)}, lambda: {"u": (a * 5.0, a)})
    assert isinstance(out, dict) and isinstance(out["u"], tuple)
    single = gc.cond(p, lambda: [a], lambda: [a + 1.0])
    assert isinstance(single, gc.Tensor)
    kept = gc.cond(p, lambda: [a], lambda: [a + 1.0], strict=True)
    assert isinstance(kept, list)
    for target in TARGETS:
        assert run(out, {p: False}, target) == {"u": (5.0, 1.0)}
        assert run(single, {p: False}, target) == 2.0


def test_only_the_taken_branch_runs_its_assignments():
    v = gc.Variable(0.0, name="v")
    p = gc.placeholder(gc.bool, (), name="p")
    y = gc.cond(p, lambda: v.assign_add(1.0), lambda: v.assign_sub(10.0))
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            sess.run(gc.global_variables_initializer())
            sess.run(y, {p: True})
            sess.run(y, {p: True})
            assert sess.run(v) == 2.0
            sess.run(y, {p: False})
            assert sess.run(v) == -8.0


def test_a_failing_check_in_the_branch_not_taken_does_not_fire():
    x = gc.placeholder(gc.float32, (), name="x")
    safe = gc.cond(x > 0.0, lambda: gc.check_numerics(gc.log(x), "log of x"), lambda: x)
    for target in TARGETS:
        assert run(safe, {x: -1.0}, target) == -1.0
        with pytest.raises(InvalidArgumentError, match="log of x"):
            run(gc.cond(x < 0.0, lambda: gc.check_numerics(gc.log(x), "log of x"),
                        lambda: x), {x: -1.0}, target)  # fmt: skip


def test_branch_shapes_merge_to_unknown_dims():
    p = gc.placeholder(gc.bool, (), name="p")
    y = gc.cond(p, lambda: gc.zeros((2, 3)), lambda: gc.ones((4, 3)))
    assert y.shape == (None, 3)
    for target in TARGETS:
        assert run(y, {p: False}, target).shape == (4, 3)


def test_cond_inside_a_while_body_and_a_while_inside_a_branch():
    x = gc.placeholder(gc.float32, (), name="x")

    def body(i, acc):
        return i + 1, gc.cond(gc.equal(i % 2, 0), lambda: acc + x, lambda: acc * 2.0)

    _, acc = gc.while_loop(lambda i, a: i < 5, body, (gc.constant(0), gc.constant(0.0)))
    loop_in_branch = gc.cond(
        x > 0.0, lambda: gc.while_loop(lambda v: v < 100.0, lambda v: v * 3.0, [x]), lambda: x
    )
    ref, cpu = run_both([acc, loop_in_branch], {x: 1.0})
    assert cpu[0] == ((1 * 2 + 1) * 2 + 1)
    assert cpu[1] == 243.0


def test_case_first_true_default_and_exclusive():
    x = gc.placeholder(gc.int32, (), name="x")
    y = gc.case([(x < 0, lambda: gc.constant(-1)), (x < 10, lambda: gc.constant(1))],
                default=lambda: gc.constant(100))  # fmt: skip
    z = gc.case([(x < 0, lambda: gc.constant(-1)), (x < 10, lambda: gc.constant(1))],
                default=lambda: gc.constant(100), exclusive=True)  # fmt: skip
    last = gc.case([(x < 0, lambda: gc.constant(-1)), (x < 10, lambda: gc.constant(1))])
    single = gc.case([(x > 0, lambda: gc.constant(7))])
    for target in TARGETS:
        assert [run(y, {x: v}, target) for v in (-5, 5, 50)] == [-1, 1, 100]
        assert run(z, {x: 50}, target) == 100
        with pytest.raises(InvalidArgumentError, match="exclusive"):
            run(z, {x: -5}, target)
        # no default: the last pair runs if its predicate holds, else the run fails (TF1)
        assert [run(last, {x: v}, target) for v in (-5, 5)] == [-1, 1]
        with pytest.raises(InvalidArgumentError, match="none of the predicates is true"):
            run(last, {x: 50}, target)
        assert run(single, {x: 1}, target) == 7
        with pytest.raises(InvalidArgumentError, match="none of the predicates is true"):
            run(single, {x: -1}, target)


def test_cond_build_errors_name_the_user_line():
    a = gc.constant(1.0)
    with pytest.raises(TypeError, match="scalar bool") as exc:
        gc.cond(gc.constant([True, False]), lambda: a, lambda: a)  # L1
    assert f"test_cond.py:{line_of('# L1')}" in str(exc.value)
    with pytest.raises(TypeError, match="scalar bool"):
        gc.cond(a, lambda: a, lambda: a)
    with pytest.raises(TypeError, match="Python bool"):
        gc.cond(True, lambda: a, lambda: a)
    p = gc.placeholder(gc.bool, ())
    with pytest.raises(ValueError, match="same structure") as exc:
        gc.cond(p, lambda: (a, a), lambda: a)  # L2
    assert f"test_cond.py:{line_of('# L2')}" in str(exc.value)
    with pytest.raises(TypeError, match="float32 in true_fn but int32"):
        gc.cond(p, lambda: a, lambda: gc.constant(1))
    with pytest.raises(ValueError, match="shape"):
        gc.cond(p, lambda: gc.zeros((2,)), lambda: gc.zeros((2, 2)))
