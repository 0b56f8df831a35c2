"""Buffer planning hands a temporary's storage over to the temporary that the kernel reading
it for the last time stores element by element (``plan._overwrite_ok``): a ResNet block's
output over its residual (the convolution then writes a temporary of its own:
``lower_gemm._last_read_operand``), an elementwise kernel's result over its input.

Checked: results equal the reference and the Kernel IR interpreter on the unplanned
program; the storage is shared exactly where the rule allows (one result per dying
temporary, never a load at another index, after the store, in a nested statement, or by a
library call); the cpu runs the residual layers' tile epilogue into the handed-over storage."""

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as _dt
from graphc.expr import Call as ECall
from graphc.expr import Const, Load, Math, Var, i64
from graphc.kernel import interp
from graphc.kernel.ir import Buffer, If, Kernel, Let, LibCall, Loop, Store, exprs_in, walk_stmts
from graphc.passes import plan as plan_mod
from graphc.passes.plan import _overwrite_ok, liveness, plan
from graphc.runtime_state import RunContext
from tests.kernel.helpers import assert_close, compile_kernels, run_both

F32 = _dt.float32


def _roots(kp):
    out = {}
    for name in kp.buffers:
        r = name
        while kp.buffers[r].alias_of is not None:
            r = kp.buffers[r].alias_of
        out[name] = r
    return out


def _check_lifetimes(planned):
    """Buffers sharing storage overlap in at most one kernel, where one hands over."""
    live, root = liveness(planned), _roots(planned)
    by_root = {}
    for name, r in root.items():
        if name in live and planned.buffers[name].kind == "temp":
            by_root.setdefault(r, []).append(live[name])
    for spans in by_root.values():
        spans.sort()
        for (_f0, l0), (f1, _l1) in zip(spans, spans[1:]):
            assert l0 <= f1, spans  # (l0 == f1: the hand-over kernel)


def test_an_elementwise_chain_runs_in_one_storage():
    x = gc.placeholder(gc.float32, (None, 8))
    y = x
    for _ in range(6):
        y = gc.exp(y) * 0.5
    prog, _, kp = compile_kernels([y], [x], fusion=False)
    planned = plan(kp)
    _check_lifetimes(planned)
    temps = [b for b in planned.buffers.values() if b.kind == "temp"]
    assert len({_roots(planned)[b.name] for b in temps}) == 1
    xs = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    ref, got, _, _ = run_both(prog, planned, [xs])
    assert_close(got, ref)


def test_one_dying_input_goes_to_one_result():
    x = gc.placeholder(gc.float32, (6, 4))
    t = gc.exp(x)  # a temporary both results below read for the last time
    y1, y2 = t * 2.0, t * 3.0
    prog, _, kp = compile_kernels([gc.concat([y1, y2], 0)], [x], fusion=False)
    planned = plan(kp)
    _check_lifetimes(planned)
    xs = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    ref, got, _, _ = run_both(prog, planned, [xs])
    assert_close(got, ref)


def _residual_graph(n=2, h=6, w=5, c=64):
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((n, h, w, c)).astype(np.float32)
    f0, f2 = (rng.standard_normal((1, 1, c, c)).astype(np.float32) * 0.1 for _ in range(2))
    f1 = rng.standard_normal((3, 3, c, 32)).astype(np.float32) * 0.1
    f3 = rng.standard_normal((1, 1, 32, c)).astype(np.float32) * 0.1
    s, b = (rng.standard_normal(c).astype(np.float32) for _ in range(2))
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, h, w, c))
        a = gc.nn.relu(gc.nn.conv2d(x, gc.constant(f0), 1, "SAME"))  # the block's input
        for _ in range(2):  # two blocks: the second's residual is the first's output
            hh = gc.nn.relu(gc.nn.conv2d(a, gc.constant(f1), 1, "SAME"))
            a = gc.nn.relu(gc.nn.conv2d(hh, gc.constant(f3), 1, "SAME") * s + b + a)
        z = gc.nn.conv2d(a, gc.constant(f2), 1, "SAME")
    return g, x, z, xv


@pytest.mark.parametrize("threads", [1, 2])
def test_residual_blocks_store_over_their_residual(threads, monkeypatch):
    g, x, z, xv = _residual_graph()
    want = gc.Session(graph=g, target="reference").run(z, {x: xv})
    got = {}
    for on in (False, True):
        monkeypatch.setattr(plan_mod, "HAND_OVER", on)
        opts = gc.CompileOptions(cache_dir=None, threads=threads)
        with gc.Session(graph=g, target="cpu", options=opts) as sess:
            got[on] = sess.run(z, {x: xv})
            ir = sess.compile([z], [x]).dump_ir("kernel")
        np.testing.assert_allclose(got[on], want, rtol=2e-4, atol=2e-4)
    np.testing.assert_array_equal(got[True], got[False])
    assert "call conv_packed(" in ir


