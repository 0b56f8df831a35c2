"""TF1 semantics of elementwise ops and reductions that differed from TF or between targets
(issue 13): where (rows; coordinates), argmax/argmin with NaN, reduce_prod's gradient with
zeros, integer reduce_mean over an empty axis, float -> int casts out of range, and empty
max / min / logsumexp / softmax.

Each case runs on target="reference" and target="cpu" (fused and unfused), which must give
the same result (the expected value is written out, as TF1 defines it where it does).
"""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Example
from tests.ops.test_gradients_registry import check_gradients

TARGETS = [("reference", None), ("cpu", True), ("cpu", False)]


@pytest.fixture(autouse=True)
def _fresh_graph():
    gc.reset_default_graph()
    yield


def _run_all(fetches, feeds=None, host_ops=()):
    """Results of ``fetches`` on every target: [(label, values)]; the cpu target may run
    only ``host_ops`` on the host fallback (and must label them)."""
    feeds = feeds or {}
    out = []
    for target, fusion in TARGETS:
        opts = None if fusion is None else gc.CompileOptions(fusion=fusion, cache_dir=None)
        with gc.Session(target=target, options=opts) as sess:
            got = sess.run(fetches, feeds)
            if target == "cpu":
                exe = sess.compile(fetches, list(feeds))
                assert sorted(exe.stats.get("host_fallback_ops", [])) == sorted(host_ops)
                hosted = [k.name for k in exe.kernels if k.name.startswith("host_fallback:")]
                assert len(hosted) >= len(host_ops)
        out.append((f"{target}-fusion={fusion}", got))
    return out


def _check(fetches, feeds, expected, host_ops=()):
    for label, got in _run_all(fetches, feeds, host_ops):
        for g, want in zip(got, expected):
            g, want = np.asarray(g), np.asarray(want)
            assert g.dtype == want.dtype, f"{label}: dtype {g.dtype}, expected {want.dtype}"
            assert g.shape == want.shape, f"{label}: shape {g.shape}, expected {want.shape}"
            np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-7, err_msg=label)


# -- 1. where -------------------------------------------------------------------------------


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_where_with_a_rank1_condition_selects_rows(rng, dynamic):
    c_val = np.array([True, False, True])
    x_val = rng.normal(size=(3, 5)).astype(np.float32)
    y_val = rng.normal(size=(3, 5)).astype(np.float32)
    c = gc.placeholder(gc.bool, (None,) if dynamic else (3,))
    x = gc.placeholder(gc.float32, (None, 5) if dynamic else (3, 5))
    y = gc.placeholder(gc.float32, (None, None) if dynamic else (3, 5))
    out = gc.where(c, x, y)
    assert out.shape == ((None, 5) if dynamic else (3, 5))
    want = np.where(c_val[:, None], x_val, y_val)
    assert (want[0] == x_val[0]).all() and (want[1] == y_val[1]).all()
    _check([out], {c: c_val, x: x_val, y: y_val}, [want])


def test_where_rows_of_rank3_values_and_their_gradients(rng):
    c_val = np.array([False, True])
    x_val = rng.normal(size=(2, 3, 4))
    y_val = rng.normal(size=(2, 3, 4))
    c = gc.placeholder(gc.bool, (2,))
    x = gc.placeholder(gc.float64, (2, 3, 4))
    y = gc.placeholder(gc.float64, (2, 3, 4))
    out = gc.where(c, x, y)
    gx, gy = gc.gradients(gc.reduce_sum(out * 3.0), [x, y])
    mask = np.broadcast_to(c_val[:, None, None], (2, 3, 4))
    want = [np.where(mask, x_val, y_val), np.where(mask, 3.0, 0.0), np.where(mask, 0.0, 3.0)]
    _check([out, gx, gy], {c: c_val, x: x_val, y: y_val}, want)


