"""The public contract of shared/API.md, bullet by bullet, through the public API only.

Each test names the API.md section and bullet it checks. Values are checked against numpy;
errors are checked for their type and for naming the culprit. Where API.md is silent the
expectation is TF1's (``tf.compat.v1``). Run-time checks use the reference target (the oracle)
and, where the behaviour is target-independent by contract, the cpu target too.
"""

from __future__ import annotations

import collections
import json
import re

import numpy as np
import pytest

import graphc as gc

TARGETS = ["reference", "cpu"]
FILE = __file__.rsplit("/", 1)[-1]
HERE = re.escape(FILE)


@pytest.fixture(params=TARGETS)
def target(request):
    return request.param


def run(fetches, feed_dict=None, target="reference"):
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        return sess.run(fetches, feed_dict)


def line_of(marker: str) -> int:
    """Line number in this file of the line containing ``marker`` (for file:line checks)."""
    with open(__file__) as f:
        for i, text in enumerate(f, 1):
            if marker in text and "line_of(" not in text:
                return i
    raise AssertionError(marker)


# =============================================================================================
# Graphs and tensors
# =============================================================================================


def test_graph_default_and_as_default():
    g = gc.Graph()
    outside = gc.constant(1.0, name="outside")
    with g.as_default() as entered:
        assert entered is g
        assert gc.get_default_graph() is g
        inside = gc.constant(2.0, name="inside")
    assert inside.graph is g
    assert outside.graph is gc.get_default_graph()
    assert gc.get_default_graph() is not g
    assert [op.name for op in g.get_operations()] == ["inside"]
    # ops outside any as_default() go to the module default graph
    module_default = gc.get_default_graph()
    assert outside.op in module_default.get_operations()
    gc.reset_default_graph()
    assert gc.get_default_graph() is not module_default
    assert gc.get_default_graph().get_operations() == []
    # nested as_default restores the outer graph
    g2 = gc.Graph()
    with g.as_default():
        with g2.as_default():
            assert gc.get_default_graph() is g2
        assert gc.get_default_graph() is g


def test_get_tensor_and_operation_by_name():
    g = gc.Graph()
    with g.as_default():
        with gc.name_scope("scope"):
            x = gc.placeholder(gc.float32, (2,), name="name")
            y = gc.identity(x, name="out")
        parts = gc.split(gc.constant(np.arange(6.0)), 3)
    assert x.name == "scope/name:0"
    assert g.get_tensor_by_name("scope/name:0") is x
    assert g.get_operation_by_name("scope/name") is x.op
    assert g.get_tensor_by_name("scope/out:0") is y
    assert g.get_tensor_by_name(parts[2].name) is parts[2]
    assert parts[2].name.endswith(":2")
    ops = g.get_operations()
    assert x.op in ops and y.op in ops
    assert ops.index(x.op) < ops.index(y.op)  # creation order
    with pytest.raises(KeyError, match="scope/missing"):
        g.get_operation_by_name("scope/missing")
    with pytest.raises(KeyError, match="nothere"):
        g.get_tensor_by_name("nothere:0")
    with pytest.raises((KeyError, ValueError), match="scope/name:5"):
        g.get_tensor_by_name("scope/name:5")
    with pytest.raises(ValueError, match="scope/name"):
        g.get_tensor_by_name("scope/name")  # an op name is not a tensor name


def test_tensor_and_operation_attributes():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.add(x, 1.0, name="plus")
    assert x.name == "x:0" and x.op.name == "x"
    assert x.dtype == gc.float32 and x.shape == (None, 3) and isinstance(x.shape, tuple)
    assert x.graph is gc.get_default_graph()
    assert y.op.type == "Add" and y.op.name == "plus"
    assert y.op.inputs[0] is x and len(y.op.inputs) == 2
    assert y.op.outputs == (y,) or list(y.op.outputs) == [y]
    assert y.shape == (None, 3)
    unknown = gc.placeholder(gc.int32, name="any")
    assert unknown.shape is None
    assert gc.placeholder(gc.float32, (), name="s").shape == ()


def test_unique_names_in_graph():
    a = gc.constant(1.0, name="c")
    b = gc.constant(1.0, name="c")
    assert a.name == "c:0" and b.name == "c_1:0"
    with gc.name_scope("block"):
        c = gc.constant(1.0, name="c")
    with gc.name_scope("block"):
        d = gc.constant(1.0, name="c")
    assert c.name == "block/c:0" and d.name == "block_1/c:0"
    with gc.name_scope("outer"):
        with gc.name_scope("inner"):
            e = gc.constant(1.0, name="v")
    assert e.name == "outer/inner/v:0"
    names = [op.name for op in gc.get_default_graph().get_operations()]
    assert len(names) == len(set(names))


