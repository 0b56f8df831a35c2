"""Winograd's F(2x2, 3x3) for 3 x 3 stride-1 convolutions with constant float32 filters on
the cpu target (``kernel/lower_winograd.py``): the input transform, the 16 products in one
batched ``gemm_packed`` call on the packed-filter kernel, the output transform with the
group's epilogue applied in place of a loop after it.

Checked through the API against the reference interpreter (even and odd sizes, SAME, VALID
and uneven explicit padding, a run-time batch, 1-3 threads, epilogues fused or not: a
residual read for the last time, the raw convolution fetched too, a broadcast against
another batch, a concat), bit for bit across thread counts, the policy (what takes the form
and what keeps the direct one), the matrices against the direct correlation, the Kernel IR
interpreter, a CPU without AVX-512, and an ONNX model against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backends.reference.interpreter import run_program
from graphc.kernel import interp, lower_winograd
from graphc.kernel.lower import lower
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract
from graphc.runtime_state import RunContext

RNG = np.random.default_rng(7)


def _graph(x_shape, f_shape, padding="SAME", epilogue="bias_relu", batch_none=False):
    """A 3 x 3 stride-1 convolution of constant filters and an epilogue; returns (graph,
    feeds {placeholder: value}, fetches)."""
    xv = RNG.standard_normal(x_shape).astype(np.float32)
    fv = (RNG.standard_normal(f_shape) / np.sqrt(9 * f_shape[2])).astype(np.float32)
    o = f_shape[3]
    bias = RNG.standard_normal(o).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, *x_shape[1:]) if batch_none else x_shape)
        if epilogue == "concat":  # a fire module: a 1 x 1 expand first (fused first), then C
            f1 = RNG.standard_normal((1, 1, f_shape[2], 24)).astype(np.float32)
            e1 = gc.nn.relu(gc.nn.conv2d(x, gc.constant(f1), 1, "SAME") + 0.5)
        c = gc.nn.conv2d(x, gc.constant(fv), 1, padding)
        feeds = {x: xv}
        if epilogue == "bias_relu":
            fetches = [gc.nn.relu(c + bias)]
        elif epilogue == "none":
            fetches = [c]
        elif epilogue == "residual":  # read for the last time: its storage may be handed over
            rv = RNG.standard_normal((x_shape[0], *c.shape[1:])).astype(np.float32)
            r = gc.placeholder(gc.float32, rv.shape)
            feeds[r] = rv
            fetches = [gc.nn.relu(c * 0.5 + bias + gc.exp(r * 0.1))]
        elif epilogue == "raw_too":
            fetches = [gc.nn.relu(c + bias), c]
        elif epilogue == "reader":  # the raw result read by a reduction elsewhere
            fetches = [gc.nn.relu(c) + gc.reduce_sum(c)]
        elif epilogue == "block":  # a ResNet block: h is read for the last time by the sum
            h = gc.nn.relu(c + bias)
            f2 = (RNG.standard_normal((3, 3, o, o)) / np.sqrt(9 * o)).astype(np.float32)
            fetches = [gc.nn.relu(gc.nn.conv2d(h, gc.constant(f2), 1, "SAME") + h)]
        elif epilogue == "shifted":  # C read at a neighbouring channel (an LRN's window)
            sq = gc.pad(c * c, [[0, 0], [0, 0], [0, 0], [1, 1]])
            fetches = [c / (1.0 + sq[:, :, :, 0:o] + sq[:, :, :, 2 : o + 2])]
        elif epilogue == "concat":  # C's kernel stores both pieces, per pixel
            fetches = [gc.concat([e1, gc.nn.relu(c + bias)], axis=3)]
        elif epilogue == "concat_both":  # both pieces computed from C: the loops after it
            fetches = [gc.concat([gc.nn.relu(c + bias), gc.nn.relu(c * 2.0)], axis=3)]
        else:
            raise ValueError(epilogue)
    return g, feeds, fetches


def _run(g, feeds, fetches, target="cpu", threads=2, winograd=True):
    opts = CompileOptions(cache_dir=None, threads=threads, winograd=winograd)
    with gc.Session(graph=g, target=target, options=opts) as sess:
        got = sess.run(fetches, feeds)
        ir = sess.compile(fetches, list(feeds)).dump_ir("kernel") if target == "cpu" else None
    return got, ir


def _check(got, want):
    for a, b in zip(got, want):
        scale = max(1.0, float(np.max(np.abs(b))))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


CASES = [
    ((1, 14, 14, 32), (3, 3, 32, 64), "SAME"),
    ((2, 7, 7, 48), (3, 3, 48, 40), "SAME"),  # odd sizes: the last tiles half used
    ((1, 9, 11, 40), (3, 3, 40, 33), "VALID"),  # O not a multiple of the panels
    ((3, 8, 6, 32), (3, 3, 32, 70), [[0, 0], [2, 0], [0, 1], [0, 0]]),  # uneven padding
    ((1, 13, 13, 64), (3, 3, 64, 256), "SAME"),  # SqueezeNet's last expand layer
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", CASES)
def test_api_equals_the_reference(case, threads):
    g, feeds, fetches = _graph(*case)
    want, _ = _run(g, feeds, fetches, "reference")
    got, ir = _run(g, feeds, fetches, threads=threads)
    _check(got, want)
    assert "call gemm_packed(" in ir and "call conv_packed(" not in ir
    # the epilogue (bias, ReLU) in the output transform: one loop stores the result
    assert ir.count("for parallel") == 2


@pytest.mark.parametrize(
    "epilogue",
    ["none", "residual", "raw_too", "reader", "concat", "concat_both", "block", "shifted"],
)
@pytest.mark.parametrize("batch_none", [False, True])
def test_epilogues_fused_or_after(epilogue, batch_none):
    g, feeds, fetches = _graph((2, 10, 9, 32), (3, 3, 32, 48), "SAME", epilogue, batch_none)
    want, _ = _run(g, feeds, fetches, "reference")
    got, ir = _run(g, feeds, fetches)
    _check(got, want)
    assert ir.count("call gemm_packed(") == (2 if epilogue == "block" else 1)
    if epilogue.startswith("concat") and not batch_none:  # the transforms, the other pieces
        (kernel,) = [k for k in ir.split("\nkernel ")[1:] if "gemm_packed" in k]
        assert "ConcatV2" in kernel.splitlines()[0]  # (the concat's kernel)
        assert kernel.count("for parallel") == (3 if epilogue == "concat" else 4)


def test_a_new_batch_size_runs_the_same_code_and_threads_agree_bit_for_bit():
    g, feeds, fetches = _graph((2, 12, 10, 32), (3, 3, 32, 64), "SAME", batch_none=True)
    (x,) = feeds
    outs = {}
    for threads in (1, 2):
        opts = CompileOptions(cache_dir=None, threads=threads)
        with gc.Session(graph=g, options=opts) as sess:
            for n in (1, 3, 5):
                xv = RNG.standard_normal((n, 12, 10, 32)).astype(np.float32)
                got = sess.run(fetches, {x: xv})
                with gc.Session(graph=g, target="reference") as ref:
                    _check(got, ref.run(fetches, {x: xv}))
                outs.setdefault(n, []).append((xv, got[0]))
            assert sess.cache_info()["compiles"] == 1
    for n in (1, 3, 5):  # (different inputs per thread count: compare each to its own run)
        (xa, ya), (xb, yb) = outs[n]
        with gc.Session(graph=g, options=CompileOptions(cache_dir=None, threads=2)) as s:
            np.testing.assert_array_equal(s.run(fetches, {x: xa})[0], ya)


def test_winograd_false_and_what_keeps_the_direct_form():
    g, feeds, fetches = _graph(*CASES[0])
    _, ir = _run(g, feeds, fetches, winograd=False)
    assert "call conv_packed(" in ir and "gemm_packed" not in ir
    rng = np.random.default_rng(0)
    for x_shape, f_shape, strides, dilations in [
        ((1, 12, 12, 32), (3, 3, 32, 32), 2, 1),  # stride 2
        ((1, 12, 12, 32), (3, 3, 32, 32), 1, 2),  # dilated
        ((1, 12, 12, 16), (3, 3, 16, 64), 1, 1),  # too few input channels
        ((1, 12, 12, 64), (3, 3, 64, 16), 1, 1),  # too few output channels
        ((1, 4, 4, 64), (3, 3, 64, 64), 1, 1),  # too few tiles (4)
        ((1, 12, 12, 32), (5, 5, 32, 32), 1, 1),  # not 3 x 3
    ]:
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, x_shape)
            f = gc.constant(rng.standard_normal(f_shape).astype(np.float32))
            y = gc.nn.conv2d(x, f, strides, "SAME", dilations)
        xv = rng.standard_normal(x_shape).astype(np.float32)
        got, ir = _run(g, {x: xv}, [y])
        assert "gemm_packed" not in ir, (x_shape, f_shape, strides, dilations)
        _check(got, _run(g, {x: xv}, [y], "reference")[0])
    g = gc.Graph()  # a run-time batch of 4 x 4 images: 4 tiles an image, the direct form
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 4, 4, 64))
        y = gc.nn.conv2d(x, gc.constant(rng.standard_normal((3, 3, 64, 64)).astype(np.float32)),
                         1, "SAME")  # fmt: skip
    with gc.Session(graph=g, options=CompileOptions(cache_dir=None)) as sess:
        assert "gemm_packed" not in sess.compile([y], [x]).dump_ir("kernel")
    g = gc.Graph()  # variable filters (trained): packed at every run, no transform
    with g.as_default():
        x = gc.placeholder(gc.float32, (1, 12, 12, 32))
        w = gc.Variable(rng.standard_normal((3, 3, 32, 32)).astype(np.float32))
        y = gc.nn.conv2d(x, w, 1, "SAME")
        init = gc.global_variables_initializer()
    with gc.Session(graph=g, options=CompileOptions(cache_dir=None)) as sess:
        sess.run(init)
        assert "gemm_packed" not in sess.compile([y], [x]).dump_ir("kernel")


def test_the_matrices_compute_the_correlation():
    """B^T d B, G g G^T and A^T (.) A give the 2 x 2 outputs of the 3 x 3 correlation."""
    bt = np.array(lower_winograd.BT, np.float64)
    at = np.array(lower_winograd.AT, np.float64)
    rng = np.random.default_rng(1)
    for _ in range(20):
        d = rng.standard_normal((4, 4))
        f = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
        u = lower_winograd.transform_filters(f)[:, :, 0, 0].astype(np.float64)
        y = at @ ((bt @ d @ bt.T) * u) @ at.T
        want = np.array([[np.sum(d[i : i + 3, j : j + 3] * f[:, :, 0, 0]) for j in range(2)]
                         for i in range(2)])  # fmt: skip
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [CASES[1], CASES[3]])
def test_kernel_ir_interpreter_runs_it(case):
    g, feeds, fetches = _graph(*case)
    (x,) = feeds
    prog = extract(fetches, [], [x])
    kp = lower(prog, fuse(prog, CompileOptions(cache_dir=None)), reduction_layout="columns")
    assert "gemm_packed" in str([k.body for k in kp.kernels])
    got = interp.run(kp, RunContext({}, {}, [feeds[x]]))
    want = run_program(prog, RunContext({}, {}, [feeds[x]]))
    _check(got, want)


def test_a_cpu_without_avx512_runs_it_too():
    from graphc.backends.llvm import jit

    if not jit.runnable("x86-64-v3") or "x86_64" not in jit.host()["triple"]:
        pytest.skip("needs an x86-64 machine that runs x86-64-v3 code")
    g, feeds, fetches = _graph(*CASES[3])
    want, _ = _run(g, feeds, fetches, "reference")
    opts = CompileOptions(cache_dir=None, threads=2)
    opts.target_cpu = "x86-64-v3"  # AVX2: the narrow tiles
    with gc.Session(graph=g, options=opts) as sess:
        got = sess.run(fetches, feeds)
        assert "call gemm_packed(" in sess.compile(fetches, list(feeds)).dump_ir("kernel")
    _check(got, want)


def test_nan_reaches_its_tiles_only():
    """A NaN input reaches the outputs of the tiles whose 4 x 4 patch holds it (the
    documented difference from the direct form's 3 x 3), and no others."""
    g, feeds, fetches = _graph((1, 12, 12, 32), (3, 3, 32, 32), "SAME", "none")
    (x,) = feeds
    xv = feeds[x].copy()
    xv[0, 5, 6, 3] = np.nan
    got, _ = _run(g, {x: xv}, fetches)
    nan_rows, nan_cols = np.nonzero(np.isnan(got[0][0]).any(axis=2))
    # input row 5 is in the patches of tiles 2 and 3 (rows 3-6, 5-8): output rows 4-7
    assert set(nan_rows) <= {4, 5, 6, 7} and {4, 5, 6} <= set(nan_rows)
    assert set(nan_cols) <= {4, 5, 6, 7} and {5, 6, 7} <= set(nan_cols)
    want, _ = _run(g, {x: xv}, fetches, "reference")
    finite = ~np.isnan(got[0])
    _check([got[0][finite]], [want[0][finite]])


def test_an_onnx_model_matches_onnxruntime():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper

    from tests.onnx.onnx_model_checks import check_against_onnxruntime

    rng = np.random.default_rng(0)
    inits = {
        "w1": (rng.standard_normal((64, 32, 3, 3)) / 17).astype(np.float32),
        "b1": rng.standard_normal(64).astype(np.float32),
        "w2": (rng.standard_normal((48, 64, 3, 3)) / 24).astype(np.float32),
    }
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[0, 0, 0, 0])]  # fmt: skip
    ir = check_against_onnxruntime(nodes, (32, 15, 14), (48, 13, 12), inits)
    assert ir.count("call gemm_packed(") == 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 3),
    h=st.integers(2, 13),
    w=st.integers(2, 13),
    c=st.sampled_from([32, 35, 48]),
    o=st.sampled_from([32, 33, 80]),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    threads=st.integers(1, 3),
)
def test_property_random_windows_equal_the_reference(n, h, w, c, o, pads, threads):
    """Random sizes and paddings (odd, even, smaller than a tile, padding past the window)
    against the reference; the window must fit (the output at least 1 x 1)."""
    pt, pb, pl, pr = pads
    if h + pt + pb < 3 or w + pl + pr < 3:
        return
    padding = [[0, 0], [pt, pb], [pl, pr], [0, 0]]
    rng = np.random.default_rng(n * 1000 + h * 100 + w)
    xv = rng.standard_normal((n, h, w, c)).astype(np.float32)
    fv = (rng.standard_normal((3, 3, c, o)) / np.sqrt(9 * c)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, h, w, c))
        y = gc.nn.relu(gc.nn.conv2d(x, gc.constant(fv), 1, padding) - 0.1)
    lower_winograd_min = lower_winograd.MIN_TILES
    try:
        lower_winograd.MIN_TILES = 1  # (every size takes the form here)
        got, ir = _run(g, {x: xv}, [y], threads=threads)
    finally:
        lower_winograd.MIN_TILES = lower_winograd_min
    want, _ = _run(g, {x: xv}, [y], "reference")
    _check(got, want)
    assert "gemm_packed" in ir


