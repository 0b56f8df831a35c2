"""examples/export_and_load.py runs as is: train briefly, export, load, same predictions."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "export_and_load.py"


@pytest.mark.parametrize("target", ["cpu", "reference"])
def test_export_and_load_example(tmp_path, target, capsys):
    spec = importlib.util.spec_from_file_location("example_export_and_load", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "m.gcx"
    result = module.main(["--out", str(out), "--steps", "60", "--target", target])
    assert out.exists()
    assert result["accuracy"] > 0.5  # 60 steps already beat 10% chance by far
    assert set(result["model"].signature.outputs) == {"probs", "label"}
    np.testing.assert_allclose(result["first"]["probs"].sum(axis=1), 1.0, rtol=1e-5)
    printed = capsys.readouterr().out
    assert "predictions match" in printed and "load + first prediction" in printed
