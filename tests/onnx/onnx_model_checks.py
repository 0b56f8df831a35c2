"""Checks of the onnx package's ``light`` models shared by the test slice and the full run."""

import numpy as np

from graphc.bench import onnx_models as lm
from graphc.onnx.runner import OnnxModel


def check_expected_output(name, target="cpu"):
    """The model as shipped, on ONNX's own dummy input, gives its stored output."""
    model = lm.light_model(name)
    x = lm.dummy_input(model, name)
    m = OnnxModel(model, target)
    got = m.run([x])[0]
    m.close()
    want = lm.expected_output(name)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)


def check_random_weights(name, target="cpu", batch=1, seed=0):
    """With seeded random weights and input, graphc matches onnxruntime to rtol 1e-3."""
    model = lm.with_batch(lm.with_random_weights(lm.light_model(name), seed), batch)
    x = lm.random_input(model, batch, seed)
    want = lm.onnxruntime_session(model).run(None, {lm.input_info(model).name: x})[0]
    m = OnnxModel(model, target)
    got = m.run([x])[0]
    m.close()
    assert float(np.std(want)) > 0  # random weights give a non-trivial output
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6 * scale)


def check_against_onnxruntime(nodes, x_shape, y_shape, inits: dict) -> str:
    """A model of ``nodes`` with input ``x`` [N, *x_shape] and output ``y`` [N, *y_shape]
    (``inits``: name -> constant array) gives onnxruntime's result at batches 2 and 1 on
    graphc's cpu target; returns the Kernel IR of graphc's program for ``y``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *y_shape])],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    sess = lm.onnxruntime_session(model)
    gm = OnnxModel(model, "cpu")
    for n in (2, 1):
        x = np.random.default_rng(n).standard_normal((n, *x_shape)).astype(np.float32)
        np.testing.assert_allclose(gm.run([x])[0], sess.run(None, {"x": x})[0], rtol=1e-4,
                                   atol=1e-4)  # fmt: skip
    inst = gm._generic or next(iter(gm._instances.values()))
    return inst.session.compile([inst.outputs["y"]], [inst.inputs["x"]]).dump_ir("kernel")
