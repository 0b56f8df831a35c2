"""gc.data iterators in a Session: get_next tensors fed by the session, one element per run."""

import threading
import time

import numpy as np
import pytest

import graphc as gc

Dataset = gc.data.Dataset
OPTS = gc.CompileOptions(cache_dir=None)


@pytest.fixture(params=["cpu", "reference"])
def target(request):
    return request.param


def test_one_shot_iterator_batches_then_out_of_range(target):
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10, dtype=np.int64)
    xb, yb = Dataset.from_tensor_slices((x, y)).batch(4).make_one_shot_iterator().get_next()
    assert xb.shape == (None, 2) and xb.dtype == gc.float32 and yb.dtype == gc.int64
    total = gc.reduce_sum(xb * 2.0, axis=1)
    with gc.Session(target=target, options=OPTS) as sess:
        got = [sess.run([total, yb]) for _ in range(3)]
        for _ in range(2):  # the end keeps raising
            with pytest.raises(gc.errors.OutOfRangeError, match="End of sequence"):
                sess.run(total)
    for k, (t, labels) in enumerate(got):
        np.testing.assert_allclose(t, (x[4 * k : 4 * k + 4] * 2).sum(1))
        np.testing.assert_array_equal(labels, y[4 * k : 4 * k + 4])


def test_same_element_within_a_run_next_element_per_run():
    it = Dataset.range(6).make_one_shot_iterator()
    v = it.get_next()
    assert it.get_next() is v  # one element per run and iterator
    doubled, plus = v * 2, v + 100
    with gc.Session(options=OPTS) as sess:
        assert sess.run([doubled, plus]) == [0, 100]
        assert sess.run(doubled) == 2
        assert sess.run(plus) == 102
        # the fast path (same fetch list again) still takes one element per run
        assert [sess.run([doubled, plus]) for _ in range(3)] == [[6, 103], [8, 104], [10, 105]]
        assert sess.cache_info()["hits"] >= 2


def test_initializable_iterator_restarts():
    it = Dataset.range(3).make_initializable_iterator()
    v = it.get_next()
    with gc.Session(options=OPTS) as sess:
        with pytest.raises(gc.errors.FailedPreconditionError, match="initializ"):
            sess.run(v)
        for _ in range(2):
            sess.run(it.initializer)
            assert [int(sess.run(v)) for _ in range(3)] == [0, 1, 2]
            with pytest.raises(gc.errors.OutOfRangeError):
                sess.run(v)
        sess.run(it.initializer)
        assert int(sess.run(v)) == 0
        sess.run(it.initializer)  # mid-pass: back to the start
        assert int(sess.run(v)) == 0
        # initializer and get_next in one run: the first element
        _, first = sess.run([it.initializer, v])
        assert first == 0
    it2 = gc.data.make_initializable_iterator(Dataset.range(2))  # the function forms
    one = gc.data.make_one_shot_iterator(Dataset.range(5, 7)).get_next()
    with gc.Session(options=OPTS) as sess:
        sess.run(it2.initializer)
        assert sess.run([it2.get_next(), one]) == [0, 5]
    with pytest.raises(ValueError, match="one-shot"):
        _ = Dataset.range(3).make_one_shot_iterator().initializer


def test_dict_elements_with_feed_dict_and_map():
    data = {"x": np.arange(8, dtype=np.float64).reshape(4, 2), "w": np.ones(4, np.float32)}
    ds = Dataset.from_tensor_slices(data).map(lambda e: {"x": e["x"] * 3, "w": e["w"]})
    nxt = ds.make_one_shot_iterator().get_next()
    assert set(nxt) == {"x", "w"}
    scale = gc.placeholder(gc.float64, ())
    out = gc.reduce_sum(nxt["x"]) * scale + gc.cast(nxt["w"], gc.float64)
    with gc.Session(options=OPTS) as sess:
        vals = [sess.run(out, {scale: 2.0}) for _ in range(4)]
    np.testing.assert_allclose(vals, data["x"].sum(1) * 3 * 2 + 1)


def test_generator_element_of_wrong_dtype_or_shape_is_refused_then_skipped():
    def gen():
        yield np.zeros(3, np.float32)
        yield np.zeros(4, np.float32)  # wrong shape
        yield np.array(["a", "b", "c"])  # not a number
        yield np.ones(3, np.float32)

    v = Dataset.from_generator(gen, gc.float32, (3,)).make_one_shot_iterator().get_next()
    s = gc.reduce_sum(v)
    with gc.Session(options=OPTS) as sess:
        assert sess.run(s) == 0
        with pytest.raises(gc.errors.InvalidArgumentError, match=r"shape \(3,\).*\(4,\)"):
            sess.run(s)
        with pytest.raises(gc.errors.InvalidArgumentError, match="dtype float32"):
            sess.run(s)
        assert sess.run(s) == 3


