"""Artifacts and C libraries of graphs with control flow are refused clearly, never written
wrong."""

import pytest

import graphc as gc
from graphc.errors import UnimplementedError


def _loop():
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = gc.while_loop(lambda v: gc.reduce_sum(v) < 100.0, lambda v: v * 2.0, [x])
    return x, y


def test_export_refuses_control_flow(tmp_path):
    x, y = _loop()
    with gc.Session(target="cpu") as sess:
        with pytest.raises(UnimplementedError, match="control flow"):
            gc.export(sess, str(tmp_path / "m.gcx"), {"x": x}, {"y": y})
    assert not (tmp_path / "m.gcx").exists()


def test_export_c_refuses_control_flow(tmp_path):
    x, y = _loop()
    with gc.Session(target="cpu") as sess:
        with pytest.raises(UnimplementedError, match="While"):
            gc.export_c(sess, str(tmp_path / "lib"), {"x": x}, {"y": y})
