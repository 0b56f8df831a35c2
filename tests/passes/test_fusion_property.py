"""Property-based: random graphs over the op set, random shapes with broadcasting, size-1
and unknown dims, lowered fused and unfused and run through the Kernel IR interpreter,
equal the reference interpreter (and the buffer plan never changes a result)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backends.reference.interpreter import run_program
from graphc.errors import InvalidArgumentError
from graphc.kernel import interp
from graphc.passes.plan import plan
from graphc.runtime_state import RunContext
from tests.kernel.helpers import assert_close, compile_kernels, run_both

UNARY = [
    gc.tanh, gc.sigmoid, gc.negative, gc.abs, gc.sin, gc.square,
    lambda t: gc.exp(gc.tanh(t)), lambda t: gc.log(1.0 + gc.abs(t)),
    lambda t: gc.sqrt(gc.abs(t)), gc.nn.relu, lambda t: gc.cast(t > 0.0, gc.float32),
]  # fmt: skip
BINARY = [
    gc.add, gc.subtract, gc.multiply, gc.maximum, gc.minimum,
    lambda a, b: a / (1.5 + gc.abs(b)),
    lambda a, b: gc.where(a > b, a, b * 2.0),
]  # fmt: skip
REDUCE = [gc.reduce_sum, gc.reduce_max, gc.reduce_mean, gc.reduce_min]

shape_st = st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=3).map(tuple)


@st.composite
def graphs(draw):
    n_feeds = draw(st.integers(1, 3))
    feeds = []
    for _ in range(n_feeds):
        shape = draw(shape_st)
        dynamic = tuple(None if draw(st.booleans()) and d != 1 else d for d in shape)
        feeds.append((shape, dynamic))
    steps = draw(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 10**6)), min_size=1,
                          max_size=10))  # fmt: skip
    fetch_picks = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=2))
    return feeds, steps, fetch_picks


def build(feeds, steps, fetch_picks, seed):
    rng = np.random.default_rng(seed)
    phs = [gc.placeholder(gc.float32, dyn) for _, dyn in feeds]
    arrays = [rng.uniform(-2, 2, shape).astype(np.float32) for shape, _ in feeds]
    pool = list(phs)
    for kind, pick in steps:
        a = pool[pick % len(pool)]
        b = pool[(pick // 7) % len(pool)]
        try:
            if kind == 0:
                out = UNARY[pick % len(UNARY)](a)
            elif kind in (1, 2):
                out = BINARY[pick % len(BINARY)](a, b)
            elif kind == 3 and a.shape:
                axis = pick % len(a.shape)
                out = REDUCE[pick % len(REDUCE)](a, axis=axis, keepdims=bool(pick & 8))
            elif kind == 4 and a.shape and len(a.shape) >= 2:
                out = gc.transpose(a)
            elif kind == 5:
                out = gc.expand_dims(a, 0) if pick & 1 else gc.reshape(a, (-1,))
            elif kind == 6 and a.shape and a.shape[-1] is not None:
                out = gc.nn.softmax(a)
            else:
                continue
        except ValueError:  # shapes that do not broadcast
            continue
        pool.append(out)
    fetches = list(dict.fromkeys(pool[p % len(pool)] for p in fetch_picks))
    return phs, arrays, fetches


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.booleans(), st.integers(0, 1000))
def test_random_graphs_fused_and_unfused_match_reference(g, fusion, seed):
    feeds, steps, fetch_picks = g
    with gc.Graph().as_default():
        phs, arrays, fetches = build(feeds, steps, fetch_picks, seed)
        prog, fplan, kp = compile_kernels(fetches, phs, fusion)
        try:
            run_program(prog, RunContext({}, {}, list(arrays)))
        except (ValueError, InvalidArgumentError):
            # unknown dims that do not broadcast at run time: the compiled program must say
            # so before running anything
            with pytest.raises(InvalidArgumentError):
                interp.run(kp, RunContext({}, {}, list(arrays)))
            return
        ref, got, _, _ = run_both(prog, kp, arrays)
        assert_close(got, ref, rtol=2e-5, atol=2e-6)
        _, planned, _, _ = run_both(prog, plan(kp), arrays)
        assert_close(planned, ref, rtol=2e-5, atol=2e-6)
        if not fusion:
            compute = [n for n in prog.nodes if n.op not in ("Feed", "Const")]
            assert len(kp.kernels) == len(compute)
        else:
            assert len(kp.kernels) <= len([n for n in prog.nodes if n.op not in ("Feed", "Const")])
