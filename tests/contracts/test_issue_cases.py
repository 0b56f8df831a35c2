"""Each observed out-of-bounds / garbage case of run-time sizes, as a regression test.

The fed sizes of ``None`` dims break the op's shape rule: every target raises
``InvalidArgumentError`` naming the op, the user's line and the sizes, before any native
code runs; sizes too large to allocate raise ``ResourceExhaustedError``.
"""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

import graphc as gc

f32 = np.float32
TARGETS = [
    pytest.param("reference", None, id="reference"),
    pytest.param("cpu", True, id="cpu-fused"),
    pytest.param("cpu", False, id="cpu-unfused"),
]


def _session(target, fusion):
    opts = None if fusion is None else gc.CompileOptions(fusion=fusion, cache_dir=None)
    return gc.Session(target=target, options=opts)


def _raises(target, fusion, fetch, feeds, *words, error=gc.errors.InvalidArgumentError):
    with _session(target, fusion) as sess:
        with pytest.raises(error) as info:
            sess.run(fetch, feeds)
    text = str(info.value)
    for w in words:
        assert w in text, f"{w!r} not in {text!r}"
    return text


@pytest.mark.parametrize("target,fusion", TARGETS)
def test_concat_sizes_off_the_axis_must_match(target, fusion):
    a = gc.placeholder(gc.float32, (1, None))
    b = gc.placeholder(gc.float32, (1, None))
    c = gc.concat([a, b], 0)
    line = "test_issue_cases.py"
    _raises(target, fusion, c, {a: np.ones((1, 4), f32), b: np.ones((1, 3), f32)}, "ConcatV2", line)
    if target == "cpu":  # the message names the sizes that disagree
        _raises(target, fusion, c, {a: np.ones((1, 4), f32), b: np.ones((1, 3), f32)}, "4", "3")
    # a huge difference used to read 200 MB past the smaller buffer and die
    big = {a: np.ones((1, 50_000_000), f32), b: np.ones((1, 1), f32)}
    _raises(target, fusion, c, big, "ConcatV2")
    with _session(target, fusion) as sess:  # consistent sizes still run
        out = sess.run(c, {a: np.ones((1, 3), f32), b: 2 * np.ones((1, 3), f32)})
    np.testing.assert_array_equal(out, [[1, 1, 1], [2, 2, 2]])


@pytest.mark.parametrize("target,fusion", TARGETS)
def test_stack_and_broadcast_to(target, fusion):
    p = gc.placeholder(gc.float32, (None,))
    q = gc.placeholder(gc.float32, (None,))
    feeds = {p: np.ones(5_000_000, f32), q: np.ones(1, f32)}
    _raises(target, fusion, gc.stack([p, q]), feeds, "Pack")
    _raises(target, fusion, gc.broadcast_to(p, (2, 50_000_000)), {p: np.ones(10, f32)}, "10")


@pytest.mark.parametrize("target,fusion", TARGETS)
def test_squeeze_of_a_dim_that_is_not_one(target, fusion):
    x = gc.placeholder(gc.float32, (None, None))
    y = gc.squeeze(x, 0)
    _raises(target, fusion, y, {x: np.ones((2, 3), f32)}, "Squeeze")
    _raises(target, fusion, y, {x: np.ones((0, 4), f32)}, "Squeeze")
    with _session(target, fusion) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: np.ones((1, 3), f32)}), [1, 1, 1])


@pytest.mark.parametrize("target,fusion", TARGETS)
def test_sum_to_shape_argmax_reshape(target, fusion):
    a = gc.placeholder(gc.float32, (None,))
    _raises(target, fusion, gc.sum_to_shape(a, gc.zeros((3,))), {a: np.ones(2, f32)})
    x = gc.placeholder(gc.float32, (None, None))
    _raises(target, fusion, gc.argmax(x, axis=1), {x: np.ones((3, 0), f32)}, "ArgMax")
    _raises(target, fusion, gc.reshape(x, (0, -1)), {x: np.ones((0, 4), f32)}, "Reshape")


@pytest.mark.parametrize("target,fusion", TARGETS)
def test_buffer_sizes_that_overflow(target, fusion):
    a = gc.placeholder(gc.float32, (None, None))
    b = gc.placeholder(gc.float32, (None, None))
    y = gc.exp(gc.matmul(a, b))
    feeds = {a: np.ones((2**31, 0), f32), b: np.ones((0, 2**33), f32)}
    _raises(target, fusion, y, feeds, error=gc.errors.ResourceExhaustedError)


