"""gc.export / gc.load round trips, signatures, and corrupt artifacts."""

import numpy as np
import pytest

import graphc as gc


def _model(target):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    w = gc.Variable(np.array([[1.0, -2.0, 0.5]], np.float32), name="w")
    b = gc.Variable(np.float32(0.25), name="b")
    y = gc.reduce_sum(gc.tanh(x * w) + b, axis=1)
    z = gc.exp(-x) * 2.0
    sess = gc.Session(target=target)
    sess.run(gc.global_variables_initializer())
    sess.run(b.assign(1.5))  # exported values are the session's current ones
    return sess, x, y, z


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_round_trip_matches_session(tmp_path, target):
    sess, x, y, z = _model(target)
    path = tmp_path / "model.gca"
    gc.export(sess, path, inputs={"x": x}, outputs={"y": y, "z": z})
    m = gc.load(path)
    assert set(m.signature.inputs) == {"x"}
    assert m.signature.inputs["x"] == {"dtype": "float32", "shape": [None, 3]}
    assert m.signature.outputs["y"]["shape"] == [None]
    for n in (1, 5):  # dynamic batch dim
        data = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
        got = m(x=data)
        want_y, want_z = sess.run([y, z], {x: data})
        np.testing.assert_allclose(got["y"], want_y, rtol=1e-6)
        np.testing.assert_allclose(got["z"], want_z, rtol=1e-6)
    sess.close()


def test_loaded_model_needs_no_graph(tmp_path):
    sess, x, y, _ = _model("reference")
    gc.export(sess, tmp_path / "m.gca", inputs={"x": x}, outputs={"y": y})
    want = sess.run(y, {x: np.ones((2, 3))})
    gc.reset_default_graph()
    m = gc.load(tmp_path / "m.gca", target="reference")
    np.testing.assert_allclose(m(x=np.ones((2, 3)))["y"], want)


def test_call_errors_name_inputs(tmp_path):
    sess, x, y, _ = _model("reference")
    gc.export(sess, tmp_path / "m.gca", inputs={"x": x}, outputs={"y": y})
    m = gc.load(tmp_path / "m.gca")
    with pytest.raises(gc.errors.InvalidArgumentError, match="missing input.*x"):
        m()
    with pytest.raises(gc.errors.InvalidArgumentError, match="unknown input.*q"):
        m(x=np.ones((1, 3)), q=1)
    with pytest.raises(ValueError, match=r"x.*\(None, 3\)"):
        m(x=np.ones((2, 4)))


def test_export_rejects_bad_arguments(tmp_path):
    sess, x, y, _ = _model("reference")
    with pytest.raises(TypeError):
        gc.export(sess, tmp_path / "m.gca", inputs=[x], outputs={"y": y})
    with pytest.raises(ValueError, match="identifier"):
        gc.export(sess, tmp_path / "m.gca", inputs={"bad name": x}, outputs={"y": y})


def test_uninitialised_variable_is_refused(tmp_path):
    x = gc.placeholder(gc.float32, (2,), name="x")
    v = gc.Variable(np.ones(2, np.float32), name="never_initialised")
    with gc.Session(target="reference") as sess:
        with pytest.raises(gc.errors.FailedPreconditionError, match="never_initialised"):
            gc.export(sess, tmp_path / "m.gca", inputs={"x": x}, outputs={"y": x * v})


def test_every_corruption_is_detected(tmp_path):
    sess, x, y, z = _model("reference")
    path = tmp_path / "m.gca"
    gc.export(sess, path, inputs={"x": x}, outputs={"y": y, "z": z})
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    positions = sorted(set(rng.integers(0, len(data), 150).tolist()) | {0, 8, 16, len(data) - 1})
    bad = tmp_path / "bad.gca"
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(flipped))
        with pytest.raises(gc.errors.InvalidArtifactError):
            gc.load(bad)
    for cut in [0, 5, 12, 100, len(data) // 2, len(data) - 1]:
        bad.write_bytes(data[:cut])
        with pytest.raises(gc.errors.InvalidArtifactError):
            gc.load(bad)
    bad.write_bytes(data + b"x")
    with pytest.raises(gc.errors.InvalidArtifactError):
        gc.load(bad)
    with pytest.raises(gc.errors.InvalidArtifactError, match="no such"):
        gc.load(tmp_path / "missing.gca")


def test_artifact_holds_no_pickle(tmp_path):
    sess, x, y, _ = _model("reference")
    path = tmp_path / "m.gca"
    gc.export(sess, path, inputs={"x": x}, outputs={"y": y})
    data = path.read_bytes()
    assert b"\x80\x04\x95" not in data and b"\x80\x05\x95" not in data  # pickle protocol 4/5
    from graphc.exporter import describe, to_dot

    text = describe(path)
    assert "x: float32(None, 3)" in text and "graphc" in text and "ops (" in text
    assert to_dot(path).startswith("digraph")


def test_export_is_atomic(tmp_path, monkeypatch):
    sess, x, y, _ = _model("reference")
    path = tmp_path / "m.gca"
    gc.export(sess, path, inputs={"x": x}, outputs={"y": y})
    good = path.read_bytes()
    import graphc.fsutil as fsutil

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fsutil.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        gc.export(sess, path, inputs={"x": x}, outputs={"y": y * 2})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.gca"]
