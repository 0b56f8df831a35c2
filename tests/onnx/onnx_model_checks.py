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
