"""Winograd F(2x2, 3x3): 3 x 3 stride-1 convolutions with constant float32 filters on the cpu
target, in 2.25 times fewer multiply-adds than the direct form (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", 2015).

The output is cut in tiles of 2 x 2 pixels; tile t of the output reads a 4 x 4 patch ``d``
of the input (pixels ``(2 ty + i - pt, 2 tx + j - pl)``, 0 in the padding). Per channel,
with the constant matrices below::

    V = B^T d B          (input transform: 4 x 4 values per tile and input channel)
    U = G g G^T          (filter transform, done once at compile time: 4 x 4 per (c, o))
    M[ab] = V[ab] @ U[ab]   for each of the 16 positions ab: a [T, C] x [C, O] product
    y = A^T M A          (output transform: the tile's 2 x 2 outputs per output channel)

The 16 products carry the multiply-adds (``T * C * O`` each: 16 / 36 of the direct form's
``4 T * 9 * C * O``). They run on the packed-filter kernel as one batched ``gemm_packed``
call (each a 1 x 1 convolution over a T-pixel "image", each ``U[ab]`` packed at compile
time), so they go as fast as the direct convolution per multiply-add. The transforms add
two passes over 4x the input and output sizes (``V`` and ``M``: 16 values per tile of 4
outputs), so the form pays where the products are long (channels) and the tiles many;
``wins`` says where.

F(2x2, 3x3) only: its transforms use the coefficients 0, +-1 and 1/2 (in ``G``, applied to
the filters in float64 before rounding), so the results differ from the direct form's by a
few float32 roundings, like a different summation order. F(4x4, 3x3) would save more
(4x) at a larger error (its coefficients reach 8 and 1/4) and 36 products.

The kernel is: a parallel loop over the tiles writing the 16 planes of ``V`` (``[T, C]``
each, ``_plane`` apart), the ``gemm_packed`` call writing the 16 planes of ``M`` (``[T,
O]``), then a parallel loop over the output pixels (NHWC) applying ``A^T M A`` with the
pixel's row and column of ``A^T`` (so an odd output size needs no special last tile). The
group's epilogue (bias, activation, a concat's piece) is applied in that loop
(``lower_gemm.Finish``), or, when it reads the convolution at other elements, by a loop over
the output after it, as for the other lowerings.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..expr import Const, Load, Math
from . import conv_packed, lower_window, sym
from .ir import Buffer, LibCall, Store

#: off: every 3 x 3 convolution takes the direct packed form (tests, A/B runs)
WINOGRAD = True

#: B^T, G and A^T of F(2x2, 3x3)
BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))

#: the form is taken from this many input and output channels on ...
MIN_CHANNELS = 32
#: ... and this many tiles (output pixels / 4, over the batch)
MIN_TILES = 16


def transform_filters(f: np.ndarray) -> np.ndarray:
    """``U[a, b, c, o] = (G g G^T)[a, b]`` of HWIO filters ``f [3, 3, C, O]`` (float64
    arithmetic, float32 result)."""
    g = np.asarray(G, np.float64)
    u = np.einsum("ai,ijco,bj->abco", g, f.astype(np.float64), g)
    return u.astype(np.float32)


def wins(win, c, o, tiles) -> bool:
    """Whether the Winograd form is taken for a stride-1, undilated 3 x 3 window ``win``
    with ``c`` input and ``o`` output channels (ints) over ``tiles`` tiles (an int, the
    least a run may have; None when unknown: a run-time image size)."""
    if not WINOGRAD:
        return False
    if (sym.const_value(win.kh), sym.const_value(win.kw)) != (3, 3):
        return False
    if win.s != (1, 1) or win.d != (1, 1):
        return False
    if c < MIN_CHANNELS or o < MIN_CHANNELS:
        return False
    return tiles is None or tiles >= MIN_TILES


def _term(acc, coef, v):
    """``acc + coef * v`` for a coefficient of 0 or +-1 (``acc`` None: nothing yet)."""
    if coef == 0:
        return acc
    if acc is None:
        return v if coef == 1 else Math.NEG(v)
    return Math.ADD(acc, v) if coef == 1 else Math.SUB(acc, v)


def emit_winograd(kb, node, x_buf, f, win, n, c, o, c_buf, finish=None) -> None:
    """The convolution of ``node`` (input buffer ``x_buf``, NHWC; constant float32 HWIO
    filters ``f`` of shape [3, 3, c, o]) into ``c_buf`` by F(2x2, 3x3) (module docstring);
    ``finish``: the group's epilogue, applied in the output transform (``lower_gemm.Finish``)."""
    lw = kb.lw
    dt = _dt.float32
    th = sym.floordiv(sym.add(win.oh, 1), sym.as_expr(2))
    tw = sym.floordiv(sym.add(win.ow, 1), sym.as_expr(2))
    tiles = sym.product([n, th, tw])
    nv = conv_packed.panel_vectors(o)
    sv, sm = _plane(tiles, c), _plane(tiles, o)
    v_buf = kb.temp(f"wv{node.id}", dt, (sym.mul(sv, 16),))
    m_buf = kb.temp(f"wm{node.id}", dt, (sym.mul(sm, 16),))
    u_buf = f"wu{node.id}"
    size = conv_packed.packed_size(1, 1, c, o, nv)
    if u_buf not in lw.buffers:  # (a GEMM group may be emitted twice: in place or not)
        u = transform_filters(f)
        packed = np.concatenate(
            [conv_packed.pack_filters(u[a, b].reshape(1, 1, c, o), nv) for a in range(4)
             for b in range(4)])  # fmt: skip
        lw.buffers[u_buf] = Buffer(u_buf, dt, (sym.as_expr(packed.size),), "const", packed)
    kb.reads.update((x_buf, u_buf))
    _input_transform(kb, x_buf, win, n, th, tw, c, v_buf, sv, dt)
    args = (nv, 16, tiles, o, c, sv, size, sm)
    kb.emit(LibCall("gemm_packed", (v_buf, u_buf, m_buf, *(sym.as_expr(e) for e in args))))
    _output_transform(kb, m_buf, win, n, th, tw, o, c_buf, sm, dt, finish)


