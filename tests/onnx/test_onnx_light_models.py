"""The ``light`` models of the onnx package (opset 9 conv nets, NCHW) through gc.onnx: a
fast subset here; ``make onnx-suite`` runs all nine (``tests/onnx/full_onnx_models.py``)."""

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_model_checks import check_expected_output, check_random_weights  # noqa: E402


@pytest.mark.parametrize("name", ["squeezenet"])
def test_light_model_matches_its_stored_output(name):
    check_expected_output(name)


@pytest.mark.parametrize("name", ["squeezenet"])
def test_light_model_with_random_weights_matches_onnxruntime(name):
    check_random_weights(name)
