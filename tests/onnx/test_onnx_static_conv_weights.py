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
    # a kernel without the convolution that transposes: the input's, and fed weights'
    copies = [k.op_types for k in exe.kernels if "Conv2D" not in k.op_types]
    assert len(copies) == (1 if static else 2), copies
    gm.close()
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, dict(zip(gm.input_names, args)))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
