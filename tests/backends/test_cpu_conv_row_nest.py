"""A convolution's epilogue over its NHWC output space run per task of the packed kernel
(``epilogue.row_nest``): the nest becomes a loop over the output pixels, the pieces of a
concat epilogue merge into it, and whatever could see another task's rows is refused.

Checked: the plan (``ROW_EPILOGUES``, ``ROW_COLUMNS``) and the compiled results against the
reference interpreter on 1-3 threads (per-channel bias and ReLU, a residual with batch-norm
constants, a concat of two convolutions' branches, a run-time batch); ``row_nest`` on
hand-made Kernel IR it must refuse."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as _dt
from graphc.backends.llvm.epilogue import (
    ROW_COLUMNS,
    ROW_EPILOGUES,
    plan_row_epilogues,
    row_nest,
    storage_roots,
)
from graphc.expr import Const, Load, Math, Var
from graphc.kernel.ir import Buffer, Kernel, KernelProgram, LibCall, Loop, Store
from graphc.kernel.lower import lower
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract

RNG = np.random.default_rng(5)


def _f(*shape):
    return gc.constant(RNG.standard_normal(shape).astype(np.float32))


def _bias_relu(shape, o):
    x = gc.placeholder(gc.float32, shape)
    y = gc.nn.relu(gc.nn.conv2d(x, _f(3, 3, shape[-1], o), 1, "SAME") + _f(o))
    return x, y


def _residual(shape, o):
    x = gc.placeholder(gc.float32, shape)
    a = gc.nn.conv2d(x, _f(1, 1, shape[-1], o), 1, "SAME") * _f(o) + _f(o)
    b = gc.nn.conv2d(x, _f(3, 3, shape[-1], o), 1, "SAME") * _f(o) + _f(o)
    return x, gc.nn.relu(a + b)


def _concat(shape, o):
    x = gc.placeholder(gc.float32, shape)
    a = gc.nn.relu(gc.nn.conv2d(x, _f(1, 1, shape[-1], o), 1, "SAME") + _f(o))
    b = gc.nn.relu(gc.nn.conv2d(x, _f(3, 3, shape[-1], o + 16), 1, "SAME") + _f(o + 16))
    return x, gc.concat([a, b], axis=3)


CASES = [
    (_bias_relu, (1, 9, 7, 16), 24),
    (_bias_relu, (2, 5, 11, 16), 70),
    (_residual, (2, 6, 6, 32), 64),
    (_concat, (1, 13, 13, 16), 32),
    (_concat, (3, 7, 5, 20), 48),
]


def _build(case):
    build, shape, o = case
    g = gc.Graph()
    with g.as_default():
        x, y = build(shape, o)
    return g, x, y, RNG.standard_normal(shape).astype(np.float32)


def _planned(g, x, y):
    prog = extract([y], [], [x])
    opts = CompileOptions(cache_dir=None, winograd=False)  # (the direct form's nest)
    kp = lower(prog, fuse(prog, opts), opts, reduction_layout="columns")
    return [k for k in plan_row_epilogues(kp).kernels if "conv_packed" in str(k.body)]


@pytest.mark.parametrize("case", CASES)
def test_the_nest_is_planned_per_task(case):
    g, x, y, _ = _build(case)
    ks = [k for k in _planned(g, x, y) if len(k.body) > 1]
    assert ks
    for k in ks:
        assert k.meta[ROW_EPILOGUES] == (0,)
        ((j, cols),) = k.meta[ROW_COLUMNS]
        assert j == 0 and cols == k.body[0].args[5].value
        assert len(k.body) == 2  # a concat's pieces merged into one loop over rows


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", CASES)
def test_results_equal_the_reference(case, threads):
    g, x, y, xv = _build(case)
    want = gc.Session(graph=g, target="reference").run(y, {x: xv})
    opts = gc.CompileOptions(cache_dir=None, threads=threads)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(y, {x: xv})
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_a_run_time_batch():
    g = gc.Graph()
    with g.as_default():
        x, y = _concat((None, 6, 6, 16), 16)
    with gc.Session(graph=g, target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        for n in (1, 4):
            xv = RNG.standard_normal((n, 6, 6, 16)).astype(np.float32)
            want = gc.Session(graph=g, target="reference").run(y, {x: xv})
            np.testing.assert_allclose(sess.run(y, {x: xv}), want, rtol=2e-4, atol=2e-4)


# -- row_nest on hand-made Kernel IR ------------------------------------------------------

H, W, O = 4, 3, 16
F32, I64 = _dt.float32, _dt.int64


def _i(v):
    return Const(v, I64)


def _v(name):
    return Var(name, I64)


def _lin(*terms):
    e = None
    for var, k in terms:
        t = Math.MUL(_v(var), _i(k)) if isinstance(var, str) else _i(var)
        e = t if e is None else Math.ADD(e, t)
    return e


def _program(*loops):
    shapes = {"x": ((H, W, 8), "input"), "w": ((1000,), "const"), "c": ((H, W, O), "temp"),
              "y": ((H, W, 2 * O), "output"), "z": ((H * W * O + O,), "output")}  # fmt: skip
    bufs = {n: Buffer(n, F32, shape, kind) for n, (shape, kind) in shapes.items()}
    call = LibCall("conv_packed", ("x", "w", "c", _i(1), _i(H * W), _i(O), _i(8), _i(H), _i(W),
                                   _i(H), _i(W), _i(1), _i(1), _i(1), _i(1), _i(1), _i(1),
                                   _i(0), _i(0), _i(O), _i(0)))  # fmt: skip
    body = (call, *loops)
    kp = KernelProgram(bufs, [Kernel("k", body)], inputs=("x",), outputs=("y", "z"))
    return body, kp, storage_roots(kp)


def _nest(stmts, extents=(H, W, O), names=("a", "b", "k")):
    inner = tuple(stmts)
    for j in reversed(range(len(extents))):
        inner = (Loop(names[j], _i(0), _i(extents[j]), inner, parallel=j == 0),)
    return inner[0]


OWN = _lin(("a", W * O), ("b", O), ("k", 1))


def test_row_nest_takes_an_nhwc_epilogue_and_a_concat_piece():
    relu = Math.MAX(Load("c", OWN, F32), Const(0.0, F32))
    first = _nest([Store("y", _lin(("a", W * 2 * O), ("b", 2 * O), ("k", 1)), relu)])
    second = _nest([Store("y", _lin(("a", W * 2 * O), ("b", 2 * O), ("k", 1), (O, 1)),
                          Load("c", OWN, F32))])  # fmt: skip
    body, kp, root = _program(first, second)
    loop, used, cols = row_nest(body, 0, kp, root)
    assert used == 2 and cols == O and loop.parallel
    assert loop.stop.value == H * W and len(loop.body) == 2  # two channel loops, one row


def test_row_nest_refuses_what_another_task_could_see():
    shifted = _lin(("a", W * O), ("b", O), ("k", 1), (O, 1))  # the next pixel's C
    cases = [
        _nest([Store("y", OWN, Load("c", shifted, F32))]),  # reads C off its own row
        _nest([Store("c", shifted, Const(0.0, F32))]),  # writes C off its own element
        _nest([Store("x", OWN, Const(0.0, F32))]),  # writes the convolution's input
        _nest([Store("z", _lin(("k", 1)), Load("c", OWN, F32))]),  # every row: one place
        _nest([Store("y", OWN, Load("c", OWN, F32))], extents=(H, W, O // 2)),  # C, not o wide
        _nest([Store("y", OWN, Const(0.0, F32))], extents=(H, W - 1, O)),  # not m rows
    ]
    for loop in cases:
        body, kp, root = _program(loop)
        assert row_nest(body, 0, kp, root) is None, loop


def test_a_piece_reading_what_another_writes_is_not_merged():
    first = _nest([Store("z", OWN, Load("c", OWN, F32))])
    second = _nest([Store("y", _lin(("a", W * 2 * O), ("b", 2 * O), ("k", 1)),
                          Load("z", OWN, F32))])  # fmt: skip
    body, kp, root = _program(first, second)
    _loop, used, _ = row_nest(body, 0, kp, root)
    assert used == 1
