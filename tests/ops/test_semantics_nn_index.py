"""TF1 semantics of nn and indexing ops that used to differ or be refused (issue 13).

Each case runs on target="reference" and target="cpu" (which must agree, natively: no host
fallback) and checks gradients against central differences.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Example
from tests.ops.test_gradients_registry import check_gradients


def _both(fetches, feeds=None, graph=None, rtol=1e-5, atol=1e-6):
    """Run on reference and cpu; they must agree and cpu must run every op natively."""
    feeds = feeds or {}
    with gc.Session(graph=graph, target="reference") as sess:
        want = sess.run(fetches, feeds)
    opts = gc.CompileOptions(cache_dir=None)
    with gc.Session(graph=graph, target="cpu", options=opts) as sess:
        got = sess.run(fetches, feeds)
        exe = sess.compile(fetches, list(feeds))
    assert not exe.stats.get("host_fallback_ops"), exe.stats.get("host_fallback_ops")
    for w, v in zip(want if isinstance(want, list) else [want],
                    got if isinstance(got, list) else [got]):  # fmt: skip
        np.testing.assert_allclose(v, w, rtol=rtol, atol=atol)
    return want


def _raises_everywhere(fetches, feeds, match):
    for target in ("reference", "cpu"):
        with gc.Session(target=target, options=gc.CompileOptions(cache_dir=None)) as sess:
            with pytest.raises(gc.errors.InvalidArgumentError, match=match):
                sess.run(fetches, feeds)


@pytest.fixture(autouse=True)
def _fresh_graph():
    gc.reset_default_graph()
    yield


def _log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# -- softmax_cross_entropy_with_logits: v1 stops labels, v2 does not -------------------------


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_softmax_cross_entropy_gradients_for_labels_not_summing_to_one(rng, v2):
    fn = (gc.nn.softmax_cross_entropy_with_logits_v2 if v2
          else gc.nn.softmax_cross_entropy_with_logits)  # fmt: skip
    labels = rng.uniform(0.1, 1.0, size=(3, 4))  # rows sum to about 2, not 1
    logits = rng.normal(size=(3, 4))
    z = gc.placeholder(gc.float64, (None, 4))
    x = gc.placeholder(gc.float64, (None, 4))
    loss = fn(labels=z, logits=x)
    gz, gx = gc.gradients(gc.reduce_sum(loss), [z, x])
    feeds = {z: labels, x: logits}
    fetch = [loss, gx] + ([gz] if v2 else [])
    got = _both(fetch, feeds, rtol=1e-10, atol=1e-12)
    ls = _log_softmax(logits)
    np.testing.assert_allclose(got[0], -(labels * ls).sum(-1), rtol=1e-12)
    sm = np.exp(ls)
    np.testing.assert_allclose(got[1], sm * labels.sum(-1, keepdims=True) - labels, atol=1e-12)
    if v2:
        np.testing.assert_allclose(got[2], -ls, atol=1e-12)
    else:
        assert gz is None or np.all(_both(gz, feeds) == 0)
    if v2:
        check_gradients(Example(lambda a, b: fn(labels=a, logits=b), [labels, logits]))
    else:  # labels are constants to v1's gradient
        check_gradients(Example(lambda b: fn(labels=labels, logits=b), [logits]))


def test_softmax_cross_entropy_v1_stops_labels_in_the_gradient():
    z = gc.placeholder(gc.float32, (2, 3))
    x = gc.placeholder(gc.float32, (2, 3))
    (g1,) = gc.gradients(gc.nn.softmax_cross_entropy_with_logits(labels=z, logits=x), [z])
    (g2,) = gc.gradients(gc.nn.softmax_cross_entropy_with_logits_v2(labels=z, logits=x), [z])
    assert g1 is None and g2 is not None


# -- sparse_softmax_cross_entropy_with_logits: out-of-range labels raise ----------------------


@pytest.mark.parametrize("shape", [(3, 4), (None, None)], ids=["static", "dynamic"])
@pytest.mark.parametrize("bad", [4, -1, 100])
def test_sparse_cross_entropy_label_out_of_range_raises(rng, shape, bad):
    x = gc.placeholder(gc.float32, shape)
    y = gc.placeholder(gc.int64, (None,))
    loss = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
    (g,) = gc.gradients(gc.reduce_sum(loss), [x])
    logits = rng.normal(size=(3, 4)).astype(np.float32)
    ok = np.array([1, 3, 0])
    got = _both([loss, g], {x: logits, y: ok})
    np.testing.assert_allclose(got[0], -_log_softmax(logits)[np.arange(3), ok], rtol=1e-5)
    labels = np.array([1, bad, 0])
    for fetch in (loss, g):
        _raises_everywhere(fetch, {x: logits, y: labels}, "labels_in_range")


def test_sparse_cross_entropy_gradients(rng):
    ids = np.array([[1, 3], [0, 2]], np.int32)
    logits = rng.normal(size=(2, 2, 4))
    check_gradients(Example(lambda a, b: gc.nn.sparse_softmax_cross_entropy_with_logits(
        labels=a, logits=b), [ids, logits]))  # fmt: skip
    x = gc.placeholder(gc.float64, (None, 2, 4))
    loss = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=x)
    (g,) = gc.gradients(gc.reduce_sum(loss * loss), [x])
    _both([loss, g], {x: logits}, rtol=1e-10, atol=1e-12)


# -- embedding_lookup with sharded params -----------------------------------------------------


def _tf_embedding(shards, ids, strategy):
    """TF1's embedding_lookup, element by element."""
    n, total = len(shards), sum(s.shape[0] for s in shards)
    rows = []
    for i in ids.reshape(-1):
        if strategy == "mod":
            p, r = i % n, i // n
        else:
            per, extras = total // n, total % n
            p = max(i // (per + 1), (i - extras) // per)
            r = i % (per + 1) if p < extras else (i - extras) % per
        rows.append(shards[p][r])
    return np.array(rows).reshape(ids.shape + shards[0].shape[1:])


@pytest.mark.parametrize(
    "strategy,sizes",
    [("mod", (3, 3, 2)), ("mod", (4, 3)), ("div", (3, 3, 2)), ("div", (2, 2))],
)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_embedding_lookup_sharded(rng, strategy, sizes, dynamic):
    shards = [rng.normal(size=(k, 2)) for k in sizes]
    total = sum(sizes)
    ids = np.array([[0, total - 1], [total // 2, 1], [2, 2]], np.int64)
    phs = [gc.placeholder(gc.float64, (None, 2) if dynamic else s.shape) for s in shards]
    out = gc.nn.embedding_lookup(phs, ids, partition_strategy=strategy)
    assert out.shape == (3, 2, 2)
    grads = gc.gradients(gc.reduce_sum(out * out), phs)
    feeds = dict(zip(phs, shards))
    got = _both([out, *grads], feeds, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[0], _tf_embedding(shards, ids, strategy), rtol=1e-12)
    # each shard's gradient is 2 * row at every id that reads it (repeats add)
    want = [np.zeros_like(s) for s in shards]
    n = len(shards)
    for i in ids.reshape(-1):
        probe = [np.zeros_like(s) for s in shards]
        _mark(probe, i, n, total, strategy)
        for w, p, s in zip(want, probe, shards):
            w += 2 * p * s
    for g, w in zip(got[1:], want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    check_gradients(
        Example(
            lambda *t: gc.nn.embedding_lookup(list(t), ids, partition_strategy=strategy), shards
        )
    )


def _mark(probe, i, n, total, strategy):
    if strategy == "mod":
        probe[i % n][i // n] = 1
        return
    per, extras = total // n, total % n
    p = max(i // (per + 1), (i - extras) // per)
    probe[p][i % (per + 1) if p < extras else (i - extras) % per] = 1


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_embedding_lookup_sharded_id_out_of_range_raises(strategy):
    shards = [np.ones((3, 2), np.float32), np.ones((2, 2), np.float32)]
    ids = gc.placeholder(gc.int32, (None,))
    out = gc.nn.embedding_lookup(shards, ids, partition_strategy=strategy)
    _both(out, {ids: np.array([0, 4, 2])})
    for bad in (5, -1, 50):
        _raises_everywhere(out, {ids: np.array([0, bad])}, "range|not in")


def test_embedding_lookup_single_shard_and_errors():
    p = np.arange(6.0).reshape(3, 2)
    got = _both(gc.nn.embedding_lookup([p], [2, 0]))
    np.testing.assert_array_equal(got, p[[2, 0]])
    with pytest.raises(ValueError, match="partition_strategy"):
        gc.nn.embedding_lookup([p, p], [0], partition_strategy="hash")
    with pytest.raises(TypeError, match="dtypes"):
        gc.nn.embedding_lookup([p, p.astype(np.float32)], [0])


# -- explicit padding in conv2d and pools -----------------------------------------------------


def _np_conv_valid(x, f, strides=(1, 1), dil=(1, 1)):
    n, h, w, c = x.shape
    kh, kw, _, o = f.shape
    eh, ew = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    oh, ow = (h - eh) // strides[0] + 1, (w - ew) // strides[1] + 1
    out = np.zeros((n, oh, ow, o))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dil[0], i * dil[0] + (oh - 1) * strides[0] + 1, strides[0])
            cols = slice(j * dil[1], j * dil[1] + (ow - 1) * strides[1] + 1, strides[1])
            win = x[:, rows, cols, :]
            out += np.tensordot(win, f[i, j], axes=([3], [0]))
    return out


CONV_CASES = [
    # (x shape, f shape, strides, dilations, [[top, bottom], [left, right]])
    ((2, 5, 6, 3), (3, 3, 3, 4), 1, 1, [[1, 0], [2, 1]]),  # short: direct kernel
    ((1, 4, 5, 5), (3, 3, 5, 2), 1, 1, [[0, 2], [1, 1]]),  # im2col + GEMM
    ((2, 5, 6, 3), (3, 3, 3, 2), 2, 1, [[2, 1], [0, 3]]),
    ((1, 5, 5, 2), (2, 2, 2, 3), 1, 2, [[1, 2], [2, 0]]),
    ((2, 3, 4, 3), (1, 1, 3, 2), 1, 1, [[0, 1], [1, 0]]),  # 1x1: no GEMM on x itself
    ((1, 2, 2, 1), (3, 3, 1, 1), 1, 1, [[2, 2], [1, 1]]),  # window larger than the input
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_conv2d_explicit_padding(rng, case, dynamic):
    xs, fs, s, d, pads = case
    x_val, f_val = rng.normal(size=xs), rng.normal(size=fs)
    padding = [[0, 0], *pads, [0, 0]]
    x = gc.placeholder(gc.float64, (None, None, None, xs[3]) if dynamic else xs)
    f = gc.placeholder(gc.float64, fs)
    y = gc.nn.conv2d(x, f, strides=s, padding=padding, dilations=d)
    want = _np_conv_valid(np.pad(x_val, padding), f_val, (s, s), (d, d))
    if not dynamic:
        assert y.shape == want.shape
    gx, gf = gc.gradients(gc.reduce_sum(y * y), [x, f])
    got = _both([y, gx, gf], {x: x_val, f: f_val}, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[0], want, rtol=1e-10, atol=1e-12)
    check_gradients(Example(lambda a, b: gc.nn.conv2d(a, b, s, padding, d), [x_val, f_val]))


def test_conv2d_explicit_padding_validation_and_zero_pads(rng):
    x = gc.placeholder(gc.float32, (1, 4, 4, 2))
    f = gc.placeholder(gc.float32, (3, 3, 2, 1))
    zero = gc.nn.conv2d(x, f, 1, [[0, 0], [0, 0], [0, 0], [0, 0]])
    assert zero.op.attrs["padding"] == "VALID"
    for bad in ([[1, 0], [0, 0], [0, 0], [0, 0]], [[0, 0], [0, 0], [0, 0], [0, 1]],
                [[0, 0], [-1, 0], [0, 0], [0, 0]], [[0, 0], [1, 1]], "FULL",
                [[0, 0], [1.5, 0], [0, 0], [0, 0]]):  # fmt: skip
        with pytest.raises(ValueError, match="padding"):
            gc.nn.conv2d(x, f, 1, bad)
    with pytest.raises(ValueError, match="does not fit"):
        gc.nn.conv2d(gc.placeholder(gc.float32, (1, 1, 1, 2)), f, 1, [[0, 0], [1, 0], [0, 0],
                                                                       [0, 0]])  # fmt: skip
    # too small at run time (dynamic sizes): refused on every target
    xd = gc.placeholder(gc.float32, (None, None, None, 2))
    f_val = rng.normal(size=(3, 3, 2, 1)).astype(np.float32)
    y = gc.nn.conv2d(xd, f_val, 1, [[0, 0], [1, 0], [0, 1], [0, 0]])
    _both(y, {xd: np.ones((1, 2, 2, 2), np.float32)})
    _raises_everywhere(y, {xd: np.ones((1, 1, 4, 2), np.float32)}, "fit|negative|size")


def test_conv2d_transpose_explicit_padding_is_the_adjoint(rng):
    padding = [[0, 0], [1, 0], [0, 2], [0, 0]]
    x_val, f_val = rng.normal(size=(2, 5, 6, 3)), rng.normal(size=(3, 3, 3, 4))
    y = gc.nn.conv2d(x_val, f_val, 2, padding)
    g_val = rng.normal(size=y.shape)
    t = gc.nn.conv2d_transpose(g_val, f_val, (2, 5, 6, 3), 2, padding)
    y_v, t_v = _both([y, t])
    np.testing.assert_allclose((y_v * g_val).sum(), (x_val * t_v).sum(), rtol=1e-10)


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_pools_explicit_padding(rng, pool, dynamic):
    x_val = rng.permutation(2 * 5 * 6 * 3).reshape(2, 5, 6, 3) / 20.0  # no ties
    pads = [[0, 0], [1, 0], [2, 1], [0, 0]]
    fn = gc.nn.max_pool2d if pool == "max" else gc.nn.avg_pool2d
    x = gc.placeholder(gc.float64, (None, None, None, 3) if dynamic else x_val.shape)
    y = fn(x, 3, 2, pads)
    (gx,) = gc.gradients(gc.reduce_sum(y * y), [x])
    got = _both([y, gx], {x: x_val}, rtol=1e-12, atol=1e-12)
    fill = -np.inf if pool == "max" else 0.0
    xp = np.pad(x_val, pads, constant_values=fill)
    ones = np.pad(np.ones_like(x_val), pads)
    oh, ow = (5 + 1 - 3) // 2 + 1, (6 + 3 - 3) // 2 + 1
    want = np.zeros((2, oh, ow, 3))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
            if pool == "max":
                want[:, i, j] = win.max(axis=(1, 2))
            else:  # TF's SAME rule: divide by the real (unpadded) inputs
                cnt = ones[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :].sum(axis=(1, 2))
                want[:, i, j] = win.sum(axis=(1, 2)) / cnt
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    check_gradients(Example(lambda t: fn(t, 3, 2, pads), [x_val]))


# -- gather / gather_nd with batch_dims -------------------------------------------------------


def _np_gather(p, idx, axis, bd):
    """TF's gather with batch_dims, by explicit loops over the batch entries."""
    if bd == 0:
        return np.take(p, idx, axis=axis)
    return np.stack([_np_gather(p[b], idx[b], axis - 1, bd - 1) for b in range(p.shape[0])])


def _np_gather_nd(p, idx, bd):
    if bd == 0:
        k = idx.shape[-1]
        flat = idx.reshape(int(np.prod(idx.shape[:-1])), k)
        rows = [p[tuple(v)] for v in flat]
        return np.array(rows).reshape(idx.shape[:-1] + p.shape[k:])
    return np.stack([_np_gather_nd(p[b], idx[b], bd - 1) for b in range(p.shape[0])])


GATHER_CASES = [
    # (params shape, indices, axis, batch_dims)
    ((2, 3, 4), [[0, 2], [1, 1]], None, 1),  # axis defaults to batch_dims
    ((2, 3, 4), [[0, 2, 3], [1, 1, 0]], 2, 1),
    ((2, 3, 4), [[[0, 3], [1, 1], [2, 0]], [[3, 3], [0, 1], [2, 2]]], 2, 2),
    ((2, 3, 4), [[0, 2, 1], [1, 1, 3]], -1, -1),  # negative axis and batch_dims
    ((3, 2, 2), [[[1], [0]], [[0], [0]], [[1], [1]]], 1, 1),
    ((2, 5), [[4, 0, 0, 1], [2, 2, 3, 3]], 1, 1),
]


@pytest.mark.parametrize("case", GATHER_CASES, ids=[str(i) for i in range(len(GATHER_CASES))])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_gather_batch_dims(rng, case, dynamic):
    ps, idx, axis, bd = case
    p_val, idx = rng.normal(size=ps), np.array(idx, np.int32)
    p = gc.placeholder(gc.float64, (None,) * len(ps) if dynamic else ps)
    i = gc.placeholder(gc.int32, (None,) * idx.ndim if dynamic else idx.shape)
    y = gc.gather(p, i, axis=axis, batch_dims=bd)
    bd_n = bd % idx.ndim if bd < 0 else bd
    ax_n = bd_n if axis is None else axis % len(ps)
    want = _np_gather(p_val, idx, ax_n, bd_n)
    (gp,) = gc.gradients(gc.reduce_sum(y * y), [p])
    got = _both([y, gp], {p: p_val, i: idx}, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[0], want)
    check_gradients(Example(lambda a: gc.gather(a, idx, axis=axis, batch_dims=bd), [p_val]))


def test_gather_batch_dims_errors():
    p = gc.placeholder(gc.float32, (2, 3, 4))
    with pytest.raises(ValueError, match="batch_dims"):
        gc.gather(p, np.zeros((2, 3), np.int32), axis=0, batch_dims=1)
    with pytest.raises(ValueError, match="batch_dims"):
        gc.gather(p, np.zeros((2,), np.int32), axis=2, batch_dims=2)
    with pytest.raises(ValueError, match="batch"):
        gc.gather(p, np.zeros((3, 2), np.int32), batch_dims=1)
    i = gc.placeholder(gc.int32, (None, None))
    y = gc.gather(np.ones((2, 3, 4), np.float32), i, batch_dims=1)
    _raises_everywhere(y, {i: np.array([[0], [3]], np.int32)}, "range|not in")


GATHER_ND_CASES = [
    # (params shape, indices, batch_dims)
    ((2, 3, 4), [[[0, 1]], [[2, 3]]], 1),
    ((2, 3, 4), [[1], [2]], 1),  # whole rows per batch entry
    ((3, 4, 2), [[[3], [0], [3]], [[1], [1], [2]], [[0], [2], [2]]], 1),
    ((2, 3, 4), [[[3], [0], [1]], [[2], [2], [0]]], 2),
    ((2, 3, 4, 2), [[[[1, 0]], [[2, 3]]], [[[0, 0]], [[1, 1]]]], 1),
    ((2, 3), [[[], []], [[], []]], 1),  # empty index vectors: whole batch entries
]


@pytest.mark.parametrize("case", GATHER_ND_CASES, ids=[str(i) for i in range(len(GATHER_ND_CASES))])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_gather_nd_batch_dims(rng, case, dynamic):
    ps, idx, bd = case
    p_val, idx = rng.normal(size=ps), np.array(idx, np.int64).reshape(np.shape(idx))
    p = gc.placeholder(gc.float64, (None,) * len(ps) if dynamic else ps)
    # the index depth (last dim) stays static: it sets the output rank
    ishape = ((None,) * (idx.ndim - 1) + idx.shape[-1:]) if dynamic else idx.shape
    i = gc.placeholder(gc.int64, ishape)
    y = gc.gather_nd(p, i, batch_dims=bd)
    want = _np_gather_nd(p_val, idx, bd)
    assert len(y.shape) == want.ndim
    (gp,) = gc.gradients(gc.reduce_sum(y * y), [p])
    got = _both([y, gp], {p: p_val, i: idx}, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[0], want)
    check_gradients(Example(lambda a: gc.gather_nd(a, idx, batch_dims=bd), [p_val]))


def test_gather_nd_batch_dims_errors():
    p = gc.placeholder(gc.float32, (2, 3, 4))
    with pytest.raises(ValueError, match="batch"):
        gc.gather_nd(p, np.zeros((3, 1), np.int32), batch_dims=1)
    with pytest.raises(ValueError, match="index vectors"):
        gc.gather_nd(p, np.zeros((2, 3), np.int32), batch_dims=1)
    with pytest.raises(ValueError, match="batch_dims"):
        gc.gather_nd(p, np.zeros((2, 1), np.int32), batch_dims=-1)
    i = gc.placeholder(gc.int32, (None, 1))
    y = gc.gather_nd(np.ones((2, 3, 4), np.float32), i, batch_dims=1)
    _both(y, {i: np.array([[2], [0]], np.int32)})
    _raises_everywhere(y, {i: np.array([[0], [3]], np.int32)}, "range|not in")
    _raises_everywhere(y, {i: np.array([[0], [1], [2]], np.int32)}, "batch|differ|fit")


# -- einsum with subscripts repeated within an operand ----------------------------------------

EINSUM_CASES = [
    ("ii->i", [(3, 3)]),  # diagonal
    ("ii->", [(3, 3)]),  # trace
    ("ii", [(4, 4)]),  # implicit: the trace
    ("iij->ij", [(3, 3, 2)]),
    ("iji->j", [(2, 4, 2)]),
    ("iii->i", [(2, 2, 2)]),
    ("ii,ij->j", [(3, 3), (3, 4)]),  # diagonal then a matmul
    ("ij,jj", [(2, 3), (3, 3)]),
    ("...ii->...i", [(2, 3, 3)]),  # batched diagonal
    ("bii,bi->b", [(2, 3, 3), (2, 3)]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_einsum_repeated_subscripts(rng, eq, shapes, dynamic):
    arrays = [rng.normal(size=s) for s in shapes]
    phs = [gc.placeholder(gc.float64, (None,) * len(s) if dynamic else s) for s in shapes]
    y = gc.einsum(eq, *phs)
    grads = gc.gradients(gc.reduce_sum(y * y), phs)
    feeds = dict(zip(phs, arrays))
    got = _both([y, *grads], feeds, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[0], np.einsum(eq, *arrays), rtol=1e-12)
    check_gradients(Example(lambda *t: gc.einsum(eq, *t), arrays))


def test_einsum_diagonal_gradient_is_on_the_diagonal(rng):
    a = rng.normal(size=(3, 3))
    x = gc.placeholder(gc.float64, (3, 3))
    (g,) = gc.gradients(gc.einsum("ii->", x), [x])
    np.testing.assert_array_equal(_both(g, {x: a}), np.eye(3))


def test_einsum_diagonal_of_non_square_operand_is_refused():
    with pytest.raises(ValueError, match="sizes 3 and 4"):
        gc.einsum("ii->i", gc.placeholder(gc.float32, (3, 4)))
    x = gc.placeholder(gc.float32, (None, None))
    y = gc.einsum("ii->i", x)
    _both(y, {x: np.ones((2, 2), np.float32)})
    _raises_everywhere(y, {x: np.ones((2, 3), np.float32)}, "sizes|subscript")
