"""The cpu backend's Kernel IR pass that splits inner loops into contiguous runs
(graphc/kernel/split_runs.py): where it applies, what it leaves alone, and that the indexes
it rewrites are the same numbers for every iteration, negative rests included."""

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as _dt
from graphc.expr import Call, Const, Dim, Load, Math, Var
from graphc.kernel import sym
from graphc.kernel.analysis import linear_coeff
from graphc.kernel.ir import Let, LibCall, Loop, Store
from graphc.kernel.runtime import eval_int
from graphc.kernel.split_runs import divisor, split_runs

I64 = _dt.int64
F32 = _dt.float32


def _dims(e):
    """``e`` with every Var a Dim of the same name (so ``eval_int`` can evaluate it)."""
    if isinstance(e, Var):
        return Dim(e.name)
    if isinstance(e, Call):
        return Call(e.fn, tuple(_dims(a) for a in e.args))
    if isinstance(e, Load):
        return Load(e.buffer, _dims(e.index), e.dtype)
    return e


def _copy_loop(n, src_index, dst_index, var="j"):
    body = (Let("v", F32, Load("src", src_index, F32)), Store("dst", dst_index, Var("v", F32)))
    return Loop(var, Const(0, I64), Const(n, I64), body, False)


def _indexes(loop, env):
    """[(load index, store index)] of each iteration of the (split or not) copy loop."""
    out = []
    if isinstance(loop.body[0], Loop):
        (inner,) = loop.body
        for jo in range(sym.const_value(loop.stop)):
            for ji in range(sym.const_value(inner.stop)):
                out.append(_pair(inner.body, dict(env, **{loop.var: jo, inner.var: ji})))
    else:
        for j in range(sym.const_value(loop.stop)):
            out.append(_pair(loop.body, dict(env, **{loop.var: j})))
    return out


def _pair(body, env):
    let, store = body
    return eval_int(_dims(let.value.index), env), eval_int(_dims(store.index), env)


def test_quotients_and_remainders_within_runs_are_rewritten_exactly():
    """(X + j) // c and (X + j) % c for divisors 32 and 16 and X a multiple of 48: runs of
    16 (the gcd), the same indexes as the original loop for every j and X, negative X
    included, and the inner index affine in the run's variable."""
    j = Var("j", I64)
    x = sym.mul(Var("x", I64), 48)
    a = sym.add(x, j)
    src = sym.add(sym.mul(Math.MOD(Math.FLOORDIV(a, Const(16, I64)), Const(4, I64)), 7),
                  Math.MOD(a, Const(16, I64)))  # fmt: skip
    dst = sym.add(sym.mul(Math.FLOORDIV(a, Const(32, I64)), 100), Math.MOD(a, Const(32, I64)))
    loop = _copy_loop(64, src, dst)
    (got,) = split_runs((loop,))
    assert got.stop == Const(4, I64) and got.body[0].stop == Const(16, I64)
    inner = got.body[0]
    let, store = inner.body
    assert linear_coeff(let.value.index, inner.var) == 1
    assert linear_coeff(store.index, inner.var) == 1
    for xv in range(-3, 4):
        assert _indexes(got, {"x": xv}) == _indexes(loop, {"x": xv})


def test_one_run_keeps_the_loop_and_rewrites_the_remainder():
    """A bias read at (X + j) % 256 in a loop of 64, X a multiple of 64: one run, the loop
    keeps its variable, the index becomes X % 256 + j."""
    j = Var("j", I64)
    x = sym.mul(Var("x", I64), 64)
    loop = _copy_loop(64, Math.MOD(sym.add(x, j), Const(256, I64)), sym.add(x, j))
    (got,) = split_runs((loop,))
    assert got.var == "j" and got.stop == Const(64, I64)
    assert linear_coeff(got.body[0].value.index, "j") == 1
    for xv in range(-5, 6):
        assert _indexes(got, {"x": xv}) == _indexes(loop, {"x": xv})


@pytest.mark.parametrize(
    "case", ["short", "odd divisor", "stride 2", "rest not a multiple", "parallel", "reduction"]
)
def test_loops_it_leaves_alone(case):
    j = Var("j", I64)
    x = sym.mul(Var("x", I64), 64)
    n, index, parallel = 64, Math.MOD(sym.add(x, j), Const(64, I64)), False
    if case == "short":
        n = 8
    elif case == "odd divisor":
        index = Math.MOD(sym.add(x, j), Const(24, I64))
    elif case == "stride 2":
        index = Math.MOD(sym.add(x, sym.mul(j, 2)), Const(64, I64))
    elif case == "rest not a multiple":
        index = Math.MOD(sym.add(sym.add(x, 3), j), Const(64, I64))
    elif case == "parallel":
        parallel = True
    loop = _copy_loop(n, index, j)
    if parallel:
        loop = Loop(loop.var, loop.start, loop.stop, loop.body, True)
    if case == "reduction":
        body = (Let("acc", F32, Call(Math.ADD, (Var("acc", F32), Load("src", index, F32))),
                    reduce=True),)  # fmt: skip
        loop = Loop("j", Const(0, I64), Const(n, I64), body, False)
    body = (loop,)
    assert split_runs(body) is body


def test_the_nest_after_a_packed_convolution_is_left_alone():
    """The renderer runs the nest after a ``conv_packed`` call per row of pixels."""
    j = Var("j", I64)
    x = sym.mul(Var("x", I64), 64)
    loop = _copy_loop(64, Math.MOD(sym.add(x, j), Const(256, I64)), sym.add(x, j))
    call = LibCall("conv_packed", ("a", "b", "c"))
    body = (call, loop)
    assert split_runs(body) is body
    assert split_runs((loop,)) is not (loop,)


def test_divisor_of_index_expressions():
    x, y = Var("x", I64), Var("y", I64)
    assert divisor(sym.add(sym.mul(x, 256), sym.mul(y, 64))) == 64
    assert divisor(sym.add(sym.mul(x, 256), 3)) == 1
    assert divisor(Const(0, I64)) == 0
    assert divisor(sym.mul(sym.mul(x, 4), 6)) == 24


@pytest.mark.parametrize("threads", [1, 2])
def test_attention_heads_merged_after_a_batched_product_match_the_reference(threads):
    """W9's pattern, smaller: a batched product per head, transposed to [b, s, h, d] and
    reshaped to [b * s, h * d] (the epilogue split into runs of d), for a run-time batch;
    and the gradient through it."""
    a = gc.placeholder(gc.float32, (None, 4, 8, 16))
    v = gc.placeholder(gc.float32, (None, 4, 16, 32))
    ctx = gc.reshape(gc.transpose(gc.matmul(a, v), (0, 2, 1, 3)), (-1, 128))
    (ga,) = gc.gradients(gc.reduce_sum(ctx * ctx), [a])
    rng = np.random.default_rng(7)
    for batch in (1, 3):
        feeds = {a: rng.standard_normal((batch, 4, 8, 16)).astype(np.float32),
                 v: rng.standard_normal((batch, 4, 16, 32)).astype(np.float32)}  # fmt: skip
        want = gc.Session(target="reference").run([ctx, ga], feeds)
        opts = gc.CompileOptions(cache_dir=None, threads=threads)
        with gc.Session(target="cpu", options=opts) as sess:
            got = sess.run([ctx, ga], feeds)
            text = sess.compile([ctx, ga], [a, v]).stages["kernel"]
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)
    assert ".run in 0..4" in text and ".in in 0..32" in text
