"""examples/cnn_bn_digits.py (gc.layers with batch norm, dropout and a training switch) runs
on reduced steps: the loss falls, test accuracy beats chance, the moving statistics moved."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    if str(EXAMPLES) not in sys.path:  # as when run as a script: it imports digits_training
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cnn_bn_digits_trains(capsys):
    example = load("cnn_bn_digits")
    hist = example.train(example.parse_args(["--steps", "50", "--epochs", "2", "--seed", "1"]))
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "test acc" in out
    assert len(hist.step_losses) == 50 and all(np.isfinite(hist.step_losses))
    assert np.mean(hist.step_losses[-5:]) < 0.7 * np.mean(hist.step_losses[:5])
    assert hist.final_accuracy >= 0.5  # chance is 10%
    assert np.any(hist.moving_mean != 0)  # the UPDATE_OPS ran with the training steps
