"""examples/char_lstm.py on reduced steps: the loss falls well below chance and the
in-graph sampler returns the prime followed by characters of the text's vocabulary."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "char_lstm.py"


def load():
    spec = importlib.util.spec_from_file_location("example_char_lstm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_char_lstm_trains_and_samples(capsys):
    example = load()
    args = ["--steps", "80", "--hidden", "64", "--seq-len", "32", "--sample-length", "40",
            "--log-every", "40", "--prime", "It was"]  # fmt: skip
    hist = example.main(args)
    _, vocab, _ = example.load_text()
    chance = np.log(len(vocab))  # ~3.66 nats: 39 characters
    assert len(hist.step_losses) == 80 and all(np.isfinite(hist.step_losses))
    assert np.mean(hist.step_losses[:5]) > 0.9 * chance
    # 80 steps of Adam take the next-character loss from ~3.7 to ~2.1 (seed 0)
    assert np.mean(hist.step_losses[-10:]) < 2.6, hist.step_losses[-10:]
    assert hist.sample.startswith("It was") and len(hist.sample) == len("It was") + 40
    assert set(hist.sample) <= set(vocab)
    out = capsys.readouterr().out
    assert "step 40/80" in out and "step 80/80" in out and "sample:" in out


def test_bad_flags():
    example = load()
    for argv in (["--steps", "0"], ["--temperature", "0"], ["--target", "tpu"], ["--prime", ""]):
        with pytest.raises(SystemExit):
            example.parse_args(argv)