def test_arithmetic_operators(target):
    a_np = np.array([[1.5, -2.0, 3.0], [4.0, 5.5, -6.0]], np.float32)
    b_np = np.array([2.0, -3.0, 0.5], np.float32)
    m_np = np.arange(12, dtype=np.float32).reshape(3, 4)
    a, b, m = gc.constant(a_np), gc.constant(b_np), gc.constant(m_np)
    out = run(
        {
            "add": a + b,
            "sub": a - b,
            "mul": a * b,
            "div": a / b,
            "fdiv": a // b,
            "mod": a % b,
            "pow": abs(a) ** b,
            "mm": a @ m,
            "neg": -a,
            "abs": abs(a),
            "radd": 1 + a,
            "rsub": 1 - a,
            "rmul": 2 * a,
            "rdiv": 1 / b,
            "rpow": 2**a,
            "rfdiv": 7 // b,
            "rmod": 7 % b,
            "rmm": a_np @ gc.constant(m_np),
        },  # fmt: skip
        target=target,
    )
    np.testing.assert_allclose(out["add"], a_np + b_np)
    np.testing.assert_allclose(out["sub"], a_np - b_np)
    np.testing.assert_allclose(out["mul"], a_np * b_np)
    np.testing.assert_allclose(out["div"], a_np / b_np, rtol=1e-6)
    np.testing.assert_allclose(out["fdiv"], a_np // b_np)
    np.testing.assert_allclose(out["mod"], a_np % b_np, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["pow"], np.abs(a_np) ** b_np, rtol=1e-5)
    np.testing.assert_allclose(out["mm"], a_np @ m_np, rtol=1e-6)
    np.testing.assert_allclose(out["neg"], -a_np)
    np.testing.assert_allclose(out["abs"], np.abs(a_np))
    np.testing.assert_allclose(out["radd"], 1 + a_np)
    np.testing.assert_allclose(out["rsub"], 1 - a_np)
    np.testing.assert_allclose(out["rmul"], 2 * a_np)
    np.testing.assert_allclose(out["rdiv"], 1 / b_np, rtol=1e-6)
    np.testing.assert_allclose(out["rpow"], 2**a_np, rtol=1e-5)
    np.testing.assert_allclose(out["rfdiv"], 7 // b_np)
    np.testing.assert_allclose(out["rmod"], 7 % b_np, rtol=1e-6)
    np.testing.assert_allclose(out["rmm"], a_np @ m_np, rtol=1e-6)
    for v in out.values():
        assert v.dtype == np.float32


def test_integer_operators_follow_floor_semantics(target):
    x_np = np.array([-7, -3, 0, 3, 7], np.int32)
    y_np = np.array([2, -2, 3, -4, 5], np.int32)
    x, y = gc.constant(x_np), gc.constant(y_np)
    out = run({"fdiv": x // y, "mod": x % y, "div": x / y, "pow": x**2}, target=target)
    np.testing.assert_array_equal(out["fdiv"], x_np // y_np)
    np.testing.assert_array_equal(out["mod"], x_np % y_np)
    assert out["fdiv"].dtype == np.int32 and out["mod"].dtype == np.int32
    # true division of integers gives floating values (numpy: float64)
    np.testing.assert_allclose(out["div"], x_np / y_np)
    assert out["div"].dtype == np.float64
    np.testing.assert_array_equal(out["pow"], x_np**2)
    assert out["pow"].dtype == np.int32


def test_comparison_operators_and_equality_identity(target):
    a_np = np.array([1.0, 2.0, 3.0], np.float32)
    a = gc.constant(a_np)
    out = run({"lt": a < 2, "le": a <= 2, "gt": a > 2, "ge": a >= 2, "rlt": 2 < a}, target=target)
    np.testing.assert_array_equal(out["lt"], a_np < 2)
    np.testing.assert_array_equal(out["le"], a_np <= 2)
    np.testing.assert_array_equal(out["gt"], a_np > 2)
    np.testing.assert_array_equal(out["ge"], a_np >= 2)
    np.testing.assert_array_equal(out["rlt"], 2 < a_np)
    assert all(v.dtype == np.bool_ for v in out.values())
    # == is identity (tensors are hashable dict keys), gc.equal is elementwise
    b = gc.constant(a_np)
    assert (a == a) is True and (a == b) is False and (a != b) is True
    assert len({a: 1, b: 2}) == 2
    eq = gc.equal(a, b)
    assert isinstance(eq, gc.Tensor) and eq.dtype == gc.bool
    np.testing.assert_array_equal(run(eq, target=target), [True, True, True])
    np.testing.assert_array_equal(run(gc.not_equal(a, 2.0), target=target), [True, False, True])
    with pytest.raises(TypeError, match="truth value"):
        bool(a < 2)


def test_bool_operators(target):
    p_np = np.array([True, True, False, False])
    q_np = np.array([True, False, True, False])
    p, q = gc.constant(p_np), gc.constant(q_np)
    out = run({"and": p & q, "or": p | q, "not": ~p, "rand": p_np & q}, target=target)
    np.testing.assert_array_equal(out["and"], p_np & q_np)
    np.testing.assert_array_equal(out["or"], p_np | q_np)
    np.testing.assert_array_equal(out["not"], ~p_np)
    np.testing.assert_array_equal(out["rand"], p_np & q_np)
    with pytest.raises(TypeError, match="LogicalAnd|logical"):
        _ = gc.constant([1.0]) & gc.constant([2.0])


def test_indexing_like_numpy(target):
    x_np = np.arange(4 * 5 * 6 * 7, dtype=np.float32).reshape(4, 5, 6, 7)
    x = gc.constant(x_np)
    keys = [
        (np.s_[1:, ::2, None, ..., 3]),
        (np.s_[-3:, ::-2, None, ..., -1]),
        (np.s_[-1]),
        (np.s_[..., -2]),
        (np.s_[1, -2:, :, None]),
        (np.s_[::-1, 1:-1, -5:5:2]),
        (np.s_[None, 2, ..., None]),
        (np.s_[:, :, :, -7]),
    ]
    tensors = [x[k] for k in keys]
    outs = run(tensors, target=target)
    for k, t, v in zip(keys, tensors, outs):
        want = x_np[k]
        assert t.shape == want.shape, k
        np.testing.assert_array_equal(v, want, err_msg=str(k))
    # on a placeholder with a None dim
    p = gc.placeholder(gc.float32, (None, 5, 6, 7), name="p")
    y = p[1:, ::2, None, ..., 3]
    assert y.shape == (None, 3, 1, 6)
    np.testing.assert_array_equal(run(y, {p: x_np}, target=target), x_np[1:, ::2, None, ..., 3])
    with pytest.raises(ValueError, match=r"index|out of range|bound"):
        _ = x[4]
    with pytest.raises(ValueError):
        _ = x[0, 0, 0, 0, 0]


def test_python_and_numpy_values_become_constants(target):
    arr = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    out = run(
        {
            "red": gc.reduce_sum([[1.0, 2.0], [3.0, 4.0]], axis=0),
            "mm": gc.matmul(arr, arr.T),
            "exp": gc.exp(arr),
            "cat": gc.concat([arr, gc.constant(arr)], axis=0),
            "relu": gc.nn.relu(arr - 2),
            "scalar": gc.add(2, 3),
            "where": gc.where(arr > 2, arr, 0.0),
        },
        target=target,
    )
    np.testing.assert_allclose(out["red"], [4.0, 6.0])
    np.testing.assert_allclose(out["mm"], arr @ arr.T)
    np.testing.assert_allclose(out["exp"], np.exp(arr), rtol=1e-6)
    np.testing.assert_allclose(out["cat"], np.concatenate([arr, arr]))
    np.testing.assert_allclose(out["relu"], np.maximum(arr - 2, 0))
    assert out["scalar"] == 5 and out["scalar"].dtype == np.int32
    np.testing.assert_allclose(out["where"], np.where(arr > 2, arr, 0))
    c = gc.constant([1, 2])
    assert c.op.type == "Const" and c.dtype == gc.int32
    assert gc.constant([1.0, 2.0]).dtype == gc.float32
    assert gc.constant(np.array([1.0])).dtype == gc.float64  # numpy arrays keep their dtype
    assert gc.constant(True).dtype == gc.bool


def test_name_scope_control_dependencies_identity_no_op_group(target):
    v = gc.Variable(0.0, name="counter")
    with gc.name_scope("block") as scope:
        assert scope == "block/"
        inc = v.assign_add(1.0)
        with gc.control_dependencies([inc]):
            y = gc.identity(gc.constant(5.0), name="y")
        noop = gc.no_op(name="nothing")
    assert y.name == "block/y:0" and noop.name == "block/nothing"
    assert inc.op in y.op.control_inputs
    inc2 = v.assign_add(10.0)
    grouped = gc.group(inc, inc2)
    assert isinstance(grouped, gc.Operation)
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(v.initializer)
        assert sess.run(y) == 5.0
        assert sess.run(v) == 1.0  # the control dependency ran the increment
        assert sess.run(noop) is None
        assert sess.run(grouped) is None
        assert sess.run(v) == 12.0
    # control dependencies also accept tensors (their ops)
    with gc.control_dependencies([y]):
        z = gc.identity(gc.constant(1.0))
    assert y.op in z.op.control_inputs


# =============================================================================================
# Types and shapes
# =============================================================================================


def test_public_dtypes():
    pairs = [
        (gc.float16, np.float16), (gc.float32, np.float32), (gc.float64, np.float64),
        (gc.int32, np.int32), (gc.int64, np.int64), (gc.bool, np.bool_),
    ]  # fmt: skip
    for dt, npdt in pairs:
        assert gc.as_dtype(npdt) == dt
        assert gc.placeholder(dt, (2,)).dtype == dt
        assert gc.zeros((2,), dt).dtype == dt
        assert run(gc.zeros((2,), dt)).dtype == npdt


@pytest.mark.parametrize(
    "da,db",
    [
        ("float16", "float32"), ("float32", "float64"), ("int32", "int64"),
        ("int32", "float32"), ("int64", "float32"), ("int32", "float16"),
        ("float16", "float16"), ("bool", "int32"),
    ],
)  # fmt: skip
def test_tensor_tensor_numpy_promotion(da, db):
    a_np = np.array([1, 0, 3]).astype(da)
    b_np = np.array([2, 1, 0]).astype(db)
    a, b = gc.constant(a_np), gc.constant(b_np)
    want = np.result_type(a_np.dtype, b_np.dtype)
    for t in (a + b, a * b, gc.maximum(a, b), gc.subtract(b, a)):
        assert t.dtype == gc.as_dtype(want), (da, db, t.dtype)
    np.testing.assert_array_equal(run(a + b), a_np + b_np)
    assert run(a + b).dtype == want


def test_weak_python_scalars_take_the_tensor_dtype(target):
    h = gc.constant(np.array([1.5, 2.5], np.float16))
    i = gc.constant(np.array([3, 4], np.int32))
    l64 = gc.constant(np.array([3, 4], np.int64))
    d = gc.constant(np.array([1.0], np.float64))
    assert (h * 2.0).dtype == gc.float16
    assert (2 + h).dtype == gc.float16
    assert (i + 1).dtype == gc.int32
    assert (l64 * 3).dtype == gc.int64
    assert (d - 1).dtype == gc.float64
    assert gc.maximum(h, 0).dtype == gc.float16
    assert gc.where(i > 3, i, 0).dtype == gc.int32
    out = run({"h": h * 2.0, "i": i + 1, "l": l64 * 3}, target=target)
    assert out["h"].dtype == np.float16 and out["i"].dtype == np.int32
    assert out["l"].dtype == np.int64
    np.testing.assert_array_equal(out["i"], [4, 5])
    # numpy float scalars are weak too (API.md "Building models": Python and numpy floats
    # never widen a float32 graph, as TF1 converts them to the tensor's dtype); numpy arrays
    # keep their dtype and promote
    assert (gc.constant(np.float32([1.0])) + np.float64(1.0)).dtype == gc.float32
    assert (gc.constant(np.float32([1.0])) + np.array([1.0])).dtype == gc.float64


def test_shape_errors_at_build_time_name_op_shapes_and_line():
    a = gc.placeholder(gc.float32, (2, 3), name="a")
    b = gc.placeholder(gc.float32, (4, 5), name="b")
    with pytest.raises(ValueError) as info:
        a + b  # BUILD-ADD
    msg = str(info.value)
    assert "Add" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    assert re.search(HERE + ":" + str(line_of("# BUILD-ADD")), msg), msg
    with pytest.raises(ValueError) as info:
        gc.matmul(a, b)  # BUILD-MATMUL
    msg = str(info.value)
    assert "MatMul" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    assert re.search(HERE + ":" + str(line_of("# BUILD-MATMUL")), msg), msg
    with pytest.raises(ValueError) as info:
        gc.reshape(a, (4, 2))  # BUILD-RESHAPE
    msg = str(info.value)
    assert "Reshape" in msg or "reshape" in msg
    assert "(2, 3)" in msg and FILE in msg


def test_dtype_errors_at_build_time_name_op_and_line():
    f = gc.placeholder(gc.float32, (2,), name="f")
    b = gc.placeholder(gc.bool, (2,), name="flag")
    with pytest.raises(TypeError) as info:
        gc.exp(b)  # BUILD-EXP
    msg = str(info.value)
    assert "Exp" in msg and "bool" in msg
    assert re.search(HERE + ":" + str(line_of("# BUILD-EXP")), msg), msg
    with pytest.raises(TypeError) as info:
        gc.logical_and(f, b)  # BUILD-AND
    msg = str(info.value)
    assert "Logical" in msg and FILE in msg
    with pytest.raises(TypeError) as info:
        gc.matmul(b[None], gc.placeholder(gc.bool, (2, 1)))  # BUILD-MM-DTYPE
    msg = str(info.value)
    assert "MatMul" in msg and "bool" in msg and FILE in msg
    with pytest.raises(TypeError) as info:
        gc.sqrt(gc.placeholder(gc.int32, (2, 2)))
    assert "Sqrt" in str(info.value) and "int32" in str(info.value)
    # matmul is a binary op: tensor/tensor operands follow numpy promotion
    assert gc.matmul(f[None], gc.placeholder(gc.int32, (2, 1))).dtype == gc.float64


def test_broadcasting_like_numpy(target):
    a_np = np.arange(6.0).reshape(2, 1, 3)
    b_np = np.arange(4.0).reshape(4, 1)
    t = gc.constant(a_np) * gc.constant(b_np)
    assert t.shape == (2, 4, 3)
    np.testing.assert_allclose(run(t, target=target), a_np * b_np)
    p = gc.placeholder(gc.float64, (None, 1), name="p")
    q = gc.placeholder(gc.float64, (1, None), name="q")
    assert (p + q).shape == (None, None)
    np.testing.assert_allclose(
        run(p + q, {p: b_np, q: np.ones((1, 5))}, target=target), b_np + np.ones((1, 5))
    )


# =============================================================================================
# Creating tensors
# =============================================================================================


def test_constant_dtype_name_and_value(target):
    c = gc.constant([[1, 2], [3, 4]], dtype=gc.float64, name="k")
    assert c.name == "k:0" and c.dtype == gc.float64 and c.shape == (2, 2)
    s = gc.constant(3.5)
    assert s.shape == () and s.dtype == gc.float32
    h = gc.constant(1, dtype="float16")
    out = run({"c": c, "s": s, "h": h}, target=target)
    np.testing.assert_array_equal(out["c"], [[1, 2], [3, 4]])
    assert out["c"].dtype == np.float64
    assert isinstance(out["s"], np.float32) and out["s"] == 3.5
    assert out["h"].dtype == np.float16
    assert gc.constant(0.0, shape=(2, 3)).shape == (2, 3)
    with pytest.raises(TypeError):
        gc.constant(object())
    with pytest.raises(TypeError):
        gc.constant([1.0], dtype="complex64")


def test_placeholder_with_none_dims(target):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.reduce_sum(x, axis=1)
    assert y.shape == (None,)
    for n in (1, 4, 0):
        v = np.arange(3.0 * n, dtype=np.float32).reshape(n, 3)
        np.testing.assert_allclose(run(y, {x: v}, target=target), v.sum(1))
    anyshape = gc.placeholder(gc.float64, name="anyshape")
    assert anyshape.shape is None
    np.testing.assert_allclose(
        run(anyshape * 2, {anyshape: np.ones((2, 2, 2))}), 2 * np.ones((2, 2, 2))
    )
    assert gc.placeholder(gc.int64, [None], name="ids").shape == (None,)


def test_placeholder_with_default(target):
    d = gc.placeholder_with_default(np.array([[1.0, 2.0]], np.float32), shape=(None, 2))
    assert d.shape == (None, 2) and d.dtype == gc.float32
    y = d * 10
    np.testing.assert_allclose(run(y, target=target), [[10.0, 20.0]])
    fed = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_allclose(run(y, {d: fed}, target=target), fed * 10)
    with pytest.raises(ValueError, match=re.escape(d.name)):
        run(y, {d: np.ones((3, 3))}, target=target)
    s = gc.placeholder_with_default(4, shape=())
    assert s.dtype == gc.int32 and run(s) == 4 and run(s, {s: 7}) == 7
    with pytest.raises(ValueError):
        gc.placeholder_with_default(np.ones((2, 3)), shape=(2, 2))


def test_zeros_ones_fill_like_and_range(target):
    x = gc.constant(np.arange(6, dtype=np.int64).reshape(2, 3))
    t = {
        "zeros": gc.zeros((2, 3), gc.float64),
        "zeros_default": gc.zeros([4]),
        "ones": gc.ones((3,), gc.int32),
        "fill": gc.fill((2, 2), 7.5),
        "fill_int": gc.fill([3], 2),
        "zl": gc.zeros_like(x),
        "ol": gc.ones_like(x),
        "ol_f": gc.ones_like(x, dtype=gc.float32),
        "r1": gc.range(2, 11, 3),
        "r2": gc.range(5),
        "r3": gc.range(0.0, 1.0, 0.25),
        "r4": gc.range(10, 0, -3),
    }
    out = run(t, target=target)
    np.testing.assert_array_equal(out["zeros"], np.zeros((2, 3)))
    assert out["zeros"].dtype == np.float64 and out["zeros_default"].dtype == np.float32
    np.testing.assert_array_equal(out["ones"], np.ones(3, np.int32))
    assert out["ones"].dtype == np.int32
    np.testing.assert_array_equal(out["fill"], np.full((2, 2), 7.5))
    assert out["fill"].dtype == np.float32 and out["fill_int"].dtype == np.int32
    np.testing.assert_array_equal(out["zl"], np.zeros((2, 3), np.int64))
    assert out["zl"].dtype == np.int64 and out["ol"].dtype == np.int64
    np.testing.assert_array_equal(out["ol"], np.ones((2, 3)))
    assert out["ol_f"].dtype == np.float32
    np.testing.assert_array_equal(out["r1"], np.arange(2, 11, 3))
    assert out["r1"].dtype == np.int32 and t["r1"].shape == (3,)
    np.testing.assert_array_equal(out["r2"], np.arange(5))
    np.testing.assert_allclose(out["r3"], np.arange(0.0, 1.0, 0.25))
    assert out["r3"].dtype == np.float32
    np.testing.assert_array_equal(out["r4"], np.arange(10, 0, -3))
    # zeros_like of a placeholder with a None dim takes the fed shape
    p = gc.placeholder(gc.float32, (None, 2), name="p")
    np.testing.assert_array_equal(run(gc.ones_like(p), {p: np.zeros((3, 2))}, target=target),
                                  np.ones((3, 2)))  # fmt: skip


RANDOM_BUILDERS = {
    "normal": lambda s, **k: gc.random_normal((400, 50), mean=2.0, stddev=3.0, seed=s, **k),
    "uniform": lambda s, **k: gc.random_uniform((400, 50), minval=-1.0, maxval=3.0, seed=s, **k),
    "truncated": lambda s, **k: gc.truncated_normal((400, 50), mean=1.0, stddev=0.5, seed=s, **k),
}


@pytest.mark.parametrize("kind", sorted(RANDOM_BUILDERS))
def test_random_ops_distribution_and_dtype(kind):
    t = RANDOM_BUILDERS[kind](7)
    assert t.shape == (400, 50) and t.dtype == gc.float32
    v = run(t)
    assert v.dtype == np.float32 and v.shape == (400, 50)
    if kind == "normal":
        assert abs(v.mean() - 2.0) < 0.1 and abs(v.std() - 3.0) < 0.1
    elif kind == "uniform":
        assert v.min() >= -1.0 and v.max() < 3.0
        assert abs(v.mean() - 1.0) < 0.05
        assert abs(v.std() - 4 / np.sqrt(12)) < 0.05
    else:
        assert v.min() >= 1.0 - 2 * 0.5 and v.max() <= 1.0 + 2 * 0.5
        assert abs(v.mean() - 1.0) < 0.02
    d = RANDOM_BUILDERS[kind](7, dtype=gc.float64)
    assert d.dtype == gc.float64 and run(d).dtype == np.float64


@pytest.mark.parametrize("kind", sorted(RANDOM_BUILDERS))
def test_random_ops_with_seed_same_stream_every_session_and_target(kind):
    def values(target):
        g = gc.Graph()
        with g.as_default():
            t = RANDOM_BUILDERS[kind](1234)
            with gc.Session(graph=g, target=target,
                            options=gc.CompileOptions(cache_dir=None)) as sess:  # fmt: skip
                return sess.run(t), sess.run(t)

    ref1, ref2 = values("reference")
    again1, again2 = values("reference")
    cpu1, cpu2 = values("cpu")
    np.testing.assert_array_equal(ref1, again1)
    np.testing.assert_array_equal(ref2, again2)
    assert not np.array_equal(ref1, ref2)  # each run draws fresh values (TF semantics)
    np.testing.assert_allclose(cpu1, ref1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cpu2, ref2, rtol=1e-5, atol=1e-5)
    # a different seed gives a different stream
    g = gc.Graph()
    with g.as_default():
        other = RANDOM_BUILDERS[kind](4321)
        with gc.Session(graph=g, target="reference") as sess:
            assert not np.array_equal(sess.run(other), ref1)


_RANDOM_SCRIPT = """
import sys, numpy as np, graphc as gc
ts = [gc.random_normal((3, 4), seed=11), gc.random_uniform((5,), minval=2, maxval=4, seed=12),
      gc.truncated_normal((2, 2), seed=13, dtype=gc.float64),
      gc.nn.dropout(np.ones((4, 4), np.float32), rate=0.5, seed=14)]
with gc.Session(target=sys.argv[1], options=gc.CompileOptions(cache_dir=None)) as s:
    first, second = s.run(ts), s.run(ts)
np.savez(sys.argv[2], *(first + second))
"""


def test_random_streams_are_identical_across_processes_and_targets(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(gc.__file__).resolve().parent.parent)
    outs = {}
    for target in ("reference", "cpu"):
        path = tmp_path / f"{target}.npz"
        subprocess.run(
            [sys.executable, "-c", _RANDOM_SCRIPT, target, str(path)],
            check=True, cwd=root, timeout=300,
        )  # fmt: skip
        with np.load(path) as z:
            outs[target] = [z[f"arr_{i}"] for i in range(8)]
    ts = [gc.random_normal((3, 4), seed=11), gc.random_uniform((5,), minval=2, maxval=4, seed=12),
          gc.truncated_normal((2, 2), seed=13, dtype=gc.float64),
          gc.nn.dropout(np.ones((4, 4), np.float32), rate=0.5, seed=14)]  # fmt: skip
    with gc.Session(target="reference") as s:
        here = s.run(ts) + s.run(ts)
    for i in range(8):
        np.testing.assert_array_equal(outs["reference"][i], here[i])
        np.testing.assert_allclose(outs["cpu"][i], here[i], rtol=1e-5, atol=1e-6)
    assert not np.array_equal(here[0], here[4])  # the second run draws new values


def test_random_ops_without_seed_differ_between_graphs():
    a = run(gc.random_uniform((100,)))
    gc.reset_default_graph()
    b = run(gc.random_uniform((100,)))
    assert not np.array_equal(a, b)


# =============================================================================================
# Variables and state
# =============================================================================================


def test_variable_basics(target):
    w = gc.Variable(np.array([[1.0, 2.0]], np.float32), name="w")
    assert isinstance(w, gc.Variable)
    assert w.name == "w:0" and w.op.name == "w" and w.shape == (1, 2) and w.dtype == gc.float32
    assert isinstance(w.initializer, gc.Operation)
    assert isinstance(w.value(), gc.Tensor)
    v64 = gc.Variable(3, dtype=gc.float64, name="v64")
    assert v64.dtype == gc.float64
    default_name = gc.Variable(0.0)
    assert default_name.name == "Variable:0"
    assert gc.Variable(0.0).name == "Variable_1:0"
    # usable wherever a tensor is
    y = gc.matmul(w, np.ones((2, 3), np.float32)) + w[0, 1] + gc.reduce_sum(w.value())
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(gc.global_variables_initializer())
        np.testing.assert_allclose(sess.run(y), np.full((1, 3), 3.0 + 2.0 + 3.0))
        np.testing.assert_allclose(sess.run(w), [[1.0, 2.0]])
        assert sess.run(v64) == 3.0 and sess.run(v64).dtype == np.float64
        out = sess.run(w.assign([[5.0, 6.0]]))
        np.testing.assert_allclose(out, [[5.0, 6.0]])
        np.testing.assert_allclose(sess.run(w.assign_add([[1.0, 1.0]])), [[6.0, 7.0]])
        np.testing.assert_allclose(sess.run(w.assign_sub([[2.0, 2.0]])), [[4.0, 5.0]])
        np.testing.assert_allclose(sess.run(w), [[4.0, 5.0]])  # lives across runs
        np.testing.assert_allclose(sess.run(gc.assign(w, [[0.0, 1.0]])), [[0.0, 1.0]])
        np.testing.assert_allclose(sess.run(gc.assign_add(w, w)), [[0.0, 2.0]])
        np.testing.assert_allclose(sess.run(gc.assign_sub(w, [[1.0, 1.0]])), [[-1.0, 1.0]])
        sess.run(w.initializer)
        np.testing.assert_allclose(sess.run(w), [[1.0, 2.0]])


def test_variable_initializers_and_collections(target):
    a = gc.Variable(1.0, name="a")
    b = gc.Variable(gc.random_normal((3,), seed=1), name="b")
    frozen = gc.Variable([1, 2], trainable=False, name="frozen")
    assert gc.global_variables() == [a, b, frozen]
    assert gc.trainable_variables() == [a, b]
    init_a = gc.variables_initializer([a])
    assert isinstance(init_a, gc.Operation)
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(init_a)
        assert sess.run(a) == 1.0
        with pytest.raises(gc.errors.FailedPreconditionError, match="frozen"):
            sess.run(frozen)
        sess.run(gc.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(frozen), [1, 2])
        assert sess.run(b).shape == (3,)
    # each session holds its own values
    with (
        gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as s1,
        gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as s2,
    ):
        s1.run(a.initializer)
        s2.run(a.initializer)
        s1.run(a.assign(5.0))
        assert s1.run(a) == 5.0 and s2.run(a) == 1.0


def test_uninitialized_variable_read_names_it(target):
    v = gc.Variable(np.zeros(3), name="weights")
    y = v * 2
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        with pytest.raises(gc.errors.FailedPreconditionError, match="weights"):
            sess.run(y)
        with pytest.raises(gc.errors.FailedPreconditionError, match="weights"):
            sess.run(v.assign_add(np.ones(3)))
        assert issubclass(gc.errors.FailedPreconditionError, gc.errors.GraphcError)
        # the session stays usable after the error
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(y), np.zeros(3))


def test_variable_assign_errors_at_build_time():
    v = gc.Variable(np.zeros((2, 3), np.float32), name="matrix_var")
    with pytest.raises(ValueError) as info:
        v.assign(np.zeros((3, 2), np.float32))
    assert "matrix_var" in str(info.value) and "(3, 2)" in str(info.value)
    assert "(2, 3)" in str(info.value) and FILE in str(info.value)
    with pytest.raises(ValueError):
        gc.assign_add(v, np.zeros((4,), np.float32))


def test_variable_as_feed_key_and_feed_overrides_value(target):
    v = gc.Variable(np.array([1.0, 2.0]), name="v")
    y = v * 3
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        # feeding a variable overrides its value for this run (no initialisation needed)
        np.testing.assert_allclose(sess.run(y, {v: [10.0, 20.0]}), [30.0, 60.0])
        sess.run(v.initializer)
        np.testing.assert_allclose(sess.run(y, {"v:0": [0.0, 1.0]}), [0.0, 3.0])
        np.testing.assert_allclose(sess.run(v), [1.0, 2.0])


# =============================================================================================
# Ops: elementwise
# =============================================================================================

_X = np.array([[-2.5, -1.5, -0.5, 0.0], [0.5, 1.5, 2.5, 3.7]], np.float64)
_POS = np.abs(_X) + 0.25
_Y = np.array([1.5, -2.0, 0.75, 3.0])
_erf = np.vectorize(__import__("math").erf)

UNARY = {
    "negative": (np.negative, _X), "abs": (np.abs, _X), "sign": (np.sign, _X),
    "exp": (np.exp, _X), "expm1": (np.expm1, _X), "log": (np.log, _POS),
    "log1p": (np.log1p, _POS), "sqrt": (np.sqrt, _POS), "rsqrt": (lambda v: 1 / np.sqrt(v), _POS),
    "square": (np.square, _X), "reciprocal": (np.reciprocal, _POS), "sin": (np.sin, _X),
    "cos": (np.cos, _X), "tan": (np.tan, _X / 3), "tanh": (np.tanh, _X),
    "sigmoid": (lambda v: 1 / (1 + np.exp(-v)), _X), "erf": (_erf, _X),
    "floor": (np.floor, _X), "ceil": (np.ceil, _X), "round": (np.round, _X),
    "is_nan": (np.isnan, np.array([1.0, np.nan, np.inf])),
    "is_finite": (np.isfinite, np.array([1.0, np.nan, -np.inf])),
}  # fmt: skip

BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "floordiv": np.floor_divide, "mod": np.mod, "maximum": np.maximum, "minimum": np.minimum,
    "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
}  # fmt: skip


def test_elementwise_unary_values(target):
    outs = {k: getattr(gc, k)(gc.constant(x)) for k, (_, x) in UNARY.items()}
    got = run(outs, target=target)
    for k, (fn, x) in UNARY.items():
        np.testing.assert_allclose(got[k], fn(x), rtol=1e-6, atol=1e-12, err_msg=k)
        assert got[k].dtype == np.asarray(fn(x)).dtype, k
    # round is half to even (numpy and TF)
    np.testing.assert_array_equal(
        run(gc.round([0.5, 1.5, 2.5, -0.5]), target=target), [0, 2, 2, -0]
    )


def test_elementwise_binary_values_with_broadcasting(target):
    a = gc.constant(_X)
    outs = {k: getattr(gc, k)(a, _Y) for k in BINARY}
    outs["pow"] = gc.pow(gc.constant(_POS), _Y)
    got = run(outs, target=target)
    for k, fn in BINARY.items():
        np.testing.assert_allclose(got[k], fn(_X, _Y), rtol=1e-12, err_msg=k)
        assert got[k].dtype == fn(_X, _Y).dtype, k
    np.testing.assert_allclose(got["pow"], _POS**_Y, rtol=1e-12)


def test_where_cast_logical_clip(target):
    c = np.array([[True, False, True]])
    x = np.arange(6.0).reshape(2, 3)
    got = run(
        {
            "where": gc.where(c, x, -x),
            "where_b": gc.where(gc.constant(x) > 2, x, 0.0),
            "cast_i": gc.cast(gc.constant([1.7, -1.7, 2.5]), gc.int32),
            "cast_f": gc.cast(gc.constant([1, 2]), gc.float64),
            "cast_b": gc.cast(gc.constant([0.0, 2.0]), gc.bool),
            "cast_bf": gc.cast(gc.constant([True, False]), gc.float32),
            "and": gc.logical_and(c, [[True, True, False]]),
            "or": gc.logical_or(c, [[False, True, False]]),
            "not": gc.logical_not(c),
            "clip": gc.clip_by_value(gc.constant(x), 1.5, 4.0),
        },
        target=target,
    )
    np.testing.assert_array_equal(got["where"], np.where(c, x, -x))
    np.testing.assert_array_equal(got["where_b"], np.where(x > 2, x, 0))
    np.testing.assert_array_equal(got["cast_i"], [1, -1, 2])  # toward zero
    assert got["cast_i"].dtype == np.int32 and got["cast_f"].dtype == np.float64
    np.testing.assert_array_equal(got["cast_b"], [False, True])
    np.testing.assert_array_equal(got["cast_bf"], [1.0, 0.0])
    np.testing.assert_array_equal(got["and"], [[True, False, False]])
    np.testing.assert_array_equal(got["or"], [[True, True, True]])
    np.testing.assert_array_equal(got["not"], [[False, True, False]])
    np.testing.assert_array_equal(got["clip"], np.clip(x, 1.5, 4.0))
    with pytest.raises(TypeError, match="Select"):
        gc.where(gc.constant([1.0]), 1.0, 2.0)  # condition must be bool


# =============================================================================================
# Ops: reductions
# =============================================================================================


def test_reductions_axis_forms_and_keepdims(target):
    x_np = np.random.default_rng(0).normal(size=(2, 3, 4))
    x = gc.constant(x_np)
    b_np = x_np > 0
    cases = []
    for name, fn in [
        ("reduce_sum", np.sum), ("reduce_mean", np.mean), ("reduce_max", np.max),
        ("reduce_min", np.min), ("reduce_prod", np.prod),
        ("reduce_logsumexp", lambda v, axis, keepdims: np.log(np.sum(np.exp(v), axis=axis,
                                                                     keepdims=keepdims))),
    ]:  # fmt: skip
        for axis in (None, 1, -1, (0, 2), (-1, 0)):
            for keepdims in (False, True):
                cases.append((name, fn, x_np, x, axis, keepdims))
    for name, fn in [("reduce_any", np.any), ("reduce_all", np.all)]:
        for axis in (None, 0, (1, 2)):
            for keepdims in (False, True):
                cases.append((name, fn, b_np, gc.constant(b_np), axis, keepdims))
    tensors = [getattr(gc, n)(t, axis=a, keepdims=k) for n, _, _, t, a, k in cases]
    got = run(tensors, target=target)
    for (name, fn, v, _, axis, keepdims), t, out in zip(cases, tensors, got):
        want = fn(v, axis=axis, keepdims=keepdims)
        assert t.shape == np.shape(want), (name, axis, keepdims)
        np.testing.assert_allclose(out, want, rtol=1e-10, err_msg=f"{name} {axis} {keepdims}")
    # positional axis and gc.math aliases
    np.testing.assert_allclose(run(gc.math.reduce_sum(x, 1)), x_np.sum(1))
    with pytest.raises(ValueError, match="ReduceSum|Sum|axis"):
        gc.reduce_sum(x, axis=3)


def test_argmax_argmin_int64(target):
    x_np = np.array([[3.0, 9.0, 1.0], [7.0, 2.0, 8.0]])
    x = gc.constant(x_np)
    t = {
        "amax1": gc.argmax(x, axis=1), "amax0": gc.argmax(x, axis=0),
        "amin": gc.argmin(x, axis=-1), "amax_neg": gc.argmax(x, -2),
    }  # fmt: skip
    for v in t.values():
        assert v.dtype == gc.int64
    got = run(t, target=target)
    np.testing.assert_array_equal(got["amax1"], x_np.argmax(1))
    np.testing.assert_array_equal(got["amax0"], x_np.argmax(0))
    np.testing.assert_array_equal(got["amin"], x_np.argmin(-1))
    np.testing.assert_array_equal(got["amax_neg"], x_np.argmax(0))
    for v in got.values():
        assert v.dtype == np.int64
    assert gc.argmax(x, 1, output_type=gc.int32).dtype == gc.int32


def test_cumsum(target):
    x_np = np.arange(1.0, 13.0).reshape(3, 4)
    x = gc.constant(x_np)
    got = run(
        {
            "a0": gc.cumsum(x),
            "a1": gc.cumsum(x, axis=1),
            "neg": gc.cumsum(x, axis=-1),
            "excl": gc.cumsum(x, axis=1, exclusive=True),
            "rev": gc.cumsum(x, axis=1, reverse=True),
            "both": gc.cumsum(x, axis=0, exclusive=True, reverse=True),
            "int": gc.cumsum(gc.constant([1, 2, 3])),
        },  # fmt: skip
        target=target,
    )
    np.testing.assert_allclose(got["a0"], np.cumsum(x_np, 0))
    np.testing.assert_allclose(got["a1"], np.cumsum(x_np, 1))
    np.testing.assert_allclose(got["neg"], np.cumsum(x_np, 1))
    np.testing.assert_allclose(got["excl"], np.cumsum(x_np, 1) - x_np)
    np.testing.assert_allclose(got["rev"], np.cumsum(x_np[:, ::-1], 1)[:, ::-1])
    np.testing.assert_allclose(got["both"], np.cumsum(x_np[::-1], 0)[::-1] - x_np)
    np.testing.assert_array_equal(got["int"], [1, 3, 6])
    assert got["int"].dtype == np.int32


# =============================================================================================
# Ops: linear algebra
# =============================================================================================


def test_matmul_transpose_flags_and_batch_broadcasting(target):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 5))
    ba, bb = rng.normal(size=(2, 1, 3, 4)), rng.normal(size=(6, 4, 5))
    t = {
        "plain": gc.matmul(a, b),
        "ta": gc.matmul(a.T.copy(), b, transpose_a=True),
        "tb": gc.matmul(a, b.T.copy(), transpose_b=True),
        "both": gc.matmul(a.T.copy(), b.T.copy(), transpose_a=True, transpose_b=True),
        "batch": gc.matmul(ba, bb),
        "batch_t": gc.matmul(ba, np.swapaxes(bb, -1, -2).copy(), transpose_b=True),
        "op": gc.constant(ba) @ bb,
    }
    assert t["batch"].shape == (2, 6, 3, 5)
    got = run(t, target=target)
    for k in ("plain", "ta", "tb", "both"):
        np.testing.assert_allclose(got[k], a @ b, rtol=1e-10, err_msg=k)
    for k in ("batch", "batch_t", "op"):
        np.testing.assert_allclose(got[k], ba @ bb, rtol=1e-10, err_msg=k)
    p = gc.placeholder(gc.float64, (None, 4), name="p")
    np.testing.assert_allclose(run(gc.matmul(p, b), {p: a}, target=target), a @ b, rtol=1e-10)
    with pytest.raises(ValueError, match=r"MatMul.*\(3, 4\).*\(3, 4\)"):
        gc.matmul(a, a)


def test_tensordot(target):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 3, 5))
    got = run(
        {
            "int": gc.tensordot(a, rng.normal(size=(4, 5)), 1),
            "pairs": gc.tensordot(a, b, [[1, 2], [1, 0]]),
            "zero": gc.tensordot(a[0, 0], b[0, 0], 0),
        },
        target=target,
    )
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 3, 5))
    np.testing.assert_allclose(got["int"], np.tensordot(a, rng.normal(size=(4, 5)), 1), rtol=1e-10)
    np.testing.assert_allclose(got["pairs"], np.tensordot(a, b, [[1, 2], [1, 0]]), rtol=1e-10)
    np.testing.assert_allclose(got["zero"], np.tensordot(a[0, 0], b[0, 0], 0), rtol=1e-10)


