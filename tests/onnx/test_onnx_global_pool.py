"""ONNX GlobalAveragePool / GlobalMaxPool reduce over the spatial axes with the channels
moved last (graphc/onnx/handlers/nn.py ``_global_pool``), so that the cpu target takes the
column layout (one unit-stride, vectorised pass over the channels per pixel) instead of a
strided sum per channel. Equal to onnxruntime and to the reference target, on 1-D, 2-D and
3-D inputs with a symbolic batch, alone and after a convolution with its ReLU (W13's
SqueezeNet ends so)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from graphc.onnx.runner import OnnxModel  # noqa: E402


def _model(op, spatial, conv):
    c = 6
    x_shape = ["N", 4 if conv else c, *spatial]
    nodes, inits, src = [], [], "x"
    if conv:
        w = np.random.default_rng(0).standard_normal((c, 4) + (1,) * len(spatial))
        inits.append(numpy_helper.from_array(w.astype(np.float32), "w"))
        nodes += [helper.make_node("Conv", ["x", "w"], ["h"]),
                  helper.make_node("Relu", ["h"], ["r"])]  # fmt: skip
        src = "r"
    nodes.append(helper.make_node(op, [src], ["y"]))
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c] + [1] * len(spatial))],
        inits,
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]), x_shape


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("spatial", [(7,), (5, 4), (3, 2, 4)])
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_matches_onnxruntime(op, spatial, conv):
    if conv and len(spatial) == 3:
        pytest.skip("3-D convolutions are not imported")
    m, x_shape = _model(op, spatial, conv)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (2, 1):
        x = np.random.default_rng(n).standard_normal([n] + x_shape[1:]).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        for target in ("cpu", "reference"):
            gm = OnnxModel(m, target)
            got = gm.run([x])[0]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            if target == "cpu":
                # the generic import (a symbolic batch), or a specialisation (Conv)
                inst = gm._generic or next(iter(gm._instances.values()))
                ir = inst.session.compile([inst.outputs["y"]], [inst.inputs["x"]]).dump_ir("kernel")
                # the column layout: the channels accumulate in the output row, no scalar
                # accumulator per channel
                assert "let acc" not in ir, ir
            gm.close()
