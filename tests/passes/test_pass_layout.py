"""Structure and value tests of the layout rules (graphc/passes/layout.py): transposes sunk
below elementwise ops and concats so that transpose pairs cancel."""

import numpy as np

import graphc as gc
from graphc.options import CompileOptions
from graphc.passes.dce import dce
from graphc.passes.layout import LAYOUT, sink_transposes
from graphc.passes.manager import optimize
from tests.passes.program_util import (
    assert_same_values,
    count,
    evaluate,
    fetched_node,
    placeholder,
    program_of,
)

RNG = np.random.default_rng(3)
NHWC, NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def optimized(fetches, feeds, values):
    """Program before and after the whole pipeline, values checked bit for bit."""
    before = program_of(fetches, feeds)
    after = optimize(before, CompileOptions(verify=True, cache_dir=None)).program
    after.verify()
    assert_same_values(evaluate(before, values)[0], evaluate(after, values)[0], rtol=0, atol=0)
    return after


def test_every_rule_is_documented_as_lhs_to_rhs():
    assert LAYOUT.rules
    for rule in LAYOUT.rules:
        assert "->" in rule.doc, rule.name


def test_batch_norm_relu_between_layout_changes_runs_in_the_inner_layout():
    # an imported NCHW model: NHWC value -> NCHW -> scale, shift, relu -> back to NHWC
    x = placeholder((2, 5, 6, 4), gc.float32, name="x")
    scale = RNG.normal(size=(4, 1, 1)).astype("f4")
    shift = RNG.normal(size=(4, 1, 1)).astype("f4")
    y = gc.nn.relu(gc.transpose(x, NCHW) * scale + shift)
    out = gc.transpose(y, NHWC)
    after = optimized(out, [x], [RNG.normal(size=(2, 5, 6, 4)).astype("f4")])
    assert count(after, "Transpose") == 0
    # the constants were permuted to broadcast along the last (channel) dim
    consts = [n.attrs["value"] for n in after.nodes if n.op == "Const"]
    assert sorted(c.shape for c in consts) == [(1, 1, 1, 4), (1, 1, 1, 4)]


def test_residual_sum_of_two_transposed_values_is_one_value_in_the_inner_layout():
    a = placeholder((1, 3, 3, 8), gc.float32, name="a")
    b = placeholder((1, 3, 3, 8), gc.float32, name="b")
    s = gc.nn.relu(gc.transpose(a, NCHW) + gc.transpose(b, NCHW))
    t = s * 2.0  # a scalar constant broadcasts in any layout
    after = optimized([gc.transpose(s, NHWC), gc.transpose(t, NHWC)], [a, b],
                      [RNG.normal(size=(1, 3, 3, 8)).astype("f4") for _ in range(2)])  # fmt: skip
    assert count(after, "Transpose") == 0
    assert count(after, "Add") == 1


def test_concat_of_transposes_joins_along_the_permuted_axis():
    a = placeholder((1, 4, 4, 3), gc.float32, name="a")
    b = placeholder((1, 4, 4, 5), gc.float32, name="b")
    c = gc.concat([gc.transpose(a, NCHW), gc.transpose(b, NCHW)], axis=1)
    after = optimized(gc.transpose(c, NHWC), [a, b],
                      [RNG.normal(size=(1, 4, 4, 3)).astype("f4"),
                       RNG.normal(size=(1, 4, 4, 5)).astype("f4")])  # fmt: skip
    assert count(after, "Transpose") == 0
    node = fetched_node(after)
    assert node.op == "ConcatV2" and node.attrs["axis"] == 3


def test_mixed_operands_are_left_alone():
    # a transposed operand beside a non-transposed, non-constant one: sinking would need a
    # transpose of the other operand, so nothing moves
    x = placeholder((2, 3), name="x")
    y = placeholder((3, 2), name="y")
    before = program_of(gc.transpose(x, (1, 0)) + y, [x, y])
    after = dce(sink_transposes(before))
    assert [n.op for n in after.nodes] == [n.op for n in before.nodes]


def test_transposes_of_different_perms_or_broadcast_operands_are_left_alone():
    x = placeholder((2, 3, 4), name="x")
    y = placeholder((3, 4, 2), name="y")
    diff = gc.transpose(x, (1, 2, 0)) + gc.transpose(y, (0, 1, 2))
    before = program_of(diff, [x, y])
    assert dce(sink_transposes(before)).nodes[-1].op == "Add"
    z = placeholder((1, 3), name="z")  # broadcast against the transposed operand
    w = placeholder((2, 3), name="w")
    wide = gc.transpose(z, (1, 0)) * gc.transpose(w, (1, 0))
    before = program_of(wide, [z, w])
    after = dce(sink_transposes(before))
    assert fetched_node(after).op == "Mul"
    vals = [RNG.normal(size=(1, 3)), RNG.normal(size=(2, 3))]
    assert_same_values(evaluate(before, vals)[0], evaluate(after, vals)[0])


def test_unknown_batch_dim_sinks_and_keeps_values():
    x = placeholder((None, 2, 2, 3), name="x")
    bias = RNG.normal(size=(3, 1, 1))
    y = gc.transpose(gc.nn.relu(gc.transpose(x, NCHW) + bias), NHWC)
    after = optimized(y, [x], [RNG.normal(size=(5, 2, 2, 3))])
    assert count(after, "Transpose") == 0


def test_integer_ops_that_may_raise_stay_where_they_are():
    x = placeholder((2, 3), gc.int32, name="x")
    y = placeholder((2, 3), gc.int32, name="y")
    q = gc.floordiv(gc.transpose(x, (1, 0)), gc.transpose(y, (1, 0)))
    before = program_of(q, [x, y])
    after = dce(sink_transposes(before))
    assert fetched_node(after).op == "FloorDiv"
