"""Lowerings of the NN window ops (NHWC data, HWIO filters; any dim may be unknown).

Window geometry (output size, SAME or explicit padding) is computed symbolically
(``SymWindow``) from the runtime sizes, so a new batch or image size runs the same code; the
shape rules add the run-time checks (channels agree, a VALID or explicitly padded window
fits, a gradient has the pooled shape).
Strides, dilations, padding mode and pool sizes are attributes, always static.

* Conv2D: im2col into a temporary ``[N*OH*OW, KH*KW*C]`` (skipped for 1x1 stride-1 unpadded
  convolutions) then one ``gemm`` with the filters viewed as ``[KH*KW*C, O]``: the product is
  the NHWC output directly. It is a "gemm" kind op, so bias/activation epilogues fuse.
  Short static dot products (KH*KW*C at most ``lower_window.DIRECT_MAX_K``: first layers)
  are computed directly, without im2col or BLAS (Conv2DBackpropFilter too: per-image
  partial sums, then a sum over the batch). On the cpu target, float32 filters of a static
  shape take the packed-filter kernel instead (``conv_packed``: constant filters packed at
  compile time, a variable's at every run by a loop before the call).
* Conv2DBackpropInput: of a stride-1 convolution on the cpu target, the convolution of the
  output gradient with the filters flipped and transposed (packed by that loop when the
  packed kernel takes it); else ``gemm`` of the output gradient with the transposed filters into
  column form, then col2im as a gather (each input element sums the taps that saw it: no
  atomics, parallel over the input).
* Conv2DBackpropFilter: im2col of the input, then ``gemm`` with ``trans_a``.
* Pools and their gradients: ``lower_pool.py``, with the window geometry of this module.

Windows known at compile time with at most ``lower_window.MAX_TAPS`` taps (every pool, and
convolutions with a static filter size) use the channel-innermost, tap-unrolled kernels of
``lower_window.py`` (vectorised channel loops); the tap-loop forms below serve the others.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..expr import Const, Load, Math, Var, i64
from . import conv_packed, lower_window, lower_winograd, sym
from .ir import Buffer, Let, LibCall, Store
from .lowerings import KINDS, opaque
from .shapes import rule


class SymWindow:
    """Geometry of a 2-D window op on NHWC data with sizes as int64 expressions.

    ``padding`` is "SAME", "VALID" or explicit ((top, bottom), (left, right)); ``pt``/``pb``
    and ``pl``/``pr`` are the padding before/after along height and width."""

    def __init__(self, h, w, kh, kw, attrs):
        sh, sw = attrs["strides"]
        dh, dw = attrs.get("dilations", (1, 1))
        pad = attrs["padding"]
        self.h, self.w, self.kh, self.kw = (sym.as_expr(v) for v in (h, w, kh, kw))
        self.s, self.d = (sh, sw), (dh, dw)
        self.padding = pad
        ph, pw = (pad, pad) if isinstance(pad, str) else pad
        self.oh, self.pt, self.pb, self.eff_h = _geometry(self.h, self.kh, sh, dh, ph)
        self.ow, self.pl, self.pr, self.eff_w = _geometry(self.w, self.kw, sw, dw, pw)

    def unpadded(self) -> bool:
        """True when no side is provably padded (all four pads are the constant 0)."""
        return all(sym.const_value(p) == 0 for p in (self.pt, self.pb, self.pl, self.pr))


def _geometry(n, k, s, d, padding):
    """(output size, padding before, padding after, effective window) along one dim (TF's
    rule); ``padding`` is this dim's: "SAME", "VALID" or (before, after)."""
    eff = sym.add(sym.mul(sym.sub(k, 1), d), 1)
    if padding == "SAME":
        out = sym.floordiv(sym.add(n, s - 1), s)
        total = sym.maximum(sym.sub(sym.add(sym.mul(sym.sub(out, 1), s), eff), n), 0)
        before = sym.floordiv(total, 2)
        return out, before, sym.sub(total, before), eff
    lo, hi = (0, 0) if padding == "VALID" else padding
    padded = sym.add(n, lo + hi)
    return sym.add(sym.floordiv(sym.sub(padded, eff), s), 1), i64(lo), i64(hi), eff


def _window(node, h, w, kh, kw):
    attrs = dict(node.attrs)
    attrs.setdefault("dilations", (1, 1))
    return SymWindow(h, w, kh, kw, attrs)