def test_failed_run_gives_the_element_back():
    def gen():
        yield np.arange(2.0)
        yield np.arange(3.0)

    v = Dataset.from_generator(gen, gc.float64, (None,)).make_one_shot_iterator().get_next()
    p = gc.placeholder(gc.float64, (3,))
    bad = v + p  # the first element's size does not broadcast with 3
    with gc.Session(options=OPTS) as sess:
        with pytest.raises(gc.errors.InvalidArgumentError):
            sess.run(bad, {p: np.zeros(3)})
        np.testing.assert_array_equal(sess.run(v), [0, 1])  # not consumed by the failure
        np.testing.assert_array_equal(sess.run(bad, {p: np.ones(3)}), [1, 2, 3])


def test_uint8_images_cast_to_the_spec_dtype():
    imgs = np.arange(2 * 4, dtype=np.uint8).reshape(2, 4)
    v = Dataset.from_tensor_slices(imgs).make_one_shot_iterator().get_next()
    assert v.dtype == gc.int32
    with gc.Session(options=OPTS) as sess:
        np.testing.assert_array_equal(sess.run(v), imgs[0])


def test_two_iterators_and_out_of_range_returns_the_other_element():
    a = Dataset.range(3).make_one_shot_iterator().get_next()
    b = Dataset.range(10, 12).make_one_shot_iterator().get_next()
    with gc.Session(options=OPTS) as sess:
        assert sess.run([a, b]) == [0, 10]
        assert sess.run([a, b]) == [1, 11]
        with pytest.raises(gc.errors.OutOfRangeError):
            sess.run([a, b])  # b ends; a's element taken for this run is given back
        assert sess.run(a) == 2


def test_runs_from_several_threads_take_each_element_once():
    v = Dataset.range(200).prefetch(8).make_one_shot_iterator().get_next()
    out = v + 0
    got, lock = [], threading.Lock()
    with gc.Session(options=OPTS) as sess:
        sess.run(out)  # compile once

        def worker():
            while True:
                try:
                    x = int(sess.run(out))
                except gc.errors.OutOfRangeError:
                    return
                with lock:
                    got.append(x)

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(got) == list(range(1, 200))


def test_sess_compile_matches_the_run_signature():
    v = Dataset.range(3).make_one_shot_iterator().get_next()
    out = v * 3
    with gc.Session(options=OPTS) as sess:
        sess.compile(out)
        assert sess.run(out) == 0
        assert sess.cache_info()["compiles"] == 1


def test_training_from_a_dataset_matches_feed_dict(target):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40).astype(np.int64)
    w0 = (rng.standard_normal((5, 3)) * 0.3).astype(np.float32)

    def model(xb, yb):
        w = gc.Variable(w0, name="w")
        logits = gc.matmul(xb, w)
        loss = gc.reduce_mean(
            gc.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits)
        )
        step = gc.train.GradientDescentOptimizer(0.5).minimize(loss)
        return loss, step

    g1 = gc.Graph()
    with g1.as_default():
        ds = Dataset.from_tensor_slices((x, y)).batch(8).repeat(2).prefetch(2)
        loss1, step1 = model(*ds.make_one_shot_iterator().get_next())
        init1 = gc.global_variables_initializer()
    g2 = gc.Graph()
    with g2.as_default():
        xp, yp = gc.placeholder(gc.float32, (None, 5)), gc.placeholder(gc.int64, (None,))
        loss2, step2 = model(xp, yp)
        init2 = gc.global_variables_initializer()
    with gc.Session(g1, target=target, options=OPTS) as s1:
        s1.run(init1)
        losses1 = []
        while True:
            try:
                losses1.append(s1.run([loss1, step1])[0])
            except gc.errors.OutOfRangeError:
                break
    with gc.Session(g2, target=target, options=OPTS) as s2:
        s2.run(init2)
        losses2 = [
            s2.run([loss2, step2], {xp: x[i : i + 8], yp: y[i : i + 8]})[0]
            for _ in range(2)
            for i in range(0, 40, 8)
        ]
    assert len(losses1) == 10
    np.testing.assert_allclose(losses1, losses2, rtol=1e-6)
    assert losses1[-1] < losses1[0]


def test_position_is_per_session_and_close_stops_threads():
    v = Dataset.range(4).repeat().prefetch(2).make_one_shot_iterator().get_next()
    out = v * 1
    s1, s2 = gc.Session(options=OPTS), gc.Session(options=OPTS)
    assert [int(s1.run(out)) for _ in range(3)] == [0, 1, 2]
    assert [int(s2.run(out)) for _ in range(2)] == [0, 1]  # its own pass, as in TF
    assert int(s1.run(out)) == 3
    s1.close()
    s2.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(
        t.name == "graphc-data-prefetch" and t.is_alive() for t in threading.enumerate()
    ):
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name == "graphc-data-prefetch"]
