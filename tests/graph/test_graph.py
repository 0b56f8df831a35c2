"""Graph API: default graphs, names and scopes, control dependencies, operators, dtypes."""

import threading

import numpy as np
import pytest

import graphc as gc


def test_ops_go_to_default_graph_and_as_default():
    a = gc.constant(1.0)
    assert a.graph is gc.get_default_graph()
    g = gc.Graph()
    with g.as_default():
        b = gc.constant(2.0)
        assert gc.get_default_graph() is g
    assert b.graph is g and b.graph is not a.graph
    assert gc.get_default_graph() is a.graph


def test_reset_default_graph_gives_new_graph():
    old = gc.get_default_graph()
    gc.constant(1)
    gc.reset_default_graph()
    assert gc.get_default_graph() is not old
    assert gc.get_default_graph().get_operations() == []


def test_default_graph_is_per_thread_inside_as_default():
    g = gc.Graph()
    seen = {}

    def worker():
        seen["graph"] = gc.get_default_graph()

    with g.as_default():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen["graph"] is not g


def test_unique_names_and_scopes():
    a = gc.constant(1.0, name="c")
    b = gc.constant(2.0, name="c")
    assert a.name == "c:0" and b.name == "c_1:0"
    with gc.name_scope("block"):
        c = gc.add(a, b, name="sum")
        with gc.name_scope("inner"):
            d = gc.multiply(c, 2.0)
    with gc.name_scope("block"):
        e = gc.identity(d)
    assert c.name == "block/sum:0"
    assert d.op.name.startswith("block/inner/")
    assert e.op.name.startswith("block_1/")
    g = gc.get_default_graph()
    assert g.get_tensor_by_name("block/sum:0") is c
    assert g.get_operation_by_name("block/sum") is c.op
    assert c.op in g.get_operations()
    assert c.op.type == "Add" and list(c.op.inputs) == [a, b] and c.op.outputs == (c,)


def test_lookup_errors_name_the_culprit():
    g = gc.get_default_graph()
    gc.constant(1.0, name="x")
    with pytest.raises(KeyError, match="nope"):
        g.get_operation_by_name("nope")
    with pytest.raises(KeyError, match="x:3"):
        g.get_tensor_by_name("x:3")
    with pytest.raises(ValueError, match="op_name:0"):
        g.get_tensor_by_name("x")


def test_tensor_properties():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    assert x.shape == (None, 3) and x.dtype == gc.float32 and x.name == "x:0"
    assert x.op.name == "x" and x.op.type == "Placeholder"
    assert isinstance(x.shape, tuple)


def test_operators_build_the_right_ops():
    x = gc.placeholder(gc.float32, (2, 3))
    y = gc.placeholder(gc.float32, (3,))
    b = gc.placeholder(gc.bool, (3,))
    cases = {
        "Add": x + y, "Sub": x - y, "Mul": x * y, "RealDiv": x / y, "FloorDiv": x // y,
        "FloorMod": x % y, "Pow": x**y, "Neg": -x, "Abs": abs(x), "Less": x < y,
        "LessEqual": x <= y, "Greater": x > y, "GreaterEqual": x >= y,
        "LogicalAnd": b & b, "LogicalOr": b | b, "LogicalNot": ~b,
    }  # fmt: skip
    for op_type, t in cases.items():
        assert t.op.type == op_type
    r = 2.0 - x
    assert r.op.type == "Sub" and r.op.inputs[1] is x
    assert (x == x) is True and (x == y) is False  # identity, as TF1
    assert len({x, y}) == 2


def test_scalar_operands_are_weak():
    x = gc.placeholder(gc.float16, (2,))
    assert (x * 2).dtype == gc.float16
    assert (x + 1.5).dtype == gc.float16
    i = gc.placeholder(gc.int32, (2,))
    assert (i + 1).dtype == gc.int32
    assert (i * 1.5).dtype == gc.float32


def test_tensor_tensor_promotion_follows_numpy():
    a = gc.placeholder(gc.int32, (2,))
    b = gc.placeholder(gc.float32, (2,))
    c = gc.placeholder(gc.float64, (2,))
    assert (a + b).dtype == gc.as_dtype(np.result_type(np.int32, np.float32))
    assert (b + c).dtype == gc.float64
    assert (a / a).dtype == gc.float64


def test_numpy_arrays_become_constants():
    x = gc.placeholder(gc.float32, (2,))
    y = x + np.array([1.0, 2.0], np.float32)
    assert y.op.inputs[1].op.type == "Const"
    z = np.array([1.0, 2.0], np.float32) + x  # __radd__ via __array_priority__
    assert z.op.type == "Add"


def test_shape_errors_name_op_shapes_and_user_line():
    a = gc.ones((2, 3))
    b = gc.ones((4,))
    with pytest.raises(ValueError) as info:
        gc.add(a, b)  # the line the error must point at
    msg = str(info.value)
    assert "Add" in msg and "(2, 3)" in msg and "(4,)" in msg
    assert __file__ in msg and "test_graph.py:" in msg


def test_dtype_errors_are_type_errors():
    with pytest.raises(TypeError, match="bool"):
        gc.exp(gc.constant([True, False]))
    with pytest.raises(TypeError, match="condition must be bool"):
        gc.where(gc.constant([1.0]), 1.0, 2.0)


def test_control_dependencies_attach_and_nest():
    a = gc.constant(1.0)
    b = gc.constant(2.0)
    with gc.control_dependencies([a]):
        c = gc.identity(b)
        with gc.control_dependencies([b.op]):
            d = gc.identity(a)
    assert a.op in c.op.control_inputs
    assert b.op in d.op.control_inputs or b in d.op.inputs
    e = gc.identity(a)
    assert e.op.control_inputs == ()
    with gc.control_dependencies(None):
        pass


def test_control_dependencies_order_execution():
    v = gc.Variable(1.0, name="v")
    inc = v.assign_add(1.0)
    with gc.control_dependencies([inc]):
        read = v.read_value()
    with gc.Session(target="reference") as sess:
        sess.run(v.initializer)
        assert sess.run(read) == 2.0
        assert sess.run(read) == 3.0


def test_group_and_no_op():
    v = gc.Variable(0.0)
    w = gc.Variable(0.0)
    g = gc.group(v.assign(1.0), w.assign(2.0))
    assert g.type == "NoOp" and g.outputs == ()
    n = gc.no_op()
    with gc.Session(target="reference") as sess:
        assert sess.run(g) is None
        assert sess.run(n) is None
        assert sess.run([v, w]) == [1.0, 2.0]


def test_dtypes_public_and_conversion():
    assert gc.float32 == np.float32 and gc.as_dtype("int64") == gc.int64
    assert gc.bool == gc.bool_ and gc.bool.is_bool
    assert {gc.float16, gc.float32, gc.float64, gc.int32, gc.int64, gc.bool}
    with pytest.raises(TypeError):
        gc.as_dtype(np.complex64)