@pytest.mark.parametrize(
    "eq,shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
        ("ij->ji", [(3, 4)]),
        ("abc->cab", [(2, 3, 4)]),
        ("ij->", [(3, 4)]),
        ("ij->j", [(3, 4)]),
        ("i,i->", [(5,), (5,)]),
        ("i,j->ij", [(3,), (4,)]),
        ("ij,ij->ij", [(3, 4), (3, 4)]),
        ("ij,jk", [(3, 4), (4, 5)]),
        ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ],
)
def test_einsum_forms(eq, shapes, target):
    rng = np.random.default_rng(3)
    ops = [rng.normal(size=s) for s in shapes]
    t = gc.einsum(eq, *ops)
    want = np.einsum(eq, *ops)
    assert t.shape == want.shape
    np.testing.assert_allclose(run(t, target=target), want, rtol=1e-10, atol=1e-12)


def test_einsum_errors_name_the_problem():
    with pytest.raises(ValueError, match="einsum"):
        gc.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="einsum"):
        gc.einsum("ij,jk->ik", np.ones((2, 3)))


# =============================================================================================
# Ops: shape
# =============================================================================================


def test_shape_ops_values(target):
    x_np = np.arange(24.0).reshape(2, 3, 4)
    x = gc.constant(x_np)
    t = {
        "reshape": gc.reshape(x, (4, -1)),
        "reshape2": gc.reshape(x, [-1]),
        "transpose": gc.transpose(x),
        "transpose_perm": gc.transpose(x, perm=[1, 0, 2]),
        "expand": gc.expand_dims(x, 1),
        "expand_neg": gc.expand_dims(x, -1),
        "squeeze": gc.squeeze(gc.constant(np.ones((1, 3, 1)))),
        "squeeze_axis": gc.squeeze(gc.constant(np.ones((1, 3, 1))), axis=[2]),
        "broadcast_to": gc.broadcast_to(gc.constant([1.0, 2.0]), (3, 2)),
        "concat": gc.concat([x, x], axis=1),
        "concat_neg": gc.concat([x, x], axis=-1),
        "stack": gc.stack([x, x], axis=1),
        "slice": gc.slice(x, [0, 1, 1], [2, -1, 2]),
        "tile": gc.tile(gc.constant([[1, 2]]), [2, 3]),
        "reverse": gc.reverse(x, [0, -1]),
        "pad": gc.pad(gc.constant([[1, 2]]), [[1, 0], [0, 2]]),
        "pad_c": gc.pad(gc.constant([[1.0, 2.0]]), [[0, 1], [1, 1]], constant_values=9.0),
        "shape": gc.shape(x),
        "size": gc.size(x),
    }
    got = run(t, target=target)
    np.testing.assert_array_equal(got["reshape"], x_np.reshape(4, -1))
    np.testing.assert_array_equal(got["reshape2"], x_np.reshape(-1))
    np.testing.assert_array_equal(got["transpose"], x_np.T)
    np.testing.assert_array_equal(got["transpose_perm"], x_np.transpose(1, 0, 2))
    np.testing.assert_array_equal(got["expand"], x_np[:, None])
    np.testing.assert_array_equal(got["expand_neg"], x_np[..., None])
    assert got["squeeze"].shape == (3,) and got["squeeze_axis"].shape == (1, 3)
    np.testing.assert_array_equal(got["broadcast_to"], [[1, 2]] * 3)
    np.testing.assert_array_equal(got["concat"], np.concatenate([x_np, x_np], 1))
    np.testing.assert_array_equal(got["concat_neg"], np.concatenate([x_np, x_np], -1))
    np.testing.assert_array_equal(got["stack"], np.stack([x_np, x_np], 1))
    np.testing.assert_array_equal(got["slice"], x_np[0:2, 1:, 1:3])
    np.testing.assert_array_equal(got["tile"], np.tile([[1, 2]], [2, 3]))
    np.testing.assert_array_equal(got["reverse"], x_np[::-1, :, ::-1])
    np.testing.assert_array_equal(got["pad"], np.pad([[1, 2]], [[1, 0], [0, 2]]))
    np.testing.assert_array_equal(
        got["pad_c"], np.pad([[1.0, 2.0]], [[0, 1], [1, 1]], constant_values=9.0)
    )
    np.testing.assert_array_equal(got["shape"], [2, 3, 4])
    assert got["shape"].dtype == np.int32
    assert got["size"] == 24 and got["size"].dtype == np.int32
    with pytest.raises(ValueError, match="-1"):
        gc.reshape(x, (-1, -1))


