"""Gather-form lowerings of the gradients of index ops (no atomics, no scatter).

Each output element of these adjoints collects a fixed, small set of gradient elements, so
they are ``index`` ops like the forward ones (fusable, parallel over the output):

* StridedSliceGrad: an element of ``x`` is in the slice (one gradient element) or zero;
* PadGrad: CONSTANT reads the centre; REFLECT/SYMMETRIC also add the (at most one per
  padded side) mirrored copies of each axis: up to 3**(padded axes) terms;
* TileGrad: the sum over the tiled copies (an inner loop over the multiples);
* SplitLike: concat's gradient, a slice of the gradient per output (like SplitV).

Loads are clamped (a SELECT discards the value) so they stay in bounds; shape rules add the
run-time checks a dynamic gradient shape needs before anything reads it.
"""

from __future__ import annotations

import itertools

from .. import dtypes as _dt
from ..errors import UnimplementedError
from ..expr import Const, Math, Var
from . import sym
from .ir import Let
from .lower_index import _key_items, _slice_params, _strided_shape
from .lowerings import value_rule
from .shapes import rule

_TRUE = Const(True, _dt.bool_)


def _in_range(k, n):
    """0 <= k < n as a bool expression."""
    return Math.AND(Math.GE(k, sym.ZERO), Math.LT(k, sym.as_expr(n)))


def _zero(dt):
    return Const(dt.np.type(0).item(), dt)


def _same_dims(checks, got, want, message):
    """Run-time checks that two symbolic shapes agree where they are not provably equal."""
    for a, b in zip(got, want):
        if a != b:
            checks.append((sym.eq(a, b), message))


def _read_if(g, ref, dims, inside, dt):
    """``ref[dims]`` where ``inside`` holds, else zero (the load is clamped to element 0)."""
    shape = g.shape(ref)
    if isinstance(inside, Const) and inside.value:
        return g.value(ref, g.ix(shape, dims=dims))
    if isinstance(inside, Const):
        return _zero(dt)
    flat = sym.select(inside, sym.flat_index(dims, shape), 0)
    return Math.SELECT(inside, g.value(ref, g.ix(shape, flat=flat)), _zero(dt))


# -- StridedSliceGrad --------------------------------------------------------------------------


@rule("StridedSliceGrad")
def _strided_grad_shape(n, ins, checks):
    g, x = ins
    want = _strided_shape(n, [x], checks)
    _same_dims(checks, g, want, f"StridedSliceGrad '{n.name}': the gradient does not fit the "
                                "slice")  # fmt: skip
    return tuple(x)


@value_rule("index", "StridedSliceGrad")
def _strided_grad(g, node, ix):
    """x[j] gets g[k] when j = start + k * step for some 0 <= k < length, else zero."""
    g_ref, x_ref = node.inputs
    shape = g.shape(x_ref)
    dims = ix.dims()
    inside = _TRUE
    gdims = []
    axis = 0
    for it in _key_items(node, shape):
        if it[0] == "new":
            gdims.append(sym.ZERO)
            continue
        d, j = shape[axis], dims[axis]
        if it[0] == "int":
            at = sym.as_expr(it[1]) if it[1] >= 0 else sym.add(d, it[1])
            inside = sym.logical_and(inside, sym.eq(j, at))
        elif it[0] == "slice":
            step = 1 if it[3] is None else it[3]
            if it[1] is None and it[2] is None and step == 1:
                gdims.append(j)  # the whole dim
            else:
                start, length, step = _slice_params(it, d)
                off = sym.sub(j, start)
                k = sym.floordiv(off, step)
                if step != 1:
                    inside = sym.logical_and(inside, sym.eq(sym.mod(off, step), 0))
                inside = sym.logical_and(inside, _in_range(k, length))
                gdims.append(k)
        else:  # span
            begin, size = it[1], it[2]
            length = sym.sub(d, begin) if size == -1 else sym.as_expr(size)
            k = sym.sub(j, begin)
            if not (begin == 0 and size == -1):
                inside = sym.logical_and(inside, _in_range(k, length))
            gdims.append(k)
        axis += 1
    return _read_if(g, g_ref, gdims, inside, node.outs[0].dtype)


# -- PadGrad -----------------------------------------------------------------------------------


@rule("PadGrad")
def _pad_grad_shape(n, ins, checks):
    mode = n.attrs["mode"]
    out = []
    for axis, (d, (lo, hi)) in enumerate(zip(ins[0], n.attrs["paddings"])):
        size = sym.sub(d, lo + hi)
        what = f"PadGrad '{n.name}': dimension {axis}"
        if sym.const_value(size) is None:
            checks.append((Math.GE(size, sym.ZERO), f"{what} is smaller than its paddings"))
            if mode != "CONSTANT" and (lo or hi):
                limit = sym.sub(size, 1) if mode == "REFLECT" else size
                ok = Math.LE(sym.as_expr(max(lo, hi)), limit)
                checks.append((ok, f"{what}: {mode} paddings {(lo, hi)} are too large"))
        out.append(size)
    return tuple(out)


