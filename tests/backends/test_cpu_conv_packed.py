"""The cpu target's packed-filter convolution (``conv_packed``: graphc/kernel/conv_packed.py,
graphc/backends/llvm/packedgemm.py): a Conv2D with constant float32 filters runs as an
implicit GEMM over the NHWC input with the filters packed at compile time (a variable's or
a fed tensor's, of a static shape: at every run, by a loop before the kernel).

Checked: the kernel alone against numpy over many shapes (output channels around each panel
width, pixel counts off the tile, taps in the padding, strides, dilations, tasks of any
size; an NHWC input and an NCHW one; a batch of products, ``gemm_packed``'s items); the
whole convolution through the API against the reference interpreter (SAME, VALID,
explicit padding, a run-time batch, 1-3 threads, an epilogue fused per task or not); the
Kernel IR interpreter's reading of the LibCall; which convolutions take it."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import jit, packedgemm
from graphc.backends.llvm.epilogue import ROW_EPILOGUES, plan_row_epilogues
from graphc.backends.reference.interpreter import run_program
from graphc.kernel import conv_packed, interp, lower_nn
from graphc.kernel.lower import lower
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract
from graphc.runtime_state import RunContext


class _Args(ctypes.Structure):
    _fields_ = [(f, ctypes.c_void_p if f in packedgemm.POINTER_FIELDS else ctypes.c_int64)
                for f in packedgemm.FIELDS]  # fmt: skip


def _conv_ref(x, f, s, pads, d):
    """NHWC x HWIO -> NHWC in float64, zero padding (top, bottom, left, right)."""
    n, h, w, c = x.shape
    kh, kw, _, o = f.shape
    pt, pb, pl, pr = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (h + pt + pb - (kh - 1) * d - 1) // s + 1
    ow = (w + pl + pr - (kw - 1) * d - 1) // s + 1
    out = np.zeros((n, oh, ow, o))
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, i * d : i * d + s * (oh - 1) + 1 : s, j * d : j * d + s * (ow - 1) + 1 : s]
            out += tap @ f[i, j].astype(np.float64)
    return out


_LOADED: dict = {}


def _kernel_fn(nv, nchw=False):
    """The kernel for panels of ``nv`` vectors, compiled alone (``kernels_ir``); ``nchw``:
    the one reading an NCHW input."""
    if nchw not in _LOADED:
        obj, _, _ = jit.compile_module(packedgemm.kernels_ir(nchw=nchw), opt_level=2)
        _LOADED[nchw] = jit.LoadedObject(obj)
    addr = _LOADED[nchw].address(packedgemm.symbol(nv, (), nchw))
    return ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(addr)


def _kernel_call(x, f, s, pads, d, rows, panels=1000, ldc=None, oc=0, nchw=False):
    """Run the kernel directly: every task of a block of about ``rows`` pixels (whole tiles;
    some blocks empty when there are more blocks than tiles) by ``panels`` panels; output
    rows ``ldc`` floats apart (default o) from float ``oc`` of the output buffer, whose other
    floats must stay untouched. ``nchw``: the kernel reading ``x`` (NHWC) laid out NCHW, with
    NaNs before and after it (a read outside it would show in the result)."""
    n, h, w, c = x.shape
    kh, kw, _, o = f.shape
    nv = conv_packed.panel_vectors(o)
    wp = conv_packed.pack_filters(f, nv)
    assert wp.size == conv_packed.packed_size(kh, kw, c, o, nv)
    pt, pb, pl, pr = pads
    oh = (h + pt + pb - (kh - 1) * d - 1) // s + 1
    ow = (w + pl + pr - (kw - 1) * d - 1) // s + 1
    m = n * oh * ow
    ldc = o if ldc is None else ldc
    out = np.full(oc + m * ldc + 7, np.nan, np.float32)  # canaries around the rows
    row_blocks = -(-m // rows)  # blocks of whole tiles: [i * T / R, (i + 1) * T / R)
    first = out.ctypes.data + 4 * oc
    if nchw:
        xin = np.full(x.size + 64, np.nan, np.float32)
        xin[32:-32] = x.transpose(0, 3, 1, 2).ravel()
        x = xin[32:]
    args = _Args(m, o, c, h, w, oh, ow, kh, kw, s, s, d, d, pt, pl, ldc, x.ctypes.data,
                 wp.ctypes.data, first, row_blocks, panels, None, None)  # fmt: skip
    fn = _kernel_fn(nv, nchw)
    nblk = -(-o // (nv * conv_packed.LANES))
    groups = -(-nblk // panels)
    fn(ctypes.byref(args), 0, row_blocks * groups)
    rows = out[oc : oc + m * ldc].reshape(m, ldc)
    assert np.isnan(out[:oc]).all() and np.isnan(out[oc + m * ldc :]).all()
    assert np.isnan(rows[:, o:]).all()  # nothing written outside the rows' o floats
    return rows[:, :o].reshape(n, oh, ow, o)


@pytest.mark.parametrize("o", [1, 15, 16, 17, 32, 33, 47, 48, 49, 64, 65, 130, 300])
def test_kernel_equals_numpy_over_output_channels(o):
    rng = np.random.default_rng(o)
    x = rng.standard_normal((2, 5, 7, 4)).astype(np.float32)
    f = rng.standard_normal((3, 3, 4, o)).astype(np.float32)
    # 70 pixels: ragged tasks and tiles
    got = _kernel_call(x, f, 1, (1, 1, 1, 1), 1, rows=13, nchw=o % 2 == 1)
    np.testing.assert_allclose(got, _conv_ref(x, f, 1, (1, 1, 1, 1), 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "xs,fs,s,pads,d,rows",
    [
        ((1, 9, 9, 3), (7, 7, 3, 64), 2, (3, 3, 3, 3), 1, 1000),  # first layer of ResNet-50
        ((1, 8, 8, 16), (1, 1, 16, 24), 2, (0, 0, 0, 0), 1, 5),  # 1x1, stride 2
        ((1, 7, 7, 12), (3, 3, 12, 300), 1, (1, 1, 1, 1), 1, 49),  # 5 panels
        ((3, 6, 5, 5), (3, 2, 5, 20), 1, (2, 0, 0, 1), 2, 7),  # asymmetric padding, dilation
        ((1, 3, 3, 8), (3, 3, 8, 70), 1, (2, 2, 2, 2), 1, 6),  # taps mostly in the padding
        ((2, 4, 4, 6), (4, 4, 6, 10), 1, (0, 0, 0, 0), 1, 1),  # one pixel per task
    ],
)
@pytest.mark.parametrize("panels", [1000, 1, 2])
@pytest.mark.parametrize("nchw", [False, True])
def test_kernel_geometry_equals_numpy(xs, fs, s, pads, d, rows, panels, nchw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    f = rng.standard_normal(fs).astype(np.float32)
    got = _kernel_call(x, f, s, pads, d, rows, panels, nchw=nchw)
    np.testing.assert_allclose(got, _conv_ref(x, f, s, pads, d), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("o,ldc,oc", [(64, 128, 64), (64, 128, 0), (20, 45, 7), (130, 260, 130)])
@pytest.mark.parametrize("panels", [1000, 1])
def test_kernel_writes_rows_ldc_apart(o, ldc, oc, panels):
    """A concat's piece in place (``concat_store``): rows ``ldc`` floats apart from ``oc``."""
    rng = np.random.default_rng(o + ldc)
    x = rng.standard_normal((2, 6, 7, 16)).astype(np.float32)
    f = rng.standard_normal((3, 3, 16, o)).astype(np.float32)
    got = _kernel_call(x, f, 1, (1, 1, 1, 1), 1, 11, panels, ldc, oc)
    np.testing.assert_allclose(got, _conv_ref(x, f, 1, (1, 1, 1, 1), 1), rtol=1e-5, atol=1e-5)