def test_unstack_and_split(target):
    x_np = np.arange(24.0).reshape(4, 6)
    x = gc.constant(x_np)
    parts = gc.unstack(x)
    assert len(parts) == 4 and parts[0].shape == (6,)
    cols = gc.unstack(x, axis=1)
    even = gc.split(x, 3, axis=1)
    sized = gc.split(x, [1, -1, 2], axis=1)
    rows = gc.split(x, 2)
    assert [p.shape for p in sized] == [(4, 1), (4, 3), (4, 2)]
    got = run({"parts": parts, "cols": cols, "even": even, "sized": sized, "rows": rows},
              target=target)  # fmt: skip
    for i, p in enumerate(got["parts"]):
        np.testing.assert_array_equal(p, x_np[i])
    for i, p in enumerate(got["cols"]):
        np.testing.assert_array_equal(p, x_np[:, i])
    for g, w in zip(got["even"], np.split(x_np, 3, axis=1)):
        np.testing.assert_array_equal(g, w)
    for g, w in zip(got["sized"], np.split(x_np, [1, 4], axis=1)):
        np.testing.assert_array_equal(g, w)
    for g, w in zip(got["rows"], np.split(x_np, 2)):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="(?i)split"):
        gc.split(x, 4, axis=1)


def test_gather_gather_nd_one_hot(target):
    p_np = np.arange(24.0).reshape(4, 3, 2)
    p = gc.constant(p_np)
    idx = np.array([[3, 0], [1, 1]])
    t = {
        "g0": gc.gather(p, idx),
        "g1": gc.gather(p, [2, 0], axis=1),
        "gneg": gc.gather(p, [1], axis=-1),
        "gnd": gc.gather_nd(p, [[0, 1], [3, 2]]),
        "gnd_full": gc.gather_nd(p, [[0, 1, 1], [3, 2, 0]]),
        "oh": gc.one_hot([0, 2, 1, 5], 3),
        "oh_vals": gc.one_hot(gc.constant([[1], [0]]), 2, on_value=5.0, off_value=-1.0),
        "emb": gc.nn.embedding_lookup(p, [1, 1]),
    }
    assert t["g0"].shape == (2, 2, 3, 2) and t["oh"].dtype == gc.float32
    got = run(t, target=target)
    np.testing.assert_array_equal(got["g0"], p_np[idx])
    np.testing.assert_array_equal(got["g1"], p_np[:, [2, 0]])
    np.testing.assert_array_equal(got["gneg"], p_np[:, :, [1]])
    np.testing.assert_array_equal(got["gnd"], np.stack([p_np[0, 1], p_np[3, 2]]))
    np.testing.assert_array_equal(got["gnd_full"], [p_np[0, 1, 1], p_np[3, 2, 0]])
    np.testing.assert_array_equal(got["oh"], np.eye(3)[[0, 2, 1]].tolist() + [[0, 0, 0]])
    np.testing.assert_array_equal(got["oh_vals"], [[[-1.0, 5.0]], [[5.0, -1.0]]])
    np.testing.assert_array_equal(got["emb"], p_np[[1, 1]])


