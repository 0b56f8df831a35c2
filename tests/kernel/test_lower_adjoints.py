"""Gradients of the index ops (slice, pad, tile, concat, gather, gather_nd, segment sums)
through the Kernel IR: every differentiable example of the forward op, its gradient taken
through a weighted sum (so a fused elementwise producer feeds the adjoint), fused and
unfused, static and unknown dims, against the reference; plus the run-time errors and the
sequential structure of the scatter-adds."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArgumentError
from graphc.kernel import interp
from graphc.kernel.ir import If, Loop
from graphc.ops.registry import REGISTRY, apply1
from graphc.runtime_state import RunContext
from tests.kernel.helpers import assert_close, compile_kernels, run_both
from tests.oracle import build_example

FORWARD = ["StridedSlice", "Pad", "Tile", "GatherV2", "ConcatV2", "SplitV", "GatherNd",
           "ScatterNd", "UnsortedSegmentSum", "Einsum", "MaxPool"]  # fmt: skip
CASES = [(name, i) for name in FORWARD for i, ex in enumerate(REGISTRY[name].examples()) if ex.grad]


def _grad_graph(example, dynamic):
    g, phs, outs, arrays = build_example(example, dynamic=dynamic)
    rng = np.random.default_rng(1)
    with g.as_default():
        loss = None
        for t, shape in zip(outs, _out_shapes(example, arrays)):
            w = gc.constant(rng.uniform(0.5, 1.5, shape).astype(t.dtype.np))
            term = gc.reduce_sum(t * w)
            loss = term if loss is None else loss + term
        xs = [p for p, a in zip(phs, arrays) if a.dtype.kind == "f"]
        grads = gc.gradients(loss, xs)
    return phs, [t for t in grads if t is not None], arrays


def _out_shapes(example, arrays):
    from tests.oracle import run

    g, phs, outs, _ = build_example(example)
    return [np.shape(v) for v in run(g, outs, dict(zip(phs, arrays)))]


@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_gradient_of_index_op_matches_reference(name, index, dynamic, fusion):
    example = REGISTRY[name].examples()[index]
    if dynamic and (not example.dynamic or name in ("GatherNd", "ScatterNd", "MaxPool")):
        pytest.skip("needs static shapes (index depth / spatial dims)")
    phs, grads, arrays = _grad_graph(example, dynamic)
    prog, _, kp = compile_kernels(grads, phs, fusion)
    ref, got, _, _ = run_both(prog, kp, arrays)
    assert_close(got, ref, 1e-5, 1e-6)


def _run(outs, phs, arrays, fusion=True):
    prog, _, kp = compile_kernels(outs, phs, fusion)
    return run_both(prog, kp, arrays)


@pytest.mark.parametrize("fusion", [True, False])
def test_gather_grad_sums_repeated_indices_with_batch_dims(fusion):
    g = gc.placeholder(gc.float32, (2, 6, 3))
    i = gc.placeholder(gc.int32, (2, 6))
    p = gc.placeholder(gc.float32, (2, 4, 3))
    out = apply1("GatherGrad", [g * 2.0, i, p], {"axis": 1, "batch_dims": 1})
    idx = np.array([[3, 3, 3, 0, 1, 3], [2, 2, 2, 2, 2, 2]], np.int32)
    gv = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    ref, got, _, _ = _run([out], [g, i, p], [gv, idx, np.zeros((2, 4, 3), np.float32)], fusion)
    assert_close(got, ref)
    np.testing.assert_allclose(got[0][1, 2], 2 * gv[1].sum(axis=0), rtol=1e-5)


def test_embedding_gradient_large_repeats():
    table = gc.placeholder(gc.float32, (50, 8))
    ids = gc.placeholder(gc.int64, (None,))
    emb = gc.gather(table, ids)
    (dt,) = gc.gradients(gc.reduce_sum(gc.square(emb)), [table])
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((50, 8)).astype(np.float32), rng.integers(0, 5, 300)]
    ref, got, _, _ = _run([dt], [table, ids], arrays)
    assert_close(got, ref, 1e-5, 1e-5)


@pytest.mark.parametrize(
    "build,feeds",
    [
        (
            lambda g, i, p: apply1("GatherGrad", [g, i, p], {"axis": 0, "batch_dims": 0}),
            [np.ones((2, 3)), np.array([0, 4]), np.zeros((4, 3))],
        ),
        (
            lambda g, i, p: apply1("GatherNdGrad", [g, i, p]),
            [np.ones((2,)), np.array([[0, 1], [1, -1]]), np.zeros((2, 2))],
        ),
        (lambda i, u: gc.scatter_nd(i, u, (3,)), [np.array([[3], [0]]), np.ones(2)]),
        (lambda d, s: gc.unsorted_segment_sum(d, s, 2), [np.ones(3), np.array([0, 2, 1])]),
        (lambda p, i: gc.gather_nd(p, i), [np.ones((2, 2)), np.array([[0, 2]])]),
    ],
    ids=["GatherGrad", "GatherNdGrad", "ScatterNd", "UnsortedSegmentSum", "GatherNd"],
)
def test_out_of_range_indices_raise_like_the_reference(build, feeds):
    g = gc.Graph()
    with g.as_default():
        phs = [gc.placeholder(gc.as_dtype(a.dtype), a.shape) for a in feeds]
        out = build(*phs)
    prog, _, kp = compile_kernels([out], phs)
    with pytest.raises(InvalidArgumentError):
        run_both(prog, kp, feeds)  # the reference raises first
    with pytest.raises(InvalidArgumentError, match="out of range|not below"):
        interp.run(kp, RunContext({}, {}, feeds))


def test_negative_segment_ids_are_dropped():
    d = gc.placeholder(gc.float64, (None, 2))
    s = gc.placeholder(gc.int32, (None,))
    out = gc.unsorted_segment_sum(d, s, 3)
    data = np.arange(8.0).reshape(4, 2)
    ref, got, _, _ = _run([out], [d, s], [data, np.array([-1, 2, -5, 2], np.int32)])
    assert_close(got, ref)
    np.testing.assert_array_equal(got[0], [[0, 0], [0, 0], [8, 10]])


def test_scatter_loops_are_sequential_and_not_vectorised():
    d = gc.placeholder(gc.float32, (5, 4))
    s = gc.placeholder(gc.int32, (5,))
    out = gc.unsorted_segment_sum(d, s, 3)
    _, _, kp = compile_kernels([out], [d, s])
    (kernel,) = kp.kernels
    zero, scatter = kernel.body
    assert isinstance(zero, Loop) and zero.parallel
    assert isinstance(scatter, Loop) and not scatter.parallel
    assert not interp._vectorisable(scatter, set())
    # the row loop inside touches distinct elements: vectorisable
    (inner,) = [s for s in scatter.body if isinstance(s, If)][-1].then
    assert isinstance(inner, Loop) and interp._vectorisable(inner, set())


def test_dynamic_gradient_shape_mismatch_is_an_error_before_running():
    g = gc.placeholder(gc.float32, (None, None))
    x = gc.placeholder(gc.float32, (None, None))
    key = (("slice", 1, None, None),)
    out = apply1("StridedSliceGrad", [g, x], {"key": key})
    prog, _, kp = compile_kernels([out], [g, x])
    bad = [np.ones((3, 4), np.float32), np.ones((3, 4), np.float32)]
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        interp.run(kp, RunContext({}, {}, bad))
    ok = [np.ones((2, 4), np.float32), np.ones((3, 4), np.float32)]
    (res,) = interp.run(kp, RunContext({}, {}, ok))
    np.testing.assert_array_equal(res, np.r_[np.zeros((1, 4)), np.ones((2, 4))])


def test_slice_gradient_fuses_with_its_producer():
    x = gc.placeholder(gc.float32, (6, 5))
    y = gc.tanh(x)[1:5:2, ::-1]
    (dx,) = gc.gradients(gc.reduce_sum(y * y), [x])
    prog, plan, kp = compile_kernels([dx], [x])
    types = [k.op_types for k in kp.kernels]
    assert any("StridedSliceGrad" in t and len(t) > 1 for t in types), types
    xs = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
    ref, got, _, _ = run_both(prog, kp, [xs])
    assert_close(got, ref, 1e-5, 1e-6)


@pytest.mark.parametrize("fusion", [True, False])
def test_sum_to_shape_of_a_size_one_gradient_to_an_unknown_dim(fusion):
    from graphc.ops.elementwise import sum_to_shape

    g = gc.placeholder(gc.float64, (1,))
    like = gc.placeholder(gc.float64, (None,))
    out = -sum_to_shape(-g, like)
    prog, _, kp = compile_kernels([out], [g, like], fusion)
    ref, got, _, _ = run_both(prog, kp, [np.array([2.5]), np.zeros(1)])
    assert_close(got, ref)
    with pytest.raises(InvalidArgumentError, match="SumToShape"):
        interp.run(kp, RunContext({}, {}, [np.array([2.5]), np.zeros(3)]))


@pytest.mark.parametrize(
    "shapes",
    [
        ((4, 3, 5), (4, 3, 5)),
        ((4, 3, 5), (1, 3, 5)),
        ((1, 3, 5), (4, 3, 5)),
        ((4, 1, 5), (4, 3, 1)),
    ],  # fmt: skip
    ids=["same", "y-broadcast", "out-broadcast", "both"],
)
def test_sum_to_shape_of_two_unknown_batches_copies_when_the_shapes_agree(shapes):
    """The gradient of ``out - y`` for two placeholders with ``None`` dims: the compiler
    cannot prove the shapes equal, so its SumToShape kernel has a flat copy loop that the
    run time's dims enable when they agree (it vectorises) and the generic sum for the
    others; each gives the reference's values."""
    x = gc.placeholder(gc.float64, (None, None, 5))
    y = gc.placeholder(gc.float64, (None, 3, None))
    loss = gc.reduce_sum(gc.square(x * 2.0 - y))
    (gx,) = gc.gradients(loss, [x])
    prog, _, kp = compile_kernels([gx], [x, y])
    (kernel,) = [k for k in kp.kernels if k.op_types == ("SumToShape",)]
    loops = [s for s in kernel.body if isinstance(s, Loop)]
    assert len(loops) == 2 and all(lp.parallel for lp in loops)
    copy = loops[0]
    assert len(copy.body) == 2 and not any(isinstance(s, Loop) for s in copy.body)
    rng = np.random.default_rng(5)
    xs, ys = (rng.standard_normal(s) for s in shapes)
    ref, got, _, _ = run_both(prog, kp, [xs, ys])
    assert_close(got, ref)
    d = 2.0 * xs - ys
    want = 4.0 * d
    want = want.sum(axis=tuple(i for i, n in enumerate(xs.shape) if n == 1 != d.shape[i]),
                    keepdims=True)  # fmt: skip
    assert_close(got[0], want)
    with gc.Session(target="cpu") as sess:
        assert_close(sess.run(gx, {x: xs, y: ys}), want)
