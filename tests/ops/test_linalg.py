"""matmul, einsum and tensordot against numpy, their shape errors and gradients."""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Example
from tests.ops.test_gradients_registry import check_gradients


def _run(fetches, feeds=None):
    with gc.Session(target="reference") as sess:
        return sess.run(fetches, feeds)


@pytest.mark.parametrize(
    "sa,sb,ta,tb",
    [
        ((3, 4), (4, 5), False, False),
        ((4, 3), (4, 5), True, False),
        ((3, 4), (5, 4), False, True),
        ((4, 3), (5, 4), True, True),
        ((2, 3, 4), (4, 5), False, False),
        ((4, 5), (2, 5, 3), False, False),
        ((2, 1, 3, 4), (5, 4, 2), False, False),
        ((6, 2, 4, 3), (2, 5, 4), True, True),
    ],
)
def test_matmul_matches_numpy(rng, sa, sb, ta, tb):
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    out = gc.matmul(gc.constant(a), gc.constant(b), transpose_a=ta, transpose_b=tb)
    ea = np.swapaxes(a, -1, -2) if ta else a
    eb = np.swapaxes(b, -1, -2) if tb else b
    expected = np.matmul(ea, eb)
    assert out.shape == expected.shape
    np.testing.assert_allclose(_run(out), expected, rtol=1e-12)


def test_matmul_rank1_operands_follow_numpy(rng):
    m, v, w = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=3)
    outs = [gc.matmul(m, v), gc.matmul(w, m), gc.matmul(v, v)]
    assert [o.shape for o in outs] == [(3,), (4,), ()]
    got = _run(outs)
    for g, e in zip(got, [m @ v, w @ m, v @ v]):
        np.testing.assert_allclose(g, e, rtol=1e-12)


def test_matmul_operator_and_dtype_promotion(rng):
    a = gc.placeholder(gc.float32, (None, 3))
    b = rng.normal(size=(3, 2)).astype(np.float32)
    c = a @ b
    assert c.op.type == "MatMul" and c.shape == (None, 2) and c.dtype == gc.float32
    x = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(c, {a: x}), x @ b, rtol=1e-5)
    i = gc.matmul(np.ones((2, 2), np.int32), np.full((2, 2), 2, np.int32))
    assert i.dtype == gc.int32
    np.testing.assert_array_equal(_run(i), np.full((2, 2), 4))


def test_matmul_errors_name_op_shapes_and_line():
    a = gc.placeholder(gc.float32, (3, 4))
    b = gc.placeholder(gc.float32, (5, 6))
    with pytest.raises(ValueError) as exc:
        gc.matmul(a, b)
    msg = str(exc.value)
    assert "MatMul" in msg and "(3, 4)" in msg and "(5, 6)" in msg and "test_linalg.py" in msg
    with pytest.raises(ValueError, match="batch dimensions"):
        gc.matmul(gc.placeholder(gc.float32, (2, 3, 4)), gc.placeholder(gc.float32, (3, 4, 5)))
    with pytest.raises(ValueError, match="scalar"):
        gc.matmul(gc.constant(1.0), a)


def test_matmul_mismatch_with_unknown_dims_fails_at_run_time():
    a = gc.placeholder(gc.float64, (None, None))
    out = gc.matmul(a, np.ones((3, 2)))
    with pytest.raises(gc.errors.InvalidArgumentError, match="inner dimensions"):
        _run(out, {a: np.ones((2, 4))})


def test_matmul_gradient_sums_broadcast_batch_dims(rng):
    a_val, b_val = rng.normal(size=(2, 1, 3, 4)), rng.normal(size=(5, 4, 2))
    w = rng.normal(size=(2, 5, 3, 2))
    a = gc.placeholder(gc.float64, (None, None, 3, 4))
    b = gc.placeholder(gc.float64, (5, 4, 2))
    loss = gc.reduce_sum(gc.matmul(a, b) * w)
    ga, gb = gc.gradients(loss, [a, b])
    got_a, got_b = _run([ga, gb], {a: a_val, b: b_val})
    # d/dA sum(W * (A @ B)) = W @ B^T summed over the dims A was broadcast along
    exp_a = (w @ np.swapaxes(b_val, -1, -2)).sum(axis=1, keepdims=True)
    exp_b = (np.swapaxes(a_val, -1, -2) @ w).sum(axis=0)
    np.testing.assert_allclose(got_a, exp_a, rtol=1e-10)
    np.testing.assert_allclose(got_b, exp_b, rtol=1e-10)


