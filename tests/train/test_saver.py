"""gc.train.Saver: round trips, step suffixes, max_to_keep, atomic writes, validation."""

import os

import numpy as np
import pytest

import graphc as gc
from graphc.train import checkpoint as ckpt


def _model():
    w = gc.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="layer/w")
    b = gc.Variable(np.zeros(3, np.float64), name="layer/b")
    step = gc.train.get_or_create_global_step()
    loss = gc.reduce_sum(gc.square(w)) + gc.cast(gc.reduce_sum(b * b), gc.float32)
    train = gc.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
    return w, b, step, train


def _values(sess):
    return sess.variable_values()


def test_round_trip_restores_every_variable_including_slots(tmp_path):
    w, b, step, train = _model()
    saver = gc.train.Saver()
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        saved = _values(sess)
        path = saver.save(sess, str(tmp_path / "model.ckpt"))
    assert path == str(tmp_path / "model.ckpt") and os.path.isfile(path)
    assert {"layer/w/Adam", "layer/w/Adam_1", "beta1_power", "global_step"} <= set(saved)
    with gc.Session(target="reference") as sess:
        saver.restore(sess, path)  # no initializer needed
        restored = _values(sess)
        assert sess.run(step) == 3
    assert set(restored) == set(saved)
    for k in saved:
        assert restored[k].dtype == saved[k].dtype
        np.testing.assert_array_equal(restored[k], saved[k])
    # Training resumes identically from the restored state.
    with gc.Session() as s1, gc.Session() as s2:
        s1.run(gc.global_variables_initializer())
        for _ in range(3):
            s1.run(train)
        saver.restore(s2, path)
        s1.run(train)
        s2.run(train)
        np.testing.assert_array_equal(s1.run(w), s2.run(w))


def test_global_step_suffix_latest_and_max_to_keep(tmp_path):
    w, b, step, train = _model()
    saver = gc.train.Saver(max_to_keep=2)
    prefix = str(tmp_path / "ckpt" / "model")
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        paths = []
        for _ in range(4):
            sess.run(train)
            paths.append(saver.save(sess, prefix, global_step=step))
        assert paths == [f"{prefix}-{i}" for i in (1, 2, 3, 4)]
        assert saver.save(sess, prefix, global_step=7) == f"{prefix}-7"
    kept = sorted(p for p in os.listdir(tmp_path / "ckpt") if p.startswith("model"))
    assert kept == ["model-4", "model-7"]
    assert saver.last_checkpoints == [f"{prefix}-4", f"{prefix}-7"]
    assert gc.train.latest_checkpoint(str(tmp_path / "ckpt")) == f"{prefix}-7"
    assert gc.train.latest_checkpoint(str(tmp_path / "nowhere")) is None
    assert not [p for p in os.listdir(tmp_path / "ckpt") if p.endswith(".tmp")]


def test_var_list_and_dict_names(tmp_path):
    w, b, step, _ = _model()
    saver = gc.train.Saver({"weights": w})
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "m"))
    assert gc.train.list_variables(path) == [("weights", (2, 3))]
    only_w = gc.train.Saver([w])
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        p2 = only_w.save(sess, str(tmp_path / "m2"))
    assert [n for n, _ in gc.train.list_variables(p2)] == ["layer/w"]
    np.testing.assert_array_equal(
        gc.train.load_checkpoint(p2)["layer/w"], np.arange(6).reshape(2, 3)
    )


def _saved(tmp_path):
    w, b, step, train = _model()
    saver = gc.train.Saver()
    sess = gc.Session()
    sess.run(gc.global_variables_initializer())
    path = saver.save(sess, str(tmp_path / "good"))
    sess.run(train)  # now the session differs from the checkpoint
    return saver, sess, path


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "header"])
def test_corrupt_checkpoint_raises_and_changes_nothing(tmp_path, damage):
    saver, sess, path = _saved(tmp_path)
    raw = bytearray(open(path, "rb").read())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) - 40]
    elif damage == "empty":
        raw = b""
    elif damage == "garbage":
        raw = b"PK\x03\x04" + bytes(200)
    else:  # a valid checksum over a header that lies about sizes
        body = bytes(raw[:-32]).replace(b'"nbytes": 24', b'"nbytes": 99')
        import hashlib

        raw = body + hashlib.sha256(body).digest()
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(raw))
    before = sess.variable_values()
    with pytest.raises(gc.errors.InvalidArtifactError, match="bad"):
        saver.restore(sess, str(bad))
    after = sess.variable_values()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    sess.close()


def test_missing_and_mismatched_variables(tmp_path):
    saver, sess, path = _saved(tmp_path)
    before = sess.variable_values()
    extra = gc.Variable(np.ones(2, np.float32), name="extra")
    with pytest.raises(gc.errors.NotFoundError, match="extra"):
        gc.train.Saver([gc.get_default_graph().get_tensor_by_name("layer/w:0"), extra]).restore(
            sess, path
        )
    # Same names, different shape / dtype, in a new graph.
    g = gc.Graph()
    with g.as_default():
        w2 = gc.Variable(np.zeros((3, 2), np.float32), name="layer/w")
        b2 = gc.Variable(np.zeros(3, np.float32), name="layer/b")
        with gc.Session(graph=g) as s2:
            s2.run(gc.global_variables_initializer())
            with pytest.raises(ValueError, match=r"layer/w.*shape \(2, 3\)"):
                gc.train.Saver([w2]).restore(s2, path)
            with pytest.raises(ValueError, match=r"layer/b.*dtype float64"):
                gc.train.Saver([b2]).restore(s2, path)
            with pytest.raises(ValueError):
                gc.train.Saver([b2, w2]).restore(s2, path)
            np.testing.assert_array_equal(s2.run(w2), 0)
    with pytest.raises(gc.errors.NotFoundError, match="does not exist"):
        saver.restore(sess, str(tmp_path / "nope"))
    after = sess.variable_values()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    sess.close()


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    saver, sess, path = _saved(tmp_path)
    good = open(path, "rb").read()

    def boom(*a, **k):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        saver.save(sess, path)
    monkeypatch.undo()
    assert open(path, "rb").read() == good
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "good"]  # no temp file left behind
    sess.close()


def test_uninitialised_variable_cannot_be_saved(tmp_path):
    gc.Variable(np.ones(2), name="v")
    with gc.Session() as sess:
        with pytest.raises(gc.errors.FailedPreconditionError, match="v"):
            gc.train.Saver().save(sess, str(tmp_path / "x"))


def test_format_has_no_pickle_and_round_trips_dtypes():
    arrays = {
        "a": np.arange(5, dtype=np.int64),
        "b": np.array(True),
        "s": np.float32(2.5),
        "c": np.zeros((0, 3), np.float16),
        "d/e": np.array([[1.5, -2.0]], np.float64),
    }
    raw = ckpt.encode(arrays)
    assert raw.startswith(ckpt.MAGIC) and b"numpy" not in raw and b"\x80\x04" not in raw[:16]
    back, _ = ckpt.decode(raw)
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    with pytest.raises(TypeError, match="unsupported dtype"):
        ckpt.encode({"o": np.array(["x"], dtype=object)})


def test_no_variables():
    with pytest.raises(ValueError, match="No variables"):
        gc.train.Saver()
    gc.train.Saver(allow_empty=True)
