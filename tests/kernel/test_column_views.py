"""Column layout for reductions whose row is re-viewed by a Reshape in the same group.

A SumToShape that reduces the batch (a bias or layer-norm gamma/beta gradient) becomes
``Sum(keepdims) + Reshape`` in the optimised program; fusion groups the two. The column
layout must still apply (unit-stride inner loop over the kept axis) instead of the row
layout with a strided inner loop over the batch.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.expr import Call, Cast, Load, Math, Var
from graphc.kernel import lower_columns
from graphc.kernel.ir import Let, Loop, Store, walk_stmts
from graphc.kernel.lower import lower
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.passes.manager import optimize
from graphc.program import extract
from tests.kernel.helpers import assert_close, run_both


def _innermost_loops(body, out=None):
    out = [] if out is None else out
    for s in body:
        if isinstance(s, Loop):
            if any(isinstance(x, Loop) for x in s.body):
                _innermost_loops(s.body, out)
            else:
                out.append(s)
    return out


def _loads(body):
    out = []

    def expr(e):
        if isinstance(e, Load):
            out.append(e)
            expr(e.index)
        elif isinstance(e, Call):
            for a in e.args:
                expr(a)
        elif isinstance(e, Cast):
            expr(e.x)

    for s in walk_stmts(body):
        if isinstance(s, (Let, Store)):
            expr(s.value)
    return out


def _unit_stride(index, var):
    """``index`` is ``... + var`` (or ``var + c``, as sym orders a constant offset)."""
    if isinstance(index, Var):
        return index.name == var
    if not (isinstance(index, Call) and index.fn is Math.ADD):
        return False
    left, right = index.args
    return _unit_stride(right, var) or (_unit_stride(left, var) and var not in repr(right))


def _lower(outs, feeds, pipeline=False):
    prog = extract(list(outs), [], list(feeds))
    opts = CompileOptions(cache_dir=None)
    if pipeline:
        prog = optimize(prog, opts).program
    plan = fuse(prog, opts)
    return prog, lower(prog, plan, None, reduction_layout="columns")


def _is_column_kernel(kernel):
    """No scalar accumulator, and every load of the batch-sized operands in the innermost
    loops is unit-stride in that loop's variable (or does not depend on it)."""
    if any(isinstance(s, Let) and s.reduce for s in walk_stmts(kernel.body)):
        return False
    inner = _innermost_loops(kernel.body)
    return bool(inner) and all(
        _unit_stride(e.index, loop.var) or loop.var not in repr(e.index)
        for loop in inner
        for e in _loads(loop.body)
    )