def test_matmul_second_order_gradient(rng):
    # loss = sum((A @ B)^2): d2 loss / dA dB is checked through a Hessian-vector product
    a_val, b_val = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    a, b = gc.placeholder(gc.float64, (3, 4)), gc.placeholder(gc.float64, (4, 2))
    loss = gc.reduce_sum(gc.square(gc.matmul(a, b)))
    (ga,) = gc.gradients(loss, [a])  # 2 (AB) B^T
    (hv,) = gc.gradients(gc.reduce_sum(ga * gc.constant(np.ones((3, 4)))), [b])
    got = _run(hv, {a: a_val, b: b_val})
    eps = 1e-6

    def ga_sum(bv):
        return (2 * (a_val @ bv) @ bv.T).sum()

    num = np.zeros_like(b_val)
    for idx in np.ndindex(*b_val.shape):
        d = np.zeros_like(b_val)
        d[idx] = eps
        num[idx] = (ga_sum(b_val + d) - ga_sum(b_val - d)) / (2 * eps)
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)


EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)], "MatMul"),
    ("ij,kj->ik", [(3, 4), (5, 4)], "MatMul"),
    ("ji,jk->ik", [(4, 3), (4, 5)], "MatMul"),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], "MatMul"),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], "MatMul"),
    ("ij->i", [(3, 4)], "Sum"),
    ("ijk->ik", [(2, 3, 4)], "Sum"),
    ("ij->", [(3, 4)], "Sum"),
    ("ij->ji", [(3, 4)], "Transpose"),
    ("ij,jk", [(3, 4), (4, 5)], "MatMul"),  # implicit output "ik"
    ("i,j->ij", [(3,), (4,)], "Mul"),
    ("i,i->", [(5,), (5,)], "MatMul"),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)], "MatMul"),
    ("bqhd,bkhd->bhqk", [(2, 4, 3, 5), (2, 6, 3, 5)], "MatMul"),
    ("ijk,kl,lm->im", [(2, 3, 4), (4, 5), (5, 6)], "MatMul"),
    ("...i,i->...", [(2, 3, 4), (4,)], "Einsum"),
    ("abc,bcd->da", [(2, 3, 4), (3, 4, 5)], "Reshape"),  # merged contraction dims
    ("ab,cd->abcd", [(2, 3), (4, 1)], "Mul"),
    ("bij,bjk,bkl->bli", [(2, 3, 4), (2, 4, 5), (2, 5, 3)], "MatMul"),
    ("i,i->i", [(4,), (4,)], "Mul"),
    ("...ij,jk->...ki", [(2, 2, 3), (3, 4)], "Einsum"),
]


