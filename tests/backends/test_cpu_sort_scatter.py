"""top_k / sort, cumprod, gather_elements, scatter_elements and tensor_scatter_nd_update on
the cpu target (fused and unfused, every placeholder dim ``None``) equal the reference
interpreter exactly on random shapes and the edge cases: k = 0 and k = n, ties (the lower
index first), NaN and infinities, both kernels of top_k (insertion of a small k, merge sort
of long rows), negative indices, repeated scatter indices under every reduction, empty
tensors. An index out of range or k above the
row length fails the run with InvalidArgumentError naming the op, as the reference does.
None of them runs on the host: the executables have no ``host_fallback:`` kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

FUSION = [True, False]


def _build(fn, arrays):
    """fn(*placeholders) with every dim None -> (graph, placeholders, outputs)."""
    g = gc.Graph()
    with g.as_default():
        phs = [gc.placeholder(gc.as_dtype(a.dtype), (None,) * a.ndim) for a in arrays]
        outs = fn(*phs)
        outs = list(outs) if isinstance(outs, tuple | list) else [outs]
    return g, phs, outs


def _run_both(fn, arrays, fusion):
    """(reference results, cpu results); checks the cpu executable has no host fallback."""
    g, phs, outs = _build(fn, arrays)
    feeds = dict(zip(phs, arrays))
    with gc.Session(graph=g, target="reference") as sess:
        want = sess.run(outs, feeds)
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(outs, feeds)
        exe = sess.compile(outs, phs)
    assert not exe.stats.get("host_fallback_ops")
    assert not any(k.name.startswith("host_fallback") for k in exe.kernels)
    return want, got


def _same(want, got):
    for w, v in zip(want, got):
        w, v = np.asarray(w), np.asarray(v)
        assert v.dtype == w.dtype and v.shape == w.shape
        np.testing.assert_array_equal(v, w)  # exact, NaN where the reference has NaN


def _both_raise(fn, arrays, fusion, match):
    g, phs, outs = _build(fn, arrays)
    feeds = dict(zip(phs, arrays))
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    for target, o in (("reference", None), ("cpu", opts)):
        with gc.Session(graph=g, target=target, options=o) as sess:
            with pytest.raises(gc.errors.InvalidArgumentError, match=match):
                sess.run(outs, feeds)


# -- top_k / sort ------------------------------------------------------------------------------


def _values(rng, shape, dtype, kind):
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(dtype)
    x = rng.standard_normal(shape) * 10
    if np.dtype(dtype).kind == "f" and kind == "special":
        flat = x.reshape(-1)
        for v in (np.nan, np.inf, -np.inf, np.nan, 0.0, -0.0):
            flat[rng.integers(0, flat.size)] = v
    return x.astype(dtype)


TOPK_CASES = [
    # shape, axis, k (None: the full length), dtype, values
    ((7,), 0, 3, np.float32, "special"),
    ((7,), 0, None, np.float64, "special"),
    ((7,), 0, 0, np.float64, "plain"),
    ((4, 9), -1, 9, np.int32, "ties"),
    ((4, 9), 1, 4, np.int64, "ties"),
    ((5, 6, 3), 1, 2, np.float64, "special"),
    ((5, 6, 3), 0, None, np.float32, "ties"),
    ((2, 1000), 1, 17, np.float32, "special"),  # insertion of the best k (k <= 32)
    ((2, 1000), 1, None, np.float32, "special"),  # merge sort: 10 passes, not a power of 2
    ((3, 70, 2), 1, 33, np.int64, "ties"),  # merge sort, the smallest k above the limit
    ((2, 300), 1, 32, np.float64, "ties"),  # insertion, the largest k
    ((3, 1), 1, 1, np.float64, "plain"),
]


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
@pytest.mark.parametrize("largest", [True, False], ids=["largest", "smallest"])
@pytest.mark.parametrize("case", range(len(TOPK_CASES)))
def test_top_k_matches_reference(case, largest, fusion):
    shape, axis, k, dtype, kind = TOPK_CASES[case]
    rng = np.random.default_rng(case)
    x = _values(rng, shape, dtype, kind)
    k = shape[axis] if k is None else k
    want, got = _run_both(lambda t: gc.top_k(t, k, axis=axis, largest=largest), [x], fusion)
    _same(want, got)
    # the contract itself, independently of the reference: stable, NaN largest
    order = np.argsort(x, axis=axis, kind="stable")
    if largest:
        n = shape[axis]
        order = n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    np.testing.assert_array_equal(got[1], np.take(order, np.arange(k), axis=axis))


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
def test_sort_both_directions_with_known_axis_length(fusion):
    rng = np.random.default_rng(3)
    x = _values(rng, (6, 33), np.float64, "special")
    g = gc.Graph()
    with g.as_default():
        t = gc.placeholder(gc.float64, (None, 33))  # the sorted length static: k = 33
        u = gc.placeholder(gc.float64, (6, None))
        outs = [gc.sort(t), gc.sort(t, direction="DESCENDING"), gc.sort(u, axis=0)]
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(outs, {t: x, u: x})
        assert not sess.compile(outs, [t, u]).stats.get("host_fallback_ops")
    np.testing.assert_array_equal(got[0], np.sort(x, axis=-1))
    np.testing.assert_array_equal(got[1], np.flip(np.sort(x, axis=-1), -1))
    np.testing.assert_array_equal(got[2], np.sort(x, axis=0))


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
def test_sort_of_a_dimension_unknown_at_build_time(fusion):
    """gc.sort along a None dim sorts the whole axis at its run-time length (one executable
    for every length: both top_k kernels' choice is static, so the merge sort)."""
    rng = np.random.default_rng(5)
    for n in (1, 31, 300):
        x = _values(rng, (3, n), np.float32, "special")
        want, got = _run_both(lambda t: [gc.sort(t), gc.sort(t, 0, "DESCENDING")], [x], fusion)
        _same(want, got)
        np.testing.assert_array_equal(got[0], np.sort(x, axis=1))


def test_sort_of_an_unknown_length_exports_to_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, None), name="x")
        y = gc.sort(x, direction="DESCENDING")
        with gc.Session(graph=g, target="reference") as sess:
            path = gc.onnx.export(sess, tmp_path / "m.onnx", inputs={"x": x}, outputs={"y": y})
    onnx.checker.check_model(onnx.load(path), full_check=True)
    data = np.random.default_rng(1).standard_normal((4, 9)).astype(np.float32)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": data}
    )
    np.testing.assert_array_equal(got, -np.sort(-data, axis=1))


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
def test_top_k_larger_than_the_row_raises(fusion):
    x = np.ones((2, 3), np.float32)
    _both_raise(lambda t: gc.top_k(t, 4)[0], [x], fusion, "k=4")


