"""gc.print and gc.debugging asserts on the reference and cpu targets: what they print, when
they fail, what the error says, and that they work as control dependencies."""

import numpy as np
import pytest

import graphc as gc

TARGETS = ["reference", "cpu"]


def _line_of(text):
    """The line number of the first line of this file containing ``text``."""
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return i
    raise AssertionError(text)


@pytest.mark.parametrize("target", TARGETS)
def test_print_is_identity_and_prints_to_stderr(target, capsys):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.print(x * 2, gc.reduce_sum(x), message="vals:")
    z = y + 1
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    with gc.Session(target=target) as sess:
        got = sess.run(z, {x: data})
        captured = capsys.readouterr()
        np.testing.assert_array_equal(got, data * 2 + 1)
        assert captured.out == ""
        assert captured.err == "vals: [[ 0.  2.  4.]\n [ 6.  8. 10.]] 15.0\n"
        # runs again on every run
        sess.run(z, {x: data[:1]})
        assert capsys.readouterr().err == "vals: [[0. 2. 4.]] 3.0\n"


def test_print_summarizes_long_axes(capsys):
    x = gc.constant(np.arange(10, dtype=np.int32))
    with gc.Session() as sess:
        sess.run(gc.print(x))
        assert capsys.readouterr().err.strip() == "[0 1 2 ... 7 8 9]"
        sess.run(gc.print(x, summarize=-1, message="all"))
        assert capsys.readouterr().err.strip() == "all [0 1 2 3 4 5 6 7 8 9]"


def test_print_not_run_when_unused(capsys):
    x = gc.placeholder(gc.float32, (2,))
    gc.print(x, message="never")
    y = x * 2
    with gc.Session(target="cpu") as sess:
        sess.run(y, {x: np.ones(2, np.float32)})
    assert "never" not in capsys.readouterr().err


@pytest.mark.parametrize("target", TARGETS)
def test_print_gradient_is_identity(target, capsys):
    x = gc.placeholder(gc.float64, (3,))
    y = gc.print(x * x, x, message="g")
    (dx,) = gc.gradients(gc.reduce_sum(y), [x])
    with gc.Session(target=target) as sess:
        got = sess.run(dx, {x: np.array([1.0, 2.0, 3.0])})
    np.testing.assert_allclose(got, [2.0, 4.0, 6.0])


def test_print_argument_errors():
    with pytest.raises(ValueError, match="at least one tensor"):
        gc.print(message="x")
    with pytest.raises(TypeError, match="message must be a str"):
        gc.print(gc.constant(1.0), message=3)