def _same_dims(checks, got, want, message):
    for a, b in zip(got, want):
        if a != b:
            checks.append((sym.eq(a, b), message))


def _window_checks(checks, win, padding, what):
    """A VALID (or explicitly padded) window must fit the padded input (the output size
    would be negative)."""
    for k, axis in ((win.kh, "height"), (win.kw, "width")):
        if sym.const_value(k) is None:  # a window of no element (TF: filter of no element)
            checks.append((Math.GE(k, sym.ONE), f"{what}: the window {axis} must be at "
                           "least 1"))  # fmt: skip
    if padding == "SAME":
        return
    for n, pad, eff, axis in ((win.h, sym.add(win.pt, win.pb), win.eff_h, "height"),
                              (win.w, sym.add(win.pl, win.pr), win.eff_w, "width")):  # fmt: skip
        if sym.const_value(n) is None or sym.const_value(eff) is None:
            kind = "VALID" if padding == "VALID" else "padded"
            checks.append((Math.GE(sym.add(n, pad), eff),
                           f"{what}: {kind} window does not fit the input {axis}"))  # fmt: skip


def _im2col(kb, x_ref, win, n, c, col):
    """col[(b, oy, ox), (i, j, ch)] = x[b, oy*sh + i*dh - pt, ox*sw + j*dw - pl, ch] or 0."""
    dt = kb.lw.program.spec(tuple(x_ref)).dtype
    if lower_window.static_taps(win.kh, win.kw):
        lower_window.emit_im2col(kb, x_ref, win, win.padding, n, c, col, dt)
        return
    k = sym.product([win.kh, win.kw, c])
    with kb.nest([n, win.oh, win.ow]) as (b, oy, ox):
        with kb.nest([win.kh, win.kw, c], parallel=False) as (i, j, ch):
            y, xx = lower_window.tap_pixel(win, oy, ox, i, j)
            ok = kb.bind(lower_window.inside(y, xx, win.h, win.w), _dt.bool_)
            flat = sym.select(ok, sym.flat_index((b, y, xx, ch), (n, win.h, win.w, c)), 0)
            v = kb.load(x_ref, flat)
            row = sym.flat_index((b, oy, ox), (n, win.oh, win.ow))
            col_idx = sym.add(sym.mul(row, k), sym.flat_index((i, j, ch), (win.kh, win.kw, c)))
            kb.emit(Store(col, col_idx, Math.SELECT(ok, v, Const(0.0, dt))))


def _gemm(kb, a, b, c, ta, tb, m, n, k, dt):
    one, zero = Const(1.0, dt), Const(0.0, dt)
    z = sym.ZERO
    kb.emit(LibCall("gemm", (a, b, c, i64(ta), i64(tb), sym.as_expr(m), sym.as_expr(n),
                             sym.as_expr(k), sym.ONE, z, z, z, one, zero, z, z, z)))  # fmt: skip


# -- Conv2D (a "gemm" kind op: epilogues fuse; called from lower_gemm.emit_gemm_group) -------------


@rule("Conv2D")
def _conv_shape(n, ins, checks):
    (b, h, w, c), (kh, kw, ci, o) = ins
    what = f"Conv2D '{n.name}'"
    _same_dims(checks, [c], [ci], f"{what}: input channels do not match the filters'")
    win = _window(n, h, w, kh, kw)
    _window_checks(checks, win, n.attrs["padding"], what)
    return (b, win.oh, win.ow, o)


KINDS["Conv2D"] = "gemm"


