"""The cuda backend's kernel pass (graphc/backends/cuda/launch_plan.py): every kernel's launch
mapping and vectorization are decided there, recorded in ``kernel.meta``, and the renderer
only translates them (it refuses a kernel without a plan rather than deciding itself)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import graphc as gc
from graphc.backends import cuda as cuda_backend
from graphc.backends.cuda import render as R
from graphc.backends.cuda.launch_plan import (
    META_KEY,
    GemmUnit,
    KernelLaunches,
    RowsUnit,
    SerialUnit,
    ThreadsUnit,
    launches_of,
    plan_launches,
)
from graphc.errors import CompileError
from graphc.expr import Const, Load, Math, Var, i64
from graphc.kernel.ir import Buffer, Kernel, KernelProgram, Let, Loop, Store
from graphc.passes.manager import optimize
from graphc.pipeline import lower_program
from graphc.program import extract
from tests.backends import cuda_emulation as emu
from tests.backends import cuda_programs as P
from tests.backends.test_cuda_runtime_emulated import fake_gpu  # noqa: F401 - fixture

F32 = gc.float32


def _kind(unit) -> set:
    """The launch kinds a unit may render as."""
    if isinstance(unit, ThreadsUnit):
        return {"rows"} if unit.rows is not None else {"threads"}
    return {GemmUnit: {"gemm"}, RowsUnit: {"rows"}, SerialUnit: {"serial"}}[type(unit)]


def _lowered(fetch, feeds):
    options = gc.CompileOptions(cache_dir=None)
    prog = extract([fetch], [], feeds)
    return lower_program(
        optimize(prog, options).program,
        options,
        cuda_backend.REDUCTION_LAYOUT,
        cuda_backend.KERNEL_PASSES,
    ).kp


@pytest.mark.parametrize("name", sorted(P.ALL))
def test_every_kernel_has_a_plan_that_the_renderer_follows(name):
    kp = plan_launches(P.ALL[name]())
    module = R.render_program(kp)
    for k, rk in zip(kp.kernels, module.kernels):
        plan = k.meta[META_KEY]
        assert isinstance(plan, KernelLaunches) and launches_of(k) is plan
        assert len(plan.units) == len(rk.launches)
        for unit, launch in zip(plan.units, rk.launches):
            assert launch.kind in _kind(unit)
            if isinstance(unit, ThreadsUnit) and unit.rows is None:
                assert launch.vector == (unit.vector.width if unit.vector else 1)
        assert rk.notes == list(plan.notes)


def test_the_pipeline_runs_the_pass_after_buffer_planning():
    x = gc.placeholder(F32, (None, 64))
    kp = _lowered(gc.nn.softmax(x * 2.0), [x])
    assert cuda_backend.KERNEL_PASSES == (plan_launches,)
    assert kp.stats, "buffer planning ran"
    plans = [launches_of(k) for k in kp.kernels]
    assert plans and all(p is not None for p in plans)
    units = [u for p in plans for u in p.units]
    assert any(isinstance(u, ThreadsUnit) and u.rows is not None for u in units), units
    assert R.render_program(kp).kernels  # renders as planned, no second pass needed


def test_the_renderer_refuses_a_kernel_without_a_plan():
    with pytest.raises(CompileError, match="no launch plan.*plan_launches"):
        R.render_program(P.softmax_rows())
    kp = plan_launches(P.elementwise_chain())
    R.render_program(kp)
    # a body rewritten after planning: the plan no longer describes it
    k = kp.kernels[0]
    stale = replace(kp, kernels=[replace(k, body=k.body + k.body)])
    with pytest.raises(CompileError, match="no launch plan"):
        R.render_program(stale)


def test_vector_decisions_follow_the_buffer_plan():
    """Whether a store moves as a vector depends on which buffers share storage (a load of
    the storage after the store keeps both scalar): the pass reads the planned aliases."""
    n = i64(1024)
    i = Var("i", gc.int64)
    body = (Loop("i", i64(0), n, (
        Store("y", i, Math.ADD(Load("x", i, F32), Load("x", i, F32))),
        Store("z", i, Math.MUL(Load("x", i, F32), Load("x", i, F32))),
    ), parallel=True),)  # fmt: skip
    bufs = {
        "x": Buffer("x", F32, (n,), "input"),
        "y": Buffer("y", F32, (n,), "output"),
        "z": Buffer("z", F32, (n,), "output"),
    }
    kp = KernelProgram(bufs, [Kernel("k", body)], {}, ("x",), ("y", "z"))
    (unit,) = launches_of(plan_launches(kp).kernels[0]).units
    assert unit.vector is not None and set(unit.vector.stores) == {"y", "z"}
    shared = replace(kp, buffers={**bufs, "y": replace(bufs["y"], alias_of="x")})
    (unit,) = launches_of(plan_launches(shared).kernels[0]).units
    assert unit.vector is None or "y" not in unit.vector.stores


def test_a_serial_fallback_is_planned_with_its_note():
    """A scalar computed in a loop and read by a later parallel loop cannot be carried
    between launches: the kernel is one unit, with the note saying why."""
    n = i64(256)
    i = Var("i", gc.int64)
    s = Var("s", F32)
    body = (
        Let("s", F32, Const(0.0, F32)),
        Loop("i", i64(0), n, (Let("s", F32, Math.ADD(s, Load("x", i, F32)), True),)),
        Loop("i", i64(0), n, (Store("y", i, Math.SUB(Load("x", i, F32), s)),), parallel=True),
    )
    bufs = {"x": Buffer("x", F32, (n,), "input"), "y": Buffer("y", F32, (n,), "output")}
    kp = plan_launches(KernelProgram(bufs, [Kernel("center", body)], {}, ("x",), ("y",)))
    plan = launches_of(kp.kernels[0])
    assert len(plan.units) == 1 and plan.notes and plan.notes[0].startswith("serial: scalars")
    (rk,) = R.render_program(kp).kernels
    assert rk.notes == list(plan.notes) and len(rk.launches) == 1


@pytest.mark.skipif(emu.available() is not None, reason=str(emu.available()))
def test_mapping_notes_in_the_executable_stats_come_from_the_pass(fake_gpu):  # noqa: F811
    x = gc.placeholder(F32, (None, 16))
    y = gc.cumsum(x, axis=1)
    with gc.Session(target="cuda", options=gc.CompileOptions(cache_dir=None)) as sess:
        exe = sess.compile([y], [x])
        got = sess.run(y, {x: np.ones((3, 16), np.float32)})
    np.testing.assert_allclose(got, np.cumsum(np.ones((3, 16)), axis=1))
    kp = _lowered(y, [x])
    want = [n for k in kp.kernels for n in launches_of(k).notes]
    assert want and exe.stats["mapping_notes"] == want
    assert any("carries a value between iterations" in n for n in want)