def test_where_rank1_condition_and_rank1_values_stays_elementwise():
    c = gc.constant([True, False, True])
    out = gc.where(c, gc.constant([1.0, 2.0, 3.0]), gc.constant([-1.0, -2.0, -3.0]))
    _check([out], {}, [np.array([1.0, -2.0, 3.0], np.float32)])


def test_where_same_shape_and_scalar_conditions_stay_elementwise(rng):
    c_val = rng.random((3, 4)) > 0.5
    x_val = rng.normal(size=(3, 4)).astype(np.float32)
    c = gc.placeholder(gc.bool, (3, 4))
    x = gc.placeholder(gc.float32, (3, 4))
    s = gc.placeholder(gc.bool, ())
    same = gc.where(c, x, -x)
    scalar = gc.where(s, x, 2 * x)
    want = [np.where(c_val, x_val, -x_val), 2 * x_val]
    _check([same, scalar], {c: c_val, x: x_val, s: False}, want)


def test_where_rank1_condition_must_match_the_first_dim():
    with pytest.raises(ValueError, match="first dimension"):
        gc.where(gc.constant([True, False]), gc.zeros((3, 5)), gc.ones((3, 5)))
    # numpy would broadcast a (5,) condition along the columns of (3, 5): TF1 refuses it
    with pytest.raises(ValueError, match="first dimension"):
        gc.where(gc.constant([True] * 5), gc.zeros((3, 5)), gc.ones((3, 5)))
    with pytest.raises(ValueError, match="both"):
        gc.where(gc.constant([True]), gc.zeros((1,)))


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_where_with_one_argument_gives_coordinates(dynamic):
    c_val = np.array([[True, False, True], [False, False, True]])
    c = gc.placeholder(gc.bool, (None, None) if dynamic else (2, 3))
    coords = gc.where(c)
    assert coords.dtype == gc.int64 and coords.shape == (None, 2)
    # the coordinates feed compiled kernels after the host step
    total = gc.reduce_sum(coords, axis=0) * 2
    want = [np.array([[0, 0], [0, 2], [1, 2]], np.int64), np.array([2, 8], np.int64)]
    _check([coords, total], {c: c_val}, want, host_ops=["Where"])


def test_where_with_one_argument_numeric_empty_and_rank1():
    x = gc.placeholder(gc.float32, (None,))
    z = gc.placeholder(gc.int32, (None, 2))
    fetches = [gc.where(x), gc.where(z)]
    feeds = {x: np.array([0.0, 1.5, 0.0, np.nan, -2.0], np.float32), z: np.zeros((3, 2), np.int32)}
    want = [np.array([[1], [3], [4]], np.int64), np.zeros((0, 2), np.int64)]
    _check(fetches, feeds, want, host_ops=["Where"])


def test_where_coordinates_index_gather_nd(rng):
    x_val = rng.normal(size=(4, 3)).astype(np.float32)
    x = gc.placeholder(gc.float32, (None, 3))
    picked = gc.gather_nd(x, gc.where(x > 0))
    _check([picked], {x: x_val}, [x_val[x_val > 0]], host_ops=["Where"])


# -- 2. argmax / argmin with NaN ---------------------------------------------------------------


def test_argmax_argmin_return_the_first_nan():
    x = gc.placeholder(gc.float32, (None,))
    m = gc.placeholder(gc.float64, (3, 4))
    nan = np.nan
    m_val = np.array([[1.0, nan, 3.0, nan], [-np.inf, 2.0, 2.0, -1.0], [nan, 5.0, -5.0, 0.0]])
    fetches = [gc.argmax(x), gc.argmin(x), gc.argmax(x * 2.0), gc.argmax(m, axis=1),
               gc.argmin(m, axis=1), gc.argmax(m, 0), gc.argmin(m, 0)]  # fmt: skip
    feeds = {x: np.array([1.0, nan, 3.0], np.float32), m: m_val}
    i64 = np.int64
    want = [i64(1), i64(1), i64(1), np.array([1, 1, 0]), np.array([1, 0, 0]),
            np.array([2, 0, 0, 0]), np.array([2, 0, 2, 0])]  # fmt: skip
    _check(fetches, feeds, want)
    assert "NaN" in gc.argmax.__doc__ and "NaN" in gc.argmin.__doc__


