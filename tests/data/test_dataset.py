"""gc.data.Dataset iterated in Python: sources, transformations, specs, threads, errors."""

import collections
import threading
import time

import numpy as np
import pytest

import graphc as gc

Dataset = gc.data.Dataset


def _threads(prefix):
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def _wait_no_threads(prefix, timeout=3.0):
    end = time.monotonic() + timeout
    while _threads(prefix) and time.monotonic() < end:
        time.sleep(0.01)
    return _threads(prefix)


# -- sources ------------------------------------------------------------------------------


def test_from_tensor_slices_array_tuple_dict():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 2, 3])
    assert [e.tolist() for e in Dataset.from_tensor_slices(x)] == x.tolist()
    pairs = list(Dataset.from_tensor_slices((x, y)))
    assert len(pairs) == 4 and all(isinstance(p, tuple) for p in pairs)
    np.testing.assert_array_equal(pairs[2][0], x[2])
    assert pairs[2][1] == 2
    ds = Dataset.from_tensor_slices({"b": y, "a": x})
    elems = list(ds)
    assert list(elems[1]) == ["b", "a"]  # the user's key order
    np.testing.assert_array_equal(elems[1]["a"], x[1])
    spec = ds.element_spec
    assert spec["a"] == gc.TensorSpec((3,), gc.float32)
    assert spec["b"] == gc.TensorSpec((), gc.int64)


def test_from_tensor_slices_yields_copies():
    x = np.zeros((3, 2), np.float32)
    for e in Dataset.from_tensor_slices(x).map(lambda v: v):
        e += 5  # a map fn or loop writing to an element must not change the source
    assert not x.any()


def test_from_tensor_slices_errors():
    with pytest.raises(ValueError, match="different first dims"):
        Dataset.from_tensor_slices((np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="scalar"):
        Dataset.from_tensor_slices(np.float32(1))


def test_from_generator_casts_and_validates():
    def gen():
        yield (1.5, [1, 2])
        yield (2.5, [3, 4])

    ds = Dataset.from_generator(gen, (gc.float32, gc.int32), ((), (2,)))
    got = list(ds)
    assert got[0][0].dtype == np.float32 and got[1][1].dtype == np.int32
    assert got[1][1].tolist() == [3, 4]
    assert list(ds)[0][0] == np.float32(1.5)  # the callable is called anew for each pass

    def bad_shape():
        yield (1.0, [1, 2, 3])

    with pytest.raises(gc.errors.InvalidArgumentError, match=r"bad_shape.*element 0.*\(2,\)"):
        list(Dataset.from_generator(bad_shape, (gc.float32, gc.int32), ((), (2,))))

    def bad_dtype():
        yield 0.5

    with pytest.raises(gc.errors.InvalidArgumentError, match="expected dtype int32"):
        list(Dataset.from_generator(bad_dtype, gc.int32))

    def bad_structure():
        yield (1.0, 2.0, 3.0)

    with pytest.raises(gc.errors.InvalidArgumentError, match="structure"):
        list(Dataset.from_generator(bad_structure, (gc.float32, gc.float32)))

    def not_a_number():
        yield "text"

    with pytest.raises(gc.errors.InvalidArgumentError):
        list(Dataset.from_generator(not_a_number, gc.float32))

    with pytest.raises(TypeError, match="callable"):
        Dataset.from_generator(gen(), (gc.float32, gc.int32))


def test_range_take_skip_shard():
    assert [int(v) for v in Dataset.range(10).take(3)] == [0, 1, 2]
    assert [int(v) for v in Dataset.range(10).skip(7)] == [7, 8, 9]
    assert [int(v) for v in Dataset.range(10).shard(3, 1)] == [1, 4, 7]
    assert [int(v) for v in Dataset.range(4).take(-1)] == [0, 1, 2, 3]
    assert list(Dataset.range(4).skip(-1)) == []
    with pytest.raises(ValueError, match="shard index"):
        Dataset.range(4).shard(2, 2)


# -- transformations ------------------------------------------------------------------------


def test_map_tuple_arguments_and_spec():
    ds = Dataset.from_tensor_slices((np.arange(4.0), np.arange(4))).map(lambda a, b: a * b)
    assert [float(v) for v in ds] == [0, 1, 4, 9]
    assert ds.element_spec == gc.TensorSpec((), gc.float64)
    ds = Dataset.range(3).map(lambda v: {"sq": np.float32(v * v), "v": v})
    assert ds.element_spec["sq"].dtype == gc.float32
    assert [d["sq"] for d in ds] == [0, 1, 4]


def test_map_parallel_keeps_order_and_uses_threads():
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.004, 40)
    names = set()

    def slow(i):
        names.add(threading.current_thread().name)
        time.sleep(delays[int(i)])
        return i * 10

    ds = Dataset.range(40).map(slow, num_parallel_calls=4)
    assert [int(v) for v in ds] == [10 * i for i in range(40)]
    assert any(n.startswith("graphc-data-map") for n in names)
    auto = Dataset.range(5).map(lambda i: i + 1, num_parallel_calls=gc.data.AUTOTUNE)
    assert [int(v) for v in auto] == [1, 2, 3, 4, 5]


