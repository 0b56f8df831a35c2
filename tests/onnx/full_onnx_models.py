"""Every ``light`` model of the onnx package through gc.onnx on the cpu target: its stored
output, and with seeded random weights against onnxruntime at batch 2 (``make onnx-suite``;
batch 1 is checked by workload W13 and, for SqueezeNet, by ``test_onnx_light_models.py``
in ``make test``). About 20 minutes on 2 cores: a cold compile per model and batch."""

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_model_checks import check_expected_output, check_random_weights  # noqa: E402

from graphc.bench.onnx_models import LIGHT_MODELS  # noqa: E402


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_stored_output(name):
    check_expected_output(name)


@pytest.mark.parametrize("batch", [2])
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_random_weights_against_onnxruntime(name, batch):
    check_random_weights(name, batch=batch)