# -- 3. reduce_prod's gradient with zeros --------------------------------------------------------


def test_reduce_prod_gradient_with_zeros_is_finite_and_exact():
    x_val = np.array([[1.5, 0.0, -2.0, 0.5], [0.0, 0.0, 3.0, 1.0], [0.7, 1.2, -0.9, 1.1]])
    x = gc.placeholder(gc.float64, (None, 4))
    (g1,) = gc.gradients(gc.reduce_prod(x, axis=1), [x])
    (g_all,) = gc.gradients(gc.reduce_prod(x[2:]), [x])
    prods = np.array([np.prod(np.delete(r, i)) for r in x_val for i in range(4)]).reshape(3, 4)
    all_grad = np.zeros_like(x_val)
    all_grad[2] = prods[2]
    want = [prods, all_grad]
    assert prods[0, 1] == 1.5 * -2.0 * 0.5 and (prods[1] == 0).all()
    _check([g1, g_all], {x: x_val}, want)


@pytest.mark.parametrize("axis", [0, 1, None])
def test_reduce_prod_gradient_with_zeros_matches_central_differences(axis):
    x_val = np.array([[1.5, 0.0, -2.0], [0.0, 0.0, 3.0], [0.7, 1.2, 0.0], [0.3, -1.1, 0.9]])
    check_gradients(Example(lambda t: gc.reduce_prod(t, axis=axis), [x_val]))


@pytest.mark.parametrize("axis", [1, None])
def test_reduce_prod_second_derivatives_with_zeros_are_exact(axis):
    """Rows with no, one, two and three zeros: the gradient of the gradient is exact too."""
    x_val = np.array([[1.5, 0.4, -2.0, 0.5], [0.0, 1.1, 3.0, 0.6], [0.7, 0.0, 0.0, 0.9],
                      [0.0, 0.0, 0.0, 1.3]])  # fmt: skip
    if axis is None:
        x_val = x_val[:2]  # one zero in all

    def grad(t):
        return gc.gradients(gc.reduce_prod(t, axis=axis), [t])[0]

    check_gradients(Example(grad, [x_val]))


# -- 4. integer reduce_mean over an empty axis ---------------------------------------------------


def test_integer_reduce_mean_of_an_empty_axis_is_zero():
    i = gc.placeholder(gc.int32, (None, None))
    f = gc.placeholder(gc.float32, (None, None))
    s = gc.placeholder(gc.int64, (None, None))
    fetches = [gc.reduce_mean(i, axis=1), gc.reduce_mean(i, axis=0), gc.reduce_mean(i),
               gc.reduce_mean(f, axis=1), gc.reduce_mean(s, axis=1)]  # fmt: skip
    feeds = {i: np.zeros((2, 0), np.int32), f: np.zeros((2, 0), np.float32),
             s: np.array([[-3, 0], [7, 2]], np.int64)}  # fmt: skip
    want = [np.zeros(2, np.int32), np.zeros(0, np.int32), np.int32(0),
            np.full(2, np.nan, np.float32), np.array([-1, 4], np.int64)]  # fmt: skip
    _check(fetches, feeds, want)


# -- 5. float -> int casts: saturating, NaN -> 0 -------------------------------------------------

EDGES = [np.nan, np.inf, -np.inf, 3e9, -3e9, 1e19, -1e19, 1e30, -1e30, 2.7, -2.7, -0.5,
         2147483520.0, -2147483648.0]  # fmt: skip
I32 = np.iinfo(np.int32)
I64 = np.iinfo(np.int64)
WANT32 = [0, I32.max, I32.min, I32.max, I32.min, I32.max, I32.min, I32.max, I32.min, 2, -2, 0,
          2147483520, I32.min]  # fmt: skip
