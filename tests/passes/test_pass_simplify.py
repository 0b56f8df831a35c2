"""Structure tests of the algebraic simplification rules (graphc/passes/simplify.py)."""

import numpy as np
import pytest

import graphc as gc
from graphc.options import CompileOptions
from graphc.passes.cleanup import RULES as CLEANUP_RULES
from graphc.passes.dce import dce
from graphc.passes.manager import optimize
from graphc.passes.simplify import RULES, simplify
from tests.passes.program_util import (
    assert_same_values,
    count,
    evaluate,
    fetched_node,
    op_types,
    placeholder,
    program_of,
)

RNG = np.random.default_rng(7)


def simplified(fetches, feeds, values, full=False):
    """Program before and after simplify (+dce, or the whole pipeline), values checked."""
    before = program_of(fetches, feeds)
    if full:
        after = optimize(before, CompileOptions(verify=True, cache_dir=None)).program
    else:
        after = dce(simplify(before))
    after.verify()
    assert_same_values(evaluate(before, values)[0], evaluate(after, values)[0])
    return before, after


def test_every_rule_is_documented_as_lhs_to_rhs():
    for table in (RULES, CLEANUP_RULES):
        assert table.rules
        for rule in table.rules:
            assert "->" in rule.doc, rule.name
        text = table.describe()
        assert all(r.name in text for r in table.rules)


@pytest.mark.parametrize(
    "build",
    [lambda x: x * 1.0, lambda x: 1.0 * x, lambda x: x + 0.0, lambda x: 0.0 + x,
     lambda x: x - 0.0, lambda x: x / 1.0, lambda x: gc.negative(gc.negative(x)),
     lambda x: gc.identity(x), lambda x: gc.stop_gradient(x),
     lambda x: x * gc.ones_like(x), lambda x: x + gc.zeros_like(x), lambda x: x**1.0],
)  # fmt: skip
def test_identity_arithmetic_disappears(build):
    x = placeholder((None, 3), name="x")
    _, after = simplified(build(x), [x], [RNG.normal(size=(4, 3))])
    assert op_types(after) == ["Feed"]
    assert after.fetches == ((0, 0),)


def test_neutral_constant_that_broadcasts_is_kept():
    x = placeholder((3,), name="x")
    y = x * np.ones((2, 3))  # the ones widen x to (2, 3): not an identity
    _, after = simplified(y, [x], [RNG.normal(size=3)])
    assert count(after, "Mul") == 1
    assert after.spec(after.fetches[0]).shape == (2, 3)


def test_neutral_scalar_against_unknown_dims_is_removed_but_not_a_like_of_another_tensor():
    x = placeholder((None, 3), name="x")
    y = placeholder((None, 3), name="y")
    keep = x * gc.ones_like(y)  # y may be (n, 3) while x is (1, 3): not provably a no-op
    _, after = simplified(keep, [x, y], [RNG.normal(size=(1, 3)), RNG.normal(size=(4, 3))])
    assert count(after, "Mul") == 1


def test_division_by_constant_becomes_multiplication_by_reciprocal():
    x = placeholder((2, 3), gc.float32, name="x")
    _, after = simplified(x / 4.0, [x], [RNG.normal(size=(2, 3)).astype("f4")])
    node = fetched_node(after)
    assert node.op == "Mul"
    const = after.node(node.inputs[1][0])
    assert const.op == "Const" and float(const.attrs["value"]) == 0.25
    assert "RealDiv" not in op_types(after)


def test_division_by_zero_constant_or_integer_is_left_alone():
    x = placeholder((3,), name="x")
    _, after = simplified(x / np.array([1.0, 0.0, 2.0]), [x], [RNG.normal(size=3)])
    assert count(after, "RealDiv") == 1
    x16 = placeholder((3,), gc.float16, name="h")
    _, after = simplified(x16 / 3.0, [x16], [RNG.normal(size=3).astype("f2")])
    assert count(after, "RealDiv") == 1