def emit_conv2d(kb, node, c_buf, finish=None):
    """The Conv2D ``node`` into ``c_buf``; ``finish``: the group's epilogue, which a lowering
    computing each output element in a loop of its own may apply there (``lower_gemm.Finish``;
    only Winograd's does, and marks it used)."""
    x_ref, f_ref = (tuple(r) for r in node.inputs)
    n, h, w, c = kb.shape(x_ref)
    kh, kw, _, o = kb.shape(f_ref)
    win = _window(node, h, w, kh, kw)
    dt = node.outs[0].dtype
    m = sym.product([n, win.oh, win.ow])
    k = sym.product([kh, kw, c])
    if _emit_packed_conv(kb, node, x_ref, f_ref, win, n, c, c_buf, m, dt, finish):
        return
    f_buf = kb.lw.buffer_for_read(f_ref)
    kb.reads.add(f_buf)
    direct = (sym.const_value(kh), sym.const_value(kw)) == (1, 1) and win.s == (1, 1)
    direct = direct and win.unpadded()
    if not direct and lower_window.direct_conv(win, c):
        lower_window.emit_direct_conv(kb, x_ref, f_buf, win, win.padding, n, c, o, c_buf, dt)
        return
    if direct:
        a_buf = kb.lw.buffer_for_read(x_ref)
        kb.reads.add(a_buf)
    else:
        a_buf = kb.temp(f"col{node.id}", dt, (m, k))
        if kb.lw.reduction_layout == "columns" and lower_window.static_taps(win.kh, win.kw):
            _blocked_or_whole_conv(kb, x_ref, win, n, c, a_buf, f_buf, c_buf, m, o, k, dt)
            return
        _im2col(kb, x_ref, win, n, c, a_buf)
    _gemm(kb, a_buf, f_buf, c_buf, 0, 0, m, o, k, dt)


#: the cpu target computes convolutions with constant float32 filters (ONNX models, frozen
#: graphs) with its packed-filter kernel (``conv_packed``: no im2col, filters packed once at
#: compile time; graphc/backends/llvm/packedgemm.py) from this many input channels (its
#: inner loop runs over them per tap) ...
PACKED_CONV_MIN_C = 3
#: ... and this many multiply-adds per output pixel (KH * KW * C) on; the others take the
#: direct convolution (``lower_window.direct_conv``) or im2col + sgemm. Measured on one core
#: of the AVX-512 machine, every convolution of ResNet-50 and SqueezeNet, the kernel alone
#: against sgemm alone (im2col not counted): 0.69-1.0x the sgemm's time for ResNet-50
#: (103-115 GFLOP/s), 0.81-1.05x for SqueezeNet's. Below K = 33 (the direct convolution's
#: range): SqueezeNet's first layer (3 x 3 x 3, stride 2) 541 us against 590 direct, its 1 x 1
#: expand layers (K = 16) 74 against ~90 us; the whole model at batch 1, one thread, CPU
#: time: 8.6 ms with those direct, 8.2 with them packed
PACKED_CONV_MIN_K = 16
#: off: every convolution through im2col + GEMM or the direct form (tests of those, A/B runs)
PACKED_CONV = True


def _packable(lw, dt, shape) -> bool:
    """Whether the cpu's packed convolution takes filters of HWIO ``shape`` (ints, None where
    unknown): the cpu target (``reduction_layout == "columns"``), float32, every size static,
    C and KH * KW * C large enough."""
    if not PACKED_CONV or lw.reduction_layout != "columns" or dt != _dt.float32:
        return False
    if len(shape) != 4 or None in shape or 0 in shape:
        return False
    kh, kw, c, _ = shape
    return c >= PACKED_CONV_MIN_C and kh * kw * c >= PACKED_CONV_MIN_K


def takes_packed(lw, node) -> bool:
    """Whether the Conv2D ``node`` lowers to the packed convolution (``conv_packed``)."""
    return _packed_filters(lw, tuple(node.inputs[1]), node.outs[0].dtype) is not None


def _packed_filters(lw, f_ref, dt):
    """``(shape, value)`` of the HWIO filters at ``f_ref`` when the packed convolution takes
    them (``_packable``): ``value`` the numpy array of a const node (packed once, at compile
    time), None for other filters (packed at every run, PACKED_CONV_VARIABLE); else None."""
    if f_ref in lw.source_buffer and lw.program.node(f_ref[0]).op_def.source == "const":
        f = lw.program.node(f_ref[0]).attrs["value"]
        if getattr(f, "ndim", 0) != 4 or f.dtype != np.float32:
            return None
        shape = tuple(int(d) for d in f.shape)
    elif PACKED_CONV_VARIABLE:
        f, shape = None, tuple(sym.const_value(d) for d in lw.shapes[f_ref])
    else:
        return None
    return (shape, f) if _packable(lw, dt, shape) else None


