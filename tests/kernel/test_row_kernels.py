"""Row kernels compute each expensive fused producer once per element: a value a later pass
over the row needs again is stored into an output row by the first pass and loaded back.
The column layout of leading-axis reductions is unit-stride and matches the reference."""

import numpy as np
import pytest

import graphc as gc
from graphc.expr import Call, Cast, Load, Math, Var, sub_exprs
from graphc.kernel.ir import If, Let, Loop, Store, walk_stmts
from graphc.kernel.lower import lower
from graphc.ops.registry import REGISTRY
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract
from tests.kernel.helpers import assert_close, compile_kernels, run_both
from tests.oracle import build_example


def _calls(body, fn):
    n = 0

    def expr(e):
        nonlocal n
        if isinstance(e, Call):
            n += e.fn is fn
            for a in e.args:
                expr(a)
        elif isinstance(e, Cast):
            expr(e.x)
        elif isinstance(e, Load):
            expr(e.index)

    def stmts(b):
        for s in b:
            if isinstance(s, Let):
                expr(s.value)
            elif isinstance(s, Store):
                expr(s.value)
            elif isinstance(s, Loop):
                stmts(s.body)
            elif isinstance(s, If):
                stmts(s.then)
                stmts(s.orelse)

    stmts(body)
    return n


def _xs(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("batch", [None, 3])
def test_softmax_computes_exp_once_per_element(batch):
    x = gc.placeholder(gc.float32, (batch, 40))
    y = gc.nn.softmax(x)
    prog, _, kp = compile_kernels([y], [x])
    (kernel,) = kp.kernels
    assert _calls(kernel.body, Math.EXP) == 1, kp.text()
    ref, got, _, _ = run_both(prog, kp, [_xs((3, 40))])
    assert_close(got, ref)


def test_log_softmax_stores_nothing_extra():
    x = gc.placeholder(gc.float32, (None, 16))
    y = gc.nn.log_softmax(x)
    _, _, kp = compile_kernels([y], [x])
    (kernel,) = kp.kernels
    stores = []

    def walk(b):
        for s in b:
            if isinstance(s, Store):
                stores.append(s)
            elif isinstance(s, Loop):
                walk(s.body)

    walk(kernel.body)
    assert len(stores) == 1  # the exp of the sum pass is not needed again: not cached


def test_cached_value_is_read_before_another_output_overwrites_its_row():
    x = gc.placeholder(gc.float32, (4, 8))
    e = gc.exp(x - gc.reduce_max(x, axis=1, keepdims=True))
    s = gc.reduce_sum(e, axis=1, keepdims=True)
    a = x * 2.0  # a full-shaped output stored before the one that needs exp again
    b = e / s
    prog, plan, kp = compile_kernels([a, b], [x])
    assert len(kp.kernels) == 1, plan.report()
    assert _calls(kp.kernels[0].body, Math.EXP) == 1
    ref, got, _, _ = run_both(prog, kp, [_xs((4, 8), 1)])
    assert_close(got, ref)


def test_no_cache_without_an_output_of_the_same_dtype():
    x = gc.placeholder(gc.float32, (4, 8))
    e = gc.exp(x)
    y = gc.cast(e / gc.reduce_sum(e, axis=1, keepdims=True), gc.float64)
    prog, _, kp = compile_kernels([y], [x])
    ref, got, _, _ = run_both(prog, kp, [_xs((4, 8), 2)])
    assert_close(got, ref)


# -- column layout of reductions over leading axes (lower(..., reduction_layout="columns")) --

REDUCE_OPS = ["Sum", "Mean", "Max", "Min", "Prod", "Any", "All", "SumToShape"]
RED_CASES = [(n, i) for n in REDUCE_OPS for i in range(len(REGISTRY[n].examples()))]


def _lower_columns(outs, feeds, fusion=True):
    prog = extract(list(outs), [], list(feeds))
    fplan = fuse(prog, CompileOptions(fusion=fusion, cache_dir=None))
    return prog, lower(prog, fplan, None, reduction_layout="columns")


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("name,index", RED_CASES, ids=[f"{n}-{i}" for n, i in RED_CASES])
def test_column_layout_matches_reference(name, index, dynamic):
    example = REGISTRY[name].examples()[index]
    if dynamic and not example.dynamic:
        pytest.skip("example needs static shapes")
    g, phs, outs, arrays = build_example(example, dynamic=dynamic)
    with g.as_default():
        # a fused producer and a leading-axis reduction of it too
        extra = [gc.reduce_sum(gc.square(p), axis=0) for p, a in zip(phs, arrays)
                 if a.dtype.kind == "f" and a.ndim >= 2]  # fmt: skip
    prog, kp = _lower_columns(list(outs) + extra, phs)
    ref, got, _, _ = run_both(prog, kp, arrays)
    assert_close(got, ref, example.rtol, example.atol)


def _innermost_loops(body, out=None):
    out = [] if out is None else out
    for s in body:
        if isinstance(s, Loop):
            if any(isinstance(x, Loop) for x in s.body):
                _innermost_loops(s.body, out)
            else:
                out.append(s)
    return out


@pytest.mark.parametrize("batch", [None, 300])
def test_bias_gradient_reduction_is_unit_stride_and_parallel_in_columns(batch):
    x = gc.placeholder(gc.float32, (batch, 1500))
    y = gc.reduce_sum(gc.exp(x), axis=0)
    prog, kp = _lower_columns([y], [x])
    (kernel,) = kp.kernels
    top = kernel.body[0]
    # chunks of the output row (300 rows), or parts of the rows (a run-time count: then the
    # partial rows are combined after)
    assert isinstance(top, Loop) and top.parallel
    assert len(kernel.body) == (1 if batch else 2)
    for loop in _innermost_loops(kernel.body):
        for e in _loads(loop.body):
            assert _coeff_one(e.index, loop.var), (e, kp.text())
    ref, got, _, _ = run_both(prog, kp, [_xs((300, 1500), 4)])
    assert_close(got, ref, 1e-5, 1e-3)
    # the default (rows) layout keeps one accumulator per output element
    _, _, rows = compile_kernels([y], [x])
    assert any(isinstance(s, Let) and s.reduce for s in walk_stmts(rows.kernels[0].body))


def test_column_layout_leaves_row_kernels_alone():
    x = gc.placeholder(gc.float32, (None, 16))
    y = gc.nn.softmax(x, axis=0)  # reduction read again by its consumer: a row kernel
    prog, kp = _lower_columns([y], [x])
    assert any(isinstance(s, Let) and s.reduce for k in kp.kernels for s in walk_stmts(k.body))
    ref, got, _, _ = run_both(prog, kp, [_xs((5, 16), 5)])
    assert_close(got, ref)


def _loads(body):
    """Loads in the values of Lets and Stores (not in store indices), in body order."""
    return [x for s in walk_stmts(body) if isinstance(s, Let | Store)
            for x in sub_exprs(s.value) if isinstance(x, Load)]  # fmt: skip


def _coeff_one(index, var):
    """``index`` is ``var`` plus terms free of it (unit stride in ``var``)."""
    if isinstance(index, Var):
        return index.name == var
    if not (isinstance(index, Call) and index.fn is Math.ADD):
        return False
    a, b = index.args
    return (_coeff_one(a, var) and not _mentions(b, var)) or (
        _coeff_one(b, var) and not _mentions(a, var)
    )


def _mentions(e, var):
    return any(isinstance(x, Var) and x.name == var for x in sub_exprs(e))