def test_buffer_limit_is_configurable_and_a_failed_run_changes_nothing(monkeypatch):
    x = gc.placeholder(gc.float32, (None, 4))
    v = gc.Variable(np.zeros(4, f32))
    step = v.assign_add(gc.reduce_sum(x * 2.0, axis=0))
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(step, {x: np.ones((2, 4), f32)})
        monkeypatch.setenv("GRAPHC_MAX_BUFFER_BYTES", "4096")
        with pytest.raises(gc.errors.ResourceExhaustedError, match="GRAPHC_MAX_BUFFER_BYTES"):
            sess.run(step, {x: np.ones((1000, 4), f32)})
        np.testing.assert_array_equal(sess.run(v), [4, 4, 4, 4])
        monkeypatch.delenv("GRAPHC_MAX_BUFFER_BYTES")
        sess.run(step, {x: np.ones((1000, 4), f32)})
        np.testing.assert_array_equal(sess.run(v), [2004] * 4)


def test_new_batch_sizes_reuse_the_executable_and_are_each_checked():
    a = gc.placeholder(gc.float32, (None, 3))
    b = gc.placeholder(gc.float32, (None, 3))
    y = gc.concat([a, b], 1)
    with gc.Session() as sess:
        for n in (1, 5, 2, 7):
            assert sess.run(y, {a: np.ones((n, 3), f32), b: np.ones((n, 3), f32)}).shape == (n, 6)
        with pytest.raises(gc.errors.InvalidArgumentError, match="5 vs 2"):
            sess.run(y, {a: np.ones((5, 3), f32), b: np.ones((2, 3), f32)})
        assert sess.cache_info()["compiles"] == 1


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_integer_feeds_that_do_not_fit_are_refused(target):
    i32 = gc.placeholder(gc.int32, (None,), name="ids")
    i64 = gc.placeholder(gc.int64, (None,), name="wide")
    with gc.Session(target=target) as sess:
        with pytest.raises(ValueError, match="ids"):
            sess.run(i32 + 1, {i32: np.array([2**40], np.int64)})
        with pytest.raises(ValueError, match="ids"):
            sess.run(i32 + 1, {i32: np.array([2**63], np.uint64)})
        with pytest.raises(ValueError, match="wide"):
            sess.run(i64 + 1, {i64: np.array([2**63], np.uint64)})
        out = sess.run(i32 + 1, {i32: np.array([-(2**31), 5], np.int64)})
        np.testing.assert_array_equal(out, [-(2**31) + 1, 6])
        np.testing.assert_array_equal(sess.run(i32, {i32: [1, 2]}), [1, 2])


def test_exported_artifact_checks_sizes(tmp_path):
    a = gc.placeholder(gc.float32, (1, None), name="a")
    b = gc.placeholder(gc.float32, (1, None), name="b")
    with gc.Session() as sess:
        gc.export(
            sess, tmp_path / "m.gca", inputs={"a": a, "b": b}, outputs={"c": gc.concat([a, b], 0)}
        )
    m = gc.load(tmp_path / "m.gca")
    with pytest.raises(gc.errors.InvalidArgumentError, match="ConcatV2"):
        m(a=np.ones((1, 50_000_000), f32), b=np.ones((1, 1), f32))
    np.testing.assert_array_equal(m(a=np.ones((1, 2), f32), b=np.ones((1, 2), f32))["c"], 1)


@pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")), reason="no C compiler")
def test_c_library_checks_sizes(tmp_path):
    a = gc.placeholder(gc.float32, (1, None), name="a")
    b = gc.placeholder(gc.float32, (1, None), name="b")
    with gc.Session() as sess:
        paths = gc.export_c(sess, tmp_path, {"a": a, "b": b}, {"c": gc.concat([a, b], 0)}, "cc1")
    lib = ctypes.CDLL(paths["library"])
    lib.cc1_error.restype = ctypes.c_char_p
    x, y = np.ones((1, 4), f32), np.ones((1, 3), f32)
    out = np.empty((2, 4), f32)
    ptrs = (ctypes.c_void_p * 2)(x.ctypes.data, y.ctypes.data)
    rc = lib.cc1_run(ptrs, (ctypes.c_int64 * 2)(4, 3), (ctypes.c_void_p * 1)(out.ctypes.data))
    assert rc < 0 and b"ConcatV2" in lib.cc1_error(rc), (rc, lib.cc1_error(rc))
    rc = lib.cc1_run(ptrs, (ctypes.c_int64 * 2)(3, 3), (ctypes.c_void_p * 1)(out.ctypes.data))
    assert rc == 0, lib.cc1_error(rc)