WANT64 = [0, I64.max, I64.min, 3000000000, -3000000000, I64.max, I64.min, I64.max, I64.min,
          2, -2, 0, 2147483520, -2147483648]  # fmt: skip


def _saturate(v: float, info) -> int:
    if np.isnan(v):
        return 0
    if np.isinf(v):
        return int(info.max) if v > 0 else int(info.min)
    return min(max(int(np.trunc(v)), int(info.min)), int(info.max))


@pytest.mark.parametrize("src", [np.float16, np.float32, np.float64])
def test_float_to_int_casts_saturate_and_send_nan_to_zero(src):
    with np.errstate(over="ignore"):
        x_val = np.array(EDGES, np.float64).astype(src)
    x = gc.placeholder(gc.as_dtype(src), (None,))
    fetches = [gc.cast(x, gc.int32), gc.cast(x, gc.int64), gc.cast(x * 1, gc.int32)]
    # what the value became in src (float16: 3e9 is inf; 2147483520 rounds)
    want = [np.array([_saturate(v, info) for v in x_val.astype(np.float64)], info.dtype)
            for info in (I32, I64, I32)]  # fmt: skip
    if src == np.float64:
        np.testing.assert_array_equal(want[0], np.array(WANT32, np.int32))
        np.testing.assert_array_equal(want[1], np.array(WANT64, np.int64))
    _check(fetches, {x: x_val}, want)


def test_cuda_renders_the_saturating_cast():
    from graphc.backends.cuda.mathtable import render_cast

    assert render_cast("v", gc.float32, gc.int32) == "gc_f2i<int, float>(v)"
    assert render_cast("v", gc.float64, gc.int64) == "gc_f2i<gc_i64, double>(v)"
    assert render_cast("v", gc.float16, gc.int32) == "gc_f2i<int, float>(v)"
    assert render_cast("v", gc.int64, gc.int32) == "((int)(v))"


def test_cuda_kernel_of_a_cast_uses_the_saturating_helper():
    from graphc.kernel.lower import lower
    from graphc.passes.fusion import fuse
    from graphc.program import extract
    from tests.backends.cuda_programs import render_program

    x = gc.placeholder(gc.float32, (None,))
    y = gc.cast(x * 2.0, gc.int64)
    prog = extract([y], [], [x])
    kp = lower(prog, fuse(prog, gc.CompileOptions(cache_dir=None)))
    body = render_program(kp).body
    assert "gc_f2i<gc_i64, float>(" in body


# -- 6. empty max / min / logsumexp / softmax ----------------------------------------------------


def test_empty_reductions_give_tf_identities():
    f = gc.placeholder(gc.float32, (None, None))
    i = gc.placeholder(gc.int32, (None, None))
    j = gc.placeholder(gc.int64, (None, 3))
    fetches = [
        gc.reduce_max(f, axis=1), gc.reduce_min(f, axis=1), gc.reduce_logsumexp(f, axis=1),
        gc.reduce_max(f), gc.reduce_min(f), gc.reduce_logsumexp(f),
        gc.nn.softmax(f), gc.nn.log_softmax(f),
        gc.reduce_max(i, axis=1), gc.reduce_min(i, axis=1),
        gc.reduce_max(j, axis=0), gc.reduce_min(j, axis=0),
    ]  # fmt: skip
    feeds = {f: np.zeros((2, 0), np.float32), i: np.zeros((2, 0), np.int32),
             j: np.zeros((0, 3), np.int64)}  # fmt: skip
    inf = np.float32(np.inf)
    want = [
        np.full(2, -inf), np.full(2, inf), np.full(2, -inf),
        -inf, inf, -inf,
        np.zeros((2, 0), np.float32), np.zeros((2, 0), np.float32),
        np.full(2, I32.min, np.int32), np.full(2, I32.max, np.int32),
        np.full(3, I64.min), np.full(3, I64.max),
    ]  # fmt: skip
    _check(fetches, feeds, want)