def test_map_exception_surfaces_in_order():
    def fn(i):
        if i == 5:
            raise KeyError("bad element 5")
        return i

    for workers in (None, 3):
        seen = []
        with pytest.raises(KeyError, match="bad element 5"):
            for v in Dataset.range(10).map(fn, num_parallel_calls=workers):
                seen.append(int(v))
        assert seen == [0, 1, 2, 3, 4]


def test_map_of_empty_dataset_needs_declared_spec():
    ds = Dataset.range(0).map(lambda v: v)
    with pytest.raises(ValueError, match="output_types"):
        _ = ds.element_spec
    ds = Dataset.range(0).map(lambda v: v, output_types=gc.int64, output_shapes=())
    assert ds.element_spec == gc.TensorSpec((), gc.int64)


def test_shuffle_seeded_deterministic_and_reshuffles_each_epoch():
    def orders(seed):
        ds = Dataset.range(50).shuffle(20, seed=seed).repeat(2)
        return [int(v) for v in ds]

    a, b = orders(7), orders(7)
    assert a == b  # the same order run after run
    assert sorted(a[:50]) == list(range(50)) and sorted(a[50:]) == list(range(50))
    assert a[:50] != a[50:]  # a new order each epoch
    assert a[:50] != list(range(50))
    assert orders(8) != a
    fixed = Dataset.range(30).shuffle(10, seed=3, reshuffle_each_iteration=False).repeat(2)
    vals = [int(v) for v in fixed]
    assert vals[:30] == vals[30:]
    # a buffer of 1 keeps the order; a buffer as large as the data is a full permutation
    assert [int(v) for v in Dataset.range(8).shuffle(1, seed=0)] == list(range(8))


def test_batch_partial_and_drop_remainder():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    ds = Dataset.from_tensor_slices((x, np.arange(5))).batch(2)
    assert ds.element_spec[0] == gc.TensorSpec((None, 2), gc.float32)
    batches = list(ds)
    assert [b[0].shape for b in batches] == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(batches[1][0], x[2:4])
    dropped = Dataset.from_tensor_slices(x).batch(2, drop_remainder=True)
    assert dropped.element_spec == gc.TensorSpec((2, 2), gc.float32)
    assert len(list(dropped)) == 2

    def ragged():
        yield np.zeros(2)
        yield np.zeros(3)

    with pytest.raises(gc.errors.InvalidArgumentError, match=r"\(2,\) and \(3,\)"):
        list(Dataset.from_generator(ragged, gc.float64, (None,)).batch(2))


def test_repeat():
    assert [int(v) for v in Dataset.range(3).repeat(2)] == [0, 1, 2, 0, 1, 2]
    assert [int(v) for v in Dataset.range(2).repeat().take(5)] == [0, 1, 0, 1, 0]
    assert list(Dataset.range(0).repeat()) == []  # an empty dataset repeated forever ends


def test_namedtuple_elements():
    Point = collections.namedtuple("Point", "x y")
    ds = Dataset.from_tensor_slices(Point(np.arange(3.0), np.arange(3))).batch(2)
    first = next(iter(ds))
    assert isinstance(first, Point) and first.y.tolist() == [0, 1]
    assert isinstance(ds.element_spec, Point)


# -- prefetch --------------------------------------------------------------------------------


