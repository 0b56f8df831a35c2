"""Fixtures the training-step workload tests share (W9, W10): the module's workload
(``WORKLOAD = "W9"`` in the test module) built at its quick sizes, and one step of it run on
a target, for comparing the fused cpu step with the reference interpreter."""

import numpy as np
import pytest

import graphc as gc
from graphc.bench.suite import WORKLOADS


@pytest.fixture(scope="module")
def quick(request):
    """(workload, sizes, inputs, case) of the test module's ``WORKLOAD``, quick sizes, seed 0."""
    w = WORKLOADS[request.module.WORKLOAD]
    sizes = w.sizes(quick=True)
    inputs = w.inputs(sizes, np.random.default_rng(0))
    return w, sizes, inputs, w.build(sizes, inputs)


def _one_step(case, target):
    """The loss of one step of ``case`` on ``target`` (fused, no disk cache), then every
    variable after it."""
    opts = gc.CompileOptions(fusion=True, cache_dir=None)
    with gc.Session(graph=case.graph, target=target, options=opts) as sess:
        sess.run(case.init)
        loss = sess.run(case.run_fetches, case.feeds[0])[0]
        return [np.asarray(loss), *sess.run(case.variables)]


@pytest.fixture
def one_step():
    """``one_step(case, target)``: see ``_one_step``."""
    return _one_step
