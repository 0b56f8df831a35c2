"""Learning-rate schedules, global step and gradient clipping against numpy formulas."""

import numpy as np
import pytest

import graphc as gc


def _at_steps(tensor, step, steps):
    out = []
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        for s in steps:
            step.load(s, sess)
            out.append(sess.run(tensor))
    return np.array(out)


STEPS = [0, 1, 5, 10, 11, 25, 99]


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    step = gc.train.get_or_create_global_step()
    lr = gc.train.exponential_decay(0.1, step, 10, 0.5, staircase=staircase)
    assert lr.dtype == gc.float32
    s = np.array(STEPS, np.float64)
    p = np.floor(s / 10) if staircase else s / 10
    np.testing.assert_allclose(_at_steps(lr, step, STEPS), 0.1 * 0.5**p, rtol=1e-6)


def test_exponential_decay_drives_an_optimizer():
    step = gc.train.get_or_create_global_step()
    lr = gc.train.exponential_decay(1.0, step, 1, 0.5, staircase=True)
    w = gc.Variable(0.0, dtype=gc.float32, name="w")
    train = gc.train.GradientDescentOptimizer(lr).minimize(-w, global_step=step)  # grad = -1
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(4):
            sess.run(train)
        # lr at steps 0..3: 1, 0.5, 0.25, 0.125
        assert sess.run(w) == pytest.approx(1.875)
        assert sess.run(step) == 4


def test_other_schedules():
    step = gc.train.get_or_create_global_step()
    s = np.array(STEPS, np.float64)
    inv = gc.train.inverse_time_decay(0.1, step, 10, 0.5)
    np.testing.assert_allclose(_at_steps(inv, step, STEPS), 0.1 / (1 + 0.5 * s / 10), rtol=1e-6)
    poly = gc.train.polynomial_decay(0.1, step, 20, end_learning_rate=0.01, power=2.0)
    ref = (0.1 - 0.01) * (1 - np.minimum(s, 20) / 20) ** 2 + 0.01
    np.testing.assert_allclose(_at_steps(poly, step, STEPS), ref, rtol=1e-5)
    pc = gc.train.piecewise_constant(step, [5, 20], [1.0, 0.5, 0.1])
    ref = np.where(s <= 5, 1.0, np.where(s <= 20, 0.5, 0.1))
    np.testing.assert_allclose(_at_steps(pc, step, STEPS), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="one more value"):
        gc.train.piecewise_constant(step, [5], [1.0])


def test_decay_needs_a_global_step():
    with pytest.raises(ValueError, match="global_step"):
        gc.train.exponential_decay(0.1, None, 10, 0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        gc.train.exponential_decay(0.1, gc.train.get_or_create_global_step(), 0, 0.5)


def test_clip_by_global_norm_values():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(5,))
    n = np.sqrt((a**2).sum() + (b**2).sum())
    ta, tb = gc.constant(a), gc.constant(b)
    (ca, none, cb), norm = gc.clip_by_global_norm([ta, None, tb], n / 2)
    assert none is None
    (ua, ub), unorm = gc.clip_by_global_norm([ta, tb], n * 2)  # below the limit: unchanged
    with gc.Session() as sess:
        got = sess.run([ca, cb, norm, ua, ub, unorm])
    np.testing.assert_allclose(got[0], a / 2, rtol=1e-12)
    np.testing.assert_allclose(got[1], b / 2, rtol=1e-12)
    np.testing.assert_allclose(got[2], n, rtol=1e-12)
    np.testing.assert_allclose(got[3], a, rtol=1e-12)
    np.testing.assert_allclose(got[4], b, rtol=1e-12)
    clipped_norm = np.sqrt((got[0] ** 2).sum() + (got[1] ** 2).sum())
    assert clipped_norm == pytest.approx(n / 2)


def test_clip_by_global_norm_zero_and_nonfinite():
    z = gc.constant(np.zeros(3, np.float32))
    (cz,), nz = gc.clip_by_global_norm([z], 1.0)
    x = gc.placeholder(gc.float32, (2,))
    (cx,), _ = gc.clip_by_global_norm([x], 1.0)
    with gc.Session() as sess:
        out, norm = sess.run([cz, nz])
        np.testing.assert_array_equal(out, 0)  # no 0/0
        assert norm == 0
        assert np.isnan(sess.run(cx, {x: [np.inf, 1.0]})).all()  # TF: non-finite norm -> NaN


def test_clip_by_global_norm_rejects_bad_input():
    with pytest.raises(TypeError, match="list"):
        gc.clip_by_global_norm(gc.constant([1.0]), 1.0)
    with pytest.raises(ValueError, match="not None"):
        gc.clip_by_global_norm([None], 1.0)
    with pytest.raises(TypeError, match="floating"):
        gc.clip_by_global_norm([gc.constant([1, 2])], 1.0)


def test_clip_by_norm():
    a = np.array([[3.0, 4.0], [0.3, 0.4]])
    with gc.Session() as sess:
        got = sess.run(gc.train.clip_by_norm(gc.constant(a), 1.0, axes=1))
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.3, 0.4]], rtol=1e-12)
