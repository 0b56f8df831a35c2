"""Control flow on the cuda target (graphc/backends/cuda/control.py), run by the unmodified
cuda runtime on the fake pycuda whose kernels run in the host emulation
(tests/backends/fake_pycuda.py): while_loop, cond, scan, dynamic_rnn and their gradients,
compared with the reference interpreter, and the device->host copies a loop makes counted.

This checks the host-side loop logic and the generated kernels of the bodies without a GPU;
what only a GPU shows (pycuda against a driver, timings) is not checked here.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import graphc as gc
from tests.backends import cuda_emulation as emu
from tests.backends import fake_pycuda
from tests.backends.test_cuda_runtime_emulated import fake_gpu  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(emu.available() is not None, reason=str(emu.available()))

OPTS = gc.CompileOptions(cache_dir=None)


@pytest.fixture
def gpu(monkeypatch, fake_gpu):  # noqa: F811 - the fixture above
    """fake_gpu, with backends/cuda/control.py imported afresh over its runtime module."""
    monkeypatch.delitem(sys.modules, "graphc.backends.cuda.control", raising=False)
    yield fake_gpu
    monkeypatch.delitem(sys.modules, "graphc.backends.cuda.control", raising=False)


@pytest.fixture
def dtoh(monkeypatch, gpu):
    """The emulated memcpy_dtoh calls, as (bytes,) per call, while the fixture is active."""
    calls: list = []
    real = fake_pycuda.memcpy_dtoh

    def counting(dest, src):
        calls.append(dest.nbytes)
        real(dest, src)

    monkeypatch.setattr(fake_pycuda, "memcpy_dtoh", counting)
    return calls


def run_on(graph, fetches, feed, target, init=False):
    with gc.Session(graph=graph, target=target, options=OPTS) as s:
        if init:
            s.run(gc.global_variables_initializer())
        return s.run(fetches, feed), s


def compare(graph, fetches, feed=None, init=False, rtol=1e-5, atol=1e-6):
    """Runs on the reference and the (emulated) cuda target; returns the cuda results."""
    want, _ = run_on(graph, fetches, feed, "reference", init)
    got, _ = run_on(graph, fetches, feed, "cuda", init)
    for w, g in zip(_leaves(want), _leaves(got)):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got


def _leaves(x):
    if isinstance(x, list | tuple):
        return [v for item in x for v in _leaves(item)]
    return [x]


def test_while_loop_data_dependent_trips_reads_one_flag_per_iteration(dtoh):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 3))
        limit = gc.placeholder(gc.float32, ())

        def body(i, v):
            return i + 1, v * 1.5 + 0.25

        i, v = gc.while_loop(lambda i, v: gc.reduce_sum(v) < limit, body,
                             [gc.constant(0), x])  # fmt: skip
    a = np.linspace(0.1, 0.6, 6, dtype=np.float32).reshape(2, 3)
    for lim in (40.0, 1.0):  # 5 trips, then zero trips
        before = len(dtoh)
        got = compare(g, [i, v], {x: a, limit: np.float32(lim)})
        cuda_reads = len(dtoh) - before
        trips = int(got[0])
        assert trips == (6 if lim == 40.0 else 0)
        # the reference reads nothing from the device: every copy counted is cuda's, one
        # one-byte flag per condition evaluated (trips + 1) and the two fetches
        assert cuda_reads <= trips + 1 + 2, dtoh[before:]
        assert all(n <= 6 * 4 for n in dtoh[before:])


def test_maximum_iterations_and_nested_loops(gpu):
    g = gc.Graph()
    with g.as_default():
        w = gc.placeholder(gc.float32, (None,))
        m = gc.placeholder(gc.int32, ())
        capped = gc.while_loop(lambda i: i < 100, lambda i: i + 1, [gc.constant(0)],
                               maximum_iterations=m)  # fmt: skip

        def outer(i, acc):
            def inner(j, a):
                return j + 1, a + w * 0.5  # captures from two levels up

            _, a = gc.while_loop(lambda j, a: j < i, inner, (gc.constant(0), acc))
            return i + 1, a

        _, acc = gc.while_loop(lambda i, a: i < 4, outer, (gc.constant(0), gc.zeros_like(w)))
    for trips in (0, 7):
        got = compare(g, [capped, acc], {w: np.array([2.0, 4.0, 6.0], np.float32), m: trips})
        assert int(got[0]) == trips
        np.testing.assert_allclose(got[1], np.array([2.0, 4.0, 6.0]) * 0.5 * 6)


def test_cond_runs_only_the_taken_branch(gpu):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 4))
        p = gc.placeholder(gc.bool, ())
        y = gc.cond(p, lambda: gc.nn.softmax(x * 2.0), lambda: gc.tanh(x) - 1.0)
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        exe = s.compile(y, [x, p])
        (step,) = [st for st in exe.runner.steps if st[0] == "control"]
        branches = step[2].runners

        def launches(attr):
            return sum(len(fn.launches) for fn in branches[attr].functions.values())

        for pred in (True, False, True):
            before = {attr: launches(attr) for attr in ("then", "else")}
            want, _ = run_on(g, y, {x: a, p: pred}, "reference")
            np.testing.assert_allclose(s.run(y, {x: a, p: pred}), want, rtol=1e-5, atol=1e-6)
            taken, other = ("then", "else") if pred else ("else", "then")
            assert launches(taken) > before[taken] and launches(other) == before[other]
        assert exe.stats["host_fallback_ops"] == ["If"]


def _lstm(batch_dim=None):
    """A small LSTM over x [batch, time, 5] (float64): (x, loss, outputs, grads)."""
    x = gc.placeholder(gc.float64, (batch_dim, None, 5), name="x")
    w = (np.random.default_rng(0).standard_normal((5 + 4, 16)) * 0.4).astype(np.float64)
    cell = gc.nn.rnn_cell.LSTMCell(4, initializer=lambda shape, dtype: gc.constant(w))
    outputs, state = gc.nn.dynamic_rnn(cell, x, dtype=gc.float64)
    loss = gc.reduce_sum(outputs * outputs) + gc.reduce_sum(gc.tanh(state.c))
    grads = gc.gradients(loss, [x] + list(cell.variables))
    return x, loss, outputs, grads


def test_dynamic_rnn_lstm_forward_and_gradient_copy_nothing_back_per_step(dtoh):
    """A scan's trip count is known: no device->host copy at all inside the loops; only the
    fetches come back. Several batch sizes (None dims) and sequence lengths, zero steps
    included, on one compiled executable."""
    g = gc.Graph()
    with g.as_default():
        x, loss, outputs, grads = _lstm()
    fetches = [loss, outputs, *grads]
    rng = np.random.default_rng(1)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        s.run(gc.global_variables_initializer())
        for batch, steps in ((3, 6), (1, 2), (2, 0)):
            xs = rng.standard_normal((batch, steps, 5))
            want, _ = run_on(g, fetches, {x: xs}, "reference", init=True)
            before = len(dtoh)
            got = s.run(fetches, {x: xs})
            # the fetches (a 0-byte one copies nothing) and the predicates of dynamic_rnn's
            # two If ops (time-major or not: one byte each, once a run), whatever the steps
            reads = dtoh[before:]
            assert len(reads) <= len(fetches) + 2 and reads.count(1) == 2, reads
            for a, b in zip(got, want):
                assert np.shape(a) == np.shape(b)
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
        assert s.cache_info()["compiles"] == 2  # the initialiser and the step
