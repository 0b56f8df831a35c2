"""Session semantics on the reference target: fetch structures, feeds, errors, state, threads."""

import collections
import threading

import numpy as np
import pytest

import graphc as gc

TARGETS = ["reference", "cpu"]


@pytest.fixture(params=TARGETS)
def target(request):
    return request.param


def test_fetch_structures(target):
    a = gc.constant(1.0, name="a")
    b = gc.constant([1, 2], name="b")
    Pair = collections.namedtuple("Pair", "x y")
    noop = gc.no_op(name="nothing")
    with gc.Session(target=target) as sess:
        out = sess.run({"a": a, "rest": [b, (a, "b:0")], "pair": Pair(a, b), "op": noop})
    assert isinstance(out["a"], np.floating) and out["a"] == 1.0
    assert isinstance(out["rest"], list) and isinstance(out["rest"][1], tuple)
    np.testing.assert_array_equal(out["rest"][1][1], [1, 2])
    assert isinstance(out["pair"], Pair) and out["pair"].x == 1.0
    assert out["op"] is None
    with gc.Session(target=target) as sess:
        assert sess.run("nothing") is None
        assert sess.run("a:0") == 1.0


def test_feeds_by_tensor_and_name_and_override(target):
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    y = x * 2
    z = y + 1
    with gc.Session(target=target) as sess:
        np.testing.assert_allclose(sess.run(z, {x: [[1, 2]]}), [[3, 5]])
        np.testing.assert_allclose(sess.run(z, {"x:0": np.ones((3, 2))}), np.full((3, 2), 3))
        # feeding an intermediate overrides it; x is then not needed
        np.testing.assert_allclose(sess.run(z, {y: [[10.0, 20.0]]}), [[11, 21]])


def test_feed_shape_and_dtype_errors_run_nothing(target):
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    v = gc.Variable(0.0, name="counter")
    with gc.control_dependencies([v.assign_add(1.0)]):
        y = gc.identity(x)
    with gc.Session(target=target) as sess:
        sess.run(v.initializer)
        with pytest.raises(ValueError, match=r"\(3,\).*x:0.*\(None, 2\)"):
            sess.run(y, {x: np.ones(3)})
        with pytest.raises(ValueError, match="x:0"):
            sess.run(y, {x: np.array([["a", "b"]])})
        with pytest.raises(ValueError, match="int32"):
            i = gc.placeholder(gc.int32, (2,), name="i")
            sess.run(i + 1, {i: np.array([1.5, 2.5])})
        assert sess.run(v) == 0.0


def test_missing_placeholder_names_it(target):
    x = gc.placeholder(gc.float32, (2,), name="needed")
    with gc.Session(target=target) as sess:
        with pytest.raises(gc.errors.InvalidArgumentError, match="needed"):
            sess.run(x + 1)


def test_uninitialised_variable_names_it(target):
    v = gc.Variable(np.zeros(3, np.float32), name="weights")
    with gc.Session(target=target) as sess:
        with pytest.raises(gc.errors.FailedPreconditionError, match="weights"):
            sess.run(v * 2)


def test_variables_persist_and_failed_run_changes_nothing(target):
    v = gc.Variable(np.float32(1.0), name="v")
    x = gc.placeholder(gc.float32, (), name="x")
    upd = v.assign_add(1.0)
    with gc.control_dependencies([upd]):
        checked = gc.check_numerics(gc.log(x), "log of x")
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(upd)
        sess.run(upd)
        assert sess.run(v) == 3.0
        with pytest.raises(gc.errors.InvalidArgumentError, match="log of x"):
            sess.run(checked, {x: -1.0})
        assert sess.run(v) == 3.0  # the failed run's assign did not land
        assert sess.run(checked, {x: 1.0}) == 0.0
        assert sess.run(v) == 4.0


def test_variable_api():
    v = gc.Variable([1.0, 2.0], name="v")
    w = gc.Variable(gc.zeros((2,)), trainable=False, name="w")
    assert v in gc.global_variables() and w in gc.global_variables()
    assert v in gc.trainable_variables() and w not in gc.trainable_variables()
    assert v.value() is v and v.initializer.type == "Assign" or v.initializer is not None
    assert v.shape == (2,) and v.dtype == gc.float32 and v.name == "v:0"
    with gc.Session(target="reference") as sess:
        sess.run(gc.variables_initializer([v, w]))
        np.testing.assert_allclose(sess.run(gc.assign(w, v * 3)), [3, 6])
        np.testing.assert_allclose(sess.run(v.assign_sub([1.0, 1.0])), [0, 1])
        np.testing.assert_allclose(sess.run(gc.assign_add(v, [1.0, 1.0])), [1, 2])
        np.testing.assert_allclose(sess.run(v + w), [4, 8])
        with pytest.raises(ValueError):
            gc.assign(v, np.zeros(3, np.float32))


