"""Gradients through while_loop, scan (both directions), cond, and a Hessian through a
scan, against JAX's (golden_jax.npz, written by make_golden.py), float64, on the reference
and cpu targets; loops built with None dims where the case allows."""

from pathlib import Path

import numpy as np
import pytest

import graphc as gc

from .helpers import TARGETS

G = np.load(Path(__file__).with_name("golden_jax.npz"))
F64 = gc.float64


@pytest.mark.parametrize("target", TARGETS)
def test_while_loop_gradients_match_jax(target):
    x = gc.placeholder(F64, (None, 3), name="x")  # None batch dim
    w = gc.placeholder(F64, (), name="w")
    n = gc.placeholder(gc.int32, (), name="n")  # trip count fed at run time

    def body(i, y):
        return i + 1, gc.sin(y) * w + 0.1 * y * y

    _, y = gc.while_loop(lambda i, y: i < n, body, (gc.constant(0), x))
    loss = gc.reduce_sum(y * y)
    gx, gw = gc.gradients(loss, [x, w])
    with gc.Session(target=target) as sess:
        got = sess.run([loss, gx, gw], {x: G["while_x"], w: G["while_w"], n: int(G["while_n"])})
    np.testing.assert_allclose(got[0], G["while_loss"], rtol=1e-12)
    np.testing.assert_allclose(got[1], G["while_gx"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[2], G["while_gw"], rtol=1e-10)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_gradients_match_jax(target, reverse):
    elems = gc.placeholder(F64, (None, 3), name="elems")  # the scan length is a None dim
    v = gc.placeholder(F64, (3,), name="v")
    a0 = gc.placeholder(F64, (3,), name="a0")
    ys = gc.scan(lambda a, e: gc.tanh(a * v + e), elems, initializer=a0, reverse=reverse)
    last = ys[0] if reverse else ys[-1]
    loss = gc.reduce_sum(ys * ys * ys) + gc.reduce_sum(last)
    grads = gc.gradients(loss, [elems, v, a0])
    key = "scanrev" if reverse else "scan"
    feed = {elems: G["scan_elems"], v: G["scan_v"], a0: G["scan_a0"]}
    with gc.Session(target=target) as sess:
        got = sess.run([loss] + grads, feed)
    np.testing.assert_allclose(got[0], G[f"{key}_loss"], rtol=1e-12)
    for g, name in zip(got[1:], ("ge", "gv", "ga0")):
        np.testing.assert_allclose(g, G[f"{key}_{name}"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", ["pos", "neg"])
def test_cond_gradients_match_jax(target, case):
    x = gc.placeholder(F64, (None, 3), name="x")
    w = gc.placeholder(F64, (), name="w")
    y = gc.cond(gc.reduce_sum(x) > 0.0, lambda: gc.sin(x) * w, lambda: x * x * w)
    gx, gw = gc.gradients(gc.reduce_sum(y * y), [x, w])
    with gc.Session(target=target) as sess:
        got = sess.run([gx, gw], {x: G[f"cond_{case}_x"], w: G["while_w"]})
    np.testing.assert_allclose(got[0], G[f"cond_{case}_gx"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], G[f"cond_{case}_gw"], rtol=1e-10)


@pytest.mark.parametrize("target", TARGETS)
def test_hessian_through_a_scan_matches_jax(target):
    e = gc.placeholder(F64, (3,), name="e")
    last = gc.foldl(lambda a, x: gc.sin(a * x) + x, e, initializer=gc.constant(0.5, F64))
    (h,) = gc.hessians(last * last, [e])
    with gc.Session(target=target) as sess:
        got = sess.run(h, {e: G["hess_x"]})
    np.testing.assert_allclose(got, G["hess_h"], rtol=1e-9, atol=1e-12)
