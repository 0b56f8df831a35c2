"""Shape and indexing ops against numpy: t[...] keys, concat/split/stack round trips, gather,
one_hot, pad, tile, errors at build and run time, and gradient spot checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc


def run(fetches, feed=None):
    with gc.Session(target="reference") as sess:
        return sess.run(fetches, feed)


X = np.arange(4 * 5 * 3, dtype=np.float64).reshape(4, 5, 3)

KEYS = [
    0,
    -1,
    (1, 2),
    (-4, -5, -3),
    (slice(1, None), slice(None, None, 2), None, Ellipsis, 2),
    (slice(None, None, -1),),
    (slice(None, None, -2), slice(3, 0, -1)),
    (slice(-1, -5, -1), Ellipsis),
    (Ellipsis,),
    (Ellipsis, -1),
    (Ellipsis, None),
    (None, Ellipsis, None),
    (None, 1, None, slice(None), None),
    (slice(5, None),),  # empty
    (slice(2, 1),),  # empty
    (slice(-100, 100),),  # clamped
    (slice(None), slice(None), slice(None, None, 5)),
    (1, Ellipsis, slice(1, 2)),
    (np.int64(2), slice(np.int32(1), None)),
    (),
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
@pytest.mark.parametrize("dynamic", [False, True])
def test_getitem_matches_numpy(key, dynamic):
    shape = (None, None, None) if dynamic else X.shape
    x = gc.placeholder(gc.float64, shape)
    y = x[key]
    got = run(y, {x: X})
    want = X[key]
    np.testing.assert_array_equal(got, want)
    assert len(y.shape) == want.ndim
    if not dynamic:
        assert y.shape == want.shape


def test_getitem_unknown_rank_placeholder():
    x = gc.placeholder(gc.float64, None)
    y = x[1:, None, ..., -1]
    assert y.shape is None
    np.testing.assert_array_equal(run(y, {x: X}), X[1:, None, ..., -1])


@st.composite
def _index_case(draw):
    rank = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=rank, max_size=rank)))
    key, axis = [], 0
    used_ellipsis = False
    for _ in range(draw(st.integers(0, rank + 2))):
        kind = draw(st.sampled_from(["int", "slice", "new", "ellipsis"]))
        if kind == "new":
            key.append(None)
        elif kind == "ellipsis" and not used_ellipsis:
            key.append(Ellipsis)
            used_ellipsis = True
        elif kind == "int" and axis < rank and shape[axis] > 0:
            key.append(draw(st.integers(-shape[axis], shape[axis] - 1)))
            axis += 1
        elif axis < rank:
            bound = st.none() | st.integers(-7, 7)
            step = st.none() | st.integers(-3, 3).filter(lambda s: s != 0)
            key.append(slice(draw(bound), draw(bound), draw(step)))
            axis += 1
    return shape, tuple(key)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(_index_case())
def test_getitem_random_keys_value_and_gradient(case):
    shape, key = case
    a = np.random.default_rng(0).normal(size=shape)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, shape)
        xd = gc.placeholder(gc.float64, (None,) * len(shape))
        try:
            want = a[key]
        except IndexError:  # an int lands on a short dim after '...': both must refuse
            with pytest.raises(ValueError, match="out of range"):
                x[key]
            with pytest.raises(gc.errors.InvalidArgumentError, match="out of range"):
                run(xd[key], {xd: a})
            return
        y, yd = x[key], xd[key]
        w = np.random.default_rng(1).normal(size=want.shape)
        (gx,) = gc.gradients(gc.reduce_sum(y * w), [x])
        got, got_d, grad = run([y, yd, gx], {x: a, xd: a})
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_d, want)
    assert y.shape == want.shape
    expected = np.zeros_like(a)
    expected[key] = w  # basic indexing never repeats an element
    np.testing.assert_allclose(grad, expected)


def test_getitem_tensor_index_and_negative_wrap():
    x = gc.placeholder(gc.float64, (None, 5, 3))
    i = gc.placeholder(gc.int32, ())
    j = gc.placeholder(gc.int64, ())
    y = x[1:, i, ..., j]
    assert y.shape == (None,)
    for iv, jv in [(0, 0), (4, 2), (-1, -3), (-5, 1)]:
        np.testing.assert_array_equal(run(y, {x: X, i: iv, j: jv}), X[1:, iv, ..., jv])
    with pytest.raises(gc.errors.InvalidArgumentError, match="not in"):
        run(y, {x: X, i: 5, j: 0})


def test_getitem_build_time_errors_name_op_and_line():
    x = gc.placeholder(gc.float32, (3, 4))
    with pytest.raises(ValueError, match=r"StridedSlice: index 3 is out of range.*test_shape.py"):
        x[3]
    with pytest.raises(ValueError, match="out of range"):
        x[:, -5]
    with pytest.raises(ValueError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(ValueError, match="single ellipsis"):
        x[..., 0, ...]
    with pytest.raises(ValueError, match="step cannot be zero"):
        x[::0]
    with pytest.raises(TypeError, match="gather"):
        x[[0, 1]]
    with pytest.raises(TypeError, match="boolean"):
        x[True]
    with pytest.raises(TypeError, match="scalar int32/int64"):
        x[gc.constant([0, 1])]
    with pytest.raises(TypeError):
        x[gc.constant(1.0)]


def test_getitem_runtime_out_of_range_with_unknown_dims():
    x = gc.placeholder(gc.float32, (None, None))
    y = x[2, -3]
    with pytest.raises(gc.errors.InvalidArgumentError, match="out of range"):
        run(y, {x: np.zeros((2, 3), np.float32)})
    np.testing.assert_array_equal(run(y, {x: np.eye(3, dtype=np.float32)}), 0.0)


def test_slice_and_strided_slice():
    x = gc.placeholder(gc.float64, (None, 5, 3))
    np.testing.assert_array_equal(run(gc.slice(x, [1, 2, 0], [2, -1, 1]), {x: X}), X[1:3, 2:, 0:1])
    s = gc.slice(x, [0, 1, 1], [-1, 3, 2])
    assert s.shape == (None, 3, 2)
    with pytest.raises(ValueError, match="does not fit dimension 1"):
        gc.slice(x, [0, 3, 0], [1, 3, 1])
    with pytest.raises(gc.errors.InvalidArgumentError, match="does not fit dimension 0"):
        run(gc.slice(x, [3, 0, 0], [2, 1, 1]), {x: X})
    ss = gc.strided_slice(x, [1, 0, 2], [4, 5, 0], [2, 1, -1], end_mask=2, shrink_axis_mask=0)
    np.testing.assert_array_equal(run(ss, {x: X}), X[1:4:2, 0:, 2:0:-1])
    ss2 = gc.strided_slice(x, [0, 1], [0, 2], ellipsis_mask=1, shrink_axis_mask=2)
    np.testing.assert_array_equal(run(ss2, {x: X}), X[..., 1])
    ss3 = gc.strided_slice(x, [0, 0, 0], [1, 1, 1], begin_mask=1, new_axis_mask=2)
    np.testing.assert_array_equal(run(ss3, {x: X}), X[:1, None, 0:1])


# -- concat / split / stack / unstack ----------------------------------------------------------


def test_concat_split_round_trip():
    a = np.random.default_rng(0).normal(size=(2, 7, 3))
    x = gc.placeholder(gc.float64, (2, None, 3))
    parts = gc.split(x, [2, -1, 0, 1], axis=-2)
    assert [p.shape for p in parts] == [(2, 2, 3), (2, None, 3), (2, 0, 3), (2, 1, 3)]
    back = gc.concat(parts, axis=1)
    vals = run(parts + [back], {x: a})
    for v, w in zip(vals[:-1], np.split(a, [2, 6, 6], axis=1)):
        np.testing.assert_array_equal(v, w)
    np.testing.assert_array_equal(vals[-1], a)
    eq = gc.split(gc.constant(a), 3, axis=2)
    assert [p.shape for p in eq] == [(2, 7, 1)] * 3
    for v, w in zip(run(eq), np.split(a, 3, axis=2)):
        np.testing.assert_array_equal(v, w)


def test_split_errors():
    x = gc.placeholder(gc.float32, (None, 6))
    with pytest.raises(ValueError, match="SplitV.*sizes \\[2, 2\\] do not add up.*6"):
        gc.split(x, [2, 2], axis=1)
    with pytest.raises(ValueError, match=r"split: .*at most one -1.*\(None, 6\).*test_shape.py"):
        gc.split(x, [-1, -1], axis=1)
    with pytest.raises(ValueError, match=r"split: axis 2 is out of range.*test_shape.py:\d+$"):
        gc.split(x, 2, axis=2)
    parts = gc.split(x, 4, axis=0)
    with pytest.raises(gc.errors.InvalidArgumentError, match="4 equal pieces"):
        run(parts, {x: np.zeros((6, 6), np.float32)})


def test_concat_checks_shapes_and_dtypes():
    a = gc.placeholder(gc.float32, (2, 3))
    with pytest.raises(ValueError, match=r"ConcatV2.*dimension 0 differs.*test_shape.py"):
        gc.concat([a, gc.placeholder(gc.float32, (4, 3))], axis=1)
    with pytest.raises(ValueError, match="one rank"):
        gc.concat([a, gc.placeholder(gc.float32, (2, 3, 1))], axis=0)
    with pytest.raises(TypeError, match="one dtype"):
        gc.concat([a, gc.placeholder(gc.float64, (2, 3))], axis=0)
    with pytest.raises(ValueError, match="out of range"):
        gc.concat([a, a], axis=2)
    c = gc.concat([a, gc.placeholder(gc.float32, (2, None))], axis=-1)
    assert c.shape == (2, None)
    # Python lists join with the tensors' dtype
    d = gc.concat([a, [[1, 2, 3]]], axis=0)
    assert d.dtype == gc.float32 and d.shape == (3, 3)


def test_stack_unstack_round_trip():
    rng = np.random.default_rng(1)
    vals = [rng.normal(size=(3, 2)) for _ in range(4)]
    for axis in [0, 1, 2, -1, -3]:
        s = gc.stack([gc.constant(v) for v in vals], axis=axis)
        np.testing.assert_array_equal(run(s), np.stack(vals, axis=axis))
        parts = gc.unstack(s, axis=axis)
        assert len(parts) == 4
        for got, want in zip(run(parts), vals):
            np.testing.assert_array_equal(got, want)
    x = gc.placeholder(gc.float32, (None, 3))
    with pytest.raises(ValueError, match="unknown; pass num="):
        gc.unstack(x)
    parts = gc.unstack(x, num=2)
    with pytest.raises(gc.errors.InvalidArgumentError, match="into 2"):
        run(parts, {x: np.zeros((3, 3), np.float32)})
    with pytest.raises(ValueError, match="Pack.*one shape"):
        gc.stack([gc.zeros((2, 3)), gc.zeros((3, 2))])


# -- gather / gather_nd / scatter ---------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_gather_axis_matches_numpy_take(axis):
    rng = np.random.default_rng(2)
    p = rng.normal(size=(3, 4, 5))
    n = p.shape[axis]
    idx = rng.integers(0, n, size=(2, 3)).astype(np.int32)
    ph = gc.placeholder(gc.float64, (None, None, None))
    y = gc.gather(ph, idx, axis=axis)
    np.testing.assert_array_equal(run(y, {ph: p}), np.take(p, idx, axis=axis))
    ys = gc.gather(gc.constant(p), idx, axis=axis)
    assert ys.shape == np.take(p, idx, axis=axis).shape


def test_gather_batch_dims_matches_loop():
    rng = np.random.default_rng(3)
    p = rng.normal(size=(2, 3, 6, 4))
    idx = rng.integers(0, 6, size=(2, 3, 5))
    y = gc.gather(p, idx, axis=2, batch_dims=-1)
    want = np.stack([np.stack([p[a, b][idx[a, b]] for b in range(3)]) for a in range(2)])
    assert y.shape == want.shape
    np.testing.assert_array_equal(run(y), want)


def test_gather_out_of_range_is_an_error():
    p = gc.placeholder(gc.float32, (None, 2))
    i = gc.placeholder(gc.int32, (None,))
    y = gc.gather(p, i)
    with pytest.raises(
        gc.errors.InvalidArgumentError, match=r"indices\[1\] = 3 is not in \[0, 3\)"
    ):
        run(y, {p: np.zeros((3, 2), np.float32), i: [0, 3]})
    with pytest.raises(gc.errors.InvalidArgumentError, match="-1 is not in"):
        run(y, {p: np.zeros((3, 2), np.float32), i: [-1]})
    with pytest.raises(TypeError, match="int32 or int64"):
        gc.gather(p, gc.constant([0.0]))


def test_gather_gradient_sums_repeated_indices():
    p = gc.placeholder(gc.float64, (4, 3))
    i = gc.placeholder(gc.int32, (None,))
    y = gc.gather(p, i)
    w = np.arange(15.0).reshape(5, 3)
    (g,) = gc.gradients(gc.reduce_sum(y * w), [p])
    idx = np.array([1, 3, 1, 1, 0], np.int32)
    got = run(g, {p: np.ones((4, 3)), i: idx})
    want = np.zeros((4, 3))
    np.add.at(want, idx, w)
    np.testing.assert_array_equal(got, want)
    assert gc.gradients(gc.reduce_sum(y), [i]) == [None]


def test_gather_nd_and_scatter_nd():
    p = np.arange(24.0).reshape(2, 3, 4)
    idx = np.array([[[1, 2], [0, 0]], [[1, 0], [1, 2]]])
    y = gc.gather_nd(p, idx)
    assert y.shape == (2, 2, 4)
    np.testing.assert_array_equal(run(y), p[idx[..., 0], idx[..., 1]])
    np.testing.assert_array_equal(run(gc.gather_nd(p, [1, 2, 3])), p[1, 2, 3])
    with pytest.raises(gc.errors.InvalidArgumentError, match="not in"):
        run(gc.gather_nd(p, [[2, 0]]))
    with pytest.raises(ValueError, match="index vectors of length 4"):
        gc.gather_nd(p, [[0, 0, 0, 0]])
    s = gc.scatter_nd([[1], [3], [1]], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], (4, 2))
    np.testing.assert_array_equal(run(s), [[0, 0], [6, 8], [0, 0], [3, 4]])
    pp = gc.placeholder(gc.float64, (2, 3, 4))
    (g,) = gc.gradients(gc.reduce_sum(gc.gather_nd(pp, idx) * 2.0), [pp])
    want = np.zeros((2, 3, 4))
    np.add.at(want, (idx[..., 0], idx[..., 1]), 2.0)
    np.testing.assert_array_equal(run(g, {pp: p}), want)


def test_unsorted_segment_sum():
    data = np.arange(12.0).reshape(6, 2)
    ids = np.array([2, 0, 2, -1, 1, 0])
    y = gc.unsorted_segment_sum(data, ids, 4)
    want = np.zeros((4, 2))
    for r, s in zip(data, ids):
        if s >= 0:
            want[s] += r
    np.testing.assert_array_equal(run(y), want)
    with pytest.raises(gc.errors.InvalidArgumentError, match="not below 2"):
        run(gc.unsorted_segment_sum(data, ids, 2))


# -- one_hot, pad, tile, reverse, transpose, broadcast_to --------------------------------------


def test_one_hot_matches_numpy():
    idx = np.array([[0, 3], [-1, 2], [4, 1]])
    y = gc.one_hot(idx, 4)
    assert y.dtype == gc.float32 and y.shape == (3, 2, 4)
    want = (idx[..., None] == np.arange(4)).astype(np.float32)
    np.testing.assert_array_equal(run(y), want)
    z = gc.one_hot(gc.constant(idx, gc.int64), 4, on_value=7, off_value=-2, axis=1, dtype=gc.int32)
    assert z.shape == (3, 4, 2) and z.dtype == gc.int32
    np.testing.assert_array_equal(run(z), np.where(np.moveaxis(want, -1, 1) > 0, 7, -2))
    with pytest.raises(TypeError, match="int32 or int64"):
        gc.one_hot(gc.constant([0.0]), 3)


@pytest.mark.parametrize("mode", ["CONSTANT", "REFLECT", "SYMMETRIC"])
def test_pad_matches_numpy_with_value_and_gradient(mode):
    a = np.random.default_rng(4).normal(size=(3, 4))
    pads = [[2, 1], [0, 3]]
    x = gc.placeholder(gc.float64, (None, 4))
    y = gc.pad(x, pads, mode=mode, constant_values=2.5)
    kw = {"constant_values": 2.5} if mode == "CONSTANT" else {}
    want = np.pad(a, pads, mode=mode.lower(), **kw)
    assert y.shape == (None, 7)
    w = np.random.default_rng(5).normal(size=want.shape)
    (g,) = gc.gradients(gc.reduce_sum(y * w), [x])
    got, grad = run([y, g], {x: a})
    np.testing.assert_array_equal(got, want)
    # The pad is linear in x (plus a constant): its gradient is the transposed map.
    basis = np.eye(a.size).reshape((a.size,) + a.shape)
    jac = np.stack([np.pad(b, pads, mode=mode.lower()) for b in basis])
    np.testing.assert_allclose(grad, np.tensordot(jac, w, axes=2).reshape(a.shape))


def test_pad_errors():
    x = gc.placeholder(gc.float32, (None, 2))
    with pytest.raises(ValueError, match="shape \\[rank, 2\\]"):
        gc.pad(x, [1, 1])
    with pytest.raises(ValueError, match="mode"):
        gc.pad(x, [[0, 0], [1, 1]], mode="WRAP")
    with pytest.raises(ValueError, match="Pad: REFLECT paddings \\(2, 0\\).*at most 1"):
        gc.pad(x, [[0, 0], [2, 0]], mode="REFLECT")
    y = gc.pad(x, [[3, 0], [0, 0]], mode="REFLECT")
    with pytest.raises(gc.errors.InvalidArgumentError, match="at most 2"):
        run(y, {x: np.zeros((3, 2), np.float32)})
    with pytest.raises(ValueError, match="static"):
        gc.pad(x, gc.placeholder(gc.int32, (2, 2)))


def test_tile_and_gradient():
    a = np.random.default_rng(6).normal(size=(2, 3))
    x = gc.placeholder(gc.float64, (None, 3))
    y = gc.tile(x, [3, 2])
    assert y.shape == (None, 6)
    (g,) = gc.gradients(gc.reduce_sum(y * y), [x])
    got, grad = run([y, g], {x: a})
    np.testing.assert_array_equal(got, np.tile(a, [3, 2]))
    np.testing.assert_allclose(grad, 2 * a * 6)
    with pytest.raises(ValueError, match="2 multiples for rank 3"):
        gc.tile(gc.zeros((1, 2, 3)), [1, 2])


def test_reverse_transpose_broadcast_to():
    a = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(run(gc.reverse(a, [0, -1])), a[::-1, :, ::-1])
    np.testing.assert_array_equal(run(gc.transpose(a)), a.T)
    np.testing.assert_array_equal(run(gc.transpose(a, [1, -1, 0])), a.transpose(1, 2, 0))
    with pytest.raises(ValueError, match="not a permutation"):
        gc.transpose(a, [0, 0, 1])
    b = gc.broadcast_to(gc.constant([[1.0], [2.0]]), (3, 2, 4))
    assert b.shape == (3, 2, 4)
    np.testing.assert_array_equal(run(b), np.broadcast_to([[1.0], [2.0]], (3, 2, 4)))
    with pytest.raises(ValueError, match="BroadcastTo: cannot broadcast"):
        gc.broadcast_to(gc.zeros((2, 3)), (2, 4))
    x = gc.placeholder(gc.float32, (None, 1))
    like = gc.placeholder(gc.float32, (None, 5))
    y = gc.broadcast_to(x, gc.shape(like))
    out = run(y, {x: np.ones((2, 1), np.float32), like: np.zeros((2, 5), np.float32)})
    assert out.shape == (2, 5)


def test_second_order_through_getitem_and_gather():
    # d/dx sum((x[1:] * x[:-1]) ** 2) gradients, differentiated again, vs finite differences
    x = gc.placeholder(gc.float64, (5,))
    i = gc.constant([0, 0, 4])
    y = gc.reduce_sum(gc.square(x[1:] * x[:-1])) + gc.reduce_sum(gc.gather(x, i) ** 3)
    (g,) = gc.gradients(y, [x])
    (h,) = gc.hessians(y, [x])
    a = np.array([0.5, -1.0, 2.0, 1.5, -0.3])

    def grad_np(v):
        out = np.zeros(5)
        p = v[1:] * v[:-1]
        out[1:] += 2 * p * v[:-1]
        out[:-1] += 2 * p * v[1:]
        np.add.at(out, [0, 0, 4], 3 * v[[0, 0, 4]] ** 2)
        return out

    got_g, got_h = run([g, h], {x: a})
    np.testing.assert_allclose(got_g, grad_np(a), rtol=1e-12)
    eps = 1e-6
    num_h = np.stack([(grad_np(a + eps * e) - grad_np(a - eps * e)) / (2 * eps) for e in np.eye(5)])
    np.testing.assert_allclose(got_h, num_h, rtol=1e-6, atol=1e-6)


def test_static_arguments_accept_constants_and_refuse_computed_tensors():
    t = gc.constant(np.arange(6.0).reshape(2, 3))
    assert gc.concat([t, t], axis=gc.constant(1)).shape == (2, 6)
    np.testing.assert_array_equal(run(t[np.array(1), np.int32(-1)]), 5.0)
    np.testing.assert_array_equal(run(gc.tile(t, gc.constant([2, 1]))), np.tile(run(t), [2, 1]))
    with pytest.raises(ValueError, match="concat: axis must be static.*Placeholder"):
        gc.concat([t, t], axis=gc.placeholder(gc.int32, ()))
    with pytest.raises(ValueError, match="slice: begin must be static"):
        gc.slice(t, gc.placeholder(gc.int32, (2,)), [1, 1])


def test_public_builders_are_exported():
    from graphc.ops import indexing, shape

    for family in (shape, indexing):
        for name in family.__all__:
            assert getattr(gc, name) is getattr(family, name), name
    with pytest.raises(ValueError, match="batch dimensions"):  # 2 batch entries vs 1
        gc.gather_nd(np.zeros((2, 2)), [[0]], batch_dims=1)
    np.testing.assert_array_equal(run(gc.gather_nd(np.eye(2), [[1], [0]], batch_dims=1)), [0, 0])
