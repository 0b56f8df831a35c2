"""A packed convolution reads an NCHW feed or constant itself (``conv_packed``'s ``nchw``,
``lower_nn._packed_input``) instead of its transpose to NHWC, and the transpose's kernel,
read by nothing else, goes (``lower.drop_unread``).

An imported ONNX model's input is NCHW; the layout pass leaves one transpose in front of the
first convolution, which was a kernel of its own (0.45-0.57 ms of SqueezeNet's ~30 at batch
8). Checked through the API against the reference interpreter (paddings, strides, dilation,
a run-time batch, 1-2 threads, an epilogue), against onnxruntime through ``gc.onnx``; the
transpose stays where something else reads it (a fetch, another op) or where its source may
change (a variable); the Kernel IR interpreter runs the flag; ``drop_unread`` keeps every
kernel whose result is read, fetched or a check."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backends.reference.interpreter import run_program
from graphc.expr import Const, Load, i64
from graphc.kernel import interp, lower_nn
from graphc.kernel.ir import Buffer, Kernel, LibCall, Loop, Store
from graphc.kernel.lower import drop_unread, lower
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract
from graphc.runtime_state import RunContext


def _graph(x_shape, f_shape, strides, padding, dilations, source="placeholder", extra=None):
    """``relu(conv2d(transpose(x, NCHW -> NHWC), f) + 0.25)`` with constant filters; x a
    placeholder (its batch None when x_shape's is), a constant or a variable."""
    rng = np.random.default_rng(3)
    xv = rng.standard_normal([d or 2 for d in x_shape]).astype(np.float32)
    fv = rng.standard_normal(f_shape).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        if source == "placeholder":
            x = gc.placeholder(gc.float32, x_shape)
        elif source == "constant":
            x = gc.constant(xv)
        else:
            x = gc.Variable(xv)
        t = gc.transpose(x, (0, 2, 3, 1))
        y = gc.nn.relu(gc.nn.conv2d(t, gc.constant(fv), strides, padding, dilations) + 0.25)
        fetches = [y]
        if extra == "fetch":
            fetches.append(t)
        elif extra == "another reader":
            fetches = [y + gc.reduce_sum(t * t)]
        init = gc.global_variables_initializer() if source == "variable" else None
    return g, x, fetches, xv, init


CASES = [
    ((2, 3, 15, 17), (3, 3, 3, 64), 2, "VALID", 1),  # SqueezeNet's first layer
    ((1, 3, 20, 20), (7, 7, 3, 64), 2, [[0, 0], [3, 3], [3, 3], [0, 0]], 1),  # ResNet's
    ((None, 4, 9, 11), (3, 3, 4, 20), 1, "SAME", 1),
    ((2, 5, 12, 10), (3, 2, 5, 70), 1, [[0, 0], [2, 0], [0, 1], [0, 0]], 2),
    ((1, 16, 6, 6), (1, 1, 16, 17), 1, "VALID", 1),
]


def _run(g, x, fetches, xv, init, target, threads=1, nchw=True, monkeypatch=None):
    if monkeypatch is not None:
        monkeypatch.setattr(lower_nn, "PACKED_CONV_NCHW", nchw)
    opts = gc.CompileOptions(cache_dir=None, threads=threads)
    with gc.Session(graph=g, target=target, options=opts) as sess:
        if init is not None:
            sess.run(init)
        feed = {x: xv} if isinstance(x, gc.Tensor) and x.op.type == "Placeholder" else {}
        got = sess.run(fetches, feed)
        kernels = sess.compile(fetches, list(feed)).kernels if target == "cpu" else None
    return got, kernels


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_the_convolution_reads_the_nchw_feed(case, threads):
    g, x, fetches, xv, init = _graph(*case)
    want, _ = _run(g, x, fetches, xv, init, "reference")
    got, kernels = _run(g, x, fetches, xv, init, "cpu", threads)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4, atol=2e-4)
    assert [k.op_types for k in kernels if "Transpose" in k.op_types] == []
    with gc.Session(graph=g, target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        ir = sess.compile(fetches, [x]).dump_ir("kernel")
    assert "call conv_packed(in0," in ir and ir.count("conv_packed(") == 1
    (call,) = [line for line in ir.splitlines() if "call conv_packed(" in line]
    assert call.rstrip().endswith(", 1)")  # nchw


def test_a_new_batch_size_and_bit_equality_with_the_transpose(monkeypatch):
    g, x, fetches, xv, init = _graph(*CASES[2])
    for n in (1, 3):
        xs = np.random.default_rng(n).standard_normal((n, 4, 9, 11)).astype(np.float32)
        on, k_on = _run(g, x, fetches, xs, init, "cpu", 2, True, monkeypatch)
        off, k_off = _run(g, x, fetches, xs, init, "cpu", 2, False, monkeypatch)
        np.testing.assert_array_equal(on[0], off[0])  # the same sums in the same order
        assert len(k_off) == len(k_on) + 1  # the transpose's kernel


def test_a_cpu_without_avx512_reads_it_too():
    from graphc.backends.llvm import jit

    if not jit.runnable("x86-64-v3") or "x86_64" not in jit.host()["triple"]:
        pytest.skip("needs an x86-64 machine that runs x86-64-v3 code")
    g, x, fetches, xv, init = _graph(*CASES[1])
    want, _ = _run(g, x, fetches, xv, init, "reference")
    opts = gc.CompileOptions(cache_dir=None, threads=2)
    opts.target_cpu = "x86-64-v3"  # AVX2: the narrow tiles
    with gc.Session(graph=g, target="cpu", options=opts) as sess:
        got = sess.run(fetches, {x: xv})
        assert "call conv_packed(in0," in sess.compile(fetches, [x]).dump_ir("kernel")
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("extra", ["fetch", "another reader"])
def test_the_transpose_stays_where_something_else_reads_it(extra):
    g, x, fetches, xv, init = _graph(*CASES[0], extra=extra)
    want, _ = _run(g, x, fetches, xv, init, "reference")
    got, kernels = _run(g, x, fetches, xv, init, "cpu", 2)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
    if extra == "fetch":
        assert any("Transpose" in k.op_types for k in kernels)


@pytest.mark.parametrize("source", ["constant", "variable"])
def test_constant_and_variable_inputs(source):
    g, x, fetches, xv, init = _graph(*CASES[1], source=source)
    want, _ = _run(g, x, fetches, xv, init, "reference")
    got, kernels = _run(g, x, fetches, xv, init, "cpu", 2)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4, atol=2e-4)
    # a variable may change between runs (an assign in the same graph): read through its
    # transpose, which stays; a constant's transpose is folded (or read in place)
    assert any("Transpose" in k.op_types for k in kernels) == (source == "variable")


