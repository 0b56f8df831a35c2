"""Structure tests of constant folding, CSE and DCE."""

import numpy as np
import pytest

import graphc as gc
from graphc.passes import fold
from graphc.passes.cse import canonical, cse
from graphc.passes.dce import dce
from graphc.passes.fold import fold_constants
from tests.passes.program_util import (
    assert_same_values,
    count,
    evaluate,
    fetched_node,
    op_types,
    placeholder,
    program_of,
)

RNG = np.random.default_rng(11)


# -- constant folding --------------------------------------------------------------------------


def test_folding_makes_a_const_with_the_right_value():
    a = gc.constant(np.arange(6.0).reshape(2, 3))
    y = gc.reduce_sum(gc.exp(a) * 2.0 + 1.0, axis=1)
    p = program_of(y)
    after = dce(fold_constants(p))
    after.verify()
    assert op_types(after) == ["Const"]
    node = fetched_node(after)
    np.testing.assert_allclose(
        node.attrs["value"], (np.exp(np.arange(6.0).reshape(2, 3)) * 2 + 1).sum(1)
    )
    assert node.id == p.fetches[0][0]  # folded in place: the fetched id is kept
    assert not node.attrs["value"].flags.writeable


def test_folding_stops_at_feeds_and_stateful_ops():
    x = placeholder((3,), name="x")
    c = gc.constant([1.0, 2.0, 3.0]) * 2.0
    r = gc.random_uniform((3,), seed=1, dtype=gc.float64)
    y = x + c + r * 0.0
    p = program_of(y, [x])
    after = dce(fold_constants(p))
    assert count(after, "RandomUniform") == 1 and count(after, "Feed") == 1
    assert count(after, "Mul") == 1  # r * 0 is not folded: r is random (and 0 * inf is nan)
    assert any(n.op == "Const" and np.array_equal(n.attrs["value"], [2, 4, 6]) for n in after.nodes)


def test_shape_and_size_of_static_shapes_fold_without_the_values():
    x = placeholder((2, 5), name="x")
    y = gc.cast(gc.size(x), gc.float64) + gc.reduce_sum(gc.cast(gc.shape(x), gc.float64))
    p = program_of(y, [x])
    after = dce(fold_constants(p))
    assert op_types(after) == ["Feed", "Const"]
    assert float(fetched_node(after).attrs["value"]) == 17.0
    # unknown dims: Shape stays
    z = placeholder((None, 5), name="z")
    after = dce(fold_constants(program_of(gc.shape(z), [z])))
    assert count(after, "Shape") == 1


def test_folding_respects_the_size_limits():
    big = gc.fill((2048,), gc.constant(1.5))  # a scalar grown to 2048 elements: not stored
    p = program_of(big)
    assert count(fold_constants(p), "Fill") == 1
    small = gc.fill((4,), gc.constant(1.5))
    assert op_types(dce(fold_constants(program_of(small)))) == ["Const"]
    a = gc.constant(np.ones(3000))
    same_size = a * 2.0  # does not grow: folds
    assert count(fold_constants(program_of(same_size)), "Mul") == 0
    old = fold.MAX_ELEMENTS
    try:
        fold.MAX_ELEMENTS = 100
        assert count(fold_constants(program_of(same_size)), "Mul") == 1
    finally:
        fold.MAX_ELEMENTS = old


def test_folding_leaves_failing_ops_for_run_time():
    y = gc.gather(gc.constant([1.0, 2.0]), gc.constant([5]))  # index out of range
    p = program_of(y)
    after = fold_constants(p)
    assert count(after, "GatherV2") == 1
    with pytest.raises(gc.errors.InvalidArgumentError, match="not in"):
        evaluate(after)


def test_folding_keeps_control_edges():
    x = placeholder((), name="x")
    v = gc.Variable(0.0, dtype=gc.float64, name="v")
    a = gc.assign(v, x)
    with gc.control_dependencies([a]):
        y = gc.constant(2.0, dtype=gc.float64) * 3.0
    p = program_of(y, [x])
    after = dce(fold_constants(p))
    node = fetched_node(after)
    assert node.op == "Const" and node.control
    assert count(after, "Assign") == 1


# -- CSE -----------------------------------------------------------------------------------------


def test_cse_merges_identical_pure_nodes_and_commutative_operands():
    x, y = placeholder((3,), name="x"), placeholder((3,), name="y")
    out = (x + y) * (y + x) + (x + y)
    p = program_of(out, [x, y])
    after = dce(cse(p))
    after.verify()
    assert count(after, "Add") == 2  # x + y once, the outer add
    vals = [RNG.normal(size=3), RNG.normal(size=3)]
    assert_same_values(evaluate(p, vals)[0], evaluate(after, vals)[0])


