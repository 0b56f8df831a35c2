"""Helpers of the pass tests: build a Program from a graph function, run it, inspect it."""

from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.backends.reference.interpreter import run_program
from graphc.program import extract
from graphc.runtime_state import RunContext


def program_of(fetches, feeds=(), targets=()):
    """The Program Session would extract for ``fetches`` given the ``feeds`` placeholders."""
    fetches = list(fetches) if isinstance(fetches, list | tuple) else [fetches]
    return extract(fetches, list(targets), list(feeds))


def evaluate(program, feed_values=(), variables=None):
    """Run ``program`` with the reference interpreter; returns (fetched arrays, variables)."""
    variables = dict(variables or {})
    ctx = RunContext(variables, {}, [np.asarray(v) for v in feed_values])
    out = run_program(program, ctx)
    ctx.commit()
    return out, variables


def op_types(program) -> list:
    return [n.op for n in program.nodes]


def count(program, op) -> int:
    return sum(1 for n in program.nodes if n.op == op)


def fetched_node(program, k=0):
    return program.node(program.fetches[k][0])


def assert_same_values(before, after, rtol=1e-6, atol=1e-9):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        assert a.shape == b.shape, (a.shape, b.shape)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True)


def placeholder(shape, dtype=gc.float64, name=None):
    return gc.placeholder(dtype, shape, name=name)