def test_shape_and_size_of_none_dims(target):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    s, n = gc.shape(x), gc.size(x)
    assert s.shape == (2,) and s.dtype == gc.int32
    got = run([s, n], {x: np.ones((5, 3))}, target=target)
    np.testing.assert_array_equal(got[0], [5, 3])
    assert got[1] == 15
    r = gc.reshape(x, (-1,))
    assert r.shape == (None,)
    assert run(r, {x: np.ones((2, 3))}, target=target).shape == (6,)


# =============================================================================================
# Ops: names and aliases
# =============================================================================================

API_TOP_LEVEL = """
add subtract multiply divide floordiv mod pow maximum minimum negative abs sign exp expm1 log
log1p sqrt rsqrt square reciprocal sin cos tan tanh sigmoid erf floor ceil round where cast
equal not_equal less less_equal greater greater_equal logical_and logical_or logical_not
clip_by_value is_nan is_finite
reduce_sum reduce_mean reduce_max reduce_min reduce_prod reduce_logsumexp reduce_any
reduce_all argmax argmin cumsum
matmul tensordot einsum
reshape transpose expand_dims squeeze broadcast_to concat stack unstack split slice gather
gather_nd one_hot pad tile reverse shape size
stop_gradient check_numerics identity no_op group name_scope control_dependencies
constant placeholder placeholder_with_default zeros ones fill zeros_like ones_like range
random_normal random_uniform truncated_normal Variable global_variables trainable_variables
global_variables_initializer variables_initializer assign assign_add
gradients hessians jacobian Graph get_default_graph reset_default_graph Session
CompileOptions RunOptions RunMetadata Tensor Operation
""".split()

API_NN = """
relu relu6 leaky_relu elu selu gelu silu softplus softsign sigmoid tanh softmax log_softmax
bias_add dropout l2_normalize moments layer_norm batch_normalization conv2d conv2d_transpose
max_pool2d avg_pool2d sparse_softmax_cross_entropy_with_logits
softmax_cross_entropy_with_logits sigmoid_cross_entropy_with_logits l2_loss embedding_lookup
""".split()

API_MATH = """
add subtract multiply divide floordiv mod pow maximum minimum negative abs sign exp expm1 log
log1p sqrt rsqrt square reciprocal sin cos tan tanh sigmoid erf floor ceil round equal
not_equal less less_equal greater greater_equal logical_and logical_or logical_not is_nan
is_finite reduce_sum reduce_mean reduce_max reduce_min reduce_prod reduce_logsumexp
reduce_any reduce_all argmax argmin cumsum
""".split()


@pytest.mark.parametrize("name", API_TOP_LEVEL)
def test_every_listed_name_is_in_gc(name):
    assert callable(getattr(gc, name)), name


@pytest.mark.parametrize("name", API_NN)
def test_every_nn_name_is_in_gc_nn(name):
    assert callable(getattr(gc.nn, name)), name


@pytest.mark.parametrize("name", API_NN)
def test_nn_ops_are_also_importable_from_gc(name):
    # "Ops (all importable from gc; gc.nn and gc.math hold the usual aliases)"
    assert getattr(gc, name) is getattr(gc.nn, name)


@pytest.mark.parametrize("name", API_MATH)
def test_usual_math_aliases(name):
    assert getattr(gc.math, name) is getattr(gc, name)


def test_star_imports_of_namespaces():
    import graphc.math
    import graphc.nn

    for module in (graphc.math, graphc.nn):
        for name in module.__all__:
            assert callable(getattr(module, name)), (module.__name__, name)
    namespace: dict = {}
    exec("from graphc.math import *\nfrom graphc.nn import *\nfrom graphc import *", namespace)
    assert "floormod" in namespace and "conv2d" in namespace and "reduce_sum" in namespace


def test_usual_tf_aliases():
    # the aliases TF users reach for (tf.math.*, tf.nn.* spellings of the same functions)
    assert gc.math.truediv is not None and gc.math.squared_difference is not None
    assert gc.math.floormod is gc.mod
    assert gc.math.softplus is gc.nn.softplus
    assert gc.math.log_softmax is gc.nn.log_softmax
    assert gc.math.softmax is gc.nn.softmax
    assert gc.math.l2_normalize is gc.nn.l2_normalize
    assert gc.nn.sigmoid is gc.sigmoid and gc.nn.tanh is gc.tanh
    assert gc.nn.max_pool is not None and gc.nn.avg_pool is not None
    assert gc.nn.softmax_cross_entropy_with_logits_v2 is not None and gc.nn.swish is gc.nn.silu


# =============================================================================================
# Ops: gc.nn
# =============================================================================================


def _np_softmax(v, axis=-1):
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_nn_activations(target):
    x = np.linspace(-7.0, 8.0, 31)
    erf = np.vectorize(__import__("math").erf)
    selu_a, selu_s = 1.6732632423543772, 1.0507009873554805
    want = {
        "relu": np.maximum(x, 0),
        "relu6": np.clip(x, 0, 6),
        "leaky_relu": np.where(x > 0, x, 0.2 * x),
        "elu": np.where(x > 0, x, np.expm1(x)),
        "selu": selu_s * np.where(x > 0, x, selu_a * np.expm1(x)),
        "gelu": 0.5 * x * (1 + erf(x / np.sqrt(2))),
        "silu": x * _np_sigmoid(x),
        "softplus": np.log1p(np.exp(x)),
        "softsign": x / (1 + np.abs(x)),
        "sigmoid": _np_sigmoid(x),
        "tanh": np.tanh(x),
    }
    t = {k: getattr(gc.nn, k)(x) for k in want}
    t["gelu_tanh"] = gc.nn.gelu(x, approximate=True)
    t["leaky_05"] = gc.nn.leaky_relu(x, alpha=0.5)
    want["gelu_tanh"] = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    want["leaky_05"] = np.where(x > 0, x, 0.5 * x)
    got = run(t, target=target)
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=1e-9, atol=1e-12, err_msg=k)


def test_nn_softmax_family(target):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4, 5)) * 3
    labels_sparse = np.array([0, 4, 2, 2])
    labels = _np_softmax(rng.normal(size=(4, 5)))
    binary = rng.uniform(size=(4, 5))
    logp = np.log(_np_softmax(logits))
    t = {
        "softmax": gc.nn.softmax(logits),
        "softmax0": gc.nn.softmax(logits, axis=0),
        "log_softmax": gc.nn.log_softmax(logits),
        "sparse": gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels_sparse, logits=logits
        ),
        "dense": gc.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits),
        "sigmoid_ce": gc.nn.sigmoid_cross_entropy_with_logits(labels=binary, logits=logits),
        "l2_loss": gc.nn.l2_loss(logits),
        "l2n": gc.nn.l2_normalize(logits, axis=1),
        "bias_add": gc.nn.bias_add(logits, np.arange(5.0)),
    }
    got = run(t, target=target)
    np.testing.assert_allclose(got["softmax"], _np_softmax(logits), rtol=1e-10)
    np.testing.assert_allclose(got["softmax0"], _np_softmax(logits, 0), rtol=1e-10)
    np.testing.assert_allclose(got["log_softmax"], logp, rtol=1e-10)
    np.testing.assert_allclose(got["sparse"], -logp[np.arange(4), labels_sparse], rtol=1e-10)
    np.testing.assert_allclose(got["dense"], -(labels * logp).sum(1), rtol=1e-10)
    p = _np_sigmoid(logits)
    np.testing.assert_allclose(
        got["sigmoid_ce"], -(binary * np.log(p) + (1 - binary) * np.log(1 - p)), rtol=1e-9
    )
    np.testing.assert_allclose(got["l2_loss"], (logits**2).sum() / 2, rtol=1e-12)
    np.testing.assert_allclose(
        got["l2n"], logits / np.sqrt((logits**2).sum(1, keepdims=True)), rtol=1e-10
    )
    np.testing.assert_allclose(got["bias_add"], logits + np.arange(5.0))
    # keyword-only spirit of TF: positional labels/logits are a common bug, names are required
    with pytest.raises(ValueError, match="labels"):
        gc.nn.softmax_cross_entropy_with_logits(logits=logits)


def test_nn_moments_layer_norm_batch_normalization(target):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 4, 5))
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    mean, var = gc.nn.moments(x, axes=[0, 1])
    mean_k, var_k = gc.nn.moments(x, [2], keepdims=True)
    t = {
        "mean": mean, "var": var, "mean_k": mean_k, "var_k": var_k,
        "ln": gc.nn.layer_norm(x, gamma, beta),
        "ln_plain": gc.nn.layer_norm(x, axis=[1, 2], epsilon=1e-3),
        "bn": gc.nn.batch_normalization(x, x.mean((0, 1)), x.var((0, 1)), beta, gamma, 1e-3),
    }  # fmt: skip
    got = run(t, target=target)
    np.testing.assert_allclose(got["mean"], x.mean((0, 1)), rtol=1e-10)
    np.testing.assert_allclose(got["var"], x.var((0, 1)), rtol=1e-10)
    assert got["mean_k"].shape == (3, 4, 1)
    np.testing.assert_allclose(got["var_k"], x.var(2, keepdims=True), rtol=1e-10)
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(got["ln"], (x - m) / np.sqrt(v + 1e-5) * gamma + beta, rtol=1e-9)
    m, v = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(got["ln_plain"], (x - m) / np.sqrt(v + 1e-3), rtol=1e-9)
    want = (x - x.mean((0, 1))) / np.sqrt(x.var((0, 1)) + 1e-3) * gamma + beta
    np.testing.assert_allclose(got["bn"], want, rtol=1e-9)