def test_variables_are_per_session():
    v = gc.Variable(1.0)
    with gc.Session(target="reference") as s1, gc.Session(target="reference") as s2:
        s1.run(v.initializer)
        s1.run(v.assign(5.0))
        with pytest.raises(gc.errors.FailedPreconditionError):
            s2.run(v)
        assert s1.run(v) == 5.0


def test_compile_cache_reused_and_dynamic_dims(target):
    x = gc.placeholder(gc.float32, (None, 3))
    y = gc.reduce_sum(x * 2, axis=1)
    with gc.Session(target=target) as sess:
        for n in (1, 4, 7, 2):
            np.testing.assert_allclose(sess.run(y, {x: np.ones((n, 3))}), np.full(n, 6.0))
        info = sess.cache_info()
        # one executable for all sizes: compiled here, or loaded from the disk cache
        assert info["compiles"] + info["disk_loads"] == 1 and info["hits"] == 3


def test_random_streams_are_reproducible(target):
    def draw():
        gc.reset_default_graph()
        r = gc.random_normal((4,), seed=3)
        u = gc.random_uniform((1000,), minval=2.0, maxval=3.0, seed=4)
        t = gc.truncated_normal((1000,), stddev=0.5, seed=5)
        with gc.Session(target=target) as sess:
            return [sess.run([r, u, t]) for _ in range(2)]

    first, second = draw(), draw()
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0][0], first[1][0])  # next run: next values
    u, t = first[0][1], first[0][2]
    assert u.min() >= 2.0 and u.max() < 3.0 and abs(u.mean() - 2.5) < 0.05
    assert np.abs(t).max() <= 1.0 and abs(t.std() - 0.44) < 0.05


def test_random_matches_across_targets():
    r = gc.random_normal((5, 3), seed=11)
    outs = []
    for target in ("reference", "cpu"):
        with gc.Session(target=target) as sess:
            outs.append(sess.run(r))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_threads_share_a_session(target):
    x = gc.placeholder(gc.float32, (None,))
    v = gc.Variable(0.0)
    y = gc.reduce_sum(x) + v
    inc = v.assign_add(1.0)
    errors = []
    with gc.Session(target=target) as sess:
        sess.run(v.initializer)

        def worker(k):
            try:
                for i in range(20):
                    got = sess.run(y, {x: np.full(k + 1, float(i))})
                    assert got >= (k + 1) * i
                    sess.run(inc)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sess.run(v) == 80.0


def test_closed_session_refuses():
    sess = gc.Session(target="reference")
    sess.close()
    with pytest.raises(RuntimeError, match="closed"):
        sess.run(gc.constant(1))


def test_eval_and_run_with_default_session():
    x = gc.constant(3.0)
    with gc.Session(target="reference"):
        assert x.eval() == 3.0
        gc.no_op().run()
    with pytest.raises(ValueError, match="default session"):
        x.eval()


def test_bad_fetch_and_feed_keys():
    with gc.Session(target="reference") as sess:
        with pytest.raises(TypeError):
            sess.run(None)
        with pytest.raises(TypeError):
            sess.run(3.5)
        with pytest.raises(KeyError):
            sess.run("no_such_op")
        with pytest.raises(ValueError):
            sess.run(gc.constant(1.0), {"no_such:0": 1.0})


def test_unavailable_cuda_target_says_why():
    from graphc.backends.cuda import availability

    if availability() is None:
        pytest.skip("a GPU is available here")
    with pytest.raises(gc.errors.UnavailableError, match="pycuda|GPU|driver"):
        gc.Session(target="cuda")


def test_unknown_target():
    with pytest.raises(ValueError, match="target"):
        gc.Session(target="tpu")


def test_compile_pauses_and_restores_the_garbage_collector(monkeypatch):
    """The cyclic GC is off while a program compiles and comes back as it was, also when
    the compile fails or another one runs inside it."""
    import gc as pygc

    from graphc import compiler

    seen = []
    inner = compiler._compile

    def spy(program, target, options):
        seen.append(pygc.isenabled())
        if len(seen) == 1:  # a nested compile keeps it off, and so does its end
            compiler.compile_program(program, target, options)
            seen.append(pygc.isenabled())
        return inner(program, target, options)

    monkeypatch.setattr(compiler, "_compile", spy)
    x = gc.placeholder(gc.float32, (3,))
    y = x * 2.0
    assert pygc.isenabled()
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as s:
        np.testing.assert_array_equal(s.run(y, {x: np.ones(3, np.float32)}), [2, 2, 2])
    assert seen == [False, False, False] and pygc.isenabled()

    pygc.disable()
    try:
        with gc.Session(options=gc.CompileOptions(cache_dir=None)) as s:
            s.run(y * 3.0, {x: np.ones(3, np.float32)})
        assert not pygc.isenabled()  # the user's choice is kept
    finally:
        pygc.enable()

    def boom(program, target, options):
        raise RuntimeError("compile failed")

    monkeypatch.setattr(compiler, "_compile", boom)
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as s:
        with pytest.raises(RuntimeError, match="compile failed"):
            s.run(y + 1.0, {x: np.ones(3, np.float32)})
    assert pygc.isenabled()