@pytest.mark.parametrize("eq,shapes,op_type", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum_matches_numpy_and_uses_matmul_and_reductions(rng, eq, shapes, op_type):
    arrays = [rng.normal(size=s) for s in shapes]
    out = gc.einsum(eq, *[gc.constant(a) for a in arrays])
    types = {op.type for op in out.graph.get_operations()}
    assert op_type in types, f"{eq} built {types}"
    expected = np.einsum(eq, *arrays)
    assert out.shape == expected.shape
    np.testing.assert_allclose(_run(out), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eq,shapes,op_type", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum_gradients(eq, shapes, op_type):
    rng = np.random.default_rng(5)
    check_gradients(Example(lambda *t: gc.einsum(eq, *t), [rng.normal(size=s) for s in shapes]))


def test_einsum_private_subscript_gradient_broadcasts(rng):
    # 'j' exists only in the first operand: summed forward, broadcast backward
    check_gradients(Example(lambda a, b: gc.einsum("ij,ik->k", a, b),
                            [rng.normal(size=(3, 4)), rng.normal(size=(3, 2))]))  # fmt: skip
    check_gradients(Example(lambda a, b: gc.einsum("...ij,k->...k", a, b),
                            [rng.normal(size=(2, 3, 4)), rng.normal(size=(2,))]))  # fmt: skip


def test_einsum_without_ellipsis_builds_no_einsum_op(rng):
    for eq, shapes, _ in EINSUM_CASES:
        if "..." not in eq:
            g = gc.Graph()
            with g.as_default():
                gc.einsum(eq, *[gc.placeholder(gc.float32, s) for s in shapes])
            assert "Einsum" not in {op.type for op in g.get_operations()}, eq


def test_einsum_merged_unknown_dims_fall_back_to_the_einsum_op(rng):
    a = gc.placeholder(gc.float64, (None, None, 4))
    b = gc.placeholder(gc.float64, (None, 4, 5))
    out = gc.einsum("abc,bcd->ad", a, b)
    assert out.op.type == "Einsum" and out.shape == (None, 5)
    va, vb = rng.normal(size=(2, 3, 4)), rng.normal(size=(3, 4, 5))
    np.testing.assert_allclose(_run(out, {a: va, b: vb}), np.einsum("abc,bcd->ad", va, vb))
    x = gc.placeholder(gc.float64, (None, 3, 4))
    y = gc.einsum("abc,bcd->ad", x, vb)  # merged dims known: reshape with one -1
    assert "Reshape" in {op.type for op in y.graph.get_operations()}
    np.testing.assert_allclose(_run(y, {x: va}), np.einsum("abc,bcd->ad", va, vb))


def test_einsum_with_unknown_dims(rng):
    x = gc.placeholder(gc.float32, (None, None, 4))
    w = rng.normal(size=(4, 3)).astype(np.float32)
    out = gc.einsum("btd,de->bte", x, w)
    assert out.shape == (None, None, 3)
    v = rng.normal(size=(2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(out, {x: v}), np.einsum("btd,de->bte", v, w), rtol=1e-5)


def test_einsum_errors():
    a = gc.placeholder(gc.float32, (3, 4))
    with pytest.raises(ValueError, match=r"sizes 4 and 5.*test_linalg\.py"):
        gc.einsum("ij,jk->ik", a, gc.placeholder(gc.float32, (5, 2)))
    with pytest.raises(ValueError, match="sizes 3 and 4"):
        gc.einsum("ii->i", a)  # a diagonal needs equal sizes
    with pytest.raises(ValueError, match="repeated subscript in the output"):
        gc.einsum("ij->ii", a)
    with pytest.raises(ValueError, match="2 operand subscripts but 1"):
        gc.einsum("ij,jk->ik", a)
    with pytest.raises(ValueError, match="in no input"):
        gc.einsum("ij->iz", a)
    with pytest.raises(ValueError, match="does not fit"):
        gc.einsum("ijk->i", a)


@pytest.mark.parametrize(
    "sa,sb,axes",
    [
        ((3, 4), (4, 5), 1),
        ((2, 3, 4), (3, 4, 5), 2),
        ((3, 4), (5, 6), 0),
        ((2, 3, 4), (4, 2, 5), ([0, 2], [1, 0])),
        ((3, 4, 5), (5, 3), ([2, 0], [0, 1])),
        ((4, 3), (3, 4), [[1], [0]]),
    ],
)
def test_tensordot_matches_numpy(rng, sa, sb, axes):
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    out = gc.tensordot(a, b, axes)
    expected = np.tensordot(a, b, axes)
    assert out.shape == expected.shape
    np.testing.assert_allclose(_run(out), expected, rtol=1e-10, atol=1e-12)


def test_tensordot_gradient_and_errors(rng):
    check_gradients(Example(lambda a, b: gc.tensordot(a, b, ([0, 2], [1, 0])),
                            [rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 2, 5))]))  # fmt: skip
    with pytest.raises(ValueError, match="out of range"):
        gc.tensordot(np.ones((2, 3)), np.ones((3, 2)), ([5], [0]))
    with pytest.raises(ValueError):
        gc.tensordot(np.ones((2, 3)), np.ones((4, 2)), 1)