def test_cse_merges_equal_constants_by_content_but_not_different_dtypes_or_signs():
    a = gc.constant(np.arange(20.0)) + gc.constant(np.arange(20.0))
    b = gc.constant(np.zeros(2)) + gc.constant(-np.zeros(2))
    c = gc.constant(np.zeros(2, np.float32)) * 1.5
    d = gc.constant(np.zeros(2, np.float32), dtype=gc.float32) * 1.5
    p = program_of([a, b, c, d])
    after = cse(p)
    consts = [n for n in after.nodes if n.op == "Const"]
    assert len(consts) == 5  # arange, +0, -0, f32 zeros, 1.5
    assert after.fetches[2] == after.fetches[3]


def test_cse_never_merges_random_or_variable_reads():
    r1 = gc.random_uniform((3,), seed=3, dtype=gc.float64)
    r2 = gc.random_uniform((3,), seed=3, dtype=gc.float64)
    v = gc.Variable(np.ones(3), name="v")
    reads = [v.read_value(), v.read_value()]
    p = program_of([r1 + r2] + reads)
    after = cse(p)
    assert count(after, "RandomUniform") == 2
    assert count(after, "ReadVariable") == 2


def test_canonical_attrs():
    assert canonical(1) != canonical(1.0) != canonical(True)
    assert canonical(0.0) != canonical(-0.0)
    assert canonical(float("nan")) == canonical(float("nan"))
    assert canonical(np.array([1, 2])) == canonical(np.array([1, 2]))
    assert canonical(np.array([1, 2])) != canonical(np.array([1, 2], np.int32))
    assert canonical({"b": 1, "a": (1, 2)}) == canonical({"a": (1, 2), "b": 1})
    assert canonical(gc.float32) == canonical(gc.as_dtype("float32"))


# -- DCE -------------------------------------------------------------------------------------


def test_dce_drops_unused_branches_but_keeps_targets_and_side_effects():
    x = placeholder((3,), name="x")
    v = gc.Variable(np.zeros(3), name="v")
    used = x * 2.0
    unused = gc.exp(x)  # noqa: F841 - dead
    upd = gc.assign_add(v, x)
    p = program_of([used], [x], targets=[upd.op])
    # make exp part of the program: fetch then drop it from the fetch list
    p2 = program_of([used, unused], [x], targets=[upd.op])
    p2 = p2.with_nodes(p2.nodes, fetches=p2.fetches[:1])
    after = dce(p2)
    after.verify()
    assert count(after, "Exp") == 0
    assert count(after, "AssignAdd") == 1
    assert op_types(dce(p)) == op_types(p)
    _, variables = evaluate(after, [np.ones(3)], {"v": np.zeros(3)})
    np.testing.assert_array_equal(variables["v"], np.ones(3))


def test_dce_keeps_unused_side_effects_but_drops_unused_pure_reads():
    x = placeholder((3,), name="x")
    v = gc.Variable(np.zeros(3), name="v")
    a = gc.assign(v, x)
    r = v.read_value()
    y = gc.shape(a) + gc.shape(r)  # only shapes used: folding removes the value uses
    p = program_of(y, [x])
    from graphc.passes.fold import fold_constants

    after = dce(fold_constants(p))
    assert count(after, "Assign") == 1  # a write happens even if its value is unused
    assert count(after, "ReadVariable") == 0


def test_dce_forwards_control_edges_through_removed_pure_nodes():
    x = placeholder((3,), name="x")
    v = gc.Variable(np.zeros(3), name="v")
    a = gc.assign(v, x)
    with gc.control_dependencies([a]):
        gate = gc.identity(x)
    with gc.control_dependencies([gate]):
        out = v.read_value()
    p = program_of(out, [x])
    # drop the identity node's value uses: it is only a control input of the read
    after = dce(p)
    assert count(after, "Identity") == 0
    read = fetched_node(after)
    assign_id = next(n.id for n in after.nodes if n.op == "Assign")
    assert assign_id in read.control
    got, _ = evaluate(after, [np.arange(3.0)], {"v": np.zeros(3)})
    np.testing.assert_array_equal(got[0], np.arange(3.0))


def test_dce_keeps_feeds_whose_values_became_unused():
    x, y = placeholder((3,), name="x"), placeholder((3,), name="y")
    out = gc.cast(gc.shape(x), gc.float64) + y
    p = program_of(out, [x, y])
    after = dce(fold_constants(p))
    after.verify()
    assert count(after, "Feed") == 2 and count(after, "Shape") == 0
    got, _ = evaluate(after, [np.zeros(3), np.ones(3)])
    np.testing.assert_array_equal(got[0], [4.0, 4.0, 4.0])
