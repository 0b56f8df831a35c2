"""gc.summary: summaries fetched as serialized protos, written as TensorBoard event files and
read back with TensorBoard's own EventAccumulator; histograms against TensorFlow's."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("tensorboard")  # in the `test` extra; CI installs it

from PIL import Image  # noqa: E402  (a dependency of tensorboard)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.compat.proto import summary_pb2  # noqa: E402

GOLDEN = Path(__file__).with_name("golden_tf_histogram.npz")
OPTS = gc.CompileOptions(cache_dir=None)


def _read(logdir) -> EventAccumulator:
    ea = EventAccumulator(str(logdir), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    ea.Reload()
    return ea


def test_scalars_histograms_images_written_and_read_back(tmp_path):
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 5, 6, 3), name="x")
    w = gc.Variable(np.float32(2.0), name="w")
    loss = gc.reduce_mean(x) * w
    with gc.name_scope("train"):
        gc.summary.scalar("loss", loss)
    gc.summary.histogram("pixels", x)
    gc.summary.image("inputs", x, max_outputs=2)
    gc.summary.image("grey", gc.cast(x[:, :, :, :1] * 255.0, gc.int32), max_outputs=1)
    merged = gc.summary.merge_all()
    feeds = [rng.random((3, 5, 6, 3)).astype(np.float32) for _ in range(3)]
    with gc.Session(options=OPTS) as sess:
        sess.run(w.initializer)
        with gc.summary.FileWriter(tmp_path, sess.graph) as writer:
            for step, f in enumerate(feeds):
                blob = sess.run(merged, {x: f})
                assert isinstance(blob, bytes)
                writer.add_summary(blob, global_step=10 * step)
    ea = _read(tmp_path)
    tags = ea.Tags()
    assert tags["scalars"] == ["train/loss"]
    assert tags["histograms"] == ["pixels"]
    assert sorted(tags["images"]) == ["grey/image", "inputs/image/0", "inputs/image/1"]
    assert tags["graph"]
    scalars = ea.Scalars("train/loss")
    assert [s.step for s in scalars] == [0, 10, 20]
    np.testing.assert_allclose([s.value for s in scalars], [f.mean() * 2 for f in feeds], 1e-5)
    hist = ea.Histograms("pixels")[-1].histogram_value
    assert hist.num == feeds[-1].size and sum(hist.bucket) == feeds[-1].size
    np.testing.assert_allclose([hist.min, hist.max], [feeds[-1].min(), feeds[-1].max()], 1e-6)
    img = ea.Images("inputs/image/1")[-1]
    assert (img.height, img.width) == (5, 6)
    decoded = np.asarray(Image.open(io.BytesIO(img.encoded_image_string)))
    np.testing.assert_array_equal(decoded, np.round(feeds[-1][1] * 255).astype(np.uint8))
    grey = ea.Images("grey/image")[0]
    decoded = np.asarray(Image.open(io.BytesIO(grey.encoded_image_string)))
    np.testing.assert_array_equal(decoded, (feeds[0][0, :, :, 0] * 255).astype(np.int32))
    names = {n.name for n in ea.Graph().node}
    assert {"x", "w"} <= names


def test_histogram_buckets_match_tensorflow():
    golden = np.load(GOLDEN)
    for name in ("normal", "wide", "mixed", "ints"):
        v = golden[f"{name}/values"]
        s = gc.summary.histogram(name, gc.constant(v))
        with gc.Session(options=OPTS) as sess:
            h = summary_pb2.Summary.FromString(sess.run(s)).value[0].histo
        np.testing.assert_allclose(
            [h.min, h.max, h.num, h.sum, h.sum_squares], golden[f"{name}/stats"], rtol=1e-6
        )
        np.testing.assert_array_equal(h.bucket_limit, golden[f"{name}/bucket_limit"])
        np.testing.assert_array_equal(h.bucket, golden[f"{name}/bucket"])


def test_merge_explicit_list_and_fetch_with_a_train_step(tmp_path):
    v = gc.Variable(1.0, name="v")
    step = gc.assign_add(v, 1.0)
    a = gc.summary.scalar("a", v * 3)
    b = gc.summary.scalar("b", v + 1, collections=[])
    assert gc.get_default_graph().get_collection("summaries") == [a]
    merged = gc.summary.merge([a, b])
    with gc.Session(options=OPTS) as sess:
        sess.run(v.initializer)
        out = [sess.run([merged, step])[0] for _ in range(2)]
    values = [{x.tag: x.simple_value for x in summary_pb2.Summary.FromString(o).value} for o in out]
    assert values[0]["a"] == 3.0 and values[1]["a"] == 6.0 and values[1]["b"] == 3.0


def test_summary_errors():
    with pytest.raises(ValueError, match="scalar"):
        gc.summary.scalar("s", gc.zeros((3,)))
    with pytest.raises(ValueError, match="channels"):
        gc.summary.image("im", gc.zeros((1, 4, 4, 2)))
    assert gc.summary.merge_all() is None
    x = gc.placeholder(gc.float32, None)
    bad_hist = gc.summary.histogram("h", x)
    bad_img = gc.summary.image("i", x)
    with gc.Session(options=OPTS) as sess:
        with pytest.raises(gc.errors.InvalidArgumentError, match="NaN"):
            sess.run(bad_hist, {x: np.array([1.0, np.nan])})
        with pytest.raises(gc.errors.InvalidArgumentError, match="NHWC"):
            sess.run(bad_img, {x: np.zeros((4, 4))})
    with pytest.raises(TypeError, match="add_summary"):
        gc.summary.FileWriter.add_summary(object.__new__(gc.summary.FileWriter), 3.0)


def test_without_tensorboard_import_works_and_filewriter_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['tensorboard'] = None\n"
        "import graphc as gc\n"
        "s = gc.summary.scalar('loss', gc.constant(1.0))\n"
        "try:\n"
        f"    gc.summary.FileWriter({str(tmp_path)!r})\n"
        "except gc.errors.UnavailableError as e:\n"
        "    print('UNAVAILABLE', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "UNAVAILABLE" in out.stdout and "graphc[tensorboard]" in out.stdout