def test_top_k_gradient_scatters_to_the_chosen_positions():
    x = np.array([[3.0, 1.0, 3.0, 2.0], [0.5, np.inf, -1.0, 0.5]])
    want, got = _run_both(
        lambda t: gc.gradients(gc.reduce_sum(gc.top_k(t, 2)[0] * [[1.0, 2.0]]), [t])[0],
        [x],
        True,
    )
    _same(want, got)
    np.testing.assert_array_equal(got[0], [[1.0, 0.0, 2.0, 0.0], [2.0, 1.0, 0.0, 0.0]])


# -- cumprod -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
@pytest.mark.parametrize("exclusive", [False, True], ids=["inclusive", "exclusive"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_cumprod_matches_reference(reverse, exclusive, fusion):
    rng = np.random.default_rng(7)
    for shape, axis, dtype in (((3, 5, 4), 1, np.float32), ((6,), 0, np.int32),
                               ((2, 40), -1, np.int64), ((0, 3), 0, np.float64)):  # fmt: skip
        x = (rng.integers(-3, 4, shape) if dtype != np.float32 else
             rng.uniform(-1.5, 1.5, shape)).astype(dtype)  # fmt: skip
        want, got = _run_both(
            lambda t, a=axis: gc.cumprod(t, a, exclusive=exclusive, reverse=reverse), [x], fusion
        )
        _same(want, got)  # the same order of products: bit-identical, integers wrap alike


# -- gather_elements ---------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
def test_gather_elements_negative_indices_and_smaller_index_shape(fusion):
    rng = np.random.default_rng(11)
    data = rng.standard_normal((4, 5, 3))
    for axis in (0, 1, 2, -1):
        n = data.shape[axis]
        shape = [3, 4, 2]
        shape[axis] = 6  # longer than data along the axis, shorter elsewhere
        idx = rng.integers(-n, n, shape).astype(np.int32 if axis % 2 else np.int64)
        want, got = _run_both(lambda d, i, a=axis: gc.gather_elements(d, i, a) * 2.0,
                              [data, idx], fusion)  # fmt: skip
        _same(want, got)


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
@pytest.mark.parametrize("bad", [4, -5])
def test_gather_elements_out_of_range_raises(fusion, bad):
    data = np.ones((2, 4), np.float32)
    idx = np.array([[0, bad]], np.int64)
    _both_raise(lambda d, i: gc.gather_elements(d, i, axis=1), [data, idx], fusion,
                "out of range")  # fmt: skip


# -- scatter_elements --------------------------------------------------------------------------

REDUCTIONS = ["none", "add", "mul", "max", "min"]


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_scatter_elements_repeated_indices(reduction, fusion):
    rng = np.random.default_rng(13)
    data = rng.standard_normal((4, 6, 3))
    data[0, 0, 0] = np.nan  # max/min propagate it, as np.maximum.at
    for axis in (0, 1, 2):
        n = data.shape[axis]
        shape = [3, 4, 2]
        shape[axis] = 9  # more updates than positions: indices repeat
        idx = rng.integers(-n, n, shape)
        upd = rng.standard_normal(shape)
        want, got = _run_both(
            lambda d, i, u, a=axis: gc.scatter_elements(d + 1.0, i, u, a, reduction=reduction),
            [data, idx, upd],
            fusion,
        )
        _same(want, got)


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
def test_scatter_elements_int_and_out_of_range(fusion):
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    idx = np.array([[3, 3, -1], [0, 1, 0]], np.int64)
    upd = np.array([[5, 6, 7], [8, 9, 10]], np.int32)
    want, got = _run_both(lambda d, i, u: gc.scatter_elements(d, i, u, 1, reduction="add"),
                          [data, idx, upd], fusion)  # fmt: skip
    _same(want, got)
    np.testing.assert_array_equal(got[0][0], [0, 1, 2, 3 + 5 + 6 + 7])
    idx[1, 2] = 4
    _both_raise(lambda d, i, u: gc.scatter_elements(d, i, u, 1), [data, idx, upd], fusion,
                "out of range")  # fmt: skip


# -- tensor_scatter_nd_update ------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tensor_scatter_nd_update_repeated_indices(reduction, fusion):
    rng = np.random.default_rng(17)
    data = rng.standard_normal((4, 3, 5))
    for depth in (1, 2, 3):
        lead = data.shape[:depth]
        idx = np.stack([rng.integers(-d, d, (2, 5)) for d in lead], axis=-1)  # repeats
        upd = rng.standard_normal((2, 5) + data.shape[depth:])
        want, got = _run_both(
            lambda d, i, u: gc.tensor_scatter_nd_update(d, i, u, reduction=reduction),
            [data, idx.astype(np.int32), upd],
            fusion,
        )
        _same(want, got)


@pytest.mark.parametrize("fusion", FUSION, ids=["fused", "unfused"])
def test_tensor_scatter_nd_update_out_of_range_and_bad_depth(fusion):
    data = np.zeros((3, 2), np.float32)
    upd = np.ones((2, 2), np.float32)
    fn = gc.tensor_scatter_nd_update
    _both_raise(fn, [data, np.array([[1], [-4]], np.int64), upd], fusion, "out of range")
    # index tuples of length 2 where the ranks say 1: refused before anything runs
    _both_raise(fn, [data, np.array([[1, 0], [0, 0]], np.int64), upd], fusion,
                "(?i)tensor_?scatter_?nd_?update")  # fmt: skip


# -- native artifacts --------------------------------------------------------------------------


def test_exported_artifact_runs_them_natively(tmp_path):
    """Without host ops, gc.export stores native code for them and gc.load runs it (before,
    a host-fallback op kept the artifact to the recompile path)."""
    rng = np.random.default_rng(23)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, None), name="x")
        i = gc.placeholder(gc.int64, (None, None), name="i")
        outs = {
            "v": gc.top_k(x, 40)[0],  # merge sort: scratch buffers
            "ix": gc.top_k(x, 5, largest=False)[1],
            "s": gc.scatter_elements(x, i, gc.gather_elements(x, i, 1) * 2.0, 1, reduction="add"),
            "c": gc.cumprod(x, 1, exclusive=True),
            "t": gc.tensor_scatter_nd_update(x, i[:, :1] % 3, x[:7] + 1.0),
        }
        with gc.Session(graph=g, target="cpu") as sess:
            path = gc.export(sess, str(tmp_path / "m.gcx"), inputs={"x": x, "i": i},
                             outputs=outs)  # fmt: skip
            feeds = {x: rng.standard_normal((3, 50)).astype(np.float32),
                     i: rng.integers(-50, 50, (3, 7))}  # fmt: skip
            want = sess.run(outs, feeds)
    model = gc.load(path)
    assert model.loaded_native, model.recompiled_reason
    got = model(x=feeds[x], i=feeds[i])
    for name in outs:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
