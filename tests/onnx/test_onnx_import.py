"""gc.onnx through the public API: import_model, load, the backend, errors, graphc inspect."""

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import graphc as gc  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, et, shape):
    return helper.make_tensor_value_info(name, et, shape)


def test_gc_onnx_is_an_attribute_and_says_what_to_install(monkeypatch):
    assert gc.onnx.import_model and gc.onnx.load and gc.onnx.export
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    with pytest.raises(gc.errors.UnavailableError, match="onnx"):
        gc.onnx.import_model("model.onnx")


def test_import_model_gives_placeholders_and_tensors_usable_like_any_graph():
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    m = _model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["y"])],
        [_vi("x", TensorProto.FLOAT, ["N", 3])],
        [_vi("y", TensorProto.FLOAT, ["N", 4])],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    g = gc.Graph()
    inputs, outputs = gc.onnx.import_model(m, graph=g)
    assert set(inputs) == {"x"} and set(outputs) == {"y"}
    x, y = inputs["x"], outputs["y"]
    assert x.shape == (None, 3) and y.shape == (None, 4)
    with g.as_default():
        (dx,) = gc.gradients(gc.reduce_sum(y), [x])
    xv = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    for target in ("reference", "cpu"):
        with gc.Session(graph=g, target=target) as sess:
            got, grad = sess.run([y, dx], {x: xv})
        np.testing.assert_allclose(got, np.tanh(xv @ w), rtol=1e-5)
        np.testing.assert_allclose(grad, (1 - np.tanh(xv @ w) ** 2) @ w.T, rtol=1e-4, atol=1e-6)


def test_load_is_a_callable_with_a_signature(tmp_path):
    m = _model(
        [helper.make_node("Div", ["a", "b"], ["q"]),
         helper.make_node("Reshape", ["q", "s"], ["r"], allowzero=1)],
        [_vi("a", TensorProto.INT32, [2, 3]), _vi("b", TensorProto.INT32, [2, 3])],
        [_vi("r", TensorProto.INT32, [3, 2])],
        [onnx.numpy_helper.from_array(np.array([3, 2], np.int64), "s")],
    )  # fmt: skip
    onnx.save(m, tmp_path / "m.onnx")
    model = gc.onnx.load(str(tmp_path / "m.onnx"))
    assert model.signature["inputs"]["a"] == {"dtype": "int32", "shape": [2, 3]}
    a = np.array([[7, -7, 7], [-7, 1, 0]], np.int32)
    b = np.array([[2, 2, -2], [-2, 3, 5]], np.int32)
    out = model(a=a, b=b)["r"]
    # ONNX's integer Div truncates toward zero
    np.testing.assert_array_equal(out, np.array([[3, -3], [-3, 3], [0, 0]], np.int32))
    with pytest.raises(gc.errors.InvalidArgumentError, match="unknown input"):
        model(a=a, c=b)


@pytest.mark.parametrize("target", ["cpu", "reference"])
def test_outputs_are_the_callers_own_arrays(target):
    """Each run's outputs are new arrays, one per output, even when two outputs are one tensor
    (an Identity) and the carrier needs no conversion (no copy is made then)."""
    m = _model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Identity", ["y"], ["z"])],
        [_vi("x", TensorProto.FLOAT, [2, 3])],
        [_vi("y", TensorProto.FLOAT, [2, 3]), _vi("z", TensorProto.FLOAT, [2, 3])],
    )
    from graphc.onnx.runner import OnnxModel

    model = OnnxModel(m, target)  # (what gc.onnx.load returns, from a model in memory)
    x = np.float32([[-1, 2, -3], [4, -5, 6]])
    first = model.run([x])
    again = model.run([x])
    assert not np.shares_memory(first[0], first[1])
    assert not np.shares_memory(first[0], again[0])
    first[0][0, 1] = 99.0
    np.testing.assert_array_equal(first[1], np.maximum(x, 0))
    np.testing.assert_array_equal(again[0], np.maximum(x, 0))


