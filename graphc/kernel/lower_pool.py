"""Lowerings of the pooling ops and their gradients (NHWC; any dim may be unknown), with the
window geometry and shape checks of ``lower_nn.py``.

* MaxPool / AvgPool: max (the reference's argmax: first NaN, else first maximum) or mean
  over the window (SAME divides by the number of real inputs).
* Their gradients are gathers over the windows containing each input element; MaxPoolGrad
  with disjoint windows writes each window's taps in one pass instead.

Windows with at most ``lower_window.MAX_TAPS`` taps (every pool with a static size) use the
channel-innermost, tap-unrolled kernels of ``lower_window.py``; the tap loops here serve the
others.
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Cast, Const, Math, Var, i64
from . import lower_window, sym
from .ir import Let, Store
from .lower_nn import _load_buf, _same_dims, _window, _window_checks
from .lowerings import opaque
from .shapes import rule


def _pool_geometry(kb, node, x_ref):
    n, h, w, c = kb.shape(x_ref)
    kh, kw = node.attrs["ksize"]
    return _window(node, h, w, kh, kw), n, c


@rule("MaxPool", "AvgPool")
def _pool_shape(n, ins, checks):
    b, h, w, c = ins[0]
    win = _window(n, h, w, *n.attrs["ksize"])
    _window_checks(checks, win, n.attrs["padding"], f"{n.op} '{n.name}'")
    return (b, win.oh, win.ow, c)


@rule("MaxPoolGradGrad")
def _max_pool_grad_grad_shape(n, ins, checks):
    pooled = _pool_shape(n, ins, checks)
    _same_dims(checks, ins[1], ins[0], f"{n.op} '{n.name}': d must have the shape of x")
    return pooled


@opaque("MaxPool")
def _max_pool(kb, node):
    _pool(kb, node, is_max=True)


@opaque("AvgPool")
def _avg_pool(kb, node):
    _pool(kb, node, is_max=False)


def _pool(kb, node, is_max):
    x_ref = tuple(node.inputs[0])
    win, n, c = _pool_geometry(kb, node, x_ref)
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    if lower_window.static_taps(win.kh, win.kw):
        lower_window.emit_pool(kb, node, x_ref, win, n, c, out, is_max)
        return
    with kb.nest([n, win.oh, win.ow, c]) as (b, oy, ox, ch):
        acc, cnt = kb.new_var("acc"), kb.new_var("cnt")
        kb.emit(Let(acc, dt, Const(float("-inf") if is_max else 0.0, dt)))
        if not is_max:
            kb.emit(Let(cnt, dt, Const(0.0, dt)))
        with kb.nest([win.kh, win.kw], parallel=False) as (i, j):
            y, x = lower_window.tap_pixel(win, oy, ox, i, j)
            ok = kb.bind(lower_window.inside(y, x, win.h, win.w), _dt.bool_)
            flat = sym.select(ok, sym.flat_index((b, y, x, ch), (n, win.h, win.w, c)), 0)
            v = kb.load(x_ref, flat)
            if is_max:
                v = Math.SELECT(ok, v, Const(float("-inf"), dt))
                kb.emit(Let(acc, dt, Math.MAX(Var(acc, dt), v), reduce=True))
            else:
                v = Math.SELECT(ok, v, Const(0.0, dt))
                kb.emit(Let(acc, dt, Math.ADD(Var(acc, dt), v), reduce=True))
                one = Math.SELECT(ok, Const(1.0, dt), Const(0.0, dt))
                kb.emit(Let(cnt, dt, Math.ADD(Var(cnt, dt), one), reduce=True))
        res = Var(acc, dt) if is_max else Math.DIV(Var(acc, dt), Var(cnt, dt))
        kb.emit(Store(out, sym.flat_index((b, oy, ox, ch), (n, win.oh, win.ow, c)), res))


@rule("MaxPoolGrad", "AvgPoolGrad")
def _pool_grad_shape(n, ins, checks):
    pooled = _pool_shape(n, ins[:1], checks)
    _same_dims(checks, ins[1], pooled, f"{n.op} '{n.name}': the gradient does not fit the "
                                       "pooled shape")  # fmt: skip
    return tuple(ins[0])


def _argmax_tap(kb, x_ref, win, n, c, b, oy, ox, ch, dt):
    """(flat input index, tap number i * kw + j) of the maximum of window (oy, ox), chosen as
    the reference's argmax over the -inf padded window: the first NaN, else the first maximum,
    tap 0 for an all -inf window (sequential over taps). The index is -1 when the chosen tap
    is padding."""
    best, arg, tap = kb.new_var("best"), kb.new_var("arg"), kb.new_var("tap")
    kb.emit(Let(best, dt, Const(float("-inf"), dt)))
    kb.emit(Let(arg, _dt.int64, i64(-1)))
    kb.emit(Let(tap, _dt.int32, Const(-1, _dt.int32)))
    with kb.nest([win.kh, win.kw], parallel=False) as (i, j):
        y, x = lower_window.tap_pixel(win, oy, ox, i, j)
        ok = kb.bind(lower_window.inside(y, x, win.h, win.w), _dt.bool_)
        flat = kb.bind(sym.select(ok, sym.flat_index((b, y, x, ch), (n, win.h, win.w, c)), 0),
                       _dt.int64)  # fmt: skip
        v = kb.bind(Math.SELECT(ok, kb.load(x_ref, flat), Const(float("-inf"), dt)), dt)
        b_var, t_var = Var(best, dt), Var(tap, _dt.int32)
        nan_first = Math.AND(Math.ISNAN(v), Math.NOT(Math.ISNAN(b_var)))
        better = Math.OR(Math.OR(Math.EQ(t_var, Const(-1, _dt.int32)), Math.GT(v, b_var)),
                         nan_first)  # fmt: skip
        better = kb.bind(better, _dt.bool_)
        real = sym.select(ok, flat, -1)
        kb.emit(Let(arg, _dt.int64, Math.SELECT(better, real, Var(arg, _dt.int64))))
        here = Cast(sym.add(sym.mul(i, win.kw), j), _dt.int32)
        kb.emit(Let(tap, _dt.int32, Math.SELECT(better, here, t_var)))
        kb.emit(Let(best, dt, Math.SELECT(better, v, b_var)))
    return Var(arg, _dt.int64), Var(tap, _dt.int32)


@opaque("MaxPoolGrad")
def _max_pool_grad(kb, node):
    _pool_grad(kb, node, is_max=True)


@opaque("AvgPoolGrad")
def _avg_pool_grad(kb, node):
    _pool_grad(kb, node, is_max=False)


def _pool_grad(kb, node, is_max):
    """Gather form: each input element sums the gradients of the windows that chose it.

    MaxPoolGrad first stores each window's argmax tap (int32, one pass over the windows),
    so the gather compares instead of recomputing the argmax of every candidate window.
    """
    x_ref, g_ref = (tuple(r) for r in node.inputs[:2])
    win, n, c = _pool_geometry(kb, node, x_ref)
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    pooled = (n, win.oh, win.ow, c)
    if is_max and lower_window.static_taps(win.kh, win.kw) and lower_window.disjoint(win):
        lower_window.emit_max_pool_grad_disjoint(kb, node, x_ref, g_ref, win, n, c, out)
        return
    if is_max:
        taps = kb.temp(f"argtap{node.id}", _dt.int32, pooled)
    if lower_window.static_taps(win.kh, win.kw):
        if is_max:
            lower_window.emit_max_pool_grad(kb, node, x_ref, g_ref, win, n, c, out, taps)
        else:
            lower_window.emit_avg_pool_grad(kb, node, g_ref, win, n, c, out, _avg_count)
        return
    if is_max:
        with kb.nest(pooled) as (b, oy, ox, ch):
            _, tap = _argmax_tap(kb, x_ref, win, n, c, b, oy, ox, ch, dt)
            kb.emit(Store(taps, sym.flat_index((b, oy, ox, ch), pooled), tap))
    with kb.nest([n, win.h, win.w, c]) as (b, y, x, ch):
        acc = kb.new_var("acc")
        kb.emit(Let(acc, dt, Const(0.0, dt)))
        me = sym.flat_index((b, y, x, ch), (n, win.h, win.w, c))
        with kb.nest([win.kh, win.kw], parallel=False) as (i, j):
            ok, oy, ox = lower_window.reaching_window(win, y, x, i, j)
            ok = kb.bind(ok, _dt.bool_)
            oy = kb.bind(sym.select(ok, oy, 0), _dt.int64)
            ox = kb.bind(sym.select(ok, ox, 0), _dt.int64)
            gflat = kb.bind(sym.flat_index((b, oy, ox, ch), pooled), _dt.int64)
            gv = kb.load(g_ref, gflat)
            if is_max:
                tap = kb.bind(_load_buf(taps, gflat, _dt.int32), _dt.int32)
                here = Cast(sym.add(sym.mul(i, win.kw), j), _dt.int32)
                take = Math.AND(ok, Math.EQ(tap, here))
                kb.emit(Let(acc, dt, Math.ADD(Var(acc, dt), Math.SELECT(take, gv, Const(0.0, dt)))))
            else:
                cnt = _avg_count(win, oy, ox, dt)
                add = Math.SELECT(ok, Math.DIV(gv, cnt), Const(0.0, dt))
                kb.emit(Let(acc, dt, Math.ADD(Var(acc, dt), add)))
        kb.emit(Store(out, me, Var(acc, dt)))


def _avg_count(win, oy, ox, dt):
    """Number of real inputs in window (oy, ox) (dilation 1 for pools)."""
    (sh, sw) = win.s

    def span(o, s, k, pad, size):
        lo = sym.maximum(sym.sub(sym.mul(o, s), pad), 0)
        hi = sym.minimum(sym.add(sym.mul(o, s), sym.sub(k, pad)), size)
        return sym.maximum(sym.sub(hi, lo), 0)

    ny = span(oy, sh, win.kh, win.pt, win.h)
    nx = span(ox, sw, win.kw, win.pl, win.w)
    return Cast(sym.mul(ny, nx), dt)


@opaque("MaxPoolGradGrad")
def _max_pool_grad_grad(kb, node):
    """out[window] = d at the first maximum of x in the window (MaxPoolGrad's adjoint in g)."""
    x_ref, d_ref = (tuple(r) for r in node.inputs[:2])
    win, n, c = _pool_geometry(kb, node, x_ref)
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    if lower_window.static_taps(win.kh, win.kw):
        lower_window.emit_max_pool_grad_grad(kb, node, x_ref, d_ref, win, n, c, out)
        return
    with kb.nest([n, win.oh, win.ow, c]) as (b, oy, ox, ch):
        arg = kb.bind(_argmax_tap(kb, x_ref, win, n, c, b, oy, ox, ch, dt)[0], _dt.int64)
        found = kb.bind(Math.GE(arg, sym.ZERO), _dt.bool_)
        v = kb.load(d_ref, sym.select(found, arg, 0))
        flat = sym.flat_index((b, oy, ox, ch), (n, win.oh, win.ow, c))
        kb.emit(Store(out, flat, Math.SELECT(found, v, Const(0.0, dt))))