def _xs(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("batch", [None, 40])
def test_sum_then_reshape_gets_the_column_layout(batch):
    x = gc.placeholder(gc.float32, (batch, 96))
    d = gc.placeholder(gc.float32, (batch, 96))
    y = gc.reshape(gc.reduce_sum(x * d, axis=0, keepdims=True), [96])
    prog, kp = _lower([y], [x, d])
    (kernel,) = kp.kernels
    assert set(kernel.op_types) >= {"Sum", "Reshape"}, kernel.op_types
    assert _is_column_kernel(kernel), kp.text()
    ref, got, _, _ = run_both(prog, kp, [_xs((40, 96), 1), _xs((40, 96), 2)])
    assert_close(got, ref, 1e-5, 1e-4)


def test_row_and_its_views_all_fetched():
    x = gc.placeholder(gc.float32, (None, 700))  # > one column tile: several chunks
    s = gc.reduce_sum(gc.square(x), axis=0, keepdims=True)
    m = gc.reduce_mean(x, axis=0, keepdims=True)
    v = gc.expand_dims(gc.reshape(s, [700]), 0)  # a view of a view
    w = gc.reshape(m, [7, 100])
    prog, kp = _lower([s, v, w], [x])
    reducing = [k for k in kp.kernels if {"Sum", "Mean"} & set(k.op_types)]
    assert reducing and all(_is_column_kernel(k) for k in reducing), kp.text()
    assert any("Reshape" in k.op_types for k in reducing), kp.text()
    ref, got, _, _ = run_both(prog, kp, [_xs((33, 700), 3)])
    assert_close(got, ref, 1e-5, 1e-4)


@pytest.mark.parametrize("cols", [32, 1100])  # one column tile / several
def test_elementwise_epilogue_of_rows_gets_the_column_layout(cols):
    x = gc.placeholder(gc.float32, (None, cols))
    d = gc.placeholder(gc.float32, (None, cols))
    b = gc.placeholder(gc.float32, (cols,))
    s = gc.reshape(gc.reduce_sum(x * d, axis=0, keepdims=True), [cols])
    y = b - 0.5 * s  # the row is not fetched: a temporary row buffer
    prog, kp = _lower([y], [x, d, b])
    (kernel,) = kp.kernels
    assert _is_column_kernel(kernel), kp.text()
    arrays = [_xs((13, cols), 1), _xs((13, cols), 2), _xs((cols,), 3)]
    ref, got, _, _ = run_both(prog, kp, arrays)
    assert_close(got, ref, 1e-5, 1e-4)
    with gc.Session(graph=x.graph, target="cpu") as sess:  # the compiled CPU kernel too
        out = sess.run(y, dict(zip([x, d, b], arrays)))
    assert_close([out], ref, 1e-5, 1e-4)


def test_row_read_with_the_reduced_space_keeps_the_row_layout():
    x = gc.placeholder(gc.float32, (None, 32))
    y = x - gc.reduce_mean(x, axis=0) + gc.reduce_sum(gc.exp(x), axis=0) * 2.0
    prog, kp = _lower([y], [x])
    assert any(isinstance(s, Let) and s.reduce for k in kp.kernels for s in walk_stmts(k.body))
    ref, got, _, _ = run_both(prog, kp, [_xs((9, 32), 4)])
    assert_close(got, ref, 1e-5, 1e-4)


def test_bias_sgd_update_fused_with_its_gradient_is_a_column_kernel():
    x = gc.placeholder(gc.float32, (None, 8, 8, 16))
    bias = gc.Variable(np.linspace(-1, 1, 16).astype(np.float32), name="bias")
    loss = gc.reduce_sum(gc.square(gc.nn.relu(x + bias)))
    (g,) = gc.gradients(loss, [bias])
    step = gc.assign_sub(bias, 0.01 * g)
    prog = extract([step], [], [x])
    opts = CompileOptions(cache_dir=None)
    prog = optimize(prog, opts).program
    kp = lower(prog, fuse(prog, opts), None, reduction_layout="columns")
    (k,) = [k for k in kp.kernels if "AssignSub" in k.op_types]
    assert {"Sum", "SumToShape"} & set(k.op_types), k.op_types  # fused with the gradient
    assert _is_column_kernel(k), kp.text()
    xs = _xs((5, 8, 8, 16), 9)
    b0 = np.linspace(-1, 1, 16).astype(np.float32)
    want = b0 - 0.01 * (2 * np.maximum(xs + b0, 0)).sum(axis=(0, 1, 2))
    with gc.Session(graph=x.graph, target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run(step, {x: xs})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_layer_norm_gamma_beta_gradients_use_the_column_layout():
    x = gc.placeholder(gc.float32, (None, 128))
    gamma = gc.placeholder(gc.float32, (128,))
    beta = gc.placeholder(gc.float32, (128,))
    dy = gc.placeholder(gc.float32, (None, 128))
    y = gc.nn.layer_norm(x, gamma, beta, axis=-1, epsilon=1e-5)
    dx, dgamma, dbeta = gc.gradients(y, [x, gamma, beta], grad_ys=dy)
    prog, kp = _lower([y, dx, dgamma, dbeta], [x, gamma, beta, dy], pipeline=True)
    fetched = {tuple(r) for r in prog.fetches[2:]}
    param_grads = [k for k in kp.kernels
                   if any(tuple(r) in fetched for r in _written_refs(prog, k))]  # fmt: skip
    assert len(param_grads) == 2, kp.text()
    for k in param_grads:
        assert "Sum" in k.op_types or "SumToShape" in k.op_types, k.op_types
        assert _is_column_kernel(k), kp.text()
    arrays = [_xs((16, 128), 5), 1 + 0.1 * _xs((128,), 6), 0.1 * _xs((128,), 7), _xs((16, 128), 8)]
    ref, got, _, _ = run_both(prog, kp, [a.astype(np.float32) for a in arrays])
    assert_close(got, ref, 1e-4, 1e-4)


def _written_refs(prog, kernel):
    nodes = set(kernel.meta["nodes"])
    return [(n.id, k) for n in prog.nodes if n.id in nodes for k in range(len(n.outs))]


@pytest.mark.parametrize("cols", [96, 1500])
@pytest.mark.parametrize("rows", [None, 1000, 7])
def test_a_short_row_over_many_rows_is_summed_in_parts(rows, cols):
    """A bias gradient (the column sums of a [rows, cols] tensor, one tile or a few, no outer
    axes): the rows are split in SPLITS parts summed in parallel, then the partial rows
    combined; a mean, a max and an epilogue over the row come out as the reference computes
    them, for run-time row counts below SPLITS (parts of no rows) and above."""
    x = gc.placeholder(gc.float32, (rows, cols))
    s = gc.reduce_sum(x * 2.0, axis=0)
    m = gc.reduce_mean(x, axis=0)
    mx = gc.reduce_max(x, axis=0)
    y = gc.sqrt(gc.abs(s)) + m * mx
    prog, kp = _lower([s, m, mx, y], [x])
    text = kp.text()
    split = rows is None or rows >= lower_columns.SPLIT_MIN_ROWS
    assert ("_parts" in text) == split, text
    for n in (rows or 3, rows or 1000):
        ref, got, _, _ = run_both(prog, kp, [_xs((n, cols), n)])
        assert_close(got, ref, 1e-5, 1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_parts_on_the_cpu_target_match_the_reference(threads):
    """The same through the API, compiled, the parts split over the threads."""
    x = gc.placeholder(gc.float32, (None, 200))
    b = gc.placeholder(gc.float32, (200,))
    y = gc.reduce_sum(gc.tanh(x) * 3.0, axis=0) - b
    feeds = {x: _xs((1234, 200), 5), b: _xs((200,), 6)}
    want = gc.Session(target="reference").run(y, feeds)
    opts = gc.CompileOptions(cache_dir=None, threads=threads)
    with gc.Session(target="cpu", options=opts) as sess:
        got = sess.run(y, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
