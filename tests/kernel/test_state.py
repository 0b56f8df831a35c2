"""Variables, random ops and CheckNumerics through the Kernel IR: same values and the same
effects on the run state as the reference interpreter."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import FailedPreconditionError, InvalidArgumentError
from graphc.kernel import interp
from graphc.passes.plan import plan
from graphc.runtime_state import RunContext
from tests.kernel.helpers import assert_close, compile_kernels, run_both


def _var_state(v, value):
    return {v.op.attrs["var"]: np.asarray(value, dtype=v.dtype.np)}


@pytest.mark.parametrize("fusion", [True, False])
def test_sgd_step_updates_variable_like_reference(fusion):
    w = gc.Variable(np.zeros((3, 2), np.float32), name="w")
    x = gc.placeholder(gc.float32, (None, 3))
    loss = gc.reduce_sum(gc.square(gc.matmul(x, w) - 1.0))
    (g,) = gc.gradients(loss, [w])
    step = gc.assign_sub(w, 0.1 * g)
    prog, fplan, kp = compile_kernels([loss, step], [x], fusion)
    kp = plan(kp)
    xs = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    state = _var_state(w, np.full((3, 2), 0.5))
    ref, got, ref_ctx, ctx = run_both(prog, kp, [xs], state)
    assert_close(got, ref, 1e-5, 1e-5)
    np.testing.assert_allclose(ctx.pending["w"], ref_ctx.pending["w"], rtol=1e-5, atol=1e-6)
    assert kp.var_updates and set(kp.var_reads.values()) == {"w"}


def test_in_place_update_when_nothing_reads_the_old_value_later():
    w = gc.Variable(np.ones(5, np.float32), name="w")
    g = gc.placeholder(gc.float32, (5,))
    step = gc.assign_sub(w, g * 0.5)
    prog, _, kp = compile_kernels([], [g], targets=[step.op])
    kp = plan(kp)
    upd = kp.var_updates["w"]
    assert kp.buffers[upd].alias_of == next(iter(kp.var_reads))
    assert kp.stats["in_place_updates"] == [upd]
    ctx = RunContext(_var_state(w, np.ones(5)), {}, [np.arange(5, dtype=np.float32)])
    interp.run(kp, ctx)
    np.testing.assert_allclose(ctx.pending["w"], 1 - 0.5 * np.arange(5))


def test_no_in_place_update_when_the_old_value_is_fetched_after():
    w = gc.Variable(np.ones(4, np.float32), name="w")
    step = gc.assign_add(w, gc.ones((4,)))
    with gc.control_dependencies([step]):
        after = w.read_value() * 2.0
    prog, _, kp = compile_kernels([after, w.value()], [], targets=[step.op])
    kp = plan(kp)
    ref, got, ref_ctx, ctx = run_both(prog, kp, [], _var_state(w, np.ones(4)))
    assert_close(got, ref)
    np.testing.assert_allclose(got[0], 4.0)  # read after the assignment sees the new value
    np.testing.assert_allclose(got[1], 1.0)  # the plain variable read is the old value


def test_uninitialised_variable_raises_before_running():
    w = gc.Variable(np.ones(2, np.float32), name="w")
    prog, _, kp = compile_kernels([w.value() + 1.0], [])
    with pytest.raises(FailedPreconditionError, match="w"):
        interp.run(kp, RunContext({}, {}, []))


@pytest.mark.parametrize(
    "make",
    [
        lambda: gc.random_uniform((3, 5), seed=3),
        lambda: gc.random_uniform((4,), dtype=gc.float64, seed=3),
        lambda: gc.random_normal((2, 7), seed=5),
        lambda: gc.truncated_normal((6,), dtype=gc.float64, seed=9),
    ],
)
def test_random_ops_match_reference_stream_run_after_run(make):
    r = make()
    prog, _, kp = compile_kernels([r * 2.0], [])
    for counter in (0, 1, 7):
        rng = {r.op.attrs["stream"]: counter}
        ref, got, ref_ctx, ctx = run_both(prog, kp, [], rng=rng)
        assert_close(got, ref, 1e-6, 1e-6)
        assert ctx.pending_rng == ref_ctx.pending_rng


def test_dropout_like_random_mask_with_dynamic_shape():
    x = gc.placeholder(gc.float32, (None, 4))
    keep = gc.cast(gc.random_uniform(x, seed=1) >= 0.3, gc.float32)
    y = x * keep / 0.7
    prog, _, kp = compile_kernels([y], [x])
    xs = np.ones((5, 4), np.float32)
    ref, got, _, _ = run_both(prog, kp, [xs], rng={})
    assert_close(got, ref)


@pytest.mark.parametrize("fusion", [True, False])
def test_check_numerics_reports_nan_then_inf_and_commits_nothing(fusion):
    w = gc.Variable(np.zeros(3, np.float32), name="w")
    x = gc.placeholder(gc.float32, (None,))
    y = gc.check_numerics(gc.log(x), "bad log")
    step = gc.assign_add(w, gc.reduce_sum(y) * gc.ones((3,)))
    prog, _, kp = compile_kernels([y], [x], fusion, targets=[step.op])
    kp = plan(kp)
    ok = np.array([1.0, 2.0], np.float32)
    ref, got, _, _ = run_both(prog, kp, [ok], _var_state(w, np.zeros(3)))
    assert_close(got, ref)
    for bad, what in ((np.array([-1.0, 0.0], np.float32), "NaN"),
                      (np.array([0.0, 1.0], np.float32), "Inf")):  # fmt: skip
        ctx = RunContext(_var_state(w, np.zeros(3)), {}, [bad])
        with pytest.raises(InvalidArgumentError, match=f"bad log : Tensor had {what} values"):
            interp.run(kp, ctx)
        assert not ctx.pending


def test_gather_out_of_range_index_is_an_error_not_a_crash():
    p = gc.placeholder(gc.float32, (None, 3))
    i = gc.placeholder(gc.int32, (None,))
    y = gc.gather(p, i)
    prog, _, kp = compile_kernels([y], [p, i])
    params = np.arange(12, dtype=np.float32).reshape(4, 3)
    ref, got, _, _ = run_both(prog, kp, [params, np.array([3, 0, 1], np.int32)])
    assert_close(got, ref)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        interp.run(kp, RunContext({}, {}, [params, np.array([4], np.int32)]))


def test_dynamic_broadcast_mismatch_is_caught_before_running():
    a = gc.placeholder(gc.float32, (None,))
    b = gc.placeholder(gc.float32, (None,))
    prog, _, kp = compile_kernels([a + b], [a, b])
    assert kp.dim_checks
    with pytest.raises(InvalidArgumentError, match="broadcast"):
        interp.run(kp, RunContext({}, {}, [np.ones(3, np.float32), np.ones(4, np.float32)]))
    (out,) = interp.run(kp, RunContext({}, {}, [np.ones(3, np.float32), np.ones(1, np.float32)]))
    np.testing.assert_allclose(out, 2.0)