def _pad_sources(j, n, lo, hi, mode):
    """[(padded position, valid)] of the gradient elements that copy element ``j`` of a
    dimension of size ``n`` (paddings at most the dim: each side mirrors once)."""
    out = [(sym.add(j, lo), _TRUE)]
    if mode == "CONSTANT":
        return out
    extra = 0 if mode == "REFLECT" else 1  # SYMMETRIC repeats the edge element
    if lo:
        # padded position p < lo copies lo - p - extra  =>  p = lo - extra - j
        p = sym.sub(lo - extra, j)
        ok = Math.LE(j, sym.as_expr(lo - extra))
        if extra == 0:
            ok = Math.AND(ok, Math.GE(j, sym.ONE))
        out.append((p, ok))
    if hi:
        # i = p - lo >= n copies (2n - 2 + extra) - i  =>  i = 2n - 2 + extra - j
        i = sym.sub(sym.add(sym.mul(n, 2), extra - 2), j)
        ok = Math.GE(j, sym.sub(n, hi + 1 - extra))
        if extra == 0:
            ok = Math.AND(ok, Math.LE(j, sym.sub(n, 2)))
        out.append((sym.add(i, lo), ok))
    return out


@value_rule("index", "PadGrad")
def _pad_grad(g, node, ix):
    g_ref = node.inputs[0]
    out_shape = g.shape((node.id, 0))
    dt = node.outs[0].dtype
    mode = node.attrs["mode"]
    for axis, (n, (lo, hi)) in enumerate(zip(out_shape, node.attrs["paddings"])):
        limit = sym.const_value(n)
        if mode != "CONSTANT" and limit is not None and max(lo, hi) > limit - (mode == "REFLECT"):
            raise UnimplementedError(
                f"PadGrad '{node.name}': {mode} paddings {(lo, hi)} of dimension {axis} exceed "
                f"its size {limit} (each side may mirror once)"
            )
    per_axis = [
        _pad_sources(j, n, lo, hi, mode)
        for j, n, (lo, hi) in zip(ix.dims(), out_shape, node.attrs["paddings"])
    ]
    total = None
    for combo in itertools.product(*per_axis):
        inside = _TRUE
        for _, ok in combo:
            inside = sym.logical_and(inside, ok)
        v = g.bind(_read_if(g, g_ref, [p for p, _ in combo], inside, dt), dt)
        total = v if total is None else Math.ADD(total, v)
    return total if total is not None else g.value(g_ref, ix)


# -- TileGrad ----------------------------------------------------------------------------------


@rule("TileGrad")
def _tile_grad_shape(n, ins, checks):
    g, x = ins
    want = [sym.mul(d, m) for d, m in zip(x, n.attrs["multiples"])]
    _same_dims(checks, g, want, f"TileGrad '{n.name}': the gradient does not fit the tiling")
    return tuple(x)


@value_rule("index", "TileGrad")
def _tile_grad(g, node, ix):
    """Sum of the copies: an inner (reduction) loop over the multiples larger than one."""
    g_ref, x_ref = node.inputs
    xs = g.shape(x_ref)
    mult = node.attrs["multiples"]
    dt = node.outs[0].dtype
    dims = list(ix.dims())
    if 0 in mult:
        return _zero(dt)
    reps = [k for k, m in enumerate(mult) if m > 1]
    gshape = g.shape(g_ref)
    if not reps:
        return g.value(g_ref, g.ix(gshape, dims=dims))
    acc = g.new_var("acc")
    g.emit(Let(acc, dt, _zero(dt)))
    with g.nest([mult[k] for k in reps], parallel=False) as copies:
        gd = list(dims)
        for c, k in zip(copies, reps):
            gd[k] = sym.add(sym.mul(c, xs[k]), dims[k])
        v = g.value(g_ref, g.ix(gshape, dims=gd))
        g.emit(Let(acc, dt, Math.ADD(Var(acc, dt), v), reduce=True))
    return Var(acc, dt)


# -- SplitLike ---------------------------------------------------------------------------------


@rule("SplitLike")
def _split_like_shape(n, ins, checks):
    g, likes, axis = ins[0], ins[1:], n.attrs["axis"]
    total = sym.ZERO
    outs = []
    for like in likes:
        total = sym.add(total, like[axis])
        shape = tuple(like[axis] if i == axis else d for i, d in enumerate(g))
        _same_dims(checks, [d for i, d in enumerate(like) if i != axis],
                   [d for i, d in enumerate(g) if i != axis],
                   f"SplitLike '{n.name}': a piece differs from the gradient off the split "
                   "axis")  # fmt: skip
        outs.append(shape)
    if total != g[axis]:
        checks.append((sym.eq(total, g[axis]), f"SplitLike '{n.name}': the pieces do not add "
                                                "up to the split dimension"))  # fmt: skip
    return outs


@value_rule("index", "SplitLike")
def _split_like(g, node, ix):
    axis = node.attrs["axis"]
    off = sym.ZERO
    for j in range(g.k):
        off = sym.add(off, g.lw.shapes[(node.id, j)][axis])
    dims = list(ix.dims())
    dims[axis] = sym.add(dims[axis], off)
    return g.value(node.inputs[0], g.ix(g.shape(node.inputs[0]), dims=dims))
