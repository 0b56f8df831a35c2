"""Convolution epilogues applied in the tiles (graphc/backends/llvm/tile_epilogue.py and the
``conv_packed`` kernels of packedgemm.py with steps): a batch norm's scale and shift, a
residual, a ReLU, applied to the accumulators before the store instead of by a loop over
the output after the kernel.

Checked: the kernel with each kind of step against numpy, NaN and -0.0 included; through
the API, the chains of ResNet's layers against the reference interpreter and bit for bit
against the loop they replace (``loops.TILE_EPILOGUES`` off), on 1 and 2 threads; which
loops the matcher takes and which it leaves to the loop."""

from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as _dt
from graphc.backends.llvm import jit, loops, packedgemm
from graphc.backends.llvm.epilogue import storage_roots
from graphc.backends.llvm.tile_epilogue import kinds, operands, signature, tile_steps, tile_target
from graphc.expr import Const, Load, Math, Var
from graphc.kernel import conv_packed
from graphc.kernel.ir import Buffer, Kernel, KernelProgram, Let, LibCall, Loop, Store

F32, I64 = _dt.float32, _dt.int64


class _Args(ctypes.Structure):
    _fields_ = [(f, ctypes.c_void_p if f in packedgemm.POINTER_FIELDS else ctypes.c_int64)
                for f in packedgemm.FIELDS]  # fmt: skip


_CHAINS = [("mul_c", "add_c", "max0"), ("mul_c", "add_c", "add_e", "max0"), ("add_c",),
           ("max0_first",), ("add_e", "mul_c"),
           ("mul_c", "add_c", ("add_x", ("mul_c", "add_c")), "max0")]  # fmt: skip
_ROWS = [(20, 20, 0), (64, 64, 0), (20, 45, 7), (64, 128, 64)]  # (o, ldc, oc)


def _elements(kinds) -> bool:
    """Whether a chain reads an element operand (which keeps C's own rows)."""
    return any(k == "add_e" or isinstance(k, tuple) for k in kinds)


@pytest.mark.parametrize(
    "steps,o,ldc,oc",
    [(s, *r) for s in _CHAINS for r in _ROWS if not _elements(s) or r[1:] == (r[0], 0)],
)
def test_kernel_steps_equal_numpy(steps, o, ldc, oc):
    """(ldc, oc): a concat's piece, rows ldc apart from oc (an element operand keeps C's
    own rows: only with ldc = o, as the matcher takes it)."""
    rng = np.random.default_rng(len(steps) + o)
    n, h, w, c = 2, 5, 7, 16
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan  # a NaN reaches every channel of the pixels that see it
    f = rng.standard_normal((3, 3, c, o)).astype(np.float32)
    nv = conv_packed.panel_vectors(o)
    wp = conv_packed.pack_filters(f, nv)
    m = n * h * w
    out = np.full(oc + m * ldc + 7, np.nan, np.float32)
    operands = []
    for kind in steps:
        if kind in ("mul_c", "add_c"):
            operands.append(rng.standard_normal(o).astype(np.float32))
        elif kind == "add_e" or isinstance(kind, tuple):
            operands.append(rng.standard_normal(m * o).astype(np.float32))
            for _ in kind[1] if isinstance(kind, tuple) else ():
                operands.append(rng.standard_normal(o).astype(np.float32))
    ptrs = [a.ctypes.data for a in operands] + [None] * (6 - len(operands))
    obj, _, _ = jit.compile_module(packedgemm.kernels_ir(steps=steps), opt_level=2)
    loaded = jit.LoadedObject(obj)
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(
        loaded.address(packedgemm.symbol(nv, steps))
    )
    first = out.ctypes.data + 4 * oc
    args = _Args(m, o, c, h, w, h, w, 3, 3, 1, 1, 1, 1, 1, 1, ldc, x.ctypes.data,
                 wp.ctypes.data, first, 5, 1000, None, None, *ptrs)  # fmt: skip
    fn(ctypes.byref(args), 0, 5)
    rows = out[oc : oc + m * ldc].reshape(m, ldc)
    assert np.isnan(out[:oc]).all() and np.isnan(out[oc + m * ldc :]).all()
    assert np.isnan(rows[:, o:]).all()  # nothing stored outside the piece
    # the convolution in float32, then the steps as numpy computes them
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros((n, h, w, o), np.float64)
    for i in range(3):
        for j in range(3):
            conv += xp[:, i : i + h, j : j + w].astype(np.float64) @ f[i, j].astype(np.float64)
    want = conv.reshape(m, o).astype(np.float32)
    got = rows[:, :o]
    ops = iter(operands)
    for kind in steps:
        if kind == "mul_c":
            want = want * next(ops)
        elif kind == "add_c":
            want = want + next(ops)
        elif kind == "add_e":
            want = want + next(ops).reshape(m, o)
        elif isinstance(kind, tuple):
            x = next(ops).reshape(m, o)
            for k in kind[1]:
                x = x * next(ops) if k == "mul_c" else x + next(ops)
            want = want + x
        elif kind == "max0":
            want = np.maximum(want, np.float32(0))
        else:
            want = np.maximum(np.float32(0), want)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.array_equal(np.isnan(got), np.isnan(want))