def test_pack_unpack_round_trip():
    f = np.random.default_rng(0).standard_normal((3, 2, 5, 37)).astype(np.float32)
    for nv in (1, 2, 3, 4):  # (the layout takes any width; the kernel has 1 and 4)
        wp = conv_packed.pack_filters(f, nv)
        assert wp.size == conv_packed.packed_size(3, 2, 5, 37, nv)
        assert not wp[-5:].any()  # the padding row
        np.testing.assert_array_equal(conv_packed.unpack_filters(wp, 3, 2, 5, 37, nv), f)
    widths = [conv_packed.panel_vectors(o) for o in (1, 16, 17, 48, 64, 80, 130, 300, 1000)]
    assert widths == [1, 1, 1, 1, 4, 1, 1, 4, 4]


def _graph(x_shape, f_shape, strides, padding, dilations, epilogue, dynamic):
    rng = np.random.default_rng(1)
    xv = rng.standard_normal(x_shape).astype(np.float32)
    fv = rng.standard_normal(f_shape).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        shape = (None,) + tuple(x_shape[1:]) if dynamic else x_shape
        x = gc.placeholder(gc.float32, shape)
        y = gc.nn.conv2d(x, gc.constant(fv), strides, padding, dilations)
        if epilogue == "relu":
            y = gc.nn.relu(y + 0.5)
        elif epilogue == "residual":  # reads another tensor of C's shape
            y = gc.nn.relu(y + gc.nn.conv2d(x, gc.constant(fv * 0.5), strides, padding,
                                            dilations))  # fmt: skip
    return g, x, y, xv