def _plane(tiles, width):
    """Floats from one of the 16 planes of ``tiles`` rows of ``width`` to the next: the
    rows rounded up to whole 64-byte lines, an odd number of them. The transforms read or
    write the 16 planes at once, one stream each; planes a multiple of 4 KB apart (56 x 56 x
    64: 784 x 64 floats) put all 16 streams in one set of the L1 cache (Zen 4: 8 ways of 64
    sets), which doubled a ResNet-50 layer's time."""
    lines = sym.floordiv(sym.add(sym.mul(tiles, width), 15), sym.as_expr(16))
    return sym.mul(sym.add(lines, sym.sub(sym.ONE, sym.mod(lines, sym.as_expr(2)))), 16)


def _pick(odd, v):
    """``A^T v``'s element for an odd (``odd`` true) or even position: ``v1 - v2 - v3`` or
    ``v0 + v1 + v2``."""
    return Math.SELECT(
        odd, Math.SUB(Math.SUB(v[1], v[2]), v[3]), Math.ADD(Math.ADD(v[0], v[1]), v[2])
    )


def _input_transform(kb, x_buf, win, n, th, tw, c, v_buf, plane, dt):
    """``v_buf[4 a + b, t, ch] = (B^T d B)[a, b]``, d the tile's 4 x 4 input patch (0 in the
    padding): a parallel loop over the tiles, the channels innermost (contiguous)."""
    zero = Const(0.0, dt)
    with lower_window.pixel_loop(kb, n, th, tw) as (t, b, ty, tx):
        taps = []
        for i in range(4):
            for j in range(4):
                y = sym.add(sym.mul(ty, 2), sym.sub(sym.as_expr(i), win.pt))
                x = sym.add(sym.mul(tx, 2), sym.sub(sym.as_expr(j), win.pl))
                ok = kb.bind(lower_window.inside(y, x, win.h, win.w), _dt.bool_)
                at = kb.bind(sym.select(ok, sym.flat_index((b, y, x), (n, win.h, win.w)), 0),
                             _dt.int64)  # fmt: skip
                taps.append((ok, at))
        with kb.loop(c) as ch:
            d = [[None] * 4 for _ in range(4)]
            for i in range(4):
                for j in range(4):
                    ok, at = taps[4 * i + j]
                    v = Load(x_buf, sym.add(sym.mul(at, c), ch), dt)
                    d[i][j] = kb.bind(Math.SELECT(ok, v, zero), dt)
            rows = [[None] * 4 for _ in range(4)]  # (B^T d)[a, j]
            for a in range(4):
                for j in range(4):
                    acc = None
                    for i in range(4):
                        acc = _term(acc, BT[a][i], d[i][j])
                    rows[a][j] = kb.bind(acc, dt)
            for a in range(4):
                for b2 in range(4):
                    acc = None
                    for j in range(4):
                        acc = _term(acc, BT[b2][j], rows[a][j])
                    at = sym.add(sym.mul(plane, 4 * a + b2), sym.add(sym.mul(t, c), ch))
                    kb.emit(Store(v_buf, at, acc))


def _output_transform(kb, m_buf, win, n, th, tw, o, c_buf, plane, dt, finish):
    """``c_buf[b, oy, ox, k] = sum over (a, b) of A^T[oy % 2, a] * A^T[ox % 2, b] *
    m_buf[4 a + b, t, k]``, t the pixel's tile: a parallel loop over the output pixels, the
    channels innermost (contiguous). The rows of A^T, (1, 1, 1, 0) for an even position and
    (0, 1, -1, -1) for an odd one, are picked by selects, not multiplied in (0 * inf)."""
    two = sym.as_expr(2)
    with lower_window.pixel_loop(kb, n, win.oh, win.ow) as (p, b, oy, ox):
        t = kb.bind(sym.flat_index((b, sym.floordiv(oy, two), sym.floordiv(ox, two)),
                                   (n, th, tw)), _dt.int64)  # fmt: skip
        odd_y = kb.bind(Math.EQ(sym.mod(oy, two), sym.ONE), _dt.bool_)
        odd_x = kb.bind(Math.EQ(sym.mod(ox, two), sym.ONE), _dt.bool_)
        with kb.loop(o) as k:
            idx = sym.add(sym.mul(t, o), k)
            rows = []
            for a in range(4):
                ms = [kb.bind(Load(m_buf, sym.add(sym.mul(plane, 4 * a + j), idx), dt), dt)
                      for j in range(4)]  # fmt: skip
                rows.append(kb.bind(_pick(odd_x, ms), dt))
            acc = _pick(odd_y, rows)
            flat = sym.add(sym.mul(p, o), k)
            acc = kb.bind(acc, dt)
            if finish is None or finish.store_raw:
                kb.emit(Store(c_buf, flat, acc))
            if finish is not None:
                finish(kb, (b, oy, ox, k), flat, acc)