@pytest.mark.parametrize("case", [CASES[1], CASES[3]])
def test_kernel_ir_interpreter_reads_nchw(case):
    g, x, fetches, xv, _ = _graph(*case)
    prog = extract(fetches, [], [x])
    kp = lower(prog, fuse(prog, CompileOptions(cache_dir=None)), reduction_layout="columns")
    assert not any("Transpose" in k.op_types for k in kp.kernels)
    got = interp.run(kp, RunContext({}, {}, [xv]))
    want = run_program(prog, RunContext({}, {}, [xv]))
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4, atol=2e-4)


def test_an_onnx_model_matches_onnxruntime():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper

    from tests.onnx.onnx_model_checks import check_against_onnxruntime

    w = np.random.default_rng(0).standard_normal((64, 3, 7, 7)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], strides=[2, 2], pads=[3, 3, 3, 3]),
             helper.make_node("Relu", ["h"], ["y"])]  # fmt: skip
    ir = check_against_onnxruntime(nodes, (3, 32, 30), (64, 16, 15), {"w": w})
    assert "call conv_packed(in0," in ir


def _loop(buf, src=None):
    value = Load(src, Const(0, i64), gc.float32) if src else Const(1.0, gc.float32)
    return (Loop("i", Const(0, i64), Const(4, i64), (Store(buf, Const(0, i64), value),)),)


def test_drop_unread_keeps_what_is_read_fetched_checked_or_called():
    def buf(name, kind="temp", dt=gc.float32):
        return Buffer(name, dt, (i64(4),), kind)

    buffers = {b.name: b for b in (buf("in0", "input"), buf("a"), buf("b"), buf("c"), buf("d"),
                                   buf("e"), buf("out", "output"),
                                   buf("status", "status", gc.int32))}  # fmt: skip
    kernels = [
        Kernel("dead", _loop("a", "in0"), writes=("a",)),
        Kernel("read_later", _loop("b", "in0"), writes=("b",)),
        Kernel("reader", _loop("out", "b"), writes=("out",)),
        Kernel("fetched", _loop("c"), writes=("c",)),
        Kernel("check", _loop("status"), writes=("status",)),
        Kernel("call", (LibCall("gemm", ("in0", "in0", "d")),), writes=("d",)),
        Kernel("var_update", _loop("e"), writes=("e",)),
    ]
    kept = drop_unread(kernels, buffers, {"c", "e", "out"})
    assert [k.name for k in kept] == ["read_later", "reader", "fetched", "check", "call",
                                      "var_update"]  # fmt: skip
    assert "a" not in buffers and {"b", "c", "d", "e"} <= set(buffers)
