"""Control flow on the cuda target (graphc/backends/cuda/control.py), run by the unmodified
cuda runtime on the fake pycuda whose kernels run in the host emulation
(tests/backends/fake_pycuda.py): while_loop, cond, scan, dynamic_rnn and their gradients,
compared with the reference interpreter, and the device->host copies a loop makes counted.

This checks the host-side loop logic and the generated kernels of the bodies without a GPU;
what only a GPU shows (pycuda against a driver, timings) is not checked here.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from tests.backends import cuda_emulation as emu
from tests.backends import fake_pycuda
from tests.backends.test_cuda_runtime_emulated import fake_gpu  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(emu.available() is not None, reason=str(emu.available()))

OPTS = gc.CompileOptions(cache_dir=None)


@pytest.fixture
def dtoh(monkeypatch, fake_gpu):  # noqa: F811 - the fixture above
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