def test_multiplication_by_a_reciprocal_used_once_becomes_a_division():
    x, d = placeholder((None, 3), gc.float32, name="x"), placeholder((3,), gc.float32, name="d")
    vals = [RNG.normal(size=(4, 3)).astype("f4"), RNG.uniform(0.5, 2, size=3).astype("f4")]
    for build in (lambda: x * (1.0 / d), lambda: (1 / (1 + gc.exp(-d))) * x,
                  lambda: x * gc.reciprocal(d)):  # fmt: skip
        _, after = simplified(build(), [x, d], vals)
        assert fetched_node(after).op == "RealDiv" and count(after, "RealDiv") == 1
        assert count(after, "Mul") == 0 and count(after, "Reciprocal") == 0
    # the reciprocal is needed elsewhere too (another product, or fetched): kept, no second
    # division
    r = 1.0 / d
    _, after = simplified([x * r, (x + 1) * r], [x, d], vals)
    assert count(after, "RealDiv") == 1 and count(after, "Mul") == 2
    _, after = simplified([x * r, r], [x, d], vals)
    assert count(after, "RealDiv") == 1 and count(after, "Mul") == 1
    # a numerator that is not 1, or a 1 that widens d: not a reciprocal of d
    _, after = simplified(x * (2.0 / d), [x, d], vals)
    assert count(after, "Mul") == 1
    ones = gc.constant(np.ones((4, 3), np.float32))
    _, after = simplified(x * (ones / d), [x, d], vals)
    assert count(after, "Mul") == 1


def test_negation_folds_into_add_and_sub():
    x, y = placeholder((3,), name="x"), placeholder((3,), name="y")
    vals = [RNG.normal(size=3), RNG.normal(size=3)]
    _, after = simplified(x + gc.negative(y), [x, y], vals)
    assert op_types(after).count("Neg") == 0 and fetched_node(after).op == "Sub"
    _, after = simplified(gc.negative(x) + y, [x, y], vals)
    assert fetched_node(after).op == "Sub" and fetched_node(after).inputs[0] == (1, 0)
    _, after = simplified(x - gc.negative(y), [x, y], vals)
    assert fetched_node(after).op == "Add" and count(after, "Neg") == 0


def test_exp_log_pairs_cancel():
    x = placeholder((4,), name="x")
    vals = [RNG.uniform(0.5, 2.0, size=4)]
    _, after = simplified(gc.exp(gc.log(x)), [x], vals)
    assert op_types(after) == ["Feed"]
    _, after = simplified(gc.log(gc.exp(x)), [x], vals)
    assert op_types(after) == ["Feed"]


def test_cast_to_same_dtype_and_lossless_roundtrip():
    x = placeholder((3,), gc.float32, name="x")
    vals = [RNG.normal(size=3).astype("f4")]
    _, after = simplified(gc.cast(gc.cast(x, gc.float64), gc.float32), [x], vals)
    assert op_types(after) == ["Feed"]
    # float64 -> float32 -> float64 loses bits: it stays
    y = placeholder((3,), gc.float64, name="y")
    _, after = simplified(gc.cast(gc.cast(y, gc.float32), gc.float64), [y], [RNG.normal(size=3)])
    assert count(after, "Cast") == 2


def test_double_transpose_composes_or_cancels():
    x = placeholder((2, 3, 4), name="x")
    vals = [RNG.normal(size=(2, 3, 4))]
    _, after = simplified(gc.transpose(gc.transpose(x, (1, 2, 0)), (2, 0, 1)), [x], vals)
    assert op_types(after) == ["Feed"]
    _, after = simplified(gc.transpose(gc.transpose(x, (1, 2, 0)), (1, 0, 2)), [x], vals)
    assert count(after, "Transpose") == 1
    assert fetched_node(after).attrs["perm"] == (2, 1, 0)


def test_transpose_folds_into_matmul_flags():
    a, b = placeholder((4, 3), name="a"), placeholder((5, 4), name="b")
    vals = [RNG.normal(size=(4, 3)), RNG.normal(size=(5, 4))]
    _, after = simplified(gc.matmul(gc.transpose(a), gc.transpose(b)), [a, b], vals)
    mm = fetched_node(after)
    assert mm.op == "MatMul" and count(after, "Transpose") == 0
    assert mm.attrs["transpose_a"] and mm.attrs["transpose_b"]
    # batched: only a swap of the last two dims folds
    c = placeholder((2, 3, 4), name="c")
    d = placeholder((2, 3, 5), name="d")
    vals = [RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 3, 5))]
    _, after = simplified(gc.matmul(gc.transpose(c, (0, 2, 1)), d), [c, d], vals)
    assert count(after, "Transpose") == 0 and fetched_node(after).attrs["transpose_a"]


