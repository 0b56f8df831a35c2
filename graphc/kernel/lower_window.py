"""Channel-innermost lowerings of the 2-D window ops: pools, their gradients and col2im.

NHWC keeps the channels of one pixel contiguous. These kernels run one flat parallel loop
over the pixels (threads split it into runs of whole images or rows; the CUDA renderer gives
each pixel a thread) with the channel loop innermost, and unroll the window taps in Python:
per pixel, each tap's position and its "inside the image" test are computed once, so the
channel loop body is straight-line code over contiguous loads and one store, with no value
carried between channels. LLVM vectorises it; the tap-innermost form of ``lower_nn.py``
(a tap loop per element, index arithmetic and divisions per tap and channel) does not.

Taps are unrolled only for windows known at compile time with at most ``MAX_TAPS`` taps
(pools always know their window; convolutions know it when the filter's spatial size is
static); other windows keep the generic tap loops of ``lower_nn.py``.

Results are bit-identical to the tap-loop forms: taps are visited in the same order
(row-major over the window), accumulations start from the same value, padding reads as
-inf (max) or is skipped (sums), and max pools pick the window's maximum as the reference's
argmax does (first NaN, else first maximum, with padding taps counted as -inf).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from .. import dtypes as _dt
from ..expr import Const, Expr, Load, Math, Var
from . import sym
from .ir import If, Let, Store

#: Largest window (kh * kw taps) unrolled into the channel loop.
MAX_TAPS = 64

#: Largest static kh * kw * c of a Conv2D computed directly instead of im2col + GEMM: a
#: product that short runs BLAS far below its speed, and im2col costs more than the math.
DIRECT_MAX_K = 32
#: partial sums of each dot product of emit_direct_conv
DIRECT_CHAINS = 3

_TRUE = Const(True, _dt.bool_)


def static_taps(kh, kw) -> bool:
    """True when a window of kh x kw taps is unrolled here (both sizes static, not too many)."""
    kh, kw = sym.const_value(sym.as_expr(kh)), sym.const_value(sym.as_expr(kw))
    return kh is not None and kw is not None and 0 < kh * kw <= MAX_TAPS


@dataclass(frozen=True)
class Tap:
    """Tap ``t`` (= i * kw + j) of one pixel: ``ok`` says it is real (inside the image, or
    a window that exists), ``at`` is the flat pixel index it refers to (0 when not ok, so
    loads through it stay in bounds)."""

    t: int
    ok: Expr
    at: Expr
    yx: tuple = ()  # source taps: the window (oy, ox), (0, 0) when not ok


@contextmanager
def pixel_loop(kb, n, hh, ww, rows=None, parallel=None):
    """One parallel loop over the n * hh * ww pixels; yields (p, b, y, x), p the flat pixel.
    ``rows``: (lo, hi), over pixels [lo, hi) only, serial unless ``parallel``."""
    lo, hi = rows if rows is not None else (sym.ZERO, sym.product([n, hh, ww]))
    parallel = rows is None if parallel is None else parallel
    with kb.loop(hi, parallel=parallel, start=lo) as p:
        b, y, x = (kb.bind(e, _dt.int64) for e in sym.unflatten(p, (n, hh, ww)))
        yield p, b, y, x


def window_taps(kb, win, padding, n, b, oy, ox) -> list:
    """Taps of window (oy, ox): the input pixel (oy*sh + i*dh - pt, ox*sw + j*dw - pl)."""
    kh, kw = sym.const_value(win.kh), sym.const_value(win.kw)
    taps = []
    for i in range(kh):
        for j in range(kw):
            y, x = tap_pixel(win, oy, ox, i, j)
            # a VALID window always fits (the output size is computed so)
            ok = _TRUE if padding == "VALID" else kb.bind(inside(y, x, win.h, win.w), _dt.bool_)
            at = sym.select(ok, sym.flat_index((b, y, x), (n, win.h, win.w)), 0)
            taps.append(Tap(i * kw + j, ok, kb.bind(at, _dt.int64)))
    return taps


def source_taps(kb, win, n, b, y, x) -> list:
    """Windows that read input pixel (y, x): tap (i, j) of window (oy, ox) does when
    oy * sh = y + pt - i * dh (and the same across); ``at`` is the flat window (b, oy, ox)."""
    kh, kw = sym.const_value(win.kh), sym.const_value(win.kw)
    taps = []
    for i in range(kh):
        for j in range(kw):
            ok, oy, ox = reaching_window(win, y, x, i, j)
            ok = kb.bind(ok, _dt.bool_)
            oy = kb.bind(sym.select(ok, oy, 0), _dt.int64)
            ox = kb.bind(sym.select(ok, ox, 0), _dt.int64)
            at = kb.bind(sym.flat_index((b, oy, ox), (n, win.oh, win.ow)), _dt.int64)
            taps.append(Tap(i * kw + j, ok, at, (oy, ox)))
    return taps


def inside(y, x, h, w):
    """0 <= y < h and 0 <= x < w."""
    return Math.AND(
        Math.AND(Math.GE(y, sym.ZERO), Math.LT(y, sym.as_expr(h))),
        Math.AND(Math.GE(x, sym.ZERO), Math.LT(x, sym.as_expr(w))),
    )


def tap_pixel(win, oy, ox, i, j):
    """The input pixel (y, x) that tap (i, j) of output window (oy, ox) reads:
    y = oy * sh + i * dh - pt (and the same across); it may lie in the padding."""
    (sh, sw), (dh, dw) = win.s, win.d
    y = sym.sub(sym.add(sym.mul(oy, sh), sym.mul(i, dh)), win.pt)
    x = sym.sub(sym.add(sym.mul(ox, sw), sym.mul(j, dw)), win.pl)
    return y, x


def reaching_window(win, y, x, i, j):
    """``(ok, oy, ox)``: the output window whose tap (i, j) reads input pixel (y, x), from
    oy * sh = y + pt - i * dh (and the same across); ``ok`` is false where no window does
    (outside the output, or between two strides). ``oy``/``ox`` are only valid where ok."""
    (sh, sw), (dh, dw) = win.s, win.d
    ty = sym.sub(sym.add(y, win.pt), sym.mul(i, dh))
    tx = sym.sub(sym.add(x, win.pl), sym.mul(j, dw))
    oy, ox = sym.floordiv(ty, sh), sym.floordiv(tx, sw)
    ok = inside(oy, ox, win.oh, win.ow)
    if sh > 1:
        ok = Math.AND(ok, Math.EQ(sym.mod(ty, sh), sym.ZERO))
    if sw > 1:
        ok = Math.AND(ok, Math.EQ(sym.mod(tx, sw), sym.ZERO))
    return ok, oy, ox


def _masked(ok, v, fill):
    return v if ok == _TRUE else Math.SELECT(ok, v, fill)


def _elem(at, c, ch):
    """Flat index of channel ``ch`` of pixel ``at`` (NHWC, c channels)."""
    return sym.add(sym.mul(at, c), ch)


# -- pools -------------------------------------------------------------------------------------


def emit_pool(kb, node, x_ref, win, n, c, out, is_max):
    """MaxPool / AvgPool: per output pixel, the max (or mean over real inputs) of its taps."""
    dt = node.outs[0].dtype
    padding = node.attrs["padding"]
    fill = Const(float("-inf") if is_max else 0.0, dt)
    with pixel_loop(kb, n, win.oh, win.ow) as (p, b, oy, ox):
        taps = window_taps(kb, win, padding, n, b, oy, ox)
        if not is_max:
            cnt = Const(0.0, dt)
            for tap in taps:
                cnt = Math.ADD(cnt, _masked(tap.ok, Const(1.0, dt), Const(0.0, dt)))
            cnt = kb.bind(cnt, dt)
        with kb.loop(c) as ch:
            vs = [_masked(t.ok, kb.load(x_ref, _elem(t.at, c, ch)), fill) for t in taps]
            if is_max:
                kb.emit(Store(out, _elem(p, c, ch), _window_max(kb, vs, dt)))
            else:
                acc = fill
                for v in vs:
                    acc = kb.bind(Math.ADD(acc, v), dt)
                kb.emit(Store(out, _elem(p, c, ch), Math.DIV(acc, cnt)))


#: off: a window's maximum as a tree of ``Math.MAX`` (A/B runs)
SPLIT_NAN_MAX = True


def _window_max(kb, vs, dt):
    """The maximum of ``vs``, NaN when one is (``Math.MAX``'s result): plain maxima (``a > b ?
    a : b``, one instruction each on x86) and, apart, whether any value is NaN (unordered
    compares of pairs, or-ed), then one select. ``Math.MAX`` itself takes two compares and
    two blends to carry a NaN through each step: SqueezeNet's first pool (3 x 3, stride 2,
    111 x 111 x 64, 2 threads) took 0.121 ms with it, 0.072 with plain maxima alone. Both
    trees are pairwise: a chain of 8 dependent steps bounded the loop by their latency."""
    if not SPLIT_NAN_MAX:
        while len(vs) > 1:
            pairs = [Math.MAX(a, b) for a, b in zip(vs[::2], vs[1::2])]
            vs = [kb.bind(v, dt) for v in pairs] + vs[len(pairs) * 2 :]
        return vs[0]
    ms, nans = list(vs), [Math.ISNAN(v) for v in vs]
    while len(ms) > 1:
        pairs = [Math.SELECT(Math.GT(a, b), a, b) for a, b in zip(ms[::2], ms[1::2])]
        ms = [kb.bind(v, dt) for v in pairs] + ms[len(pairs) * 2 :]
        ors = [Math.OR(a, b) for a, b in zip(nans[::2], nans[1::2])]
        nans = [kb.bind(v, _dt.bool_) for v in ors] + nans[len(ors) * 2 :]
    return Math.SELECT(nans[0], Const(float("nan"), dt), ms[0])


def first_max(kb, x_ref, taps, c, ch, dt, d_ref=None):
    """(tap number, d at that tap) of the maximum of x over ``taps`` at channel ch, chosen as
    the reference does (numpy argmax over the window with padding read as -inf): the first
    NaN, else the first maximum; an all -inf window picks tap 0 even when it is padding.
    d is 0 when the chosen tap is padding (its gradient falls outside the image)."""
    ninf, zero = Const(float("-inf"), dt), Const(0.0, dt)
    best = tap = dv = None
    for t in taps:
        at = _elem(t.at, c, ch)
        v = kb.bind(_masked(t.ok, kb.load(x_ref, at), ninf), dt)
        d = _masked(t.ok, kb.load(d_ref, at), zero) if d_ref is not None else None
        if best is None:
            best, tap, dv = v, Const(t.t, _dt.int32), d
            continue
        nan_first = Math.AND(Math.ISNAN(v), Math.NOT(Math.ISNAN(best)))
        better = kb.bind(Math.OR(Math.GT(v, best), nan_first), _dt.bool_)
        tap = kb.bind(Math.SELECT(better, Const(t.t, _dt.int32), tap), _dt.int32)
        best = kb.bind(Math.SELECT(better, v, best), dt)
        if d_ref is not None:
            dv = kb.bind(Math.SELECT(better, d, dv), dt)
    return tap, dv


def disjoint(win) -> bool:
    """True when no two windows share an input element (stride at least the window)."""
    eh, ew = sym.const_value(win.eff_h), sym.const_value(win.eff_w)
    return eh is not None and ew is not None and win.s[0] >= eh and win.s[1] >= ew


def _tiles(win, padding) -> bool:
    """True when disjoint windows provably cover every input element: stride = window and
    SAME padding (the last window reaches past the end) or a size the stride divides.
    Explicit padding shifts the windows: never assumed to tile."""
    if padding not in ("SAME", "VALID"):
        return False
    for size, s, eff in ((win.h, win.s[0], win.eff_h), (win.w, win.s[1], win.eff_w)):
        if s != sym.const_value(eff):
            return False
        if padding != "SAME" and (sym.const_value(size) is None or sym.const_value(size) % s):
            return False
    return True


def _guarded(kb, ok, emit):
    """``emit()`` into an If(ok), or inline when ok is the constant True."""
    if ok == _TRUE:
        emit()
        return
    kb.blocks.append([])
    kb.memos.append({})
    emit()
    then = tuple(kb.blocks.pop())
    kb.memos.pop()
    kb.emit(If(ok, then))


def emit_max_pool_grad_disjoint(kb, node, x_ref, g_ref, win, n, c, out):
    """Disjoint windows: one pass over the windows writes every tap of each window (its
    gradient at the argmax tap, 0 elsewhere; padding taps skipped), so no argmax buffer and
    no gather. Elements no window covers are zeroed first, only when some may exist."""
    dt = node.outs[0].dtype
    padding = node.attrs["padding"]
    if not _tiles(win, padding):
        with kb.loop(sym.product([n, win.h, win.w, c]), parallel=True) as e:
            kb.emit(Store(out, e, Const(0.0, dt)))
    with pixel_loop(kb, n, win.oh, win.ow) as (p, b, oy, ox):
        taps = window_taps(kb, win, padding, n, b, oy, ox)
        for t in taps:

            def write(t=t):
                # one channel loop per tap: the argmax is recomputed from L1-resident rows
                # (cheaper than a stored argmax row), and each loop stores one contiguous row
                with kb.loop(c) as ch:
                    tap, _ = first_max(kb, x_ref, taps, c, ch, dt)
                    gv = kb.load(g_ref, _elem(p, c, ch))
                    take = Math.EQ(tap, Const(t.t, _dt.int32))
                    kb.emit(Store(out, _elem(t.at, c, ch), Math.SELECT(take, gv, Const(0.0, dt))))

            _guarded(kb, t.ok, write)


def emit_max_pool_grad(kb, node, x_ref, g_ref, win, n, c, out, taps_buf):
    """Two passes: each window's argmax tap (int32, pooled shape), then per input element
    the sum of the gradients of the windows whose argmax it is."""
    dt = node.outs[0].dtype
    padding = node.attrs["padding"]
    with pixel_loop(kb, n, win.oh, win.ow) as (p, b, oy, ox):
        taps = window_taps(kb, win, padding, n, b, oy, ox)
        with kb.loop(c) as ch:
            tap, _ = first_max(kb, x_ref, taps, c, ch, dt)
            kb.emit(Store(taps_buf, _elem(p, c, ch), tap))
    with pixel_loop(kb, n, win.h, win.w) as (p, b, y, x):
        sources = source_taps(kb, win, n, b, y, x)
        with kb.loop(c) as ch:
            acc = Const(0.0, dt)
            for s in sources:
                at = _elem(s.at, c, ch)
                chosen = Math.EQ(Load(taps_buf, at, _dt.int32), Const(s.t, _dt.int32))
                take = Math.AND(s.ok, chosen)
                acc = kb.bind(
                    Math.ADD(acc, Math.SELECT(take, kb.load(g_ref, at), Const(0.0, dt))), dt
                )
            kb.emit(Store(out, _elem(p, c, ch), acc))


def emit_avg_pool_grad(kb, node, g_ref, win, n, c, out, count):
    """Per input element, the sum over the windows reading it of their gradient / count."""
    dt = node.outs[0].dtype
    with pixel_loop(kb, n, win.h, win.w) as (p, b, y, x):
        sources = source_taps(kb, win, n, b, y, x)
        counts = [kb.bind(count(win, *s.yx, dt), dt) for s in sources]
        with kb.loop(c) as ch:
            acc = Const(0.0, dt)
            for s, cnt in zip(sources, counts):
                v = Math.DIV(kb.load(g_ref, _elem(s.at, c, ch)), cnt)
                acc = kb.bind(Math.ADD(acc, Math.SELECT(s.ok, v, Const(0.0, dt))), dt)
            kb.emit(Store(out, _elem(p, c, ch), acc))


def emit_max_pool_grad_grad(kb, node, x_ref, d_ref, win, n, c, out):
    """out[window] = d at the first maximum of x in the window (0 for an empty window)."""
    dt = node.outs[0].dtype
    padding = node.attrs["padding"]
    with pixel_loop(kb, n, win.oh, win.ow) as (p, b, oy, ox):
        taps = window_taps(kb, win, padding, n, b, oy, ox)
        with kb.loop(c) as ch:
            _, dv = first_max(kb, x_ref, taps, c, ch, dt, d_ref)
            kb.emit(Store(out, _elem(p, c, ch), dv))


# -- convolution -------------------------------------------------------------------------------


def emit_im2col(kb, x_ref, win, padding, n, c, col, dt, rows=None, parallel=None):
    """col[(b, oy, ox), (tap, ch)] = x at the tap's input pixel, or 0 in the padding: one
    contiguous channel row copied per tap (the tap's position and test computed per pixel).
    ``rows``: (lo, hi), only the output pixels [lo, hi), serially unless ``parallel``."""
    k = sym.mul(sym.product([win.kh, win.kw]), c)
    zero = Const(0.0, dt)
    with pixel_loop(kb, n, win.oh, win.ow, rows, parallel) as (p, b, oy, ox):
        for t in window_taps(kb, win, padding, n, b, oy, ox):
            with kb.loop(c) as ch:
                v = _masked(t.ok, kb.load(x_ref, _elem(t.at, c, ch)), zero)
                kb.emit(Store(col, sym.add(sym.mul(p, k), sym.add(sym.mul(t.t, c), ch)), v))


def emit_col2im(kb, cols, win, n, c, out, dt):
    """out[b, y, x, ch] = sum of the column entries of the taps that read (y, x): ``cols`` is
    [N*OH*OW, KH*KW*C] (row = output pixel, column = (tap, channel)); a gather, so no
    atomics and no zero-fill."""
    k = sym.mul(sym.product([win.kh, win.kw]), c)
    with pixel_loop(kb, n, win.h, win.w) as (p, b, y, x):
        sources = source_taps(kb, win, n, b, y, x)
        with kb.loop(c) as ch:
            acc = Const(0.0, dt)
            for s in sources:
                idx = sym.add(sym.mul(s.at, k), sym.add(sym.mul(s.t, c), ch))
                v = Math.SELECT(s.ok, Load(cols, idx, dt), Const(0.0, dt))
                acc = kb.bind(Math.ADD(acc, v), dt)
            kb.emit(Store(out, _elem(p, c, ch), acc))


def direct_conv(win, c) -> bool:
    """True when the Conv2D is computed by ``emit_direct_conv`` (static, short dot products)."""
    k = sym.const_value(sym.mul(sym.product([win.kh, win.kw]), c))
    return static_taps(win.kh, win.kw) and k is not None and k <= DIRECT_MAX_K


def _window_values(kb, x_ref, win, padding, n, b, oy, ox, c, dt) -> list:
    """The K = taps x channels inputs of output pixel (b, oy, ox), each bound once, in
    (tap, channel) order; 0 where a tap falls in the padding (``c`` is static)."""
    zero = Const(0.0, dt)
    xs = []
    for t in window_taps(kb, win, padding, n, b, oy, ox):
        for ch in range(sym.const_value(sym.as_expr(c))):
            v = _masked(t.ok, kb.load(x_ref, _elem(t.at, c, ch)), zero)
            xs.append(kb.bind(v, dt))
    return xs


def emit_direct_conv(kb, x_ref, f_buf, win, padding, n, c, o, out, dt):
    """out[p, oc] = sum over (tap, ch) of x[tap pixel, ch] * f[tap, ch, oc]: the K inputs of
    each output pixel are loaded once (0 in the padding) and the filter-row loop over the
    output channels is innermost and contiguous (vectorised). For the first layer of a CNN
    (1-3 input channels) this replaces an im2col copy and a GEMM with K of 9 to 27.

    The K products are summed in DIRECT_CHAINS interleaved partial sums, added at the end:
    one chain of K dependent additions bounded the loop by the add latency (SqueezeNet's
    3 x 3 x 3 -> 64 stride-2 layer with its bias and ReLU, one thread, thread CPU time on a
    loaded machine: 660 -> 590 us)."""
    zero = Const(0.0, dt)
    with pixel_loop(kb, n, win.oh, win.ow) as (p, b, oy, ox):
        xs = _window_values(kb, x_ref, win, padding, n, b, oy, ox, c, dt)
        with kb.loop(o) as oc:
            accs = [zero] * max(1, min(DIRECT_CHAINS, len(xs)))
            for r, xv in enumerate(xs):
                w = Load(f_buf, sym.add(sym.mul(r, o), oc), dt)
                q = r % len(accs)
                accs[q] = kb.bind(Math.ADD(accs[q], Math.MUL(xv, w)), dt)
            total = accs[0]
            for acc in accs[1:]:
                total = kb.bind(Math.ADD(total, acc), dt)
            kb.emit(Store(out, _elem(p, o, oc), total))


def emit_direct_filter_grad(kb, x_ref, g_ref, win, n, c, o, out, part, dt):
    """Conv2DBackpropFilter for short static dot products (``direct_conv``):
    dW[(tap, ch), oc] = sum over output pixels of x[tap pixel, ch] * g[pixel, oc].

    Threads split the batch: image b accumulates its pixels into ``part[b]`` ([K, O], L1
    resident; the output-channel loop innermost and contiguous), then a second loop sums the
    partials over the batch. This replaces an im2col copy and a GEMM whose result has K (9
    for a 3x3 single-channel layer) rows."""
    padding = win.padding
    k = sym.mul(sym.product([win.kh, win.kw]), c)
    ko = sym.mul(k, o)
    zero = Const(0.0, dt)
    with kb.loop(n, parallel=True) as b:
        with kb.loop(ko) as e:
            kb.emit(Store(part, sym.add(sym.mul(b, ko), e), zero))
        with kb.loop(sym.mul(win.oh, win.ow)) as q:
            oy, ox = (kb.bind(v, _dt.int64) for v in sym.unflatten(q, (win.oh, win.ow)))
            p = sym.add(sym.mul(b, sym.mul(win.oh, win.ow)), q)
            xs = _window_values(kb, x_ref, win, padding, n, b, oy, ox, c, dt)
            with kb.loop(o) as oc:
                gv = kb.load(g_ref, _elem(p, o, oc))
                for r, xv in enumerate(xs):
                    at = sym.add(sym.mul(b, ko), sym.add(sym.mul(r, o), oc))
                    kb.emit(Store(part, at, Math.ADD(Load(part, at, dt), Math.MUL(xv, gv))))
    with kb.loop(ko, parallel=True) as e:
        acc = kb.new_var("acc")
        kb.emit(Let(acc, dt, zero))
        with kb.loop(n) as b:
            v = Load(part, sym.add(sym.mul(b, ko), e), dt)
            kb.emit(Let(acc, dt, Math.ADD(Var(acc, dt), v), reduce=True))
        kb.emit(Store(out, e, Var(acc, dt)))
