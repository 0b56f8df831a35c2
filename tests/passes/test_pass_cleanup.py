"""Structure tests of the training-graph clean-ups (graphc/passes/cleanup.py)."""

import numpy as np

import graphc as gc
from graphc.options import CompileOptions
from graphc.passes.cleanup import cleanup
from graphc.passes.dce import dce
from graphc.passes.manager import optimize
from tests.passes.program_util import (
    assert_same_values,
    count,
    evaluate,
    fetched_node,
    op_types,
    placeholder,
    program_of,
)

RNG = np.random.default_rng(5)


def cleaned(fetches, feeds, values, full=False):
    before = program_of(fetches, feeds)
    if full:
        after = optimize(before, CompileOptions(verify=True, cache_dir=None)).program
    else:
        after = dce(cleanup(before))
    after.verify()
    assert_same_values(evaluate(before, values)[0], evaluate(after, values)[0])
    return before, after


def test_sum_to_same_static_shape_vanishes():
    g, x = placeholder((2, 3), name="g"), placeholder((2, 3), name="x")
    _, after = cleaned(gc.sum_to_shape(g, x), [g, x], [RNG.normal(size=(2, 3))] * 2)
    assert op_types(after) == ["Feed", "Feed"]


def test_sum_to_shape_of_the_same_unknown_shape_vanishes():
    x = placeholder((None, 3), name="x")
    y = gc.exp(x)
    _, after = cleaned(gc.sum_to_shape(y * 2.0, x), [x], [RNG.normal(size=(4, 3))])
    assert count(after, "SumToShape") == 0


def test_sum_to_static_shape_becomes_a_reduction_and_drops_the_shape_source():
    g = placeholder((2, 3, 4), name="g")
    x = placeholder((3, 1), name="x")
    vals = [RNG.normal(size=(2, 3, 4)), RNG.normal(size=(3, 1))]
    _, after = cleaned(gc.sum_to_shape(g, gc.exp(x)), [g, x], vals)
    assert count(after, "SumToShape") == 0 and count(after, "Exp") == 0
    s = next(n for n in after.nodes if n.op == "Sum")
    assert s.attrs["axes"] == (0, 2) and s.attrs["keepdims"]
    assert fetched_node(after).op == "Reshape"


def test_broadcast_like_same_shape_and_static_shape():
    x = placeholder((None, 3), name="x")
    _, after = cleaned(gc.broadcast_like(x, gc.exp(x)), [x], [RNG.normal(size=(2, 3))])
    assert op_types(after) == ["Feed"]
    s = placeholder((1, 3), name="s")
    t = placeholder((4, 3), name="t")
    vals = [RNG.normal(size=(1, 3)), RNG.normal(size=(4, 3))]
    _, after = cleaned(gc.broadcast_like(s, gc.exp(t)), [s, t], vals)
    assert op_types(after) == ["Feed", "Feed", "BroadcastTo"]  # exp(t) is no longer needed


def test_explicit_broadcast_into_an_elementwise_op_is_dropped():
    x = placeholder((None, 3), name="x")
    s = placeholder((), name="s")
    y = gc.broadcast_like(s, x) * x
    _, after = cleaned(y, [x, s], [RNG.normal(size=(4, 3)), np.array(2.0)])
    assert count(after, "BroadcastLike") == 0 and count(after, "Mul") == 1
    # a broadcast that decides the result's shape stays
    z = gc.broadcast_like(s, x) * s
    _, after = cleaned(z, [x, s], [RNG.normal(size=(4, 3)), np.array(2.0)])
    assert count(after, "BroadcastLike") == 1


def test_ones_like_of_static_shape_becomes_a_fill_and_then_nothing():
    x = placeholder((2, 3), name="x")
    y = placeholder((2, 3), name="y")
    out = gc.ones_like(gc.exp(x)) * y
    _, after = cleaned(out, [x, y], [RNG.normal(size=(2, 3))] * 2, full=True)
    assert op_types(after) == ["Feed", "Feed"]  # x * ... -> y; the exp is gone too


def test_reshape_like_static_shape():
    x = placeholder((6,), name="x")
    like = placeholder((None, 3), name="like")
    from graphc.ops.shape import reshape_like

    y = reshape_like(x, like)
    _, after = cleaned(y, [x, like], [RNG.normal(size=6), RNG.normal(size=(2, 3))])
    node = fetched_node(after)
    assert node.op == "Reshape" and node.attrs["shape"] == (-1, 3)


def test_gradient_graph_gets_smaller_and_computes_the_same():
    x = placeholder((4, 3), name="x")
    w = placeholder((3, 2), name="w")
    b = placeholder((2,), name="b")
    loss = gc.reduce_mean(gc.square(gc.tanh(gc.matmul(x, w) + b)))
    grads = gc.gradients(loss, [w, b])
    vals = [RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2)), RNG.normal(size=2)]
    before, after = cleaned(grads, [x, w, b], vals, full=True)
    assert len(after.nodes) < len(before.nodes)
    for op in ("SumToShape", "BroadcastLike", "ZerosLike", "Size"):
        assert count(after, op) == 0, (op, after.text())


def test_unknown_batch_dims_are_tracked_symbolically():
    x = placeholder((None, 4), name="x")
    w1, w2 = placeholder((4, 3), name="w1"), placeholder((3, 4), name="w2")
    h = gc.nn.relu(gc.matmul(x, w1) + 1.0)  # (batch, 3)
    g = gc.matmul(gc.transpose(gc.matmul(h, w2)), x)  # (4, 4): no batch
    a = gc.matmul(gc.exp(x), gc.transpose(w2)) * 2.0  # (batch, 3) again
    vals = [RNG.normal(size=(5, 4)), RNG.normal(size=(4, 3)), RNG.normal(size=(3, 4))]
    _, after = cleaned([gc.sum_to_shape(a, h), g], [x, w1, w2], vals)
    assert count(after, "SumToShape") == 0
    # another feed's unknown batch is a different symbol: that sum_to_shape stays
    y = placeholder((None, 3), name="y")
    vals2 = [RNG.normal(size=(5, 4)), RNG.normal(size=(4, 3)), RNG.normal(size=(5, 3))]
    _, after = cleaned(gc.sum_to_shape(h, y), [x, w1, y], vals2)
    assert count(after, "SumToShape") == 1


def test_symbolic_broadcasting_rules():
    from graphc.passes.symshape import broadcast, fits

    a, b = ("dim", 0, 0, 0), ("dim", 1, 0, 0)
    assert broadcast([(a, 3), (1, 3)]) == (a, 3)
    assert broadcast([(a, 3), (5, 1)]) == (5, 3)
    assert broadcast([(a,), (a,)]) == (a,)
    c = broadcast([(a,), (b,)])
    assert c[0] not in (a, b) and broadcast([(b,), (a,)]) == c
    assert fits((1, 3), (a, 3)) and fits((3,), (a, 3)) and not fits((b, 3), (a, 3))
    assert not fits((2, 3), (3,))