def _emit_packed_conv(kb, node, x_ref, f_ref, win, n, c, c_buf, m, dt, finish=None) -> bool:
    """A ``conv_packed`` LibCall for this Conv2D when its filters qualify
    (``_packed_filters``); False (nothing emitted) otherwise. Constant filters are packed
    into a new constant buffer (``conv_packed.pack_filters``), the original not read; other
    filters (a variable being trained) into a temporary by a loop before the call."""
    found = _packed_filters(kb.lw, tuple(f_ref), dt)
    if found is None:
        return False
    shape, f = found
    if f is not None and _winograd(kb, node, x_ref, f, win, n, c_buf, finish):
        return True
    nv = conv_packed.panel_vectors(shape[3])
    name = f"pk{node.id}"
    if f is None:
        _emit_filter_packing(kb, f_ref, name, shape, nv, dt)
    elif name not in kb.lw.buffers:  # (a GEMM group may be emitted twice: in place or not)
        packed = conv_packed.pack_filters(f, nv)
        kb.lw.buffers[name] = Buffer(name, dt, (i64(packed.size),), "const", packed)
    x_buf, nchw = _packed_input(kb, x_ref)
    _conv_packed_call(kb, x_buf, name, c_buf, nv, m, shape, win, nchw)
    return True


def _winograd(kb, node, x_ref, f, win, n, c_buf, finish) -> bool:
    """The convolution by Winograd's F(2x2, 3x3) (``lower_winograd``) when it takes these
    constant filters ``f`` and this window; False (nothing emitted) otherwise."""
    _, _, c, o = (int(d) for d in f.shape)
    per_image = sym.mul(sym.floordiv(sym.add(win.oh, 1), 2), sym.floordiv(sym.add(win.ow, 1), 2))
    # (a run-time batch: the tiles of one image, the fewest a run has)
    tiles = sym.const_value(sym.mul(n, per_image))
    tiles = sym.const_value(per_image) if tiles is None else tiles
    if not kb.lw.winograd or not lower_winograd.wins(win, c, o, tiles):
        return False
    x_buf = kb.lw.buffer_for_read(x_ref)
    lower_winograd.emit_winograd(kb, node, x_buf, f, win, n, c, o, c_buf, finish)
    return True


#: the packed convolution of an NCHW feed or constant transposed to NHWC (an imported ONNX
#: model's input: the layout pass leaves that one transpose) reads the NCHW buffer itself
#: (``conv_packed``'s ``nchw``) instead of the transpose's output; the transpose's kernel,
#: read by nothing else, then goes (``lower.drop_unread``). Off: the transpose stays.
PACKED_CONV_NCHW = True


def _packed_input(kb, x_ref):
    """``(buffer, nchw)`` of the packed convolution's input ``x_ref`` (NHWC): the feed or
    constant ``x_ref`` transposes by ``(0, 2, 3, 1)`` with nchw 1, when it is one (read-only
    buffers: no kernel writes them between the transpose and the convolution); else
    ``x_ref``'s own buffer, 0."""
    lw = kb.lw
    p = lw.program.node(x_ref[0])
    perm = p.attrs.get("perm") if p.op_def.kind == "index" else None
    if PACKED_CONV_NCHW and p.op_def.symbolic_dims == "transpose" and perm is not None:
        src = tuple(p.inputs[0])
        if tuple(int(i) for i in perm) == (0, 2, 3, 1) and src in lw.source_buffer:
            name = lw.buffer_for_read(src)
            if lw.buffers[name].kind in ("input", "const"):
                return name, 1
    return lw.buffer_for_read(x_ref), 0


def _conv_packed_call(kb, x_buf, name, c_buf, nv, m, shape, win, nchw=0):
    """Emit the ``conv_packed`` LibCall of ``m`` output pixels over ``win``, the filters of
    HWIO ``shape`` packed in ``name``, the input ``x_buf`` NHWC (NCHW with ``nchw`` 1)."""
    kh, kw, c, o = shape
    kb.reads.update((x_buf, name))
    geometry = (win.h, win.w, win.oh, win.ow, kh, kw, *win.s, *win.d, win.pt, win.pl)
    args = (nv, m, o, c, *geometry, o, 0, nchw)  # (rows of o channels from C's start)
    kb.emit(LibCall("conv_packed", (x_buf, name, c_buf, *(sym.as_expr(a) for a in args))))


