"""Row kernels compute each expensive fused producer once per element: a value a later pass
over the row needs again is stored into an output row by the first pass and loaded back."""

import numpy as np
import pytest

import graphc as gc
from graphc.kernel.expr import Call, Cast, Load, Math
from graphc.kernel.ir import If, Let, Loop, Store
from tests.kernel.helpers import assert_close, compile_kernels, run_both


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