def _resnet_layer(x, r, kind):
    """A 1x1 and a 3x3 convolution with the epilogues of ResNet's layers (``kind``)."""
    rng = np.random.default_rng(7)
    c, o = x.shape[3], r.shape[3]
    w = gc.constant(rng.uniform(-0.3, 0.3, (1, 1, c, o)).astype(np.float32))
    w3 = gc.constant(rng.uniform(-0.3, 0.3, (3, 3, o, o)).astype(np.float32))
    s = gc.constant(rng.uniform(0.5, 1.5, (o,)).astype(np.float32))
    b = gc.constant(rng.uniform(-0.5, 0.5, (o,)).astype(np.float32))
    y = gc.nn.conv2d(x, w, 1, "SAME")
    if kind == "bn_relu":
        y = gc.nn.relu(y * s + b)
    elif kind == "residual":
        y = gc.nn.relu(y * s + b + r)
    elif kind == "shortcut":  # ResNet's downsampling: the shortcut through its batch norm
        y = gc.nn.relu(y * s + b + (r * b + s))
    elif kind == "bias":
        y = y + b
    elif kind == "max_first":
        y = gc.maximum(0.0, y + b)
    elif kind == "residual3":  # the residual on the 3x3 convolution (nine taps)
        return gc.nn.relu(gc.nn.conv2d(gc.nn.relu(y), w3, 1, "SAME") * s + b + r)
    return gc.nn.relu(gc.nn.conv2d(y, w3, 1, "SAME") * s + b)


def _sessions(kind, shapes, threads):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, shapes[0])
        r = gc.placeholder(gc.float32, shapes[1])
        y = _resnet_layer(x, r, kind)
    return g, x, r, y


@pytest.mark.parametrize(
    "kind", ["bn_relu", "residual", "shortcut", "bias", "max_first", "residual3"]
)
@pytest.mark.parametrize("threads", [1, 2])
def test_api_chains_equal_the_reference_and_the_loop(kind, threads, monkeypatch):
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((2, 9, 10, 16)).astype(np.float32)
    rv = rng.standard_normal((2, 9, 10, 32)).astype(np.float32)
    xv[1, 4, 4, 0] = np.nan
    g, x, r, y = _sessions(kind, (xv.shape, rv.shape), threads)
    feed = {x: xv, r: rv}
    with gc.Session(graph=g, target="reference") as sess:
        want = sess.run(y, feed)
    got = {}
    for on in (True, False):
        monkeypatch.setattr(loops, "TILE_EPILOGUES", on)
        # (the direct form's tiles: a 3 x 3 layer of 32 channels would take Winograd's)
        opts = gc.CompileOptions(cache_dir=None, threads=threads, winograd=False)
        with gc.Session(graph=g, options=opts) as sess:
            got[on] = sess.run(y, feed)
            asm = sess.compile([y], [x, r]).dump_ir("asm")
        assert bool(re.search(r"gc_conv_packed_s\d_e", asm)) == on
        if kind in ("residual", "shortcut", "residual3"):  # the residual's chain in the tiles
            tag = "qmaq" if kind == "shortcut" else "r"
            assert bool(re.search(rf"gc_conv_packed_s\d_e\w*{tag}", asm)) == on
    np.testing.assert_allclose(got[True], want, rtol=2e-4, atol=2e-4)
    assert np.array_equal(got[True], got[False], equal_nan=True)  # bit for bit the loop's


# -- the matcher on hand-built Kernel IR ----------------------------------------------------

M, O = 6, 4


def _i(v):
    return Const(v, I64)


OWN = Math.ADD(Math.MUL(Var("row", I64), _i(O)), Var("c", I64))