def _emit_filter_packing(kb, f_ref, name, shape, nv, dt, flipped=False):
    """A loop writing ``conv_packed.pack_filters``'s layout of the HWIO filters at
    ``f_ref`` (static ``shape``) into the temporary ``name``: element e of panel q, row kk,
    column j is filter element (kk, q * NB + j), or 0 past O and in the C zeros after the
    panels. ``flipped``: the filters of an input gradient's convolution instead, ``f2[i, j,
    oc, ch] = f[kh-1-i, kw-1-j, ch, oc]`` (``shape`` is f2's)."""
    kh, kw, c, o = shape
    k = kh * kw * c
    nb = nv * conv_packed.LANES
    body = -(-o // nb) * k * nb
    size = conv_packed.packed_size(kh, kw, c, o, nv)
    kb.temp(name, dt, (size,))
    f_buf = kb.lw.buffer_for_read(f_ref)
    kb.reads.add(f_buf)
    with kb.loop(i64(size), parallel=size >= PACK_PARALLEL_MIN) as e:
        r = sym.mod(e, k * nb)
        col = sym.add(sym.mul(sym.floordiv(e, k * nb), nb), sym.mod(r, nb))
        valid = Math.AND(Math.LT(e, i64(body)), Math.LT(col, i64(o)))
        kk = sym.floordiv(r, nb)
        if flipped:  # kk = (i * kw + j) * c + oc, col = ch: f[kh-1-i, kw-1-j, ch, oc]
            i, j, oc = sym.floordiv(kk, kw * c), sym.mod(sym.floordiv(kk, c), kw), sym.mod(kk, c)
            src = sym.flat_index((sym.sub(kh - 1, i), sym.sub(kw - 1, j), col, oc), (kh, kw, o, c))
        else:
            src = sym.add(sym.mul(kk, o), col)
        at = sym.select(valid, src, sym.ZERO)
        # (no Let: a local of a serial top-level loop would join the kernel's locals that
        # its parallel loops snapshot; the load's index is clamped in bounds)
        kb.emit(Store(name, e, Math.SELECT(valid, Load(f_buf, at, dt), Const(0.0, dt))))


#: filters packed at every run (a variable's) with a parallel loop from this many floats
PACK_PARALLEL_MIN = 1 << 16
#: off: only constant filters take the packed convolution (A/B runs, tests)
PACKED_CONV_VARIABLE = True


#: output pixels per block of a blocked im2col convolution (see _blocked_conv)
CONV_BLOCK_ROWS = 512
#: ... taken from this many blocks on (fewer would leave threads idle that splitting the one
#: GEMM's rows or columns keeps busy: a batch-1 convolution of a late, 7 x 7, layer)
CONV_MIN_BLOCKS = 8


def _blocked_or_whole_conv(kb, x_ref, win, n, c, col, f_buf, c_buf, m, o, k, dt):
    """_blocked_conv from CONV_MIN_BLOCKS blocks of output pixels on, else im2col then one
    GEMM. Decided here when the pixel count is static; else both are emitted, the one not
    taken with zero trips (no If: the renderer's parallel loops snapshot the scalar locals
    of the whole kernel, those of the other branch included)."""
    least = CONV_BLOCK_ROWS * CONV_MIN_BLOCKS
    m = sym.as_expr(m)
    known = sym.const_value(m)
    if known is not None and known >= least:
        _blocked_conv(kb, x_ref, win, n, c, col, f_buf, c_buf, m, o, k, dt)
        return
    whole = m
    if known is None:
        big = Math.GE(m, i64(least))
        _blocked_conv(kb, x_ref, win, n, c, col, f_buf, c_buf, m, o, k, dt, big)
        whole = sym.select(big, sym.ZERO, m)
    lower_window.emit_im2col(kb, x_ref, win, win.padding, n, c, col, dt, rows=(sym.ZERO, whole),
                             parallel=True)  # fmt: skip
    _gemm(kb, col, f_buf, c_buf, 0, 0, whole, o, k, dt)


def _blocked_conv(kb, x_ref, win, n, c, col, f_buf, c_buf, m, o, k, dt, when=None):
    """im2col and the GEMM interleaved by blocks of CONV_BLOCK_ROWS output pixels, the blocks
    a parallel loop: each block's im2col rows are still in cache when its GEMM (one
    single-threaded BLAS call) packs them, instead of the whole [M, K] matrix going out to
    memory and back (measured on the 2-core AVX-512 machine, one thread, M x K x N = 65536 x
    144 x 16: im2col-sized copy + sgemm 11.5 ms whole, 6.3-7.1 ms by blocks of 256-1024 rows;
    the W10 step's CPU time 293 -> 264 ms with blocks of 512, 276 ms with 1024). The cpu's
    choice (``reduction_layout == "columns"``): the CUDA renderer takes a LibCall only
    outside loops. ``when``: a bool expression; no blocks when it is false."""
    blk = sym.as_expr(CONV_BLOCK_ROWS)
    nblocks = sym.floordiv(sym.add(m, CONV_BLOCK_ROWS - 1), blk)
    if when is not None:
        nblocks = sym.select(when, nblocks, sym.ZERO)
    one, zero = Const(1.0, dt), Const(0.0, dt)
    z = sym.ZERO
    with kb.loop(nblocks, parallel=True) as i:
        lo = sym.mul(i, blk)
        hi = sym.minimum(sym.add(lo, blk), m)
        lower_window.emit_im2col(kb, x_ref, win, win.padding, n, c, col, dt, rows=(lo, hi))
        rows = sym.sub(hi, lo)
        kb.emit(LibCall("gemm", (col, f_buf, c_buf, i64(0), i64(0), rows, sym.as_expr(o),
                                 sym.as_expr(k), sym.ONE, z, z, z, one, zero,
                                 sym.mul(lo, k), z, sym.mul(lo, o))))  # fmt: skip


@rule("Conv2DBackpropInput")
def _conv_bi_shape(n, ins, checks):
    (b, oh, ow, o), (kh, kw, c, fo) = ins[:2]
    what = f"Conv2DBackpropInput '{n.name}'"
    if n.attrs["input_hw"] is not None:
        h, w = (i64(d) for d in n.attrs["input_hw"])
    else:
        lb, h, w, lc = ins[2]
        _same_dims(checks, [lb, lc], [b, c], f"{what}: the input shape does not fit")
    win = _window(n, h, w, kh, kw)
    _window_checks(checks, win, n.attrs["padding"], what)
    _same_dims(checks, [oh, ow, o], [win.oh, win.ow, fo],
               f"{what}: out_backprop does not fit the input and filters")  # fmt: skip
    return (b, h, w, c)


@opaque("Conv2DBackpropInput")
def _conv_backprop_input(kb, node):
    g_ref, f_ref = (tuple(r) for r in node.inputs[:2])
    n, h, w, c = kb.shape((node.id, 0))
    kh, kw, _, o = kb.shape(f_ref)
    win = _window(node, h, w, kh, kw)
    dt = node.outs[0].dtype
    m = sym.product([n, win.oh, win.ow])
    k = sym.product([kh, kw, c])
    g_buf, f_buf = kb.lw.buffer_for_read(g_ref), kb.lw.buffer_for_read(f_ref)
    kb.reads.update((g_buf, f_buf))
    flipped = _flipped_window(win)
    if kb.lw.reduction_layout == "columns" and flipped is not None:
        _input_grad_as_conv(kb, node, g_ref, f_buf, flipped, n, h, w, c, o, dt)
        return
    cols = kb.temp(f"col{node.id}", dt, (m, k))
    _gemm(kb, g_buf, f_buf, cols, 0, 1, m, k, o, dt)  # [M, O] @ [K, O]^T
    out = kb.out_buffer(node)
    if lower_window.static_taps(kh, kw):
        lower_window.emit_col2im(kb, cols, win, n, c, out, dt)
        return
    with kb.nest([n, h, w, c]) as (b, y, x, ch):
        acc = kb.new_var("acc")
        kb.emit(Let(acc, dt, Const(0.0, dt)))
        with kb.nest([kh, kw], parallel=False) as (i, j):
            ok, oy, ox = lower_window.reaching_window(win, y, x, i, j)
            ok = kb.bind(ok, _dt.bool_)
            row = sym.flat_index((b, oy, ox), (n, win.oh, win.ow))
            idx = sym.add(sym.mul(row, k), sym.flat_index((i, j, ch), (kh, kw, c)))
            v = kb.bind(_load_buf(cols, sym.select(ok, idx, 0), dt), dt)
            kb.emit(Let(acc, dt, Math.ADD(Var(acc, dt), Math.SELECT(ok, v, Const(0.0, dt))),
                        reduce=True))  # fmt: skip
        kb.emit(Store(out, sym.flat_index((b, y, x, ch), (n, h, w, c)), Var(acc, dt)))


def _flipped_window(win):
    """The window of the input gradient of a stride-1 convolution seen as a convolution of
    out_backprop with the flipped filter: over the [oh, ow] gradient, the same taps and
    dilation, padding eff - 1 - (the forward padding) on each side; None unless the taps are
    static, the strides 1 and those paddings known constants >= 0."""
    if win.s != (1, 1) or not lower_window.static_taps(win.kh, win.kw):
        return None
    pads = []
    for eff, before, after in ((win.eff_h, win.pt, win.pb), (win.eff_w, win.pl, win.pr)):
        e, p0, p1 = (sym.const_value(v) for v in (eff, before, after))
        if None in (e, p0, p1) or not (0 <= p0 <= e - 1 and 0 <= p1 <= e - 1):
            return None
        pads.append((e - 1 - p0, e - 1 - p1))
    attrs = {"strides": (1, 1), "dilations": win.d, "padding": tuple(pads)}
    return SymWindow(win.oh, win.ow, win.kh, win.kw, attrs)


def _input_grad_as_conv(kb, node, g_ref, f_buf, flipped, n, h, w, c, o, dt):
    """Conv2DBackpropInput of a stride-1 convolution as the convolution of out_backprop with
    the filter flipped in space and transposed in channels (``f2[i, j, oc, ch] =
    f[kh-1-i, kw-1-j, ch, oc]``, a small copy) over ``flipped`` (``_flipped_window``), so it
    runs blocked as the forward pass does (``_blocked_or_whole_conv``) instead of one GEMM
    writing the whole [M, K] column matrix and col2im reading it back."""
    kh, kw = sym.const_value(flipped.kh), sym.const_value(flipped.kw)
    shape = (kh, kw, sym.const_value(o), sym.const_value(c))  # f2's
    if PACKED_CONV_VARIABLE and _packable(kb.lw, dt, shape):
        # the packed kernel, the flip and transpose done by its packing loop
        nv = conv_packed.panel_vectors(shape[3])
        name = f"pk{node.id}"
        _emit_filter_packing(kb, tuple(node.inputs[1]), name, shape, nv, dt, flipped=True)
        g_buf = kb.lw.buffer_for_read(g_ref)
        m = sym.product([n, h, w])
        _conv_packed_call(kb, g_buf, name, kb.out_buffer(node), nv, m, shape, flipped)
        return
    f2 = kb.temp(f"flip{node.id}", dt, (kh, kw, o, c))
    with kb.nest([flipped.kh, flipped.kw, o, c]) as (i, j, oc, ch):
        src = sym.flat_index((sym.sub(kh - 1, i), sym.sub(kw - 1, j), ch, oc), (kh, kw, c, o))
        kb.emit(Store(f2, sym.flat_index((i, j, oc, ch), (kh, kw, o, c)), Load(f_buf, src, dt)))
    m = sym.product([n, h, w])
    k = sym.product([kh, kw, o])
    cols = kb.temp(f"col{node.id}", dt, (m, k))
    _blocked_or_whole_conv(kb, g_ref, flipped, n, o, cols, f2, kb.out_buffer(node), m, c, k, dt)


def _load_buf(buf, idx, dt):
    return Load(buf, idx, dt)


@rule("Conv2DBackpropFilter")
def _conv_bf_shape(n, ins, checks):
    (b, h, w, c), (gb, oh, ow, o), (kh, kw, fc, fo) = ins
    what = f"Conv2DBackpropFilter '{n.name}'"
    win = _window(n, h, w, kh, kw)
    _window_checks(checks, win, n.attrs["padding"], what)
    _same_dims(checks, [gb, oh, ow, o, c], [b, win.oh, win.ow, fo, fc],
               f"{what}: out_backprop does not fit the input and filters")  # fmt: skip
    return (kh, kw, c, o)


@opaque("Conv2DBackpropFilter")
def _conv_backprop_filter(kb, node):
    x_ref, g_ref = (tuple(r) for r in node.inputs[:2])
    n, h, w, c = kb.shape(x_ref)
    kh, kw, _, o = kb.shape((node.id, 0))
    win = _window(node, h, w, kh, kw)
    dt = node.outs[0].dtype
    m = sym.product([n, win.oh, win.ow])
    k = sym.product([kh, kw, c])
    if lower_window.direct_conv(win, c):
        part = kb.temp(f"part{node.id}", dt, (n, k, o))
        lower_window.emit_direct_filter_grad(kb, x_ref, g_ref, win, n, c, o, kb.out_buffer(node),
                                             part, dt)  # fmt: skip
        return
    cols = kb.temp(f"col{node.id}", dt, (m, k))
    g_buf = kb.lw.buffer_for_read(g_ref)
    kb.reads.add(g_buf)
    out = kb.out_buffer(node)
    if kb.lw.reduction_layout == "columns" and lower_window.static_taps(win.kh, win.kw):
        _blocked_or_whole_filter_grad(kb, node, x_ref, win, n, c, cols, g_buf, out, m, o, k, dt)
        return
    _im2col(kb, x_ref, win, n, c, cols)
    _gemm(kb, cols, g_buf, out, 1, 0, k, o, m, dt)  # [M, K]^T @ [M, O]


def _blocked_or_whole_filter_grad(kb, node, x_ref, win, n, c, cols, g_buf, out, m, o, k, dt):
    """Conv2DBackpropFilter as _blocked_conv does the forward pass: blocks of CONV_BLOCK_ROWS
    output pixels in a parallel loop, each block's im2col rows then its GEMM
    ``part[block] = cols[block]^T @ g[block]`` ([K, O]: the block's share of the sum over
    pixels), then a parallel loop summing the partials. From CONV_MIN_BLOCKS blocks on (as
    _blocked_or_whole_conv: static counts decide here, run-time ones emit both forms, the
    one not taken with zero trips); else im2col then one GEMM reducing over all pixels."""
    least = CONV_BLOCK_ROWS * CONV_MIN_BLOCKS
    m = sym.as_expr(m)
    known = sym.const_value(m)
    big = None if known is None else Const(known >= least, _dt.bool_)
    if known is None:
        big = Math.GE(m, i64(least))
    blk = sym.as_expr(CONV_BLOCK_ROWS)
    nblocks = sym.floordiv(sym.add(m, CONV_BLOCK_ROWS - 1), blk)
    ko = sym.mul(k, o)
    one, zero = Const(1.0, dt), Const(0.0, dt)
    z = sym.ZERO
    if known is None or known >= least:
        part = kb.temp(f"part{node.id}", dt, (nblocks, k, o))
        with kb.loop(sym.select(big, nblocks, z), parallel=True) as i:
            lo = sym.mul(i, blk)
            hi = sym.minimum(sym.add(lo, blk), m)
            lower_window.emit_im2col(kb, x_ref, win, win.padding, n, c, cols, dt, rows=(lo, hi))
            offsets = (sym.mul(lo, k), sym.mul(lo, o), sym.mul(i, ko))
            kb.emit(LibCall("gemm", (cols, g_buf, part, i64(1), i64(0), sym.as_expr(k),
                                     sym.as_expr(o), sym.sub(hi, lo), sym.ONE, z, z, z, one,
                                     zero, *offsets)))  # fmt: skip
        with kb.loop(sym.select(big, ko, z), parallel=True) as e:
            acc = kb.new_var("acc")
            kb.emit(Let(acc, dt, zero))
            with kb.loop(nblocks) as i:
                v = Load(part, sym.add(sym.mul(i, ko), e), dt)
                kb.emit(Let(acc, dt, Math.ADD(Var(acc, dt), v), reduce=True))
            kb.emit(Store(out, e, Var(acc, dt)))
        if known is not None:
            return
    whole = m if known is not None else sym.select(big, z, m)
    lower_window.emit_im2col(kb, x_ref, win, win.padding, n, c, cols, dt, rows=(z, whole),
                             parallel=True)  # fmt: skip
    # a GEMM of no rows (the blocked form taken) writes nothing: K is its row count here
    rows = sym.as_expr(k) if known is not None else sym.select(big, z, k)
    kb.emit(LibCall("gemm", (cols, g_buf, out, i64(1), i64(0), rows, sym.as_expr(o), whole,
                             sym.ONE, z, z, z, one, zero, z, z, z)))  # fmt: skip