def _np_conv2d(x, w, stride, padding, dilation=1):
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    ekh, ekw = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph = max((oh - 1) * stride + ekh - h, 0)
        pw = max((ow - 1) * stride + ekw - wd, 0)
        x = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    else:
        oh, ow = (h - ekh) // stride + 1, (wd - ekw) // stride + 1
    out = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = x[
                :,
                i * stride : i * stride + ekh : dilation,
                j * stride : j * stride + ekw : dilation,
            ]
            out[:, i, j] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def _np_pool(x, k, stride, padding, fn):
    n, h, wd, c = x.shape
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph, pw = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - wd, 0)
        top, left = ph // 2, pw // 2
    else:
        oh, ow, top, left = (h - k) // stride + 1, (wd - k) // stride + 1, 0, 0
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - top, j * stride - left
            win = x[:, max(r0, 0) : r0 + k, max(c0, 0) : c0 + k]  # padding is not counted
            out[:, i, j] = fn(win, axis=(1, 2))
    return out


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_nn_conv2d_and_pooling_nhwc(padding, target):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 7, 6, 3))
    w = rng.normal(size=(3, 2, 3, 4))
    t = {
        "conv": gc.nn.conv2d(x, w, strides=2, padding=padding),
        "conv_list": gc.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding=padding),
        "dil": gc.nn.conv2d(x, w, strides=1, padding=padding, dilations=2),
        "max": gc.nn.max_pool2d(x, ksize=3, strides=2, padding=padding),
        "avg": gc.nn.avg_pool2d(x, ksize=2, strides=2, padding=padding),
    }
    got = run(t, target=target)
    np.testing.assert_allclose(got["conv"], _np_conv2d(x, w, 2, padding), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["conv_list"], _np_conv2d(x, w, 1, padding), rtol=1e-9,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(got["dil"], _np_conv2d(x, w, 1, padding, 2), rtol=1e-9,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(got["max"], _np_pool(x, 3, 2, padding, np.max), rtol=1e-12)
    np.testing.assert_allclose(got["avg"], _np_pool(x, 2, 2, padding, np.mean), rtol=1e-12)
    with pytest.raises(ValueError) as info:
        gc.nn.conv2d(x, rng.normal(size=(3, 3, 5, 4)), strides=1, padding=padding)
    msg = str(info.value)
    assert "Conv2D" in msg and "(2, 7, 6, 3)" in msg and "(3, 3, 5, 4)" in msg and FILE in msg


def test_nn_conv2d_transpose_is_the_adjoint_of_conv2d(target):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(1, 6, 6, 2))
    w = rng.normal(size=(3, 3, 4, 2))  # HWIO of the transposed conv: out 4, in 2
    y = rng.normal(size=(1, 12, 12, 4))
    up = gc.nn.conv2d_transpose(x, w, output_shape=(1, 12, 12, 4), strides=2, padding="SAME")
    assert up.shape == (1, 12, 12, 4)
    got = run(up, target=target)
    # <conv2d_transpose(x), y> == <x, conv2d(y)>
    down = _np_conv2d(y, w, 2, "SAME")
    np.testing.assert_allclose((got * y).sum(), (x * down).sum(), rtol=1e-9)


def test_nn_dropout(target):
    x = np.ones((200, 100), np.float32)
    d = gc.nn.dropout(x, rate=0.25, seed=3)
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        a, b = sess.run(d), sess.run(d)
    kept = a != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(a[kept], 1 / 0.75, rtol=1e-6)
    assert not np.array_equal(a, b)
    again = run(d, target=target)
    np.testing.assert_array_equal(again, a)  # seeded: the same stream in a new session
    rate = gc.placeholder_with_default(0.0, ())
    e = gc.nn.dropout(x, rate=rate, seed=1)
    np.testing.assert_array_equal(run(e, target=target), x)
    assert (run(e, {rate: 0.5}, target=target) == 0).mean() > 0.4
    with pytest.raises(ValueError, match="rate"):
        gc.nn.dropout(x, rate=1.5)


def test_stop_gradient_and_check_numerics(target):
    x = gc.placeholder(gc.float64, (3,), name="x")
    y = gc.reduce_sum(x * gc.stop_gradient(x * 2))
    (g,) = gc.gradients(y, [x])
    v = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(run(g, {x: v}, target=target), 2 * v)  # not 4 * v
    np.testing.assert_allclose(run(gc.stop_gradient(x), {x: v}, target=target), v)
    checked = gc.check_numerics(gc.log(x), "log of x went bad")
    np.testing.assert_allclose(run(checked, {x: v}, target=target), np.log(v))
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        with pytest.raises(gc.errors.InvalidArgumentError, match="log of x went bad"):
            sess.run(checked, {x: [1.0, -1.0, 2.0]})  # NaN
        with pytest.raises(gc.errors.InvalidArgumentError, match="log of x went bad"):
            sess.run(checked, {x: [1.0, 0.0, 2.0]})  # -Inf
        np.testing.assert_allclose(sess.run(checked, {x: v}), np.log(v))  # still usable
    # a check whose output is not fetched still runs when a consumer of it is fetched
    z = gc.check_numerics(x, "x has NaN") * 2
    with pytest.raises(gc.errors.InvalidArgumentError, match="x has NaN"):
        run(z, {x: [np.nan, 0.0, 0.0]}, target=target)


# =============================================================================================
# Automatic differentiation
# =============================================================================================


def test_gradients_basics(target):
    x = gc.placeholder(gc.float64, (3,), name="x")
    w = gc.Variable(np.array([1.0, -2.0, 0.5]), name="w")
    unrelated = gc.placeholder(gc.float64, (3,), name="unrelated")
    y = gc.reduce_sum(gc.sin(x) * w)
    grads = gc.gradients(y, [x, w, unrelated])
    assert isinstance(grads, list) and len(grads) == 3 and grads[2] is None
    assert grads[0].shape == (3,) and grads[0].dtype == gc.float64
    single = gc.gradients(y, x)  # a single x still gives a list (TF)
    assert isinstance(single, list) and len(single) == 1
    xv = np.array([0.1, 0.7, -1.3])
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(w.initializer)
        gx, gw, gs = sess.run(grads[:2] + single, {x: xv})
    np.testing.assert_allclose(gx, np.cos(xv) * [1.0, -2.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(gw, np.sin(xv), rtol=1e-12)
    np.testing.assert_allclose(gs, gx)
    # the gradient ops are in the graph of ys
    assert grads[0].graph is y.graph and grads[0].op in y.graph.get_operations()


def test_gradients_list_of_ys_grad_ys_and_stop_gradients(target):
    x = gc.placeholder(gc.float64, (2,), name="x")
    a = x * 3.0
    y1 = gc.reduce_sum(a * a)
    y2 = gc.reduce_sum(gc.exp(x))
    (g_sum,) = gc.gradients([y1, y2], [x])
    (g_seed,) = gc.gradients(a, [x], grad_ys=np.array([1.0, 10.0]))
    (g_stop,) = gc.gradients(y1 + y2, [x], stop_gradients=[a])
    xv = np.array([0.5, -1.0])
    got = run([g_sum, g_seed, g_stop], {x: xv}, target=target)
    np.testing.assert_allclose(got[0], 18 * xv + np.exp(xv), rtol=1e-12)
    np.testing.assert_allclose(got[1], [3.0, 30.0])
    np.testing.assert_allclose(got[2], np.exp(xv), rtol=1e-12)
    with pytest.raises(ValueError, match="grad_ys"):
        gc.gradients(a, [x], grad_ys=np.ones(3))


def test_gradients_of_gradients(target):
    x = gc.placeholder(gc.float64, (3,), name="x")
    y = gc.reduce_sum(x**3 * gc.sin(x))
    (g,) = gc.gradients(y, [x])
    (gg,) = gc.gradients(g, [x])  # diagonal of the Hessian (summed over rows)
    xv = np.array([0.3, -0.8, 1.1])
    want = 6 * xv * np.sin(xv) + 6 * xv**2 * np.cos(xv) - xv**3 * np.sin(xv)
    np.testing.assert_allclose(run(gg, {x: xv}, target=target), want, rtol=1e-10)


def test_hessians_and_jacobian(target):
    x = gc.placeholder(gc.float64, (3,), name="x")
    a = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]])
    y = gc.reduce_sum(x * gc.reshape(gc.matmul(a, gc.reshape(x, (3, 1))), (3,)))
    y = y + gc.reduce_sum(x**3)
    (h,) = gc.hessians(y, [x])
    assert h.shape == (3, 3)
    m = gc.placeholder(gc.float64, (2, 2), name="m")
    f = gc.exp(m) * 2.0
    jac = gc.jacobian(f, m)
    assert jac.shape == (2, 2, 2, 2)
    xv, mv = np.array([0.5, -1.0, 2.0]), np.array([[0.1, 0.2], [0.3, 0.4]])
    got_h, got_j = run([h, jac], {x: xv, m: mv}, target=target)
    np.testing.assert_allclose(got_h, 2 * a + np.diag(6 * xv), rtol=1e-10)
    want_j = np.zeros((2, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            want_j[i, j, i, j] = 2 * np.exp(mv[i, j])
    np.testing.assert_allclose(got_j, want_j, rtol=1e-12)


def test_gradients_through_indexing_compile_like_any_graph(target):
    """API.md: the gradient graph "can be ... optimised and compiled like any other"."""
    x = gc.placeholder(gc.float64, (3, 2), name="x")
    y = gc.reduce_sum(x[:, 0] * x[1, 1])
    (g,) = gc.gradients(y, [x])
    xv = np.arange(6.0).reshape(3, 2)
    want = np.zeros((3, 2))
    want[:, 0] = xv[1, 1]
    want[1, 1] = xv[:, 0].sum()
    np.testing.assert_allclose(run(g, {x: xv}, target=target), want)


# =============================================================================================
# Sessions
# =============================================================================================


def test_session_construction_and_targets():
    assert gc.Session().target == "cpu"  # the default
    g = gc.Graph()
    with gc.Session(graph=g, target="reference", options=gc.CompileOptions(fusion=False)) as s:
        assert s.graph is g and s.target == "reference"
        assert gc.get_default_graph() is g  # with sess: makes its graph the default
    with pytest.raises(ValueError, match="tpu"):
        gc.Session(target="tpu")
    try:
        sess = gc.Session(target="cuda")
    except gc.errors.UnavailableError as exc:
        assert "cuda" in str(exc).lower()
    else:
        assert sess.target == "cuda"
        sess.close()


def test_fetch_structures_and_names(target):
    Pair = collections.namedtuple("Pair", "first second")
    a = gc.constant(2.5, name="a")
    b = gc.constant([[1, 2]], name="b")
    op = gc.no_op(name="nothing")
    fetches = {
        "tensor": a, "op": op, "tname": "b:0", "oname": "nothing",
        "nest": [a, (b, {"deep": [a, "a:0"]})], "pair": Pair(a, second=[b]),
        "tuple": (a,), "empty": [],
    }  # fmt: skip
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        out = sess.run(fetches)
        assert sess.run(a) == 2.5 and sess.run(op) is None and sess.run([]) == []
        assert sess.run("a:0") == 2.5 and sess.run("nothing") is None
    assert isinstance(out["tensor"], np.float32) and np.ndim(out["tensor"]) == 0
    assert out["op"] is None and out["oname"] is None
    np.testing.assert_array_equal(out["tname"], [[1, 2]])
    assert isinstance(out["tname"], np.ndarray) and out["tname"].dtype == np.int32
    assert isinstance(out["nest"], list) and isinstance(out["nest"][1], tuple)
    assert isinstance(out["nest"][1][1]["deep"], list) and out["nest"][1][1]["deep"][1] == 2.5
    assert isinstance(out["pair"], Pair) and out["pair"].first == 2.5
    np.testing.assert_array_equal(out["pair"].second[0], [[1, 2]])
    assert out["tuple"] == (2.5,) and out["empty"] == []
    # fetched arrays are the caller's: changing one changes nothing in the session
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        first = sess.run(b)
        first[0, 0] = 99
        np.testing.assert_array_equal(sess.run(b), [[1, 2]])
    with pytest.raises(TypeError):
        run({"bad": 3.0})
    with pytest.raises((KeyError, ValueError), match="missing"):
        run("missing:0")


def test_feeds_by_tensor_variable_name_and_value_kinds(target):
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    k = gc.placeholder(gc.int64, (), name="k")
    v = gc.Variable(np.zeros(2, np.float32), name="v")
    y = x * gc.cast(k, gc.float32) + v
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(v.initializer)
        np.testing.assert_allclose(sess.run(y, {x: [[1, 2]], k: 3}), [[3, 6]])
        np.testing.assert_allclose(sess.run(y, {"x:0": ((1.0, 1.0),), "k:0": np.int64(2)}),
                                   [[2, 2]])  # fmt: skip
        np.testing.assert_allclose(sess.run(y, {x: np.ones((3, 2)), k: 1, v: [10, 20]}),
                                   np.ones((3, 2)) + [10, 20])  # fmt: skip
        np.testing.assert_allclose(sess.run(y, {x: [[1, 1]], k: np.array(1), "v:0": [5, 5]}),
                                   [[6, 6]])  # fmt: skip
        np.testing.assert_allclose(sess.run(v), [0, 0])  # a feed does not assign


def test_feeding_non_placeholders_overrides_them(target):
    x = gc.placeholder(gc.float64, (2,), name="x")
    hidden = gc.exp(x, name="hidden")
    out = hidden * 2
    c = gc.constant(5.0, name="five")
    z = c + 1
    got = run([out, z], {hidden: [1.0, 2.0], c: 10.0}, target=target)
    np.testing.assert_allclose(got[0], [2.0, 4.0])  # x is not needed once hidden is fed
    assert got[1] == 11.0


def test_feed_mismatch_is_a_value_error_and_nothing_runs(target):
    x = gc.placeholder(gc.float32, (None, 3), name="inputs")
    counter = gc.Variable(0, name="counter")
    with gc.control_dependencies([counter.assign_add(1)]):
        y = gc.reduce_sum(x, axis=1)
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(counter.initializer)
        sess.run(y, {x: np.ones((2, 3))})
        assert sess.run(counter) == 1
        with pytest.raises(ValueError) as info:
            sess.run(y, {x: np.ones((2, 4))})
        msg = str(info.value)
        assert "inputs:0" in msg and "(2, 4)" in msg and "(None, 3)" in msg
        with pytest.raises(ValueError) as info:
            sess.run(y, {x: np.ones((3,))})
        assert "inputs:0" in str(info.value) and "(3,)" in str(info.value)
        with pytest.raises(ValueError) as info:
            sess.run(y, {x: np.array([["a", "b", "c"]])})
        assert "inputs:0" in str(info.value) and "float32" in str(info.value)
        i = gc.placeholder(gc.int32, (2,), name="ints")
        with pytest.raises(ValueError) as info:
            sess.run(i * 2, {i: np.array([1.5, 2.0])})
        msg = str(info.value)
        assert "ints:0" in msg and "int32" in msg and "float64" in msg
        with pytest.raises(ValueError, match="inputs:0"):
            sess.run(y, {"inputs:0": [[1.0, 2.0]]})
        assert sess.run(counter) == 1  # nothing ran
        # the same signature right after a good run: still checked
        sess.run(y, {x: np.ones((2, 3), np.float32)})
        with pytest.raises(ValueError, match="inputs:0"):
            sess.run(y, {x: np.ones((2, 2), np.float32)})
        with pytest.raises(ValueError, match="inputs:0"):
            sess.run(y, {x: np.ones((2, 3), np.complex64)})
        assert sess.run(counter) == 2


def test_missing_placeholder_is_invalid_argument_naming_it(target):
    a = gc.placeholder(gc.float32, (2,), name="first_input")
    b = gc.placeholder(gc.float32, (2,), name="second_input")
    y = gc.reduce_sum(a * b)
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        with pytest.raises(gc.errors.InvalidArgumentError, match="second_input"):
            sess.run(y, {a: [1.0, 2.0]})
        with pytest.raises(gc.errors.InvalidArgumentError, match="first_input"):
            sess.run(y, {b: [1.0, 2.0]})
        assert sess.run(y, {a: [1.0, 2.0], b: [3.0, 4.0]}) == 11.0


def test_compile_and_cache_info(target):
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    y = gc.reduce_sum(gc.tanh(x) * 2.0 + 1.0, axis=1)
    z = gc.reduce_max(x)
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        info = sess.cache_info()
        assert info["compiles"] == 0 and info["hits"] == 0
        exe = sess.compile(y, [x])
        assert sess.cache_info()["compiles"] == 1
        assert isinstance(exe.kernels, list) and exe.kernels
        covered = {op for k in exe.kernels for op in k.ops}
        assert covered, "each kernel lists the ops it computes"
        assert exe.stats["kernel_count"] == len(exe.kernels)
        assert isinstance(exe.stats["compile_seconds"], dict)
        assert isinstance(exe.dump_ir("input"), str) and "Tanh" in exe.dump_ir("input")
        assert "digraph" in exe.to_dot()
        for n in (2, 5, 1, 7):  # a None dim changing size does not recompile
            v = np.random.default_rng(n).normal(size=(n, 4)).astype(np.float32)
            np.testing.assert_allclose(sess.run(y, {x: v}), (np.tanh(v) * 2 + 1).sum(1),
                                       rtol=1e-5)  # fmt: skip
        info = sess.cache_info()
        assert info["compiles"] == 1 and info["hits"] == 4
        sess.run(z, {x: np.ones((2, 4))})  # a new signature compiles
        sess.run(z, {"x:0": np.ones((3, 4))})  # the same signature by name: reused
        assert sess.cache_info()["compiles"] == 2
        assert sess.cache_info()["hits"] == 5


def test_compile_then_run_is_a_cache_hit_for_any_fetch_structure(target):
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = x * 3.0
    op = gc.no_op(name="noop")
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        exe = sess.compile({"a": y, "b": [y, op, "noop"]}, ["x:0", x])
        assert sess.cache_info()["compiles"] == 1
        out = sess.run([y, op], {x: [1.0, 2.0]})
        np.testing.assert_allclose(out[0], [3.0, 6.0])
        assert sess.cache_info()["compiles"] == 1 and sess.cache_info()["hits"] == 1
        assert exe is sess.compile((y, op), [x])
        with pytest.raises(TypeError, match="noop"):
            sess.compile(y, ["noop"])


def test_cache_info_compiles_exclude_disk_cache_loads(tmp_path):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.reduce_sum(gc.exp(x) * 2.0, axis=1)
    v = np.ones((2, 3), np.float32)
    infos = []
    for _ in range(2):
        opts = gc.CompileOptions(cache_dir=tmp_path / "cache")
        with gc.Session(target="cpu", options=opts) as sess:
            np.testing.assert_allclose(sess.run(y, {x: v}), np.exp(v).sum(1) * 2, rtol=1e-6)
            np.testing.assert_allclose(sess.run(y, {x: v[:1]}), np.exp(v[:1]).sum(1) * 2, rtol=1e-6)
            infos.append(sess.cache_info())
    assert infos[0]["compiles"] == 1 and infos[0]["hits"] == 1
    assert infos[1]["compiles"] == 0 and infos[1]["hits"] == 1  # loaded from disk instead


def test_session_usable_after_run_time_errors(target):
    x = gc.placeholder(gc.float32, (2,), name="x")
    v = gc.Variable(0.0, name="steps")
    with gc.control_dependencies([v.assign_add(1.0)]):
        y = gc.check_numerics(gc.log(x), "bad log")
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(v.initializer)
        with pytest.raises(gc.errors.InvalidArgumentError, match="bad log"):
            sess.run(y, {x: [-1.0, 1.0]})
        assert sess.run(v) == 0.0  # a failed run commits no variable update
        np.testing.assert_allclose(sess.run(y, {x: [1.0, np.e]}), [0.0, 1.0], rtol=1e-6)
        assert sess.run(v) == 1.0


def test_compiled_executable_details_on_cpu(tmp_path):
    x = gc.placeholder(gc.float32, (None, 8), name="x")
    w = gc.Variable(np.ones((8, 4), np.float32), name="w")
    y = gc.reduce_mean(gc.nn.relu(gc.matmul(x, w) * 2.0 + 1.0) - 0.5)
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        exe = sess.compile(y, [x])
        for key in ("kernel_count", "buffer_bytes", "peak_temp_bytes", "compile_seconds"):
            assert key in exe.stats, key
        assert exe.stats["compile_seconds"] and all(
            isinstance(v, float) and v >= 0 for v in exe.stats["compile_seconds"].values()
        )
        stages = exe.dump_ir().split("\n")
        assert "input" in stages and len(stages) >= 3
        for stage in stages:
            assert isinstance(exe.dump_ir(stage), str)
        with pytest.raises(KeyError, match="no-such-stage"):
            exe.dump_ir("no-such-stage")
        # compiling ran nothing: the variable is still uninitialised
        with pytest.raises(gc.errors.FailedPreconditionError, match="w"):
            sess.run(y, {x: np.ones((1, 8))})


def test_fusion_false_is_one_kernel_per_op(tmp_path):
    x = gc.placeholder(gc.float32, (None, 16), name="x")
    y = gc.reduce_sum(gc.exp(gc.tanh(x * 2.0) + 1.0) * x, axis=1)
    v = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    kernels = {}
    for fusion in (True, False):
        dump = tmp_path / f"dump_{fusion}"
        opts = gc.CompileOptions(fusion=fusion, cache_dir=None, dump_dir=dump)
        assert opts.fusion is fusion and opts.dump_dir is not None
        with gc.Session(target="cpu", options=opts) as sess:
            exe = sess.compile(y, [x])
            np.testing.assert_allclose(sess.run(y, {x: v}), (np.exp(np.tanh(v * 2) + 1) * v).sum(1),
                                       rtol=1e-5)  # fmt: skip
        kernels[fusion] = exe.kernels
        dumped = list(dump.rglob("*"))
        assert len([p for p in dumped if p.is_file()]) >= 2, "dump_dir gets the IR per pass"
    assert all(len(k.ops) == 1 for k in kernels[False]), kernels[False]
    assert len(kernels[True]) < len(kernels[False])


def test_compile_options_fields_and_defaults():
    o = gc.CompileOptions()
    assert o.fusion is True and o.opt_level == 2 and o.dump_dir is None
    assert o.threads is None and o.fast_math is False
    assert hasattr(o, "cache_dir")
    assert gc.CompileOptions(cache_dir=None).cache_dir is None
    o = gc.CompileOptions(fusion=False, opt_level=0, threads=2, fast_math=True)
    assert (o.fusion, o.opt_level, o.threads, o.fast_math) == (False, 0, 2, True)
    with pytest.raises(ValueError, match="opt_level"):
        gc.CompileOptions(opt_level=7)
    with pytest.raises(ValueError, match="threads"):
        gc.CompileOptions(threads=0)


@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_opt_levels_compute_the_same(opt_level, target):
    x = gc.placeholder(gc.float64, (None, 3), name="x")
    y = gc.reduce_sum(gc.exp(x * 1.0 + 0.0) * gc.sqrt(gc.square(x) + 1.0), axis=0)
    v = np.random.default_rng(1).normal(size=(4, 3))
    with gc.Session(target=target, options=gc.CompileOptions(opt_level=opt_level,
                                                             cache_dir=None)) as s:  # fmt: skip
        np.testing.assert_allclose(s.run(y, {x: v}), (np.exp(v) * np.sqrt(v**2 + 1)).sum(0),
                                   rtol=1e-12)  # fmt: skip


def test_run_options_trace_and_chrome_trace(target):
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    y = gc.nn.softmax(gc.matmul(x, np.ones((4, 3), np.float32)) + 1.0)
    with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
        exe = sess.compile(y, [x])
        md = gc.RunMetadata()
        assert md.step_stats == []
        sess.run(y, {x: np.ones((2, 4))}, options=gc.RunOptions(trace=True), run_metadata=md)
        names = [s.name for s in md.step_stats]
        for k in exe.kernels:
            assert k.name in names, (k.name, names)
        for s in md.step_stats:
            assert s.end >= s.start and s.duration >= 0
        trace = json.loads(md.chrome_trace())
        events = trace["traceEvents"]
        assert {e["name"] for e in events} == set(names)
        assert all(e["ph"] == "X" and e["dur"] >= 0 and "ts" in e for e in events)
        # without trace=True nothing is recorded
        md2 = gc.RunMetadata()
        sess.run(y, {x: np.ones((2, 4))}, run_metadata=md2)
        assert md2.step_stats == []


def test_session_threads_and_close(target):
    import threading

    x = gc.placeholder(gc.float64, (None,), name="x")
    v = gc.Variable(0.0, dtype=gc.float64, name="acc")
    y = gc.reduce_sum(x * 2.0)
    inc = v.assign_add(1.0)
    sess = gc.Session(target=target, options=gc.CompileOptions(cache_dir=None))
    sess.run(v.initializer)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(20):
                a = rng.normal(size=rng.integers(1, 9))
                np.testing.assert_allclose(sess.run(y, {x: a}), 2 * a.sum())
                sess.run(inc)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sess.run(v) == 80.0  # no lost updates
    sess.close()
    with pytest.raises(RuntimeError, match="closed"):
        sess.run(y, {x: [1.0]})


# =============================================================================================
# Errors
# =============================================================================================


def test_error_classes_and_hierarchy():
    names = ["InvalidArgumentError", "FailedPreconditionError", "UnimplementedError",
             "UnavailableError", "InvalidArtifactError", "CompileError",
             "OutOfRangeError"]  # fmt: skip
    assert issubclass(gc.errors.GraphcError, Exception)
    for n in names:
        cls = getattr(gc.errors, n)
        assert issubclass(cls, gc.errors.GraphcError), n
        assert cls is not gc.errors.GraphcError
        assert str(cls("message here")) == "message here"
    assert len({getattr(gc.errors, n) for n in names}) == len(names)
    # InvalidArgumentError is also a ValueError, as a bad argument is (TF: OpError subclasses)
    assert issubclass(gc.errors.InvalidArgumentError, ValueError)


# =============================================================================================
# TF1 semantics where API.md is silent (gaps found and fixed while writing this file)
# =============================================================================================


def test_shape_tensors_as_shape_arguments(target):
    """TF idiom: zeros/ones/fill/random_* take gc.shape(t) (runtime shape) or a constant."""
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    xv = np.ones((4, 3), np.float32)
    z = gc.zeros(gc.shape(x), gc.int64)
    o = gc.ones(gc.shape(x))
    f = gc.fill(gc.shape(x), 2.5)
    u = gc.random_uniform(gc.shape(x), seed=3)
    n = gc.random_normal(gc.constant([2, 5]), seed=3)
    a = gc.random_uniform(np.array([3, 2]), seed=3)
    assert z.shape == (None, 3) and z.dtype == gc.int64 and u.shape == (None, 3)
    assert n.shape == (2, 5) and a.shape == (3, 2)
    got = run([z, o, f, u, n, a], {x: xv}, target=target)
    np.testing.assert_array_equal(got[0], np.zeros((4, 3)))
    assert got[0].dtype == np.int64
    np.testing.assert_array_equal(got[1], np.ones((4, 3)))
    np.testing.assert_array_equal(got[2], np.full((4, 3), 2.5))
    assert got[3].shape == (4, 3) and got[4].shape == (2, 5) and got[5].shape == (3, 2)
    computed = gc.constant([1, 2]) * 2
    with pytest.raises(ValueError, match=re.escape(computed.name)):
        gc.zeros(computed)
    with pytest.raises(ValueError, match=re.escape(computed.name)):
        gc.random_normal(computed)


def test_constant_refuses_lossy_python_values():
    with pytest.raises(TypeError, match="int32"):
        gc.constant(1.5, dtype=gc.int32)
    with pytest.raises(TypeError, match="int64"):
        gc.constant([1.0, 2.5], dtype=gc.int64)
    assert run(gc.constant(2.0, dtype=gc.int32)) == 2  # integral values are fine
    # numpy arrays convert like astype (as TF does)
    np.testing.assert_array_equal(run(gc.constant(np.array([1.7, -1.7]), dtype=gc.int32)), [1, -1])


def test_python_ints_that_do_not_fit_are_refused_or_widened():
    assert gc.constant(2**40).dtype == gc.int64  # TF: int32 unless a value needs 64 bits
    assert gc.constant([1, -(2**33)]).dtype == gc.int64
    assert gc.constant(7).dtype == gc.int32
    assert run(gc.constant(2**40)) == 2**40
    with pytest.raises(TypeError, match="int32"):
        gc.constant(2**31, dtype=gc.int32)
    i = gc.constant(np.array([1, 2], np.int32))
    with pytest.raises(TypeError, match="int32"):
        i + 2**40  # a weak Python int takes int32 and would wrap around


def test_integer_reduce_mean_truncates_toward_zero(target):
    x_np = np.array([[-1, -2, 4], [3, -7, 2]], np.int32)
    x = gc.constant(x_np)
    got = run([gc.reduce_mean(x), gc.reduce_mean(x, 1), gc.reduce_mean(x, 0)], target=target)
    trunc = lambda s, n: (np.abs(s) // n) * np.sign(s)  # noqa: E731 - C division, as TF
    assert got[0] == trunc(x_np.sum(), 6)
    np.testing.assert_array_equal(got[1], trunc(x_np.sum(1), 3))
    np.testing.assert_array_equal(got[2], trunc(x_np.sum(0), 2))
    assert got[2].tolist() == [1, -4, 3] and got[0].dtype == np.int32


def test_tf1_reduction_keyword_spellings(target):
    x_np = np.arange(6.0).reshape(2, 3)
    x = gc.constant(x_np)
    t = [
        gc.reduce_sum(x, reduction_indices=[1], keep_dims=True),
        gc.reduce_max(x, reduction_indices=0),
        gc.reduce_mean(x, 1, keep_dims=True),
    ]
    assert t[0].shape == (2, 1) and t[1].shape == (3,) and t[2].shape == (2, 1)
    got = run(t, target=target)
    np.testing.assert_array_equal(got[0], x_np.sum(1, keepdims=True))
    np.testing.assert_array_equal(got[1], x_np.max(0))
    np.testing.assert_array_equal(got[2], x_np.mean(1, keepdims=True))
    with pytest.raises(ValueError, match="reduce_sum"):
        gc.reduce_sum(x, axis=0, reduction_indices=1)
    mean, var = gc.nn.moments(x, [0], keep_dims=True)
    assert mean.shape == (1, 3) and var.shape == (1, 3)


def test_unsorted_segment_sum_runs_on_every_target(target):
    data = np.arange(8.0).reshape(4, 2)
    ids = gc.placeholder(gc.int32, (None,), name="ids")
    out = run(gc.unsorted_segment_sum(data, ids, 3), {ids: [0, 2, 0, 1]}, target=target)
    np.testing.assert_allclose(out, [[4, 6], [6, 7], [2, 3]])


def test_gather_nd_with_none_dims_runs_on_every_target(target):
    p = np.arange(12.0).reshape(4, 3)
    idx = gc.placeholder(gc.int32, (None, 2), name="idx")
    out = run(gc.gather_nd(p, idx), {idx: [[0, 1], [3, 2]]}, target=target)
    np.testing.assert_allclose(out, [1.0, 11.0])


_X23 = np.zeros((2, 3), np.float32)
BUILD_ERRORS = {
    "reduce_sum": lambda x: gc.reduce_sum(x, axis=5),
    "reduce_mean": lambda x: gc.reduce_mean(x, axis=(0, 7)),
    "reduce_max": lambda x: gc.reduce_max(x, axis=-3),
    "reduce_logsumexp": lambda x: gc.reduce_logsumexp(x, axis=3),
    "ArgMax": lambda x: gc.argmax(x, axis=4),
    "Cumsum": lambda x: gc.cumsum(x, axis=3),
    "softmax": lambda x: gc.nn.softmax(x, axis=3),
    "log_softmax": lambda x: gc.nn.log_softmax(x, axis=-4),
    "sparse_softmax_cross_entropy_with_logits": lambda x: (
        gc.nn.sparse_softmax_cross_entropy_with_logits(labels=np.zeros(3, np.int32), logits=x)
    ),
    "softmax_cross_entropy_with_logits": lambda x: gc.nn.softmax_cross_entropy_with_logits(
        labels=np.zeros((3, 3)), logits=x
    ),
    "sigmoid_cross_entropy_with_logits": lambda x: gc.nn.sigmoid_cross_entropy_with_logits(
        labels=np.zeros((3, 3)), logits=x
    ),
    "bias_add": lambda x: gc.nn.bias_add(x, np.zeros(4, np.float32)),
    "moments": lambda x: gc.nn.moments(x, [5]),
    "Conv2D": lambda x: gc.nn.conv2d(x, np.ones((1, 1, 3, 1)), 1, "SAME"),
    "conv2d": lambda x: gc.nn.conv2d(x[None, None], np.ones((1, 1, 3, 1)), 1, "FULL"),
    "MaxPool": lambda x: gc.nn.max_pool2d(x, 2, 2, "VALID"),
    "fill": lambda x: gc.fill((None, 2), 1.0),
    "Fill": lambda x: gc.fill((2, 2), x),
    "cast": lambda x: gc.cast(x, "complex64"),
    "Maximum": lambda x: gc.clip_by_value(x, np.ones(4, np.float32), 2.0),
    "random_normal": lambda x: gc.random_normal((None, 2)),
    "Variable": lambda x: gc.Variable(gc.placeholder(gc.float32, (None, 3))),
    "MatMul": lambda x: gc.matmul(x, x),
    "Add": lambda x: x + np.zeros((3, 2), np.float32),
}


@pytest.mark.parametrize("op_name", sorted(BUILD_ERRORS))
def test_build_errors_name_the_op_the_shapes_and_the_users_line(op_name):
    """API.md: errors at build time name the op, the shapes and the user's file and line."""
    build = BUILD_ERRORS[op_name]
    x = gc.placeholder(gc.float32, (2, 3), name="x")
    with pytest.raises((ValueError, TypeError)) as info:
        build(x)
    msg = str(info.value)
    assert op_name in msg, msg
    first = build.__code__.co_firstlineno
    assert any(f"{FILE}:{n}" in msg for n in range(first, first + 3)), msg
    if op_name not in ("fill", "random_normal", "Variable", "cast", "conv2d"):
        assert "(2, 3)" in msg, msg


def test_nn_ops_convert_numpy_arguments_to_the_input_dtype(target):
    """TF converts the other inputs of a single-type op to the first one's dtype."""
    rng = np.random.default_rng(9)
    x_np = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    w_np = rng.normal(size=(3, 3, 2, 4))  # float64
    x = gc.placeholder(gc.float32, (None, 5, 5, 2), name="x")
    y = gc.nn.bias_add(gc.nn.conv2d(x, w_np, 1, "SAME"), np.arange(4.0))
    up = gc.nn.conv2d_transpose(x, rng.normal(size=(2, 2, 3, 2)), (1, 10, 10, 3), 2)
    assert y.dtype == gc.float32 and up.dtype == gc.float32
    got = run(y, {x: x_np}, target=target)
    want = _np_conv2d(x_np.astype(np.float64), w_np.astype(np.float32), 1, "SAME") + np.arange(4.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# =============================================================================================
# Integer arithmetic errors (TF: InvalidArgumentError at run time)
# =============================================================================================


def test_integer_division_by_zero_is_an_error(target):
    a = gc.placeholder(gc.int32, (2,), name="a")
    b = gc.placeholder(gc.int32, (2,), name="b")
    with pytest.raises(gc.errors.InvalidArgumentError, match="(?i)division by zero"):
        run(a // b, {a: [7, 1], b: [0, 1]}, target=target)


@pytest.mark.parametrize("dtype", [gc.int32, gc.int64])
@pytest.mark.parametrize("op", ["floordiv", "mod", "divide_fused"])
def test_integer_division_by_zero_names_the_op_and_valid_runs_still_work(target, dtype, op):
    a = gc.placeholder(dtype, (None, 3), name="a")
    b = gc.placeholder(dtype, (3,), name="b")
    if op == "floordiv":
        y = gc.floordiv(a, b, name="q")
        want_op = "FloorDiv"
    elif op == "mod":
        y = gc.mod(a, b, name="q")
        want_op = "FloorMod"
    else:  # inside a fused elementwise chain
        y = (gc.floordiv(a * 3, b, name="q") + 1) * 2
        want_op = "FloorDiv"
    av = np.array([[7, -7, 0], [5, 9, -2]])
    with pytest.raises(
        gc.errors.InvalidArgumentError, match=f"{want_op} '.*q.*'.*division by zero"
    ):
        run(y, {a: av, b: [2, 0, 1]}, target=target)
    got = run(y, {a: av, b: [2, -3, 1]}, target=target)
    bv = np.array([2, -3, 1])
    want = {"floordiv": av // bv, "mod": av % bv, "divide_fused": (av * 3 // bv + 1) * 2}[op]
    np.testing.assert_array_equal(got, want)


def test_integer_pow_with_negative_exponent_is_an_error(target):
    a = gc.placeholder(gc.int32, (2,), name="a")
    with pytest.raises(gc.errors.InvalidArgumentError, match="(?i)negative"):
        run(a ** gc.constant([-1, 2]), {a: [2, 3]}, target=target)


def test_reshape_to_the_shape_of_another_tensor(target):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.reshape(gc.reshape(x, (-1,)) * 2.0, gc.shape(x))
    xv = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(run(y, {x: xv}, target=target), xv * 2)


def test_run_time_shape_errors_are_invalid_argument_errors(target, request):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    v = gc.placeholder(gc.float32, (None, 1), name="v")
    with pytest.raises(gc.errors.InvalidArgumentError, match="Add"):
        run(x + v, {x: np.ones((2, 3)), v: np.ones((3, 1))}, target=target)
    with pytest.raises(gc.errors.InvalidArgumentError, match="Reshape"):
        run(gc.reshape(x, (-1, 2)), {x: np.ones((1, 3))}, target=target)