def _program(value_of, extra=None, r_alias=None, target="cc", d_alias=None, ldc=O):
    """A conv_packed call writing C and a row loop storing ``target[own] = value_of(load of
    C)`` (``target`` C itself, or dd: a result stored apart, ``d_alias`` its storage's)."""
    bufs = {"x": Buffer("x", F32, (_i(100),), "input"),
            "w": Buffer("w", F32, (_i(1000),), "const"),
            "cc": Buffer("cc", F32, (_i(M * ldc),), "output"),
            "s": Buffer("s", F32, (_i(O),), "temp"),
            "short": Buffer("short", F32, (_i(O - 1),), "const"),
            "r": Buffer("r", F32, (_i(M * O),), "temp", alias_of=r_alias),
            "dd": Buffer("dd", F32, (_i(M * O),), "temp", alias_of=d_alias)}  # fmt: skip
    call = LibCall("conv_packed", ("x", "w", "cc", _i(1), _i(M), _i(O), _i(4), _i(2), _i(3),
                                   _i(2), _i(3), _i(1), _i(1), _i(1), _i(1), _i(1), _i(1),
                                   _i(0), _i(0), _i(ldc), _i(0), _i(0)))  # fmt: skip
    own_c = Math.ADD(Math.MUL(Var("row", I64), _i(ldc)), Var("c", I64))
    lets = [Let("v0", F32, Load("cc", own_c, F32)), Let("v1", F32, value_of(Var("v0", F32)))]
    stored = own_c if target == "cc" else OWN
    chan = Loop("c", _i(0), _i(O), (*lets, *(extra or ()), Store(target, stored, Var("v1", F32))))
    loop = Loop("row", _i(0), _i(M), (chan,), parallel=True)
    kp = KernelProgram(bufs, [Kernel("k", (call, loop))], inputs=("x", "r"), outputs=("cc",))
    return call, loop, kp


def _steps(value_of, **kw):
    call, loop, kp = _program(value_of, **kw)
    return tile_steps(call, loop, kp, storage_roots(kp))


S_COL = Load("s", Var("c", I64), F32)
ZERO = Const(0.0, F32)


def test_the_matcher_takes_resnet_chains():
    bn = lambda v: Math.MAX(Math.ADD(Math.MUL(v, S_COL), S_COL), ZERO)  # noqa: E731
    assert _steps(bn) == (("mul_c", "s"), ("add_c", "s"), ("max0", None))
    res = lambda v: Math.MAX(Math.ADD(Load("r", OWN, F32), Math.MUL(S_COL, v)), ZERO)  # noqa: E731
    steps = _steps(res)
    assert steps == (("mul_c", "s"), ("add_e", "r"), ("max0", None))
    assert signature(kinds(steps)) == "mrx"
    bn_r = Math.ADD(Math.MUL(Load("r", OWN, F32), S_COL), S_COL)
    short = lambda v: Math.MAX(Math.ADD(Math.ADD(Math.MUL(v, S_COL), S_COL), bn_r), ZERO)  # noqa: E731
    steps = _steps(short)
    assert steps == (("mul_c", "s"), ("add_c", "s"),
                     ("add_x", "r", (("mul_c", "s"), ("add_c", "s"))), ("max0", None))  # fmt: skip
    assert signature(kinds(steps)) == "maqmaqx" and operands(steps) == ["s", "s", "r", "s", "s"]
    assert _steps(lambda v: Math.MAX(ZERO, v)) == (("max0_first", None),)


def test_the_result_stored_apart_from_c():
    """``passes/plan.py`` may store a block's result over its residual: the loop then stores
    another buffer than the call's C, which the kernel stores into instead."""
    res = lambda v: Math.MAX(Math.ADD(Load("r", OWN, F32), Math.MUL(S_COL, v)), ZERO)  # noqa: E731
    want = (("mul_c", "s"), ("add_e", "r"), ("max0", None))
    for d_alias in (None, "r"):  # storage of its own, or the residual's (read first)
        call, loop, kp = _program(res, target="dd", d_alias=d_alias)
        assert tile_steps(call, loop, kp, storage_roots(kp)) == want
        assert tile_target(loop) == "dd"
    # a per-channel operand in the stored rows' storage would be overwritten under later rows
    assert _steps(res, target="dd", d_alias="s") is None
    assert _steps(res, target="dd", d_alias="cc") is None  # (C's own storage)
    assert _steps(lambda v: Math.ADD(v, S_COL), target="dd", ldc=2 * O) is None  # a piece


def test_the_matcher_leaves_other_loops():
    assert _steps(lambda v: Math.MAX(v, Const(-0.0, F32))) is None  # not a ReLU's max
    assert _steps(lambda v: Math.MUL(v, Load("short", Var("c", I64), F32))) is None
    assert _steps(lambda v: Math.SUB(v, S_COL)) is None
    assert _steps(lambda v: Math.MUL(v, Load("r", OWN, F32))) is None  # only + an element
    assert _steps(lambda v: Math.ADD(v, Load("r", OWN, F32)), r_alias="cc") is None
    assert _steps(lambda v: Math.NEG(v)) is None
    # another store in the loop: not a chain
    extra = (Store("s", Var("c", I64), ZERO),)
    assert _steps(lambda v: Math.ADD(v, S_COL), extra=extra) is None
