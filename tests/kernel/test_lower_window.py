"""Channel-innermost window lowerings (graphc/kernel/lower_window.py): pools, their gradients
and col2im equal the reference on odd shapes, strides, paddings, ties and float64, through
the Kernel IR interpreter and the cpu target, and so does the tap-loop fallback of
lower_nn.py; structure: a flat parallel pixel loop around one vectorisable channel loop."""

import numpy as np
import pytest

import graphc as gc
from graphc.expr import i64
from graphc.kernel import interp, lower_window
from graphc.kernel.ir import If, LibCall, Loop
from graphc.runtime_state import RunContext
from tests.kernel.helpers import assert_close, compile_kernels
from tests.oracle import run

POOLS = [((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), "SAME"), ((3, 2), (1, 2), "SAME"),
         ((2, 3), (3, 1), "VALID"), ((2, 2), (3, 3), "VALID"), ((1, 1), (2, 2), "SAME"),
         ((4, 3), (2, 3), "SAME"), ((2, 2), (2, 2), "SAME"), ((3, 3), (3, 3), "SAME"),
         ((1, 1), (1, 1), "VALID"), ((1, 2), (1, 2), "VALID")]  # fmt: skip
CONVS = [((3, 3), 1, "SAME", 1), ((2, 3), 2, "SAME", 1), ((3, 2), (2, 1), "VALID", 1),
         ((3, 3), 1, "SAME", 2), ((1, 1), 2, "VALID", 1), ((5, 4), (3, 2), "SAME", 1)]  # fmt: skip


def _pool_graph(k, s, padding, dt, shape):
    """Max and avg pool, their gradients (MaxPoolGrad, AvgPoolGrad) and MaxPoolGradGrad."""
    x = gc.placeholder(dt, shape, name="x")
    mx = gc.nn.max_pool2d(x, k, s, padding)
    av = gc.nn.avg_pool2d(x, k, s, padding)
    v = gc.constant(np.linspace(-1.0, 2.0, int(np.prod(mx.shape))).reshape(mx.shape), dt)
    (gm,) = gc.gradients(gc.reduce_sum(mx * v), [x])
    (ga,) = gc.gradients(gc.reduce_sum(av * v), [x])
    w = gc.constant(np.linspace(0.5, -1.5, int(np.prod(shape))).reshape(shape), dt)
    (gg,) = gc.gradients(gc.reduce_sum(gm * w), [v])  # MaxPoolGradGrad
    return [x], [mx, av, gm, ga, gg]


def _conv_graph(k, s, padding, dil, dt, shape):
    """Conv2D and both its gradients (Conv2DBackpropInput via dx)."""
    x = gc.placeholder(dt, shape, name="x")
    f = gc.placeholder(dt, (*k, shape[3], 4), name="f")
    y = gc.nn.conv2d(x, f, s, padding, dilations=dil)
    v = gc.constant(np.linspace(-1.0, 2.0, int(np.prod(y.shape))).reshape(y.shape), dt)
    dx, df = gc.gradients(gc.reduce_sum(y * v), [x, f])
    return [x, f], [y, dx, df]


def _ties(rng, shape, dt):
    """Small integers: many equal maxima, so 'first maximum wins' matters."""
    return rng.integers(-2, 3, shape).astype(dt)


def _check_all(g, phs, outs, arrays, tol):
    want = run(g, outs, dict(zip(phs, arrays)))
    for fusion in (True, False):
        _, _, kp = compile_kernels(outs, phs, fusion)
        got = interp.run(kp, RunContext({}, {}, list(arrays)))
        assert_close(got, want, tol, tol)
        opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
        with gc.Session(graph=g, options=opts) as sess:
            assert_close(sess.run(outs, dict(zip(phs, arrays))), want, tol, tol)


def _tol(dt):
    return 1e-12 if dt == np.float64 else 2e-5


