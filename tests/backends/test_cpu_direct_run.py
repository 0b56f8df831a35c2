"""Session's leanest run (``Session._direct`` over ``LLVMRunner.direct_call``): a repeated
signature of a program without variables or randomness runs straight on the fed arrays. It
must give what the reference gives for every fetch structure, feed order and dims value,
hand back fresh arrays, and leave every feed it cannot take as is (wrong dtype, shape,
layout, a list) to the usual path, which converts or refuses it as before."""

import numpy as np
import pytest

import graphc as gc


def _graph():
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, (None, 3), name="a")
        b = gc.placeholder(gc.float32, (3,), name="b")
        y = a * 2.0 + b
        s = gc.reduce_sum(y)  # a scalar fetch
        z = gc.tanh(y)
    return g, a, b, y, s, z


def _counting(sess, fetches, feed_dict):
    """Run once (installs the fast entry), then count the runner's run() calls."""
    exe = sess.compile(fetches, list(feed_dict))
    calls = []
    orig = exe.runner.run

    def run(ctx, trace=None):
        calls.append(1)
        return orig(ctx, trace)

    exe.runner.run = run
    return calls


@pytest.mark.parametrize("rows", [1, 4])
def test_direct_matches_reference_for_each_fetch_structure(rows):
    g, a, b, y, s, z = _graph()
    rng = np.random.default_rng(rows)
    av = rng.standard_normal((rows, 3)).astype(np.float32)
    bv = rng.standard_normal(3).astype(np.float32)
    structures = [[y], y, [y, s, z], (s, y), {"y": y, "s": s}, [y, y], s, [s]]
    with gc.Session(graph=g) as sess, gc.Session(graph=g, target="reference") as ref:
        for fetches in structures:
            for feed in ({a: av, b: bv}, {b: bv, a: av}):  # both orders of the feed dict
                want = ref.run(fetches, feed)
                calls = _counting(sess, fetches, feed)
                for _ in range(3):
                    got = sess.run(fetches, feed)
                    assert type(got) is type(want)
                    for gv, wv in zip(_leaves(got), _leaves(want)):
                        assert type(gv) is type(wv) or np.isscalar(gv) == np.isscalar(wv)
                        np.testing.assert_allclose(gv, wv, rtol=1e-6, atol=1e-6)
                assert len(calls) <= 1  # at most the run that installed the entry


def _leaves(v):
    if isinstance(v, dict):
        return [v[k] for k in sorted(v)]
    if isinstance(v, list | tuple):
        return list(v)
    return [v]


def test_direct_takes_the_lean_path_and_counts_hits():
    g, a, b, y, s, z = _graph()
    av, bv = np.ones((2, 3), np.float32), np.arange(3, dtype=np.float32)
    with gc.Session(graph=g) as sess:
        sess.run([y], {a: av, b: bv})
        calls = _counting(sess, [y], {a: av, b: bv})
        hits = sess.cache_info()["hits"]
        for _ in range(5):
            sess.run([y], {a: av, b: bv})
        assert calls == []  # no run() of the runner: the direct call ran
        assert sess.cache_info()["hits"] == hits + 5


def test_direct_outputs_are_fresh():
    g, a, b, y, s, z = _graph()
    av, bv = np.ones((2, 3), np.float32), np.zeros(3, np.float32)
    with gc.Session(graph=g) as sess:
        first = sess.run([y], {a: av, b: bv})[0]
        second = sess.run([y], {a: av * 3, b: bv})[0]
        two = sess.run([y, y], {a: av, b: bv})
        two = sess.run([y, y], {a: av, b: bv})
    np.testing.assert_array_equal(first, 2.0)
    np.testing.assert_array_equal(second, 6.0)
    assert not np.shares_memory(first, second)
    two[0][0, 0] = 99.0  # the same fetch twice: equal values, what the usual path gives
    assert two[1][0, 0] in (99.0, 2.0)


def test_direct_runs_each_dims_value():
    g, a, b, y, s, z = _graph()
    bv = np.float32([1, 2, 3])
    with gc.Session(graph=g) as sess:
        for rows in (1, 5, 2, 5, 1, 7):
            av = np.full((rows, 3), rows, np.float32)
            out = sess.run(y, {a: av, b: bv})
            np.testing.assert_array_equal(out, 2 * av + bv)
            assert out.shape == (rows, 3)


def test_feeds_the_direct_call_declines_take_the_usual_path():
    g, a, b, y, s, z = _graph()
    bv = np.float32([1, 2, 3])
    good = np.ones((2, 3), np.float32)
    with gc.Session(graph=g) as sess:
        sess.run(y, {a: good, b: bv})
        sess.run(y, {a: good, b: bv})
        want = 2 * good + bv
        # converted as before: float64, a list, a transposed (non-contiguous) view
        np.testing.assert_allclose(sess.run(y, {a: good.astype(np.float64), b: bv}), want)
        np.testing.assert_allclose(sess.run(y, {a: good.tolist(), b: bv}), want)
        wide = np.ones((3, 2), np.float32).T
        assert not wide.flags.c_contiguous
        np.testing.assert_allclose(sess.run(y, {a: wide, b: bv}), want)
        # refused as before, and the session still runs afterwards
        with pytest.raises(ValueError):
            sess.run(y, {a: np.ones((2, 4), np.float32), b: bv})
        with pytest.raises(ValueError):
            sess.run(y, {a: good, b: np.ones(4, np.float32)})
        np.testing.assert_allclose(sess.run(y, {a: good, b: bv}), want)


