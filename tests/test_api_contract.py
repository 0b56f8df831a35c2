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
    # numpy scalars are not weak: they promote like arrays
    assert (gc.constant(np.float32([1.0])) + np.float64(1.0)).dtype == gc.float64


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
