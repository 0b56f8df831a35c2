"""A reshape of a feed or a constant is read in place (``kernel/copies.py``): the copy kernel
goes and its readers read the fed buffer; reshapes of values kernels write (temporaries,
variables) and fetched reshapes keep their copy. Values equal numpy / the reference."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.kernel import interp
from graphc.kernel.copies import elide_reshape_copies
from graphc.runtime_state import RunContext

from .helpers import compile_kernels

OPTS = gc.CompileOptions(cache_dir=None)


def _reshape_kernels(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("kernel ") and
               line.endswith("# Reshape"))  # fmt: skip


@pytest.mark.parametrize("t,b", [(4, 3), (1, 5), (3, 1), (0, 2)])
def test_reshaped_feed_is_read_in_place(t, b):
    x = gc.placeholder(gc.float32, (None, None, 8))
    w = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    y = gc.matmul(gc.reshape(x, (-1, 8)), gc.constant(w))
    a = np.random.default_rng(1).standard_normal((t, b, 8)).astype(np.float32)
    with gc.Session(target="cpu", options=OPTS) as sess:
        got = sess.run(y, {x: a})
        text = sess.compile(y, [x]).dump_ir("kernel")
    np.testing.assert_allclose(got, a.reshape(-1, 8) @ w, rtol=1e-5, atol=1e-5)
    assert _reshape_kernels(text) == 0, text
    assert "call gemm(in0," in text, text


def test_fetched_reshape_and_reshaped_temporaries_keep_their_values():
    x = gc.placeholder(gc.float32, (None, 6))
    w = np.random.default_rng(0).standard_normal((6, 6)).astype(np.float32)
    r = gc.reshape(x, (-1, 3))  # fetched: its own array
    p = gc.matmul(x, gc.constant(w))  # a temporary written by a kernel
    q = gc.reduce_sum(gc.reshape(p, (-1, 2)) * 2.0, axis=1)
    a = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    with gc.Session(target="cpu", options=OPTS) as sess:
        got_r, got_q = sess.run([r, q], {x: a})
    np.testing.assert_array_equal(got_r, a.reshape(-1, 3))
    np.testing.assert_allclose(got_q, ((a @ w).reshape(-1, 2) * 2).sum(1), rtol=1e-5, atol=1e-5)
    got_r[0, 0] = 123.0  # the fetched reshape is not the caller's feed
    assert a[0, 0] != 123.0


def test_reshape_of_a_variable_updated_in_the_same_run():
    v0 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    v = gc.Variable(v0, name="v")
    w = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    y = gc.matmul(gc.reshape(v, (-1, 4)), gc.constant(w))
    with gc.control_dependencies([y]):
        upd = gc.assign(v, v * 2.0)
    with gc.Session(target="cpu", options=OPTS) as sess:
        sess.run(gc.global_variables_initializer())
        got, _ = sess.run([y, upd])
        again = sess.run(y)
    np.testing.assert_allclose(got, v0.reshape(-1, 4) @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(again, (2 * v0).reshape(-1, 4) @ w, rtol=1e-5, atol=1e-5)


def test_the_pass_on_kernel_ir_matches_the_interpreter():
    x = gc.placeholder(gc.float32, (None, None, 8))
    w = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    y = gc.matmul(gc.reshape(x, (-1, 8)), gc.constant(w))
    z = gc.reshape(x, (-1, 4)) + 1.0
    _, _, kp = compile_kernels([y, z], [x], fusion=False)
    after = elide_reshape_copies(kp)
    assert len(after.kernels) < len(kp.kernels)
    assert elide_reshape_copies(after) is after  # nothing left to drop: unchanged
    a = np.random.default_rng(1).standard_normal((3, 2, 8)).astype(np.float32)
    want = interp.run(kp, RunContext({}, {}, [a]))
    got = interp.run(after, RunContext({}, {}, [a]))
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


def test_variable_updates_written_out_of_place_match_the_reference():
    """An optimizer step the planner would update in place (a private copy of each variable
    per run on the cpu) writes its new values to arrays of their own: values equal the
    reference's over several steps, and a value fetched earlier is not changed by later
    steps."""
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 8))
    w = gc.Variable(rng.standard_normal((8, 4)).astype(np.float32), name="w")
    loss = gc.reduce_mean(gc.square(gc.matmul(x, w)))
    step = gc.train.AdamOptimizer(0.1).minimize(loss)
    init = gc.global_variables_initializer()
    a = rng.standard_normal((5, 8)).astype(np.float32)
    ref = gc.Session(target="reference")
    ref.run(init)
    with gc.Session(target="cpu", options=OPTS) as sess:
        sess.run(init)
        text = sess.compile([loss, step], [x]).dump_ir("kernel")
        first = sess.run(w)
        kept = first.copy()
        for _ in range(3):
            got = sess.run([loss, step], {x: a})[0]
            want = ref.run([loss, step], {x: a})[0]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sess.run(w), ref.run(w), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(first, kept)
    assert " var " in text and "alias_of=var" not in text, text