def test_programs_with_variables_keep_the_usual_path():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (2,), name="x")
        v = gc.Variable(np.zeros(2, np.float32), name="v")
        step = gc.assign_add(v, x)
        init = gc.global_variables_initializer()
    with gc.Session(graph=g) as sess:
        sess.run(init)
        for _ in range(4):
            out = sess.run(step, {x: np.float32([1, 2])})
        np.testing.assert_array_equal(out, [4, 8])
        np.testing.assert_array_equal(sess.run(v), [4, 8])


def test_closed_session_refuses_a_repeated_signature():
    g, a, b, y, s, z = _graph()
    feed = {a: np.ones((1, 3), np.float32), b: np.ones(3, np.float32)}
    sess = gc.Session(graph=g)
    sess.run(y, feed)
    sess.run(y, feed)
    sess.close()
    with pytest.raises(RuntimeError):
        sess.run(y, feed)


def test_a_dropped_session_is_freed_without_the_cycle_collector():
    """The direct closure must not hold its session: a session dropped by the user is freed
    at once (its compiled code with it), as before the fast path."""
    import gc as pygc
    import weakref

    g, a, b, y, s, z = _graph()
    feed = {a: np.ones((1, 3), np.float32), b: np.ones(3, np.float32)}
    was = pygc.isenabled()
    pygc.disable()
    try:
        sess = gc.Session(graph=g)
        sess.run(y, feed)
        sess.run(y, feed)
        ref = weakref.ref(sess)
        del sess
        assert ref() is None
    finally:
        if was:
            pygc.enable()


def test_direct_runs_from_several_threads_give_each_its_own_result():
    """The direct call binds the program's one argument table: runs from several Python
    threads on one session must not see each other's feeds or outputs."""
    import threading

    g, a, b, y, s, z = _graph()
    bv = np.float32([0, 0, 0])
    errors = []
    with gc.Session(graph=g) as sess:
        sess.run(y, {a: np.ones((2, 3), np.float32), b: bv})

        def work(k):
            av = np.full((2, 3), k, np.float32)
            for _ in range(300):
                out = sess.run(y, {a: av, b: bv})
                if not np.array_equal(out, 2 * av):
                    errors.append((k, out))
                    return

        threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


@pytest.mark.parametrize("target", ["cpu", "reference"])
def test_dict_fetches_repeat_by_their_keys_and_tensors(target):
    """A plain dict of fetches takes the repeated-signature path: keyed by its keys (in
    order) and its tensors, so another dict with other keys or other tensors gets its own."""
    g, a, b, y, s, z = _graph()
    feed = {a: np.float32([[1, -2, 3]]), b: np.float32([0, 1, 0])}
    yv = 2 * feed[a] + feed[b]
    with gc.Session(graph=g, target=target) as sess:
        for _ in range(3):
            out = sess.run({"y": y, "s": s}, feed)
            assert list(out) == ["y", "s"]
            np.testing.assert_allclose(out["y"], yv)
            np.testing.assert_allclose(out["s"], yv.sum(), rtol=1e-6)
        other = sess.run({"s": y, "y": s}, feed)  # the same tensors under swapped keys
        np.testing.assert_allclose(other["s"], yv)
        np.testing.assert_allclose(other["y"], yv.sum(), rtol=1e-6)
        reordered = sess.run({"s": s, "y": y}, feed)
        assert list(reordered) == ["s", "y"]
        np.testing.assert_allclose(reordered["y"], yv)
        swapped = {"y": y, "s": s}
        sess.run(swapped, feed)
        swapped["y"] = z  # the same dict object, another tensor: another signature
        np.testing.assert_allclose(sess.run(swapped, feed)["y"], np.tanh(yv), rtol=1e-6)
        if target == "cpu":
            calls = _counting(sess, {"y": y, "s": s}, feed)
            for _ in range(3):
                sess.run({"y": y, "s": s}, feed)
            assert calls == []


def test_a_program_without_feeds_repeats_with_feed_dict_none_or_empty():
    """A lean program that reads no feed (a constant too large to fold, then scaled) runs
    again and again with ``feed_dict`` None or {}."""
    g = gc.Graph()
    with g.as_default():
        y = gc.fill((1024, 1024), 3.0) * 2
    with gc.Session(graph=g) as sess:
        assert sess.compile(y).runner.direct_call() is not None  # the path under test
        for feed in (None, None, {}, {}, None):
            out = sess.run(y, feed)
            assert out.shape == (1024, 1024) and float(out[0, 0]) == 6.0
