"""A Conv's static ONNX weights become HWIO filters transposed at import
(graphc/onnx/handlers/nn.py): the compiler does not fold transposes of constants over
fold.MAX_ELEMENTS, so every run would copy large weights (ResNet-50's stage 4, W13). Fed
weights keep the graph's transpose."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from graphc.onnx.runner import OnnxModel  # noqa: E402
from graphc.passes import fold  # noqa: E402


def _model(rank, static):
    k = [3] if rank == 3 else [3, 3]
    w = np.random.default_rng(0).standard_normal([6, 4] + k).astype(np.float32)
    shp = [2, 4, 9] if rank == 3 else [2, 4, 9, 8]
    out = [2, 6] + shp[2:]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shp)]
    if not static:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape)))
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1] * (rank - 2))
    g = helper.make_graph([node], "g", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                          [numpy_helper.from_array(w, "w")] if static else [])  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]), shp, w


@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("rank", [3, 4])
def test_static_weights_are_not_transposed_at_run_time(monkeypatch, rank, static):
    monkeypatch.setattr(fold, "MAX_ELEMENTS", 16)  # the weights count as large
    m, shp, w = _model(rank, static)
    x = np.random.default_rng(1).standard_normal(shp).astype(np.float32)
    args = [x] if static else [x, w]
    gm = OnnxModel(m, "cpu")
    got = gm.run(args)[0]
    inst = gm._generic
    feeds = [inst.inputs[n] for n in gm.input_names]
    exe = inst.session.compile([inst.outputs["y"]], feeds)
    # a kernel without the convolution that transposes: fed weights', and the input's unless
    # the packed convolution reads the NCHW feed itself (2-D, the filters constant)
    copies = [k.op_types for k in exe.kernels if "Conv2D" not in k.op_types]
    assert len(copies) == (0 if rank == 4 else 1) + (0 if static else 1), copies
    gm.close()
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, dict(zip(gm.input_names, args)))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _gemm_model(static, trans_a):
    rng = np.random.default_rng(2)
    b = rng.standard_normal((7, 5)).astype(np.float32)  # transB: [N, K]
    c = rng.standard_normal((7,)).astype(np.float32)
    a_shape = [5, "N"] if trans_a else ["N", 5]
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)]
    if not static:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [7, 5]))
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=int(trans_a), transB=1,
                            alpha=0.5)  # fmt: skip
    inits = [numpy_helper.from_array(c, "c")]
    if static:
        inits.append(numpy_helper.from_array(b, "b"))
    g = helper.make_graph([node], "g", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])],
                          inits)  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]), b


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("static", [True, False])
def test_static_gemm_weights_with_trans_b_are_transposed_at_import(static, trans_a):
    """Gemm(transB=1) with static B (a classifier's [classes, features] weights): B is
    transposed at import, so the GEMM reads it untransposed (a transposed B made ResNet-50's
    last layer 3x slower at batch 1); a fed B keeps the transposed GEMM. A run-time batch."""
    m, b = _gemm_model(static, trans_a)
    for n in (3, 1):
        a = np.random.default_rng(n).standard_normal((5, n) if trans_a else (n, 5))
        args = [a.astype(np.float32)] if static else [a.astype(np.float32), b]
        gm = OnnxModel(m, "cpu")
        got = gm.run(args)[0]
        inst = gm._generic
        feeds = [inst.inputs[k] for k in gm.input_names]
        ir = inst.session.compile([inst.outputs["y"]], feeds).dump_ir("kernel")
        (call,) = [ln for ln in ir.splitlines() if "call gemm(" in ln]
        flags = call.split(", ")[3:5]  # trans_a, trans_b
        assert flags == [str(int(trans_a)), "0" if static else "1"], call
        gm.close()
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, dict(zip(gm.input_names, args)))[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