CASES = [
    ((2, 9, 11, 5), (3, 3, 5, 70), 1, "SAME", 1, "relu", False),
    ((3, 12, 10, 6), (3, 3, 6, 20), 2, "VALID", 1, "relu", True),
    ((1, 20, 20, 8), (3, 2, 8, 17), 1, [[0, 0], [2, 0], [0, 1], [0, 0]], 2, "relu", False),
    ((2, 15, 14, 40), (1, 1, 40, 33), 1, "SAME", 1, None, False),
    ((2, 16, 16, 36), (1, 1, 36, 130), 2, "VALID", 1, "residual", False),
    ((1, 30, 30, 3), (7, 7, 3, 64), 2, [[0, 0], [3, 3], [3, 3], [0, 0]], 1, "relu", True),
    # 49 pixels, 5 panels: on 2 or 3 threads the panels split (the epilogue after)
    ((1, 7, 7, 64), (3, 3, 64, 300), 1, "SAME", 1, "relu", False),
    ((1, 7, 7, 64), (1, 1, 64, 290), 1, "SAME", 1, "residual", True),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", CASES)
def test_api_conv_equals_the_reference(case, threads):
    g, x, y, xv = _graph(*case)
    want = gc.Session(graph=g, target="reference").run(y, {x: xv})
    # (the direct form: Winograd's has tests/backends/test_cpu_winograd.py)
    opts = gc.CompileOptions(cache_dir=None, threads=threads, winograd=False)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(y, {x: xv})
        kernels = sess.compile([y], [x]).dump_ir("kernel")
    assert "call conv_packed(" in kernels and "call gemm(" not in kernels
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_a_new_batch_size_runs_the_same_code():
    g, x, y, xv = _graph(*CASES[1])
    with gc.Session(graph=g, target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        for n in (1, 3, 5):
            xs = np.random.default_rng(n).standard_normal((n, 12, 10, 6)).astype(np.float32)
            want = gc.Session(graph=g, target="reference").run(y, {x: xs})
            np.testing.assert_allclose(sess.run(y, {x: xs}), want, rtol=2e-4, atol=2e-4)


def test_wrong_input_channels_are_refused_before_the_kernel_runs():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 6, 6, None))
        f = np.ones((3, 3, 8, 16), np.float32)
        y = gc.nn.conv2d(x, gc.constant(f), 1, "SAME")
    with gc.Session(graph=g, target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        with pytest.raises(gc.errors.InvalidArgumentError, match="channels"):
            sess.run(y, {x: np.ones((1, 6, 6, 4), np.float32)})
        ok = sess.run(y, {x: np.ones((1, 6, 6, 8), np.float32)})
    assert ok[0, 2, 2, 0] == 72.0


def _kernel_program(case, layout="columns"):
    g, x, y, xv = _graph(*case)
    prog = extract([y], [], [x])
    plan = fuse(prog, CompileOptions(cache_dir=None))
    return prog, lower(prog, plan, reduction_layout=layout), xv


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4]])
def test_kernel_ir_interpreter_reads_conv_packed(case):
    prog, kp, xv = _kernel_program(case)
    assert any("pk" in name and b.kind == "const" for name, b in kp.buffers.items())
    got = interp.run(kp, RunContext({}, {}, [xv]))
    want = run_program(prog, RunContext({}, {}, [xv]))
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4, atol=2e-4)


