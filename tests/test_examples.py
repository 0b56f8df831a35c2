"""The training examples, run on reduced steps: the loss falls and accuracy beats chance."""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    if str(EXAMPLES) not in sys.path:  # as when run as a script: examples import digits_training
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def check_history(hist, steps, min_accuracy):
    assert len(hist.step_losses) == steps
    assert all(np.isfinite(hist.step_losses))
    first, last = np.mean(hist.step_losses[:5]), np.mean(hist.step_losses[-5:])
    assert last < 0.7 * first, f"loss did not fall: first steps {first:.3f}, last {last:.3f}"
    assert hist.epoch_losses[-1] < hist.epoch_losses[0]
    # Chance is 10%; a few dozen steps must already do far better.
    assert hist.final_accuracy >= min_accuracy, hist.test_accuracy


TARGETS = ["cpu", "reference", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("target", TARGETS)
def test_mlp_trains(target):
    mlp = load("mlp_digits")
    hist = mlp.train(mlp.parse_args(["--steps", "60", "--epochs", "2", "--target", target]))
    check_history(hist, 60, 0.6)


@pytest.mark.parametrize("target", TARGETS)
def test_cnn_trains(target):
    cnn = load("cnn_digits")
    hist = cnn.train(cnn.parse_args(["--steps", "60", "--epochs", "2", "--target", target]))
    check_history(hist, 60, 0.5)


@pytest.mark.parametrize("name", ["mlp_digits", "cnn_digits"])
def test_main_prints_epochs_and_returns_accuracy(name, capsys):
    example = load(name)
    acc = example.main(["--steps", "50", "--epochs", "2", "--seed", "3"])
    out = capsys.readouterr().out
    assert isinstance(acc, float) and 0.5 <= acc <= 1.0
    assert "epoch 1/2" in out and "epoch 2/2" in out and "loss" in out and "test acc" in out
    assert f"final test accuracy: {acc:.2%}" in out


def test_same_seed_same_result():
    mlp = load("mlp_digits")
    args = ["--steps", "20", "--epochs", "1"]
    a = mlp.train(mlp.parse_args(args))
    b = mlp.train(mlp.parse_args(args))
    assert a.step_losses == b.step_losses


def test_bad_flags():
    mlp = load("mlp_digits")
    with pytest.raises(SystemExit):
        mlp.parse_args(["--target", "tpu"])
    with pytest.raises(SystemExit):
        mlp.parse_args(["--epochs", "0"])


class _FakeTqdm:
    """Records how the examples drive tqdm."""

    bars: list = []

    def __init__(self, iterable, **kwargs):
        self.iterable, self.kwargs, self.postfix, self.closed = iterable, kwargs, [], False
        _FakeTqdm.bars.append(self)

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **kwargs):
        self.postfix.append(kwargs)

    def close(self):
        self.closed = True


def _load_with_tqdm(monkeypatch, tqdm_module):
    """The MLP example with digits_training imported afresh while ``tqdm`` is that module."""
    monkeypatch.setitem(sys.modules, "tqdm", tqdm_module)
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    path = EXAMPLES / "digits_training.py"
    spec = importlib.util.spec_from_file_location("digits_training", path)
    shared = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "digits_training", shared)
    spec.loader.exec_module(shared)
    return shared, load("mlp_digits")


def test_progress_bar_per_epoch_with_tqdm_and_without(monkeypatch):
    fake = types.ModuleType("tqdm")
    fake.tqdm = _FakeTqdm
    _FakeTqdm.bars = []
    shared, mlp = _load_with_tqdm(monkeypatch, fake)
    assert shared.tqdm is _FakeTqdm
    hist = mlp.train(mlp.parse_args(["--steps", "8", "--epochs", "2", "--batch-size", "200"]))
    assert len(hist.step_losses) == 8
    assert [b.kwargs["desc"] for b in _FakeTqdm.bars] == ["epoch 1/2", "epoch 2/2"]
    assert all(b.closed and b.kwargs["disable"] is None for b in _FakeTqdm.bars)
    assert len(_FakeTqdm.bars[0].postfix) == 7 and "loss" in _FakeTqdm.bars[0].postfix[0]
    shared, mlp = _load_with_tqdm(monkeypatch, None)  # not installed: the plain fallback
    assert shared.tqdm is None
    hist = mlp.train(mlp.parse_args(["--steps", "3", "--epochs", "1"]))
    assert len(hist.step_losses) == 3


def test_resnet_synthetic_trains_with_data_pipeline_and_summaries(tmp_path, capsys):
    """The W10 network, smaller (16x16 images, 2 stages of 1 block), fed by gc.data: 60
    Momentum steps take the test accuracy from chance (10%) to at least 60%, batch norm's
    moving statistics are updated through UPDATE_OPS, and summaries reach the log dir."""
    resnet = load("resnet_synthetic")
    argv = (
        "--image 16 --channels 8 16 --blocks 1 --train-size 1024 --test-size 256 "
        "--batch-size 32 --epochs 2 --steps 60"
    ).split()
    have_tb = importlib.util.find_spec("tensorboard") is not None
    hist = resnet.train(resnet.parse_args([*argv, "--logdir", str(tmp_path)]))
    assert len(hist.step_losses) == 60 and all(np.isfinite(hist.step_losses))
    assert [len(hist.epoch_losses), hist.epoch_losses[1] < hist.epoch_losses[0]] == [2, True]
    # 32 batches make an epoch: the iterator ended the first, the step limit the second
    assert "epoch 1/2  steps 32" in capsys.readouterr().out
    assert hist.final_accuracy >= 0.6, hist.test_accuracy  # evaluated on moving statistics
    assert np.any(hist.moving_mean != 0) and np.all(hist.moving_variance > 0)
    assert hist.summaries_written == (6 if have_tb else 0)
    assert any(tmp_path.glob("events.out.tfevents.*")) == have_tb
