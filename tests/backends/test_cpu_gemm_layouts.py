"""GEMM kernels with layout changes in their epilogue (transposes, tiles, squeeze/expand_dims,
reshapes), static and ``None`` dims: fused cpu and unfused cpu equal the reference, forward
and gradients (issue 13: the fused cpu path returned garbage).

The enumerated test builds one graph per (product shape, declared dims) holding every chain
of one or two layout ops after its own matmul, so every chain is its own GEMM kernel.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc

f32 = np.float32


def _compare(fetch, feeds, rtol=1e-5, atol=1e-5):
    want = gc.Session(target="reference").run(fetch, feeds)
    for fusion in (True, False):
        opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
        with gc.Session(target="cpu", options=opts) as sess:
            got = sess.run(fetch, feeds)
        for k, (w, v) in enumerate(zip(want, got)):
            assert np.shape(v) == np.shape(w), (fusion, k)
            np.testing.assert_allclose(v, w, rtol=rtol, atol=atol, err_msg=f"fusion={fusion} #{k}")
    return want


def test_issue13_a_squeeze_of_a_transposed_product_with_a_none_dim():
    x = gc.placeholder(gc.float32, (1, 5, None))
    w = gc.placeholder(gc.float32, (1, 1))
    out = gc.squeeze(gc.transpose(gc.matmul(x, w), [2, 1, 0]), [2])
    feeds = {x: np.arange(1, 6, dtype=f32).reshape(1, 5, 1), w: 2 * np.ones((1, 1), f32)}
    (got,) = _compare([out], feeds)
    np.testing.assert_array_equal(got, [[2, 4, 6, 8, 10]])


def test_issue13_b_gradient_through_tile_of_reshape_into_a_matmul():
    x = gc.placeholder(gc.float32, (2, 3, 2))
    h = gc.tile(gc.reshape(x, [2, 6]), [1, 1])
    loss = gc.reduce_sum(gc.matmul(h, gc.ones((6, 3))) ** 2)
    (g,) = gc.gradients(loss, [x])
    (got,) = _compare([g], {x: np.arange(12, dtype=f32).reshape(2, 3, 2)})
    np.testing.assert_allclose(got.reshape(2, 6)[:, 0], [90, 306])


@pytest.mark.parametrize("decl", [(3, 3), (None, None)], ids=["static", "none"])
def test_transpose_of_a_square_product_is_not_computed_in_place(decl):
    """The GEMM may write into its epilogue's output only if the epilogue reads each
    element of C at the index it overwrites: not so for a transpose."""
    x = gc.placeholder(gc.float32, decl)
    y = gc.placeholder(gc.float32, decl)
    m = gc.matmul(x, y)
    outs = [gc.transpose(m), gc.transpose(m) + 1.0, gc.transpose(gc.tanh(gc.matmul(y, x)))]
    a = np.arange(9, dtype=f32).reshape(3, 3) / 8
    _compare(outs, {x: a, y: a.T + 1})


# -- every chain of layout ops after a GEMM ------------------------------------------------------

#: name -> (shape of A, shape of B): products (1, 5, 1), square (3, 3), batched (2, 3, 3)
PRODUCTS = {
    "column": ((1, 5, 1), (1, 1)),
    "square": ((3, 4), (4, 3)),
    "batched": ((2, 3, 4), (2, 4, 3)),
    "broadcast_batch": ((2, 1, 3, 2), (3, 2, 2)),
}


def _firsts(shape):
    """Layout ops applied to the product: (name, function)."""
    rank = len(shape)
    perms = list(itertools.permutations(range(rank)))[1:]
    if rank > 3:  # the swap of the last two axes, the reversal and a rotation
        perms = [(0, 1, 3, 2), (3, 2, 1, 0), (1, 2, 3, 0)]
    ops = [(f"transpose{list(p)}", lambda t, p=p: gc.transpose(t, list(p))) for p in perms]
    ops += [
        ("tile", lambda t: gc.tile(t, [1] * (rank - 1) + [2])),
        ("expand_last", lambda t: gc.expand_dims(t, rank)),
    ]
    ones = [k for k, d in enumerate(shape) if d == 1]
    if ones:
        ops.append(("squeeze", lambda t: gc.squeeze(t, ones)))
    return ops


def _seconds(shape):
    """Ops after the first: (name, function of the first's output)."""
    ones = [k for k, d in enumerate(shape) if d == 1]
    ops = [
        ("", None),
        ("+expand", lambda t: gc.expand_dims(t, 0)),
        ("+flatten", lambda t: gc.reshape(t, [-1])),
        ("+tanh", gc.tanh),
    ]
    if ones:
        ops.append(("+squeeze", lambda t: gc.squeeze(t, ones)))
    return ops


def _chains(product, decl):
    """(fetches, feeds, gradients of a weighted sum of the fetches w.r.t. one input of each
    matmul, A and B in turn)."""
    sa, sb = PRODUCTS[product]
    c_shape = np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])
    rng = np.random.default_rng(0)
    feeds, outs, wrt = {}, [], []
    for _, f1 in _firsts(c_shape):
        shape = gc.placeholder(gc.float32, c_shape)
        mid = tuple(f1(shape).shape)
        for _, f2 in _seconds(mid):
            ds = [s if decl == "static" else tuple(None for _ in s) for s in (sa, sb)]
            a = gc.placeholder(gc.float32, ds[0])
            b = gc.placeholder(gc.float32, ds[1])
            feeds[a] = rng.uniform(-1, 1, sa).astype(f32)
            feeds[b] = rng.uniform(-1, 1, sb).astype(f32)
            t = f1(gc.matmul(a, b))
            outs.append(t if f2 is None else f2(t))
            wrt.append(b if len(outs) % 2 else a)  # each chain once: half the backward
    loss = gc.reduce_sum(outs[0] * outs[0])
    for k, t in enumerate(outs[1:], 2):
        loss = loss + gc.reduce_sum(t * t) * float(k)
    return outs, feeds, gc.gradients(loss, wrt)


@pytest.mark.parametrize("decl", ["static", "none"])
@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_layout_chains_after_a_gemm(product, decl):
    outs, feeds, _ = _chains(product, decl)
    _compare(outs, feeds, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("decl", ["static", "none"])
@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_gradients_of_layout_chains_after_a_gemm(product, decl):
    # the backward pass fuses differently (the chains' outputs are read again)
    outs, feeds, grads = _chains(product, decl)
    _compare(grads, feeds, rtol=1e-4, atol=1e-4)