def test_exported_artifact_and_c_library_run_it(tmp_path):
    """``gc.export`` / ``gc.load`` and ``gc.export_c`` carry the transformed filters (the
    constant ``wu`` buffer) and the ``gemm_packed`` kernel."""
    import ctypes
    import shutil

    g, feeds, fetches = _graph((3, 10, 9, 32), (3, 3, 32, 48), "SAME", batch_none=True)
    ((x, xv),) = feeds.items()
    (y,) = fetches
    with g.as_default():
        sess = gc.Session(graph=g, options=CompileOptions(cache_dir=None))
        want = sess.run(y, {x: xv})
        assert "gemm_packed" in sess.compile([y], [x]).dump_ir("kernel")
        gc.export(sess, tmp_path / "m.gca", {"x": x}, {"y": y})
        np.testing.assert_array_equal(gc.load(tmp_path / "m.gca")(x=xv)["y"], want)
        if shutil.which("gcc") or shutil.which("cc"):
            paths = gc.export_c(sess, tmp_path / "c", {"x": x}, {"y": y}, "wg")
            lib = ctypes.CDLL(paths["library"])
            out = np.empty_like(want)
            rc = lib.wg_run((ctypes.c_void_p * 1)(xv.ctypes.data), (ctypes.c_int64 * 1)(3),
                            (ctypes.c_void_p * 1)(out.ctypes.data))  # fmt: skip
            assert rc == 0
            np.testing.assert_array_equal(out, want)