CASES = [
    # (builder, passing inputs, failing inputs, condition text)
    (lambda x, y: gc.debugging.assert_equal(x, y), ([1, 2], [1, 2]), ([1, 2], [1, 3]), "x == y"),
    (lambda x, y: gc.debugging.assert_less(x, y), ([1, 2], [2, 3]), ([1, 2], [2, 2]), "x < y"),
    (lambda x, y: gc.debugging.assert_greater(x, y), ([3, 4], [2, 3]), ([3, 1], [2, 3]), "x > y"),
    (lambda x: gc.debugging.assert_non_negative(x), ([0, 2],), ([0, -2],), "x >= 0"),
    (lambda x: gc.debugging.assert_positive(x), ([1, 2],), ([1, 0],), "x > 0"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_asserts_pass_and_fail(target, case):
    build, good, bad, text = CASES[case]
    phs = [gc.placeholder(gc.float32, (None,)) for _ in good]
    check = build(*phs)
    assert isinstance(check, gc.Operation)
    with gc.control_dependencies([check]):
        out = gc.identity(phs[0] * 2)
    as_feed = lambda vals: {p: np.array(v, np.float32) for p, v in zip(phs, vals)}  # noqa: E731
    with gc.Session(target=target) as sess:
        np.testing.assert_array_equal(sess.run(out, as_feed(good)), 2 * np.array(good[0]))
        sess.run(check, as_feed(good))
        with pytest.raises(gc.errors.InvalidArgumentError) as info:
            sess.run(out, as_feed(bad))
    msg = str(info.value)
    assert f"condition {text} did not hold" in msg
    assert f"{__file__}:" in msg and check.name in msg
    assert "first at index (1,)" in msg


@pytest.mark.parametrize("target", TARGETS)
def test_assert_message_names_user_line_and_values(target):
    x = gc.placeholder(gc.int32, (None, 2), name="counts")
    check = gc.debugging.assert_less(x, 10, message="counts too big")  # the asserted line
    line = _line_of("# the asserted line")
    with gc.Session(target=target) as sess:
        sess.run(check, {x: np.zeros((3, 2), np.int32)})
        with pytest.raises(gc.errors.InvalidArgumentError) as info:
            sess.run(check, {x: np.array([[1, 2], [3, 12]], np.int32)})
    msg = str(info.value)
    assert msg.startswith("counts too big: assert 'assert_less'")
    assert f"{__file__}:{line}" in msg
    assert "first at index (1, 1): x = 12, y = 10" in msg
    assert "(1 of 4 elements)" in msg


def test_assert_empty_tensor_passes():
    x = gc.placeholder(gc.float32, (None,))
    check = gc.debugging.assert_positive(x)
    with gc.Session(target="cpu") as sess:
        sess.run(check, {x: np.zeros(0, np.float32)})


def test_assert_build_errors_name_the_line():
    with pytest.raises(ValueError, match="not broadcastable.*test_debugging.py"):
        gc.debugging.assert_equal(gc.zeros((2, 3)), gc.zeros((4,)))
    with pytest.raises(TypeError, match="one dtype"):
        gc.debugging.assert_equal(gc.zeros((2,)), gc.zeros((2,), gc.int32))
    with pytest.raises(TypeError, match="needs numbers"):
        gc.debugging.assert_positive(gc.constant([True]))


def test_cpu_runs_asserts_on_the_host_labelled():
    x = gc.placeholder(gc.float32, (None,))
    check = gc.debugging.assert_non_negative(x)
    with gc.control_dependencies([check]):
        y = gc.sqrt(x)
    with gc.Session(target="cpu") as sess:
        exe = sess.compile(y, [x])
    assert exe.stats["host_fallback_ops"] == ["Assert"]


@pytest.mark.parametrize("target", TARGETS)
def test_print_and_assert_inside_a_while_loop(target, capsys):
    """Each iteration prints, and the assert fails the run at the iteration that breaks it."""
    x = gc.placeholder(gc.float32, (2,))

    def body(i, a):
        a = gc.print(a * 2, i, message="iter")
        check = gc.debugging.assert_less(a, 50.0, message="too big")
        with gc.control_dependencies([check]):
            return i + 1, gc.identity(a)

    _, out = gc.while_loop(lambda i, a: i < 3, body, (0, x))
    with gc.Session(target=target) as sess:
        np.testing.assert_array_equal(sess.run(out, {x: np.ones(2, np.float32)}), [8, 8])
        assert capsys.readouterr().err == "iter [2. 2.] 0\niter [4. 4.] 1\niter [8. 8.] 2\n"
        with pytest.raises(gc.errors.InvalidArgumentError, match="too big: assert 'body/"):
            sess.run(out, {x: np.full(2, 20, np.float32)})
        assert capsys.readouterr().err == "iter [40. 40.] 0\niter [80. 80.] 1\n"


def test_a_loop_with_print_and_assert_is_differentiable(capsys):
    """The loop's gradient re-runs its body: the assert checks again, the print prints again
    (backward, in reverse order)."""
    x = gc.placeholder(gc.float64, (2,))

    def body(i, a):
        a = gc.print(a * a, i, message="fwd")
        with gc.control_dependencies([gc.debugging.assert_less(a, 1e6)]):
            return i + 1, gc.identity(a)

    _, out = gc.while_loop(lambda i, a: i < 2, body, (0, x))
    (dx,) = gc.gradients(gc.reduce_sum(out), [x])
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            got = sess.run(dx, {x: np.array([1.5, -2.0])})
        np.testing.assert_allclose(got, 4 * np.array([1.5, -2.0]) ** 3)  # d(x^4)/dx
        assert capsys.readouterr().err.count("fwd") == 4  # 2 forward, 2 replayed