def test_prefetch_same_elements_and_background_thread():
    ds = Dataset.range(100).map(lambda v: v * 2).batch(7).prefetch(3)
    plain = Dataset.range(100).map(lambda v: v * 2).batch(7)
    for a, b in zip(ds, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not _wait_no_threads("graphc-data-prefetch")


def test_prefetch_producer_exception_surfaces():
    def gen():
        yield 1.0
        yield 2.0
        raise RuntimeError("disk on fire")

    seen = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        for v in Dataset.from_generator(gen, gc.float32).prefetch(2):
            seen.append(float(v))
    assert seen == [1.0, 2.0]


def test_prefetch_thread_stops_when_consumer_leaves():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = iter(Dataset.from_generator(endless, gc.int64).prefetch(4))
    assert [int(next(it)) for _ in range(3)] == [0, 1, 2]
    assert _threads("graphc-data-prefetch")
    it.close()
    del it
    assert not _wait_no_threads("graphc-data-prefetch")
    n = len(produced)
    time.sleep(0.1)
    assert len(produced) == n  # the generator is no longer read


def test_batches_of_slices_equal_stacked_elements():
    rng = np.random.default_rng(3)
    data = {"x": rng.random((11, 3)), "y": (rng.random(11) * 10).astype(np.int32)}
    for drop in (False, True):
        fast = list(Dataset.from_tensor_slices(data).batch(4, drop_remainder=drop))
        slow = list(Dataset.from_tensor_slices(data).map(lambda e: e).batch(4, drop))
        assert len(fast) == len(slow) == (2 if drop else 3)
        for a, b in zip(fast, slow):
            assert list(a) == ["x", "y"]
            np.testing.assert_array_equal(a["x"], b["x"])
            np.testing.assert_array_equal(a["y"], b["y"])
    x = np.arange(5.0)
    batches = list(Dataset.from_tensor_slices(x).batch(2))
    batches[0][0] = 99.0  # a batch is a copy: writing to it leaves the source alone
    assert x[0] == 0 and [b.tolist() for b in batches] == [[99.0, 1.0], [2.0, 3.0], [4.0]]


def test_shuffle_follows_the_graph_level_seed():
    def order():
        gc.reset_default_graph()
        gc.set_random_seed(5)
        return [int(v) for v in Dataset.range(30).shuffle(30)]

    assert order() == order() != list(range(30))
    gc.reset_default_graph()
    assert sorted(int(v) for v in Dataset.range(30).shuffle(30)) == list(range(30))


def test_filter_zip_concatenate():
    evens = Dataset.range(10).filter(lambda v: v % 2 == 0)
    assert [int(v) for v in evens] == [0, 2, 4, 6, 8]
    pairs = Dataset.zip((Dataset.range(3), Dataset.range(10, 20).map(lambda v: v * 2)))
    assert [(int(a), int(b)) for a, b in pairs] == [(0, 20), (1, 22), (2, 24)]
    named = Dataset.zip({"a": Dataset.range(2), "b": Dataset.range(5)})
    assert [{k: int(v) for k, v in e.items()} for e in named] == [
        {"a": 0, "b": 0},
        {"a": 1, "b": 1},
    ]
    both = Dataset.from_tensor_slices(np.zeros((2, 3))).concatenate(
        Dataset.from_tensor_slices(np.ones((1, 4)))
    )
    assert both.element_spec == gc.TensorSpec((None,), gc.float64)
    assert [e.shape for e in both] == [(3,), (3,), (4,)]
    with pytest.raises(TypeError, match="concatenate"):
        Dataset.range(2).concatenate(Dataset.from_tensor_slices(np.zeros(2)))
    with pytest.raises(gc.errors.InvalidArgumentError, match="scalar bool"):
        list(Dataset.range(3).filter(lambda v: np.array([True, False])))


def test_text_components_iterate_and_map_but_are_no_tensors():
    names = Dataset.from_tensor_slices((["a", "bbb"], [1, 2]))
    assert names.element_spec[1] == gc.TensorSpec((), gc.int32)  # Python ints: TF's int32
    assert [(str(s), int(i)) for s, i in names] == [("a", 1), ("bbb", 2)]
    with pytest.raises(TypeError, match="component 0 has numpy dtype <U3"):
        names.make_one_shot_iterator()
    lengths = names.map(lambda s, i: np.float32(len(str(s)) * i))
    assert lengths.element_spec == gc.TensorSpec((), gc.float32)
    assert [float(v) for v in lengths] == [1.0, 6.0]


def test_inferring_a_map_spec_uses_up_no_shuffle_pass():
    def pipeline():
        return Dataset.range(20).shuffle(20, seed=1).prefetch(2).map(lambda v: v * 3)

    probed = pipeline()
    assert probed.element_spec == gc.TensorSpec((), gc.int64)
    assert [int(v) for v in probed] == [int(v) for v in pipeline()]