def test_narrow_integer_types_wrap_like_onnx():
    m = _model(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Mul", ["s", "b"], ["y"])],
        [_vi("a", TensorProto.UINT8, [4]), _vi("b", TensorProto.UINT8, [4])],
        [_vi("y", TensorProto.UINT8, [4])],
    )  # fmt: skip
    from graphc.onnx.backend import GraphcBackend, ReferenceBackend

    a = np.array([250, 3, 128, 255], np.uint8)
    b = np.array([10, 200, 128, 2], np.uint8)
    want = ((a + b) * b).astype(np.uint8)  # numpy's uint8 wraps
    for backend in (GraphcBackend, ReferenceBackend):
        (got,) = backend.run_model(m, [a, b])
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def test_unsupported_op_and_dynamic_shape_arguments_are_clear_errors():
    uq = helper.make_node("GridSample", ["x", "x"], ["y"], name="gs")
    m = _model([uq], [_vi("x", TensorProto.FLOAT, [1, 1, 2, 2])],
               [_vi("y", TensorProto.FLOAT, [None])])  # fmt: skip
    with pytest.raises(gc.errors.UnimplementedError, match="gs.*GridSample.*not supported"):
        gc.onnx.import_model(m, graph=gc.Graph())
    # an op whose output shape depends on values needs them at import time
    nz = helper.make_node("NonZero", ["x"], ["y"], name="nz")
    m = _model([nz], [_vi("x", TensorProto.FLOAT, [3])], [_vi("y", TensorProto.INT64, [1, None])])
    with pytest.raises(gc.errors.UnimplementedError, match="nz.*NonZero.*import time"):
        gc.onnx.import_model(m, graph=gc.Graph())
    m = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
               [_vi("x", TensorProto.FLOAT, [6]), _vi("s", TensorProto.INT64, [2])],
               [_vi("y", TensorProto.FLOAT, [None, None])])  # fmt: skip
    with pytest.raises(gc.errors.UnimplementedError, match="rs.*'s'.*import time"):
        gc.onnx.import_model(m, graph=gc.Graph())
    # the backend binds such an input to the values it is run with
    from graphc.onnx.backend import GraphcBackend

    (y,) = GraphcBackend.run_model(m, [np.arange(6, dtype=np.float32), np.array([2, 3])])
    np.testing.assert_array_equal(y, np.arange(6).reshape(2, 3))


def test_backend_supports_cpu_only():
    from graphc.onnx.backend import GraphcBackend

    assert GraphcBackend.supports_device("CPU")
    assert not GraphcBackend.supports_device("CUDA")