def test_kernel_ir_interpreter_on_the_planned_residual_blocks():
    from graphc.backends.cpu import KERNEL_PASSES, REDUCTION_LAYOUT
    from graphc.compiler import optimize
    from graphc.pipeline import lower_program
    from graphc.program import extract

    g, x, z, xv = _residual_graph(n=3)
    with g.as_default():
        prog = optimize(extract([z], [], [x]), gc.CompileOptions(cache_dir=None)).program
    low = lower_program(prog, gc.CompileOptions(cache_dir=None), REDUCTION_LAYOUT, KERNEL_PASSES)
    _check_lifetimes(low.kp)
    # each block's result is stored over its residual; its convolution writes a temporary
    root, over = _roots(low.kp), 0
    for k in low.kp.kernels:
        calls = [s for s in k.body if isinstance(s, LibCall) and s.fn == "conv_packed"]
        stores = {s.buffer for s in walk_stmts(k.body) if isinstance(s, Store)}
        loads = {e.buffer for e in exprs_in(k.body) if isinstance(e, Load)}
        for call in calls:
            over += any(d != call.args[2] and root[d] in {root[b] for b in loads - {d}}
                        for d in stores)  # fmt: skip
    assert over == 2
    got = interp.run(low.kp, RunContext({}, {}, [xv]))
    want = gc.Session(graph=g, target="reference").run(z, {x: xv})
    np.testing.assert_allclose(got[0], want, rtol=2e-4, atol=2e-4)


# -- the rule on hand-built kernels ------------------------------------------------------------


def _i():
    return Var("i", _dt.int64)


def _loop(*body):
    return Kernel("k", (Loop("i", Const(0, _dt.int64), Const(8, _dt.int64), body, True),))


def _ld(buf, idx=None):
    return Load(buf, _i() if idx is None else idx, F32)


def _plus1(e):
    return ECall(Math.ADD, (e, Const(1.0, F32)))


def test_the_rule_takes_a_load_at_the_index_before_the_store():
    assert _overwrite_ok(_loop(Let("v", F32, _ld("e")), Store("d", _i(), _plus1(Var("v", F32)))),
                         "d", "e")  # fmt: skip
    assert _overwrite_ok(_loop(Store("d", _i(), _plus1(_ld("e")))), "d", "e")


@pytest.mark.parametrize(
    "body",
    [
        # e read at another element
        (Store("d", _i(), _ld("e", ECall(Math.ADD, (_i(), Const(1, _dt.int64))))),),
        # e read after d is stored
        (Store("d", _i(), Const(0.0, F32)), Let("v", F32, _ld("e"))),
        # d read
        (Let("v", F32, _ld("e")), Store("d", _i(), _ld("d"))),
        # e stored
        (Let("v", F32, _ld("e")), Store("e", _i(), Var("v", F32)), Store("d", _i(), _ld("e"))),
        # two stores of d
        (Store("d", _i(), _ld("e")), Store("d", _i(), _ld("e"))),
        # e read in a nested statement
        (If(Const(True, _dt.bool_), (Let("v", F32, _ld("e")),)), Store("d", _i(), _ld("e"))),
    ],
)
def test_the_rule_refuses(body):
    assert not _overwrite_ok(_loop(*body), "d", "e")


def test_the_rule_refuses_a_library_call_on_either():
    k = Kernel("k", (LibCall("gemm", ("e", "w", "t")), _loop(Store("d", _i(), _ld("e"))).body[0]))
    assert not _overwrite_ok(k, "d", "e")


def test_an_index_of_other_locals_is_refused():
    j = Var("j", _dt.int64)
    body = (Let("j", _dt.int64, _i()), Store("d", j, _ld("e", j)))
    assert not _overwrite_ok(_loop(*body), "d", "e")


def test_planning_a_hand_built_program():
    from graphc.kernel.ir import KernelProgram

    bufs = {n: Buffer(n, F32, (i64(8),), k) for n, k in
            (("x", "input"), ("e", "temp"), ("d", "temp"), ("y", "output"))}  # fmt: skip
    kernels = [
        Kernel("a", (Loop("i", Const(0, _dt.int64), Const(8, _dt.int64),
                          (Store("e", _i(), _plus1(_ld("x"))),), True),),
               reads=("x",), writes=("e",)),
        _loop(Store("d", _i(), _plus1(_ld("e")))),
        Kernel("c", (Loop("i", Const(0, _dt.int64), Const(8, _dt.int64),
                          (Store("y", _i(), _plus1(_ld("d"))),), True),),
               reads=("d",), writes=("y",)),
    ]  # fmt: skip
    kernels[1] = Kernel("b", kernels[1].body, reads=("e",), writes=("d",))
    kp = KernelProgram(buffers=bufs, kernels=kernels, dims={}, inputs=("x",), outputs=("y",),
                       var_reads={}, var_updates={}, rng=(), checks=(), dim_checks=())  # fmt: skip
    planned = plan(kp)
    assert planned.buffers["d"].alias_of == "e"
    xs = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(interp.run(planned, RunContext({}, {}, [xs]))[0], xs + 3)
