"""Shared helpers of the control-flow tests: run on both targets, finite differences."""

from __future__ import annotations

import inspect

import numpy as np

import graphc as gc

TARGETS = ("reference", "cpu")


def run(fetches, feed=None, target="reference", init=True):
    """``fetches`` evaluated in a fresh session of ``target`` (variables initialised)."""
    with gc.Session(target=target) as sess:
        if init and gc.global_variables():
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feed)


def run_both(fetches, feed=None):
    """(reference result, cpu result), checking that the cpu matches the reference."""
    ref = run(fetches, feed, "reference")
    cpu = run(fetches, feed, "cpu")
    for a, b in zip(_leaves(ref), _leaves(cpu)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    return ref, cpu


def _leaves(x):
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _leaves(x[k])]
    if isinstance(x, list | tuple):
        return [v for item in x for v in _leaves(item)]
    return [x]


def numeric_grad(f, x, eps=1e-6):
    """Central differences of a scalar function ``f`` at the float64 array ``x``."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        g[i] = (f(plus) - f(minus)) / (2 * eps)
    return g


def line_of(marker: str) -> int:
    """The line number of the caller's file that contains ``marker`` (for error checks)."""
    frame = inspect.stack()[1]
    with open(frame.filename) as f:
        for i, text in enumerate(f, 1):
            if marker in text and "line_of(" not in text:
                return i
    raise AssertionError(f"marker {marker!r} not found")