@pytest.mark.parametrize("unrolled", [True, False], ids=["unrolled", "tap_loops"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,padding", POOLS)
def test_pools_and_gradients_match_reference(monkeypatch, rng, k, s, padding, dt, unrolled):
    if not unrolled:
        monkeypatch.setattr(lower_window, "MAX_TAPS", 0)
    g = gc.Graph()
    with g.as_default():
        phs, outs = _pool_graph(k, s, padding, dt, (2, 7, 5, 3))
    _check_all(g, phs, outs, [_ties(rng, (2, 7, 5, 3), dt)], _tol(dt))


@pytest.mark.parametrize("unrolled", [True, False], ids=["unrolled", "tap_loops"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,padding,dil", CONVS)
def test_conv_backprop_input_matches_reference(monkeypatch, rng, k, s, padding, dil, dt, unrolled):
    if not unrolled:
        monkeypatch.setattr(lower_window, "MAX_TAPS", 0)
    g = gc.Graph()
    with g.as_default():
        phs, outs = _conv_graph(k, s, padding, dil, dt, (2, 7, 6, 3))
    arrays = [rng.standard_normal((2, 7, 6, 3)).astype(dt),
              rng.standard_normal((*k, 3, 4)).astype(dt)]  # fmt: skip
    _check_all(g, phs, outs, arrays, 1e-10 if dt == np.float64 else 1e-4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf in the summed loss
@pytest.mark.parametrize("unrolled", [True, False], ids=["unrolled", "tap_loops"])
def test_max_pool_with_infinite_and_nan_inputs_matches_reference(monkeypatch, unrolled):
    """As the reference's argmax over the -inf padded window: an all -inf window routes its
    gradient to tap 0 (lost when that tap is padding); the first NaN wins."""
    if not unrolled:
        monkeypatch.setattr(lower_window, "MAX_TAPS", 0)
    shape = (1, 5, 6, 3)
    xv = np.full(shape, -np.inf, np.float32)
    xv[0, 3:, 4:, :] = 1.0
    xv[0, 0, 0, 1] = np.inf
    xv[0, 1, 1:3, 2] = np.nan
    xv[0, 2, 0, 2] = 7.0
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, shape, name="x")
        y = gc.nn.max_pool2d(x, 3, 2, "SAME")
        v = gc.constant(np.arange(1.0, 1.0 + np.prod(y.shape)).reshape(y.shape), gc.float32)
        (gx,) = gc.gradients(gc.reduce_sum(y * v), [x])
        d = gc.constant(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1)
        (gd,) = gc.gradients(gc.reduce_sum(gx * d), [v])  # MaxPoolGradGrad(x, d)
    _check_all(g, [x], [y, gx, gd], [xv], 0.0)


def test_unknown_image_and_channel_sizes_share_one_program(rng):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, None, None, None), name="x")
        mx = gc.nn.max_pool2d(x, (3, 2), (2, 1), "SAME")
        av = gc.nn.avg_pool2d(x, (3, 2), (2, 1), "SAME")
        (gm,) = gc.gradients(gc.reduce_sum(mx * mx), [x])
        (ga,) = gc.gradients(gc.reduce_sum(av * av), [x])
        (gg,) = gc.gradients(gc.reduce_sum(gm * gm), [x])  # through MaxPoolGradGrad
        phs, outs = [x], [mx, av, gm, ga, gg]
    assert "MaxPoolGradGrad" in {op.type for op in g.get_operations()}
    _, _, kp = compile_kernels(outs, phs)
    with gc.Session(graph=g) as sess:
        for shape in [(2, 7, 5, 3), (1, 4, 9, 1), (0, 3, 3, 2)]:
            xv = _ties(rng, shape, np.float32)
            want = run(g, outs, {phs[0]: xv})
            assert_close(interp.run(kp, RunContext({}, {}, [xv])), want, 2e-5, 2e-5)
            assert_close(sess.run(outs, {phs[0]: xv}), want, 2e-5, 2e-5)
        assert sess.cache_info()["compiles"] == 1


# -- structure ---------------------------------------------------------------------------------


def _loops(body):
    return [s for s in body if isinstance(s, Loop)]


def _kernels_of(kp, op):
    return [k for k in kp.kernels if op in k.op_types]


@pytest.mark.parametrize("op", ["MaxPool", "AvgPool", "MaxPoolGrad", "AvgPoolGrad",
                                "MaxPoolGradGrad", "Conv2D", "Conv2DBackpropInput",
                                "Conv2DBackpropFilter"])  # fmt: skip
def test_channel_loop_is_innermost_and_vectorisable(op):
    phs, outs = (_conv_graph((3, 3), 1, "SAME", 1, gc.float32, (2, 6, 6, 8)) if op.startswith(
        "Conv") else _pool_graph((2, 2), (2, 2), "VALID", gc.float32, (2, 6, 6, 8)))  # fmt: skip
    _, _, kp = compile_kernels(outs, phs, fusion=False)
    (kernel,) = _kernels_of(kp, op)
    pixel_loops = _loops(kernel.body)
    assert pixel_loops
    for pixels in pixel_loops:
        assert pixels.parallel
        channel_loops = _loops(_flat_ifs(pixels.body))
        assert channel_loops
        for channels in channel_loops:
            assert channels.stop == i64(8)
            assert not _loops(channels.body), "taps are unrolled, not looped inside the channels"
            assert interp._vectorisable(channels, set())
    # disjoint windows: MaxPoolGrad is one pass over the windows, no argmax buffer
    assert len(pixel_loops) == (1 if op == "MaxPoolGrad" else len(pixel_loops))
    assert not any(b.startswith("argtap") for b in kp.buffers)


def test_overlapping_max_pool_grad_is_two_gather_passes():
    phs, outs = _pool_graph((3, 3), (2, 2), "SAME", gc.float32, (2, 6, 6, 8))
    _, _, kp = compile_kernels(outs, phs, fusion=False)
    (kernel,) = _kernels_of(kp, "MaxPoolGrad")
    assert len(_loops(kernel.body)) == 2  # argmax taps, then the gather
    assert any(b.startswith("argtap") for b in kernel.writes)


def _flat_ifs(body):
    out = []
    for s in body:
        out.extend(_flat_ifs(s.then) if isinstance(s, If) else [s])
    return out


def test_large_or_unknown_windows_keep_tap_loops():
    """Over MAX_TAPS taps, or a filter of unknown size: tap loops inside the element loop
    (batch 2: a parallel nest gives a batch of 1 no loop)."""
    x = gc.placeholder(gc.float32, (2, 12, 12, 2))
    big = lower_window.MAX_TAPS + 1
    y = gc.nn.max_pool2d(x, (big, 1), 1, "SAME")
    f = gc.placeholder(gc.float32, (None, None, 2, 3))
    z = gc.nn.conv2d(x, f, 1, "SAME")
    (dx,) = gc.gradients(gc.reduce_sum(z), [x])
    _, _, kp = compile_kernels([y, z, dx], [x, f], fusion=False)
    for op in ("MaxPool", "Conv2DBackpropInput", "Conv2D"):
        (kernel,) = _kernels_of(kp, op)
        (outer,) = _loops(kernel.body)
        depth, body = 1, outer.body
        while _loops(body):
            depth, body = depth + 1, _loops(body)[0].body
        assert depth == 6, f"{op}: 4 element loops + 2 tap loops, got {depth}"


@pytest.mark.parametrize("c,direct", [(1, True), (3, True), (4, False)])
def test_short_convolutions_are_direct_loops(c, direct):
    """KH*KW*C <= DIRECT_MAX_K (first layers): no im2col buffer and no GEMM; longer: GEMM."""
    x = gc.placeholder(gc.float32, (2, 9, 7, c))
    f = gc.placeholder(gc.float32, (3, 3, c, 16))
    y = gc.nn.relu(gc.nn.conv2d(x, f, 1, "SAME"))
    (df,) = gc.gradients(gc.reduce_sum(y), [f])
    _, _, kp = compile_kernels([y, df], [x, f], fusion=True)
    for op in ("Conv2D", "Conv2DBackpropFilter"):
        (kernel,) = _kernels_of(kp, op)
        calls = [s for s in kernel.body if isinstance(s, LibCall)]
        assert bool(calls) != direct
        assert any(b.startswith("col") for b in kernel.writes) != direct
    if direct:
        (kernel,) = _kernels_of(kp, "Conv2D")
        (pixels, *_) = _loops(kernel.body)
        (outs,) = _loops(pixels.body)
        assert outs.stop == i64(16) and interp._vectorisable(outs, set())
        # filter gradient: per-image partial sums over the pixels, then a sum over the batch
        (kernel,) = _kernels_of(kp, "Conv2DBackpropFilter")
        images, total = _loops(kernel.body)
        assert images.parallel and images.stop == i64(2) and total.parallel