def test_which_convolutions_take_it(monkeypatch):
    # the cpu's layout only (the cuda target lowers with rows), constant float32 filters
    _, kp, _ = _kernel_program(CASES[0], layout="rows")
    assert not any(b.name.startswith("pk") for b in kp.buffers.values())
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (1, 8, 8, 8))
        f = gc.placeholder(gc.float32, (3, 3, 8, 16))  # filters fed: packed at every run
        y = gc.nn.conv2d(x, f, 1, "SAME")
        fn = gc.placeholder(gc.float32, (3, 3, 8, None))  # a run-time shape: im2col + GEMM
        yn = gc.nn.conv2d(x, fn, 1, "SAME")
        # two input channels, or K = 8: the direct convolution
        first = gc.nn.conv2d(x[..., :2], gc.constant(np.ones((3, 3, 2, 8), np.float32)), 1,
                             "SAME")  # fmt: skip
        short = gc.nn.conv2d(x, gc.constant(np.ones((1, 1, 8, 8), np.float32)), 1, "SAME")
    with gc.Session(graph=g, target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        assert "conv_packed" in sess.compile([y], [x, f]).dump_ir("kernel")
        assert "conv_packed" not in sess.compile([yn], [x, fn]).dump_ir("kernel")
        assert "conv_packed" not in sess.compile([first], [x]).dump_ir("kernel")
        assert "conv_packed" not in sess.compile([short], [x]).dump_ir("kernel")
    monkeypatch.setattr(lower_nn, "PACKED_CONV_VARIABLE", False)
    with gc.Session(graph=g, target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        assert "conv_packed" not in sess.compile([y], [x, f]).dump_ir("kernel")
    monkeypatch.setattr(lower_nn, "PACKED_CONV", False)
    g2, x2, y2, _ = _graph(*CASES[0])
    with gc.Session(graph=g2, target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        assert "conv_packed" not in sess.compile([y2], [x2]).dump_ir("kernel")


def test_the_epilogue_is_planned_per_task():
    _, kp, _ = _kernel_program(CASES[0])
    (k,) = [k for k in plan_row_epilogues(kp).kernels if "conv_packed" in str(k.body[0])]
    assert k.meta[ROW_EPILOGUES] == (0,)  # the relu loop runs in the kernel's tasks


@pytest.mark.parametrize("o", [40, 70])
def test_a_cpu_without_avx512_gets_the_narrow_tiles(o):
    if not jit.runnable("x86-64-v3") or "x86_64" not in jit.host()["triple"]:
        pytest.skip("needs an x86-64 machine that runs x86-64-v3 code")
    g, x, y, xv = _graph((2, 9, 11, 5), (3, 3, 5, o), 1, "SAME", 1, "relu", False)
    want = gc.Session(graph=g, target="reference").run(y, {x: xv})
    opts = gc.CompileOptions(cache_dir=None)
    opts.target_cpu = "x86-64-v3"  # AVX2: 16 vector registers
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(y, {x: xv})
        assert "conv_packed(" in sess.compile([y], [x]).dump_ir("kernel")
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_run_time_image_sizes_and_empty_inputs():
    fv = np.random.default_rng(0).standard_normal((3, 3, 6, 70)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, None, None, 6))
        y = gc.nn.relu(gc.nn.conv2d(x, gc.constant(fv), 2, "SAME") + 0.5)
    opts = gc.CompileOptions(cache_dir=None, threads=2)
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        for shape in [(1, 7, 9, 6), (2, 8, 8, 6), (3, 1, 1, 6), (1, 2, 13, 6), (0, 5, 5, 6),
                      (1, 0, 4, 6)]:  # fmt: skip
            xv = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            want = gc.Session(graph=g, target="reference").run(y, {x: xv})
            got = sess.run(y, {x: xv})
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
        assert "conv_packed(" in sess.compile([y], [x]).dump_ir("kernel")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "n,hw,c,o,k,s,pad",
    [(2, 9, 3, 16, 3, 1, "SAME"), (2, 8, 16, 16, 3, 1, "SAME"), (1, 7, 32, 70, 3, 2, "VALID"),
     (2, 6, 4, 130, 2, 1, "SAME")],
)  # fmt: skip
def test_trained_filters_are_packed_every_run(n, hw, c, o, k, s, pad, threads):
    """A variable's filters (a training step's convolution) are packed into a temporary by a
    loop before the kernel, at every run: the output, the gradient step and the output after
    it equal the reference's (the packed copy follows the updated variable)."""
    rng = np.random.default_rng(o)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, hw, hw, c))
        w = gc.Variable(rng.standard_normal((k, k, c, o)).astype(np.float32) * 0.1)
        y = gc.nn.relu(gc.nn.conv2d(x, w, [1, s, s, 1], pad))
        loss = gc.reduce_sum(y * y)
        step = gc.assign_sub(w, 0.01 * gc.gradients(loss, [w])[0])
        init = gc.global_variables_initializer()
    xv = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    got = {}
    for target in ("reference", "cpu"):
        opts = gc.CompileOptions(cache_dir=None, threads=threads) if target == "cpu" else None
        with gc.Session(graph=g, target=target, options=opts) as sess:
            sess.run(init)
            before = sess.run(y, {x: xv})
            sess.run(step, {x: xv})
            got[target] = (before, sess.run(y, {x: xv}))
            if target == "cpu":
                assert "conv_packed" in sess.compile([y], [x]).dump_ir("kernel")
    for a, b in zip(got["cpu"], got["reference"]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
    assert not np.allclose(got["cpu"][0], got["cpu"][1])  # the step changed the filters


def test_kernel_ir_interpreter_packs_fed_filters():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (2, 6, 6, 8))
        f = gc.placeholder(gc.float32, (3, 3, 8, 20))
        y = gc.nn.conv2d(x, f, 1, "SAME")
    prog = extract([y], [], [x, f])
    kp = lower(prog, fuse(prog, CompileOptions(cache_dir=None)), reduction_layout="columns")
    assert any(name.startswith("pk") and b.kind == "temp" for name, b in kp.buffers.items())
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((2, 6, 6, 8)).astype(np.float32)
    fv = rng.standard_normal((3, 3, 8, 20)).astype(np.float32)
    got = interp.run(kp, RunContext({}, {}, [xv, fv]))
    want = run_program(prog, RunContext({}, {}, [xv, fv]))
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize(
    "c,m,o,k,pad",
    [(3, 16, 16, 3, "SAME"), (16, 32, 20, 3, "SAME"), (8, 24, 70, 3, "VALID"),
     (5, 16, 8, 2, "SAME")],
)  # fmt: skip
def test_input_gradients_take_the_packed_kernel_with_flipped_filters(c, m, o, k, pad):
    """A stride-1 convolution's input gradient is the convolution of out_backprop with the
    filters flipped in space and transposed in channels; the packing loop does the flip, and
    the kernel runs it (an even filter with SAME padding: asymmetric pads). Every gradient
    of a two-layer net equals the reference's."""
    rng = np.random.default_rng(m + o)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 8, 8, c))
        w1 = gc.Variable(rng.standard_normal((3, 3, c, m)).astype(np.float32) * 0.1)
        w2 = gc.Variable(rng.standard_normal((k, k, m, o)).astype(np.float32) * 0.1)
        y = gc.nn.conv2d(gc.nn.relu(gc.nn.conv2d(x, w1, 1, "SAME")), w2, 1, pad)
        fetches = [y, *gc.gradients(gc.reduce_sum(y * y), [w1, w2, x])]
        init = gc.global_variables_initializer()
    xv = rng.standard_normal((2, 8, 8, c)).astype(np.float32)
    got = {}
    for target in ("reference", "cpu"):
        opts = gc.CompileOptions(cache_dir=None, threads=2) if target == "cpu" else None
        with gc.Session(graph=g, target=target, options=opts) as sess:
            sess.run(init)
            got[target] = sess.run(fetches, {x: xv})
            if target == "cpu":
                kernel_ir = sess.compile(fetches, [x]).dump_ir("kernel")
    # two forward convolutions and two input gradients (the second layer's, and x's)
    assert kernel_ir.count("call conv_packed") == 4
    for a, b in zip(got["cpu"], got["reference"]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(np.abs(b).max()))