def test_graphc_inspect_prints_signature_and_op_counts(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"]),
             helper.make_node("MaxUnpool", ["y", "y"], ["z"], kernel_shape=[2])]  # fmt: skip
    m = _model(nodes, [_vi("x", TensorProto.FLOAT, ["N", 3])], [_vi("z", TensorProto.FLOAT, None)])
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    r = subprocess.run([sys.executable, "-m", "graphc.cli", "inspect", str(path)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "x: float[N, 3]" in r.stdout
    assert "Relu" in r.stdout and " 2" in r.stdout
    assert "cannot import: MaxUnpool" in r.stdout
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    r = subprocess.run([sys.executable, "-m", "graphc.cli", "inspect", str(tmp_path / "bad.onnx")],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1 and "not an ONNX model" in r.stderr


@pytest.mark.parametrize("weights_fed", [False, True], ids=["static", "fed"])
@pytest.mark.parametrize("stride,dilation,mult", [(1, 1, 1), (2, 2, 2)])
def test_depthwise_and_grouped_conv_match_onnxruntime(stride, dilation, mult, weights_fed):
    """Many groups: block-diagonal filters when static, strided slices times filter entries
    when fed."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    c = 8
    w = rng.normal(size=(c * mult, 1, 3, 3)).astype(np.float32)
    w2 = rng.normal(size=(4 * mult, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], group=c, strides=[stride, stride],
                         dilations=[dilation, dilation], pads=[1, 2, 2, 1]),
        helper.make_node("Conv", ["h", "w2"], ["y"], group=2 * mult),
    ]  # fmt: skip
    inits = [onnx.numpy_helper.from_array(w2, "w2")]
    ins = [_vi("x", TensorProto.FLOAT, [2, c, 9, 10])]
    if weights_fed:
        ins.append(_vi("w", TensorProto.FLOAT, list(w.shape)))
    else:
        inits.append(onnx.numpy_helper.from_array(w, "w"))
    m = _model(nodes, ins, [_vi("y", TensorProto.FLOAT, ["n", "c", "h", "w"])], inits)
    x = rng.normal(size=(2, c, 9, 10)).astype(np.float32)
    feeds = {"x": x, "w": w} if weights_fed else {"x": x}
    want = ort.InferenceSession(m.SerializeToString()).run(None, feeds)[0]
    from graphc.onnx.backend import GraphcBackend

    (got,) = GraphcBackend.run_model(m, list(feeds.values()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _run_both(m, feeds, onnx_reference=False):
    """The model's outputs on onnxruntime (or ONNX's reference evaluator), graphc's
    reference interpreter and cpu target."""
    if onnx_reference:
        want = ReferenceEvaluator(m).run(None, feeds)
    else:
        ort = pytest.importorskip("onnxruntime")
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, feeds)
    for target in ("reference", "cpu"):
        g = gc.Graph()
        inputs, outputs = gc.onnx.import_model(m, graph=g)
        names = [o.name for o in m.graph.output]
        with gc.Session(graph=g, target=target) as s:
            got = s.run([outputs[n] for n in names], {inputs[k]: v for k, v in feeds.items()})
        for w, o in zip(want, got):
            np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)


def test_if_branches_read_outer_values_and_run_on_a_run_time_predicate():
    then_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["t"])], "then", [], [_vi("t", TensorProto.FLOAT, [3])]
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [_vi("e", TensorProto.FLOAT, [3])]
    )
    m = _model(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
        [_vi("c", TensorProto.BOOL, []), _vi("x", TensorProto.FLOAT, [3])],
        [_vi("y", TensorProto.FLOAT, [3])],
    )
    x = np.array([1.0, -2.0, 3.0], np.float32)
    for c in (True, False):
        _run_both(m, {"c": np.array(c), "x": x})


@pytest.mark.parametrize("trips,stop_at", [(5, 100), (5, 2), (0, 100)])
def test_loop_trip_count_condition_carried_values_and_scan_outputs(trips, stop_at):
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["acc_in", "fi"], ["a1"]),
            helper.make_node("Add", ["a1", "w"], ["acc_out"]),  # w: an outer value
            helper.make_node("Less", ["fi", "lim"], ["cond_out"]),
            helper.make_node("Mul", ["acc_out", "acc_out"], ["sq"]),
        ],
        "body",
        [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []),
         _vi("acc_in", TensorProto.FLOAT, [2])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out", TensorProto.FLOAT, [2]),
         _vi("sq", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    m = _model(
        [helper.make_node("Loop", ["M", "c", "acc0"], ["acc", "sqs"], body=body)],
        [_vi("M", TensorProto.INT64, []), _vi("c", TensorProto.BOOL, []),
         _vi("acc0", TensorProto.FLOAT, [2]), _vi("w", TensorProto.FLOAT, [2]),
         _vi("lim", TensorProto.FLOAT, [])],
        [_vi("acc", TensorProto.FLOAT, [2]), _vi("sqs", TensorProto.FLOAT, [None, 2])],
    )  # fmt: skip
    feeds = {"M": np.array(trips, np.int64), "c": np.array(True),
             "acc0": np.array([1.0, 2.0], np.float32), "w": np.array([0.5, -1.0], np.float32),
             "lim": np.array(stop_at, np.float32)}  # fmt: skip
    _run_both(m, feeds)


def test_loop_without_trip_count_stops_on_its_condition():
    body = helper.make_graph(
        [helper.make_node("Add", ["v_in", "one"], ["v_out"]),
         helper.make_node("Less", ["v_out", "lim"], ["cond_out"])],
        "body",
        [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []),
         _vi("v_in", TensorProto.INT32, [])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("v_out", TensorProto.INT32, [])],
    )  # fmt: skip
    m = _model(
        [helper.make_node("Loop", ["", "c", "v0"], ["v"], body=body)],
        [_vi("c", TensorProto.BOOL, []), _vi("v0", TensorProto.INT32, []),
         _vi("lim", TensorProto.INT32, [])],
        [_vi("v", TensorProto.INT32, [])],
        [onnx.numpy_helper.from_array(np.array(1, np.int32), "one")],
    )  # fmt: skip
    _run_both(m, {"c": np.array(True), "v0": np.array(3, np.int32),
                  "lim": np.array(11, np.int32)})  # fmt: skip


@pytest.mark.parametrize("in_axis,in_dir,out_axis,out_dir", [(0, 0, 0, 0), (1, 1, 1, 0),
                                                              (-1, 0, -1, 1)])  # fmt: skip
def test_scan_axes_and_directions(in_axis, in_dir, out_axis, out_dir):
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
         helper.make_node("Mul", ["s_out", "x_t"], ["y_t"])],
        "body",
        [_vi("s_in", TensorProto.FLOAT, [3]), _vi("x_t", TensorProto.FLOAT, [3])],
        [_vi("s_out", TensorProto.FLOAT, [3]), _vi("y_t", TensorProto.FLOAT, [3])],
    )  # fmt: skip
    shape = [4, 3] if in_axis == 0 else [3, 4]
    m = _model(
        [helper.make_node("Scan", ["s0", "x"], ["s", "y"], body=body, num_scan_inputs=1,
                          scan_input_axes=[in_axis], scan_input_directions=[in_dir],
                          scan_output_axes=[out_axis], scan_output_directions=[out_dir])],
        [_vi("s0", TensorProto.FLOAT, [3]), _vi("x", TensorProto.FLOAT, shape)],
        [_vi("s", TensorProto.FLOAT, [3]), _vi("y", TensorProto.FLOAT, None)],
    )  # fmt: skip
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    _run_both(m, {"s0": np.array([1.0, 0.0, -1.0], np.float32), "x": x})


@pytest.mark.parametrize(
    "op,attrs",
    [("RNN", {"direction": "reverse"}),
     ("GRU", {"direction": "bidirectional", "linear_before_reset": 1}),
     ("GRU", {"direction": "reverse", "layout": 1}),
     ("LSTM", {"direction": "bidirectional", "clip": 0.7}),
     ("LSTM", {"direction": "reverse", "layout": 1})],
)  # fmt: skip
def test_rnn_gru_lstm_match_onnxruntime_on_random_data(op, attrs):
    rng = np.random.default_rng(2)
    seq, batch, inp, hid = 4, 3, 2, 5
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    g = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    layout = attrs.get("layout", 0)
    xs = [batch, seq, inp] if layout else [seq, batch, inp]
    hs = [batch, dirs, hid] if layout else [dirs, batch, hid]
    names = ["X", "W", "R", "B", "", "initial_h"] + (["initial_c", "P"] if op == "LSTM" else [])
    shapes = {
        "X": xs,
        "W": [dirs, g * hid, inp],
        "R": [dirs, g * hid, hid],
        "B": [dirs, 2 * g * hid],
        "initial_h": hs,
        "initial_c": hs,
        "P": [dirs, 3 * hid],
    }
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    m = _model(
        [helper.make_node(op, names, outs, hidden_size=hid, **attrs)],
        [_vi(n, TensorProto.FLOAT, shapes[n]) for n in names if n],
        [_vi(n, TensorProto.FLOAT, None) for n in outs],
        opset=14,
    )  # fmt: skip
    feeds = {n: rng.normal(size=shapes[n]).astype(np.float32) for n in names if n}
    _run_both(m, feeds, onnx_reference=bool(layout))  # onnxruntime lacks layout=1


@pytest.mark.parametrize("direction", [0, 1])
def test_scan_of_opset_8_loops_over_the_batch(direction):
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
         helper.make_node("Mul", ["s_out", "x_t"], ["y_t"])],
        "body",
        [_vi("s_in", TensorProto.FLOAT, [3]), _vi("x_t", TensorProto.FLOAT, [3])],
        [_vi("s_out", TensorProto.FLOAT, [3]), _vi("y_t", TensorProto.FLOAT, [3])],
    )  # fmt: skip
    m = _model(
        [helper.make_node("Scan", ["", "s0", "x"], ["s", "y"], body=body, num_scan_inputs=1,
                          directions=[direction])],
        [_vi("s0", TensorProto.FLOAT, [2, 3]), _vi("x", TensorProto.FLOAT, [2, 4, 3])],
        [_vi("s", TensorProto.FLOAT, [2, 3]), _vi("y", TensorProto.FLOAT, [2, 4, 3])],
        opset=8,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    _run_both(m, {"s0": rng.normal(size=(2, 3)).astype(np.float32),
                  "x": rng.normal(size=(2, 4, 3)).astype(np.float32)})  # fmt: skip