def test_reshape_chains_collapse_and_noop_reshapes_vanish():
    x = placeholder((2, 3, 4), name="x")
    vals = [RNG.normal(size=(2, 3, 4))]
    y = gc.reshape(gc.expand_dims(gc.reshape(x, (6, 4)), 0), (4, 6))
    _, after = simplified(y, [x], vals)
    assert op_types(after) == ["Feed", "Reshape"]
    assert fetched_node(after).attrs["shape"] == (4, 6)
    back = gc.reshape(gc.reshape(x, (24,)), (2, 3, 4))
    _, after = simplified(back, [x], vals)
    assert op_types(after) == ["Feed"]
    z = placeholder((None, 3), name="z")
    y = gc.squeeze(gc.expand_dims(gc.expand_dims(z, 0), 2), axis=[0])
    _, after = simplified(y, [z], [RNG.normal(size=(5, 3))])
    assert op_types(after) == ["Feed", "Reshape"]
    assert fetched_node(after).attrs["shape"] == (-1, 1, 3)


def test_log_of_softmax_becomes_log_softmax():
    x = placeholder((3, 5), name="x")
    vals = [RNG.normal(size=(3, 5))]
    _, after = simplified(gc.log(gc.nn.softmax(x)), [x], vals, full=True)
    _, reference = simplified(gc.nn.log_softmax(x), [x], vals, full=True)
    assert op_types(after) == op_types(reference)  # the program log_softmax builds
    assert count(after, "RealDiv") == 0
    # stable where softmax underflows to 0: log_softmax is finite, log(softmax) was -inf
    big = [np.array([[0.0, 800.0, -800.0, 1.0, 2.0]] * 3)]
    got, _ = evaluate(after, big)
    assert np.all(np.isfinite(got[0]))


def test_select_with_known_condition_and_equal_branches():
    x, y = placeholder((3,), name="x"), placeholder((3,), name="y")
    vals = [RNG.normal(size=3), RNG.normal(size=3)]
    _, after = simplified(gc.where(np.array([True] * 3), x, y), [x, y], vals, full=True)
    assert op_types(after) == ["Feed", "Feed"] and after.fetches == ((0, 0),)
    c = placeholder((3,), gc.bool, name="c")
    _, after = simplified(gc.where(c, x, x), [c, x], [np.array([True, False, True]), vals[0]])
    assert "Select" not in op_types(after)


def test_reductions_over_nothing_or_size_one_dims():
    x = placeholder((4, 1, 3), name="x")
    vals = [RNG.normal(size=(4, 1, 3))]
    _, after = simplified(gc.reduce_sum(x, axis=1), [x], vals)
    assert op_types(after) == ["Feed", "Reshape"]
    _, after = simplified(gc.reduce_max(x, axis=1, keepdims=True), [x], vals)
    assert op_types(after) == ["Feed"]
    _, after = simplified(gc.reduce_sum(x, axis=0), [x], vals)
    assert count(after, "Sum") == 1


def test_pow_special_exponents():
    x = placeholder((3,), name="x")
    vals = [RNG.uniform(0.5, 2, size=3)]
    _, after = simplified(x**2.0, [x], vals)
    assert fetched_node(after).op == "Square"
    _, after = simplified(x**-1.0, [x], vals)
    assert fetched_node(after).op == "Reciprocal"


def test_identity_with_control_dependencies_is_kept():
    v = gc.Variable(np.zeros(3), name="v")
    x = placeholder((3,), name="x")
    assign = gc.assign(v, x)
    with gc.control_dependencies([assign]):
        y = gc.identity(v.read_value())
        z = gc.identity(x)
    p = program_of([y, z], [x])
    after = dce(simplify(p))
    assert count(after, "Identity") == 2
    assert count(after, "Assign") == 1