@pytest.mark.parametrize(
    "m,c,o,rows,panels",
    [(49, 32, 48, 1000, 1000), (70, 40, 130, 13, 1), (16, 64, 64, 5, 2), (5, 35, 17, 1, 1000)],
)
def test_kernel_batch_items_equal_numpy(m, c, o, rows, panels):
    """``gemm_packed``'s batch (Winograd's 16 products): the struct's batch, sx, swp and
    sout step each task's pointers to its item; the items lie apart, NaN between them (a
    read outside an item would show in its result, a write outside it in the gaps)."""
    batch, gap = 3, 40
    rng = np.random.default_rng(m + c + o)
    nv = conv_packed.panel_vectors(o)
    a = rng.standard_normal((batch, m, c)).astype(np.float32)
    f = rng.standard_normal((batch, c, o)).astype(np.float32)
    size = conv_packed.packed_size(1, 1, c, o, nv)
    sx, swp, sout = m * c + gap, size + gap, m * o + gap
    xs = np.full(batch * sx, np.nan, np.float32)
    ws = np.full(batch * swp, np.nan, np.float32)
    out = np.full(batch * sout, np.nan, np.float32)
    for i in range(batch):
        xs[i * sx : i * sx + m * c] = a[i].ravel()
        ws[i * swp : i * swp + size] = conv_packed.pack_filters(f[i].reshape(1, 1, c, o), nv)
    row_blocks = -(-m // rows)
    args = _Args(m=m, o=o, c=c, h=m, w=1, oh=m, ow=1, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1,
                 pt=0, pl=0, ldc=o, x=xs.ctypes.data, wp=ws.ctypes.data, out=out.ctypes.data,
                 row_blocks=row_blocks, panels=panels, batch=batch, sx=sx, swp=swp,
                 sout=sout)  # fmt: skip
    nblk = -(-o // (nv * conv_packed.LANES))
    groups = -(-nblk // panels)
    _kernel_fn(nv, False)(ctypes.byref(args), 0, row_blocks * groups * batch)
    for i in range(batch):
        got = out[i * sout : i * sout + m * o].reshape(m, o)
        want = a[i].astype(np.float64) @ f[i].astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert np.isnan(out[i * sout + m * o : (i + 1) * sout]).all()  # the gaps untouched
