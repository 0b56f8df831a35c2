"""Convolutions storing straight into their piece of a concat (graphc/backends/llvm/
concat_store.py ``direct_concat``, a cpu Kernel IR pass): SqueezeNet's fire module, whose
3 x 3 expand kernel wrote a temporary that its epilogue then copied into the concat.

Checked: fire modules (NHWC, and NCHW between transposes as an ONNX import builds them)
through the API against the reference interpreter, with the rewrite visible in the kernel
IR (the call's C is the concat, rows ``2 * O`` apart from column O); the Kernel IR
interpreter on the rewritten program; and the cases the pass must leave alone: the
temporary read elsewhere, the concat read or its piece's columns stored by the row loop."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as _dt
from graphc.backends.cpu import KERNEL_PASSES
from graphc.backends.llvm.concat_store import direct_concat
from graphc.backends.llvm.epilogue import ROW_COLUMNS
from graphc.backends.reference.interpreter import run_program
from graphc.expr import Const, Load, Math, Var
from graphc.kernel import interp
from graphc.kernel.analysis import buffers_read
from graphc.kernel.ir import Buffer, Kernel, KernelProgram, Let, LibCall, Loop, Store
from graphc.kernel.lower import lower
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract
from graphc.runtime_state import RunContext

F32, I64 = _dt.float32, _dt.int64


def _fire(x, o, nchw=False, also=False):
    """Squeeze 1x1 conv to 16 channels, then a 1x1 and a 3x3 expand conv of ``o`` channels
    (bias, ReLU) concatenated on channels, then the next module's squeeze (a 1x1 conv to 5
    channels); ``also``: the 3x3 conv's raw output is fetched too (its temporary is then
    read elsewhere)."""
    rng = np.random.default_rng(3)
    c = x.shape[3]

    def conv(h, k, cin, cout, act=True):
        w = gc.constant(rng.uniform(-0.5, 0.5, (k, k, cin, cout)).astype(np.float32))
        b = gc.constant(rng.uniform(-0.2, 0.2, (cout,)).astype(np.float32))
        y = gc.nn.conv2d(h, w, 1, "SAME")
        return (gc.nn.relu(y + b), y) if act else y

    s, _ = conv(x, 1, c, 16)
    (e1, _), (e3, raw3) = conv(s, 1, 16, o), conv(s, 3, 16, o)
    if nchw:
        to_nchw = (0, 3, 1, 2)
        cat = gc.concat([gc.transpose(e1, to_nchw), gc.transpose(e3, to_nchw)], axis=1)
        out, _ = conv(gc.transpose(cat, (0, 2, 3, 1)), 1, 2 * o, 5)  # (the next squeeze)
    else:
        out, _ = conv(gc.concat([e1, e3], axis=3), 1, 2 * o, 5)
    return [out, raw3 * 2.0] if also else [out]


def _run(build, shape, xv, threads=2):
    results, ir = {}, ""
    for target in ("reference", "cpu"):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, shape)
            fetch = build(x)
        opts = gc.CompileOptions(cache_dir=None, threads=threads) if target == "cpu" else None
        with gc.Session(graph=g, target=target, options=opts) as sess:
            results[target] = sess.run(fetch, {x: xv})
            if target == "cpu":
                ir = sess.compile(fetch, [x]).dump_ir("kernel")
    return ir, results["cpu"], results["reference"]


def _conv_calls(ir):
    """(C, ldc, oc, o, kh) of every conv_packed call in the kernel IR text."""
    out = []
    for line in ir.splitlines():
        if "call conv_packed(" in line:
            args = [a.strip() for a in line.split("(", 1)[1].rstrip(")").split(",")]
            out.append((args[2], int(args[19]), int(args[20]), int(args[5]), int(args[11])))
    return out


@pytest.mark.parametrize("o", [20, 64])
@pytest.mark.parametrize("nchw", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_fire_module_stores_its_3x3_piece_in_place(o, nchw, threads):
    xv = np.random.default_rng(o).standard_normal((2, 9, 11, 6)).astype(np.float32)
    ir, got, want = _run(lambda x: _fire(x, o, nchw), (2, 9, 11, 6), xv, threads)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    (three,) = [c for c in _conv_calls(ir) if c[4] == 3]
    assert three[1:3] == (2 * o, o), _conv_calls(ir)  # rows 2 * o apart, from column o
    # the 1 x 1 expand, a kernel of its own before, writes the other piece
    (one,) = [c for c in _conv_calls(ir) if c[4] == 1 and c[3] == o]
    assert one[0] == three[0] and one[1:3] == (2 * o, 0), _conv_calls(ir)
    # and finishes it (bias, ReLU) in its own kernel: each kernel's loop has one piece
    blocks = [k for k in ir.split("\nkernel ")[1:] if any(c[0] == three[0] for c in _conv_calls(k))]
    assert len(blocks) == 2
    for block in blocks:
        assert block.count("for parallel row") == 1 and block.count("\n    for ") == 1, block


def test_a_temporary_read_elsewhere_is_left_alone():
    xv = np.random.default_rng(1).standard_normal((2, 9, 11, 6)).astype(np.float32)
    ir, got, want = _run(lambda x: _fire(x, 32, also=True), (2, 9, 11, 6), xv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # the 3 x 3 conv's output is also fetched: it keeps its rows; the 1 x 1 expand's kernel
    # now holds the concat's epilogue, and that call stores into its piece instead
    (three,) = [c for c in _conv_calls(ir) if c[4] == 3]
    assert three[1:3] == (32, 0)
    (one,) = [c for c in _conv_calls(ir) if c[4] == 1 and c[3] == 32]
    assert one[1:3] == (64, 0)


def test_a_run_time_batch_keeps_the_temporary():
    xv = np.random.default_rng(2).standard_normal((3, 9, 11, 6)).astype(np.float32)
    ir, got, want = _run(lambda x: _fire(x, 20), (None, 9, 11, 6), xv)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


def test_kernel_ir_interpreter_runs_the_rewritten_program():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (2, 9, 11, 6))
        (y,) = _fire(x, 20)
    prog = extract([y], [], [x])
    kp = lower(prog, fuse(prog, CompileOptions(cache_dir=None)), reduction_layout="columns")
    for p in KERNEL_PASSES:
        kp = p(kp)
    calls = [s for k in kp.kernels for s in k.body if isinstance(s, LibCall)]
    packed = [s for s in calls if s.fn == "conv_packed"]
    wide = [int(s.args[20].value) for s in packed if int(s.args[19].value) == 40]
    assert sorted(wide) == [0, 20]  # both expands write their piece of the concat
    xv = np.random.default_rng(4).standard_normal((2, 9, 11, 6)).astype(np.float32)
    got = interp.run(kp, RunContext({}, {}, [xv]))
    want = run_program(prog, RunContext({}, {}, [xv]))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


# -- the pass on hand-built Kernel IR -------------------------------------------------------

M, O = 12, 4


def _i(v):
    return Const(v, I64)


def _at(k, col, off):
    return Math.ADD(Math.ADD(Math.MUL(Var("row", I64), _i(k)), Var(col, I64)), _i(off))


def _program(pieces, t_kind="temp"):
    """A conv_packed call writing T [M, O] and a row loop of ``pieces`` (channel loops)."""
    bufs = {"x": Buffer("x", F32, (_i(M * 8),), "input"),
            "w": Buffer("w", F32, (_i(1000),), "const"),
            "t": Buffer("t", F32, (_i(M * O),), t_kind),
            "u": Buffer("u", F32, (_i(M * O),), "input"),
            "d": Buffer("d", F32, (_i(M * 2 * O),), "output")}  # fmt: skip
    call = LibCall("conv_packed", ("x", "w", "t", _i(1), _i(M), _i(O), _i(8), _i(3), _i(4),
                                   _i(3), _i(4), _i(1), _i(1), _i(1), _i(1), _i(1), _i(1),
                                   _i(0), _i(0), _i(O), _i(0)))  # fmt: skip
    loop = Loop("row", _i(0), _i(M), tuple(pieces), parallel=True)
    k = Kernel("k", (call, loop), meta={ROW_COLUMNS: ((0, O),)})
    return KernelProgram(bufs, [k], inputs=("x", "u"), outputs=("d",))


def _chan(col, stmts):
    return Loop(col, _i(0), _i(O), tuple(stmts))


def _relu_piece(src, src_at, off, col="c1"):
    v = Math.MAX(Load(src, src_at, F32), Const(0.0, F32))
    return _chan(col, [Let("v", F32, v), Store("d", _at(2 * O, col, off), Var("v", F32))])


T_AT = Math.ADD(Math.MUL(Var("row", I64), _i(O)), Var("c1", I64))
U_AT = Math.ADD(Math.MUL(Var("row", I64), _i(O)), Var("c0", I64))


def _rewritten(kp) -> bool:
    call = direct_concat(kp).kernels[0].body[0]
    return call.args[2] == "d"


def test_the_pass_takes_a_concat_piece():
    kp = _program([_relu_piece("u", U_AT, 0, "c0"), _relu_piece("t", T_AT, O)])
    out = direct_concat(kp).kernels[0].body
    assert out[0].args[2] == "d" and out[0].args[19] == _i(2 * O) and out[0].args[20] == _i(O)
    assert buffers_read(out[1:]) == {"u", "d"}  # T no longer read: D in place


def test_the_pass_refuses_overlapping_pieces():
    # the other piece's columns [2, 6) meet the convolution's [4, 8)
    kp = _program([_relu_piece("u", U_AT, 2, "c0"), _relu_piece("t", T_AT, O)])
    assert not _rewritten(kp)


def test_the_pass_refuses_a_loop_reading_the_pieces_columns():
    # the first piece reads the columns the call would now write before the loop ran
    d_at = _at(2 * O, "c0", O)
    kp = _program([_relu_piece("d", d_at, 0, "c0"), _relu_piece("t", T_AT, O)])
    assert not _rewritten(kp)
    # another piece's own columns, read in place, are not the call's: taken
    kp = _program([_relu_piece("d", _at(2 * O, "c0", 0), 0, "c0"), _relu_piece("t", T_AT, O)])
    assert _rewritten(kp)


def test_the_pass_refuses_a_store_before_the_last_read():
    later = Math.ADD(Load("t", T_AT, F32), Const(1.0, F32))
    chan = _chan("c1", [Store("d", _at(2 * O, "c1", O), Const(0.0, F32)),
                        Store("d", _at(2 * O, "c1", O), later)])  # fmt: skip
    # two stores of the piece after... only one may follow the last read: the first
    # store precedes it, and writes the columns the convolution's values would be read from
    kp = _program([chan])
    assert not _rewritten(kp)


def test_the_pass_refuses_a_non_temporary_or_a_shifted_read():
    assert not _rewritten(_program([_relu_piece("t", T_AT, O)], t_kind="output"))
    shifted = Math.ADD(T_AT, _i(1))
    assert not _rewritten(_program([_relu_piece("t", shifted, O)]))


def _two_kernels(between=()):
    """Kernel A: a call writing U [M, O]; ``between``: kernels after it; kernel B: a call
    writing T and the row loop storing both into the concat D (its pieces in place)."""
    kp = _program([_relu_piece("u", U_AT, 0, "c0"), _relu_piece("t", T_AT, O)])
    bufs = dict(kp.buffers)
    bufs["u"] = Buffer("u", F32, (_i(M * O),), "temp")
    bufs["d"] = Buffer("d", F32, (_i(M * 2 * O),), "temp")
    bufs["e"] = Buffer("e", F32, (_i(M * 2 * O),), "temp", alias_of="d")
    bufs["y"] = Buffer("y", F32, (_i(M * 2 * O),), "output")
    call_b = kp.kernels[0].body[0]
    call_a = LibCall("conv_packed", call_b.args[:2] + ("u",) + call_b.args[3:])
    kernels = [Kernel("a", (call_a,)), *between, kp.kernels[0]]
    return KernelProgram(bufs, kernels, inputs=("x",), outputs=("y",))


def test_an_earlier_kernels_call_writes_its_piece_and_finishes_it():
    out = direct_concat(_two_kernels()).kernels
    assert out[0].body[0].args[2] == "d" and out[0].body[0].args[19:] == (_i(2 * O), _i(0))
    # A's piece of the row loop moved into A, as A's row epilogue
    assert len(out[0].body) == 2 and out[0].meta[ROW_COLUMNS] == ((0, O),)
    assert buffers_read(out[0].body[1:]) == {"d"} and len(out[-1].body[1].body) == 1
    assert buffers_read(out[-1].body[1:]) == {"d"}  # B's own piece, in place


def test_a_piece_reading_what_a_later_kernel_writes_stays():
    # the 1x1 piece adds u2, which a kernel between A and B writes: it cannot run in A
    kp = _two_kernels()
    loop = kp.kernels[-1].body[1]
    u2 = Math.MAX(Math.ADD(Load("u", U_AT, F32), Load("u2", U_AT, F32)), Const(0.0, F32))
    first = _chan("c0", [Let("v", F32, u2), Store("d", _at(2 * O, "c0", 0), Var("v", F32))])
    b = replace(
        kp.kernels[-1], body=(kp.kernels[-1].body[0], replace(loop, body=(first, loop.body[1])))
    )
    mid = Kernel(
        "mid", (Loop("i", _i(0), _i(M * O), (Store("u2", Var("i", I64), Const(1.0, F32)),)),)
    )
    bufs = {**kp.buffers, "u2": Buffer("u2", F32, (_i(M * O),), "temp")}
    out = direct_concat(replace(kp, buffers=bufs, kernels=[kp.kernels[0], mid, b])).kernels
    assert out[0].body[0].args[2] == "d"  # A still writes its piece of D
    assert len(out[0].body) == 1 and len(out[-1].body[1].body) == 2  # the piece stays in B


def test_storage_of_the_concat_used_in_between_keeps_the_temporary():
    # a kernel between A and B writes e, which shares D's storage (D was free only from B)
    mid = Kernel("mid", (Loop("i", _i(0), _i(M), (Store("e", Var("i", I64), Const(1.0, F32)),)),))
    out = direct_concat(_two_kernels((mid,))).kernels
    assert out[0].body[0].args[2] == "u"  # A keeps U
    assert out[-1].body[0].args[2] == "d"  # (B's own call still writes its piece)
