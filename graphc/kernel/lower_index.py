"""Lowerings of index-mapping ops: each output element reads its input(s) at a computed index.

Loads are always in bounds (indices are clamped where a SELECT discards the value), because
a native backend evaluates both arms of a select. Out-of-range gather indices raise a
status flag (InvalidArgumentError after the run), as TF on CPU.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..errors import UnimplementedError
from ..expr import Cast, Const, Math, i64
from ..ops.indexing.slicing import _expand_key
from . import sym
from .ir import STATUS_BUFFER, If, Store
from .lowerings import value_rule
from .shapes import require, require_eq, rule


def _clamp(i, n):
    """``i`` clamped into [0, n) (0 when n == 0: every buffer has room for one element)."""
    return sym.maximum(sym.minimum(i, sym.sub(n, 1)), 0)


def _lt(a, b):
    return Math.LT(sym.as_expr(a), sym.as_expr(b))


# -- concat / stack / unstack / split -------------------------------------------------------------


@rule("ConcatV2")
def _concat_shape(n, ins, checks):
    axis = n.attrs["axis"]
    out = list(ins[0])
    out[axis] = sym.ZERO
    for j, s in enumerate(ins):
        out[axis] = sym.add(out[axis], s[axis])
        for k, (a, b) in enumerate(zip(ins[0], s)):
            if k != axis and j:
                require_eq(checks, n, a, b, f"dimension {k} of input {j} differs from input "
                           "0's (only the concat axis may differ)")  # fmt: skip
    return tuple(out)


@value_rule("index", "ConcatV2")
def _concat(g, node, ix):
    axis = node.attrs["axis"]
    dims = ix.dims()
    j = dims[axis]
    pieces = []
    offset = sym.ZERO
    for ref in node.inputs:
        s = g.shape(ref)
        if sym.const_value(s[axis]) != 0:
            pieces.append((ref, offset, s[axis]))
        offset = sym.add(offset, s[axis])
    if not pieces:  # every input is empty along the axis: so is the output (never read)
        dt = node.outs[0].dtype
        return Const(dt.np.type(0).item(), dt)
    out = None
    for ref, off, size in reversed(pieces):
        d = list(dims)
        d[axis] = _clamp(sym.sub(j, off), size)
        here = _lt(j, sym.add(off, size))
        if sym.const_value(size) is None:  # may be empty at run time: never index past 0
            here = Math.AND(here, Math.GE(j, off))
            flat = sym.select(here, sym.flat_index(d, g.shape(ref)), 0)
            v = g.value(ref, g.ix(g.shape(ref), flat=flat))
        else:
            v = g.value(ref, g.ix(g.shape(ref), dims=d))
        out = v if out is None else Math.SELECT(here, v, out)
    return out


@rule("Pack")
def _pack_shape(n, ins, checks):
    for j, x in enumerate(ins[1:], 1):
        for k, (a, b) in enumerate(zip(ins[0], x)):
            require_eq(checks, n, a, b, f"all inputs must have the same shape: dimension {k} "
                       f"of input {j} differs from input 0's")  # fmt: skip
    s = list(ins[0])
    s.insert(n.attrs["axis"], i64(len(ins)))
    return tuple(s)


@value_rule("index", "Pack")
def _pack(g, node, ix):
    axis = node.attrs["axis"]
    dims = list(ix.dims())
    k = dims.pop(axis)
    out = None
    for j in reversed(range(len(node.inputs))):
        ref = node.inputs[j]
        v = g.value(ref, g.ix(g.shape(ref), dims=dims))
        out = v if out is None else Math.SELECT(sym.eq(k, j), v, out)
    return out


@rule("Unpack")
def _unpack_shape(n, ins, checks):
    axis = n.attrs["axis"]
    require_eq(checks, n, ins[0][axis], i64(n.attrs["num"]),
               f"cannot unstack dimension {axis} into {n.attrs['num']} tensors")  # fmt: skip
    s = list(ins[0])
    s.pop(n.attrs["axis"])
    return [tuple(s)] * n.attrs["num"]


@value_rule("index", "Unpack")
def _unpack(g, node, ix):
    dims = list(ix.dims())
    dims.insert(node.attrs["axis"], i64(g.k))
    return g.value(node.inputs[0], g.ix(g.shape(node.inputs[0]), dims=dims))


def _split_offset(g, node, k):
    axis = node.attrs["axis"]
    off = sym.ZERO
    for j in range(k):
        off = sym.add(off, g.lw.shapes[(node.id, j)][axis])
    return off


@value_rule("index", "SplitV")
def _split(g, node, ix):
    axis = node.attrs["axis"]
    dims = list(ix.dims())
    dims[axis] = sym.add(dims[axis], _split_offset(g, node, g.k))
    return g.value(node.inputs[0], g.ix(g.shape(node.inputs[0]), dims=dims))


@rule("SplitV")
def _split_shape(n, ins, checks):
    x = ins[0]
    axis, num, sizes = n.attrs["axis"], n.attrs["num"], n.attrs["sizes"]
    d = x[axis]
    if sizes is None:
        what = f"cannot split dimension {axis} of size {{0}} into {num} equal parts"
        require(checks, n, sym.eq(sym.mod(d, num), 0), what, d)
        pieces = [sym.floordiv(d, num)] * num
    else:
        known = sum(s for s in sizes if s != -1)
        pieces = [sym.sub(d, known) if s == -1 else i64(s) for s in sizes]
        if -1 in sizes:  # the -1 piece takes the rest, which must not be negative
            require(checks, n, Math.GE(d, i64(known)), f"the sizes {list(sizes)} need more "
                    f"than the {{0}} elements of dimension {axis}", d)  # fmt: skip
        else:
            require_eq(checks, n, d, i64(known), f"the sizes {list(sizes)} do not add up to "
                       f"dimension {axis}")  # fmt: skip
    return [tuple(x[:axis]) + (p,) + tuple(x[axis + 1 :]) for p in pieces]


# -- pad / tile / reverse ----------------------------------------------------------------------


@rule("Pad")
def _pad_shape(n, ins, checks):
    mode = n.attrs["mode"]
    if mode != "CONSTANT":
        extra = 1 if mode == "REFLECT" else 0  # REFLECT: pads < size; SYMMETRIC: pads <= size
        for k, (d, (lo, hi)) in enumerate(zip(ins[0], n.attrs["paddings"])):
            if lo or hi:
                require(checks, n, Math.GE(sym.sub(d, extra), i64(max(lo, hi))),
                        f"{mode} paddings {(lo, hi)} are too large for dimension {k} of "
                        "size {0}", d)  # fmt: skip
    return tuple(sym.add(d, lo + hi) for d, (lo, hi) in zip(ins[0], n.attrs["paddings"]))


@value_rule("index", "Pad")
def _pad(g, node, ix):
    x = node.inputs[0]
    shape = g.shape(x)
    mode = node.attrs["mode"]
    inside = Const(True, _dt.bool_)
    dims = []
    for o, d, (lo, _hi) in zip(ix.dims(), shape, node.attrs["paddings"]):
        i = sym.sub(o, lo)
        if mode == "CONSTANT":
            if lo or _hi:
                inside = sym.logical_and(inside, Math.AND(Math.GE(i, sym.ZERO), _lt(i, d)))
                i = _clamp(i, d)
        elif lo or _hi:
            extra = 0 if mode == "REFLECT" else 1
            # reflect about the edges once (paddings are smaller than the dim: checked)
            i = sym.select(_lt(i, 0), sym.sub(sym.sub(0, i), extra), i)
            last = sym.sub(sym.mul(d, 2), sym.add(2, -extra) if extra == 0 else 1)
            i = sym.select(Math.GE(i, d), sym.sub(last, i), i)
        dims.append(i)
    if mode != "CONSTANT" or isinstance(inside, Const):
        return g.value(x, g.ix(shape, dims=dims))
    if all((sym.const_value(d) or 0) > 0 for d in shape):
        # a non-empty static input: the clamped indices are in bounds. Kept as dims, they
        # reach a transposing producer without a flat index to unflatten (an NCHW LRN's
        # channel pad over an NHWC convolution: 4 divmods a tap, 5 taps an element)
        v = g.value(x, g.ix(shape, dims=dims))
    else:
        # outside the input, read element 0 (discarded) so an empty input is never indexed
        # past 0
        v = g.value(x, g.ix(shape, flat=sym.select(inside, sym.flat_index(dims, shape), 0)))
    dt = node.outs[0].dtype
    cval = np.asarray(node.attrs["constant_values"]).astype(dt.np).reshape(()).item()
    return Math.SELECT(inside, v, Const(cval, dt))


@rule("Tile")
def _tile_shape(n, ins, checks):
    return tuple(sym.mul(d, m) for d, m in zip(ins[0], n.attrs["multiples"]))


@value_rule("index", "Tile")
def _tile(g, node, ix):
    x = node.inputs[0]
    shape = g.shape(x)
    if not shape:
        return g.value(x, ix)
    dims = [o if m == 1 else sym.mod(o, d)
            for o, d, m in zip(ix.dims(), shape, node.attrs["multiples"])]  # fmt: skip
    return g.value(x, g.ix(shape, dims=dims))


rule("ReverseV2")(lambda n, ins, c: ins[0])


@value_rule("index", "ReverseV2")
def _reverse(g, node, ix):
    x = node.inputs[0]
    shape = g.shape(x)
    axes = {a % len(shape) for a in node.attrs["axes"]} if shape else set()
    dims = [sym.sub(sym.sub(d, 1), o) if k in axes else o
            for k, (o, d) in enumerate(zip(ix.dims(), shape))]  # fmt: skip
    return g.value(x, g.ix(shape, dims=dims))


# -- strided slice -----------------------------------------------------------------------------


def _slice_params(item, d):
    """(start, length, step) of a Python slice on a dim of size ``d`` (int64 expressions)."""
    _, start, stop, step = item
    step = 1 if step is None else step
    cd = sym.const_value(d)
    if cd is not None:
        r = range(*slice(start, stop, step).indices(cd))
        return i64(r.start), i64(len(r)), step

    def norm(v, default, lo, hi):
        if v is None:
            return sym.as_expr(default)
        if v < 0:
            return sym.maximum(sym.add(d, v), lo)
        return sym.minimum(i64(v), hi)

    if step > 0:
        s = norm(start, 0, 0, d)
        e = norm(stop, d, 0, d)
        length = sym.maximum(sym.floordiv(sym.add(sym.sub(e, s), step - 1), step), 0)
    else:
        s = norm(start, sym.sub(d, 1), -1, sym.sub(d, 1))
        e = norm(stop, -1, -1, sym.sub(d, 1))
        length = sym.maximum(sym.floordiv(sym.add(sym.sub(s, e), -step - 1), -step), 0)
    return s, length, step


def _key_items(node, shape):
    return _expand_key(node.attrs["key"], len(shape))


@rule("StridedSlice")
def _strided_shape(n, ins, checks):
    shape = ins[0]
    out = []
    axis = 0
    for it in _key_items(n, shape):
        if it[0] == "new":
            out.append(sym.ONE)
            continue
        d = shape[axis]
        if it[0] == "int":
            i = it[1]
            checks.append((Math.AND(Math.GE(i64(i), sym.sub(0, d)), _lt(i, d)),
                           f"StridedSlice '{n.name}': index {i} out of range"))  # fmt: skip
        elif it[0] == "slice":
            out.append(_slice_params(it, d)[1])
        else:
            begin, size = it[1], it[2]
            if size == -1:
                out.append(sym.sub(d, begin))
                checks.append((Math.LE(i64(begin), d), f"StridedSlice '{n.name}': bad span"))
            else:
                out.append(i64(size))
                checks.append((Math.LE(i64(begin + size), d),
                               f"StridedSlice '{n.name}': bad span"))  # fmt: skip
        axis += 1
    return tuple(out)


@value_rule("index", "StridedSlice")
def _strided(g, node, ix):
    x = node.inputs[0]
    shape = g.shape(x)
    odims = list(ix.dims())
    dims = []
    axis = 0
    for it in _key_items(node, shape):
        if it[0] == "new":
            odims.pop(0)
            continue
        d = shape[axis]
        if it[0] == "int":
            i = it[1]
            dims.append(i64(i) if i >= 0 else sym.add(d, i))
        elif it[0] == "slice":
            start, _, step = _slice_params(it, d)
            dims.append(sym.add(start, sym.mul(odims.pop(0), step)))
        else:
            dims.append(sym.add(odims.pop(0), it[1]))
        axis += 1
    return g.value(x, g.ix(shape, dims=dims))


# -- gather / one_hot --------------------------------------------------------------------------


@rule("GatherV2")
def _gather_shape(n, ins, checks):
    p, i = ins
    axis, bd = n.attrs["axis"], n.attrs["batch_dims"]
    for k in range(bd):
        require_eq(checks, n, p[k], i[k], f"batch dimension {k} of params and indices differ")
    return tuple(i[:bd]) + tuple(p[bd:axis]) + tuple(i[bd:]) + tuple(p[axis + 1 :])


@value_rule("index", "GatherV2")
def _gather(g, node, ix):
    p_ref, i_ref = node.inputs
    p, i = g.shape(p_ref), g.shape(i_ref)
    axis, bd = node.attrs["axis"], node.attrs["batch_dims"]
    dims = ix.dims()
    ri = len(i)
    idx_dims = list(dims[:bd]) + list(dims[axis : axis + ri - bd])
    raw = g.value(i_ref, g.ix(i, dims=idx_dims))
    k = g.bind(
        Cast(raw, _dt.int64)
        if node.inputs and g.lw.program.spec(tuple(i_ref)).dtype != _dt.int64
        else raw,
        _dt.int64,
    )
    d = p[axis]
    bad = Math.OR(Math.LT(k, sym.ZERO), Math.GE(k, d))
    slot = g.lw.plain_check(node, f"GatherV2 '{node.name}': indices out of range [0, dim of "
                                  f"params axis {axis})")  # fmt: skip
    g.emit(If(bad, (Store(STATUS_BUFFER, i64(slot), Const(1, _dt.int32)),)))
    g.writes.add(STATUS_BUFFER)
    pdims = list(dims[:axis]) + [_clamp(k, d)] + list(dims[axis + ri - bd :])
    return g.value(p_ref, g.ix(p, dims=pdims))


@rule("OneHot")
def _one_hot_shape(n, ins, checks):
    s = list(ins[0])
    s.insert(n.attrs["axis"], i64(n.attrs["depth"]))
    return tuple(s)


@value_rule("index", "OneHot")
def _one_hot(g, node, ix):
    dims = list(ix.dims())
    k = dims.pop(node.attrs["axis"])
    ref = node.inputs[0]
    idx = g.value(ref, g.ix(g.shape(ref), dims=dims))
    if g.lw.program.spec(tuple(ref)).dtype != _dt.int64:
        idx = Cast(idx, _dt.int64)
    dt = node.outs[0].dtype
    on = np.asarray(node.attrs["on_value"]).astype(dt.np).item()
    off = np.asarray(node.attrs["off_value"]).astype(dt.np).item()
    return Math.SELECT(Math.EQ(idx, k), Const(on, dt), Const(off, dt))


# -- gather_nd ---------------------------------------------------------------------------------


def index_depth(node, ishape, what="indices"):
    """The static length K of the index vectors (the last dim of the indices)."""
    k = sym.const_value(ishape[-1]) if ishape else None
    if k is None:
        raise UnimplementedError(
            f"{node.op} '{node.name}': the index depth (last dimension of {what}) must be "
            "static for the compiled targets"
        )
    return k


def _gather_nd_depth(node, p, i):
    """K: static from the indices, else from the ranks when the output's rank is known."""
    out = node.outs[0].shape
    bd = node.attrs.get("batch_dims", 0)
    if sym.const_value(i[-1]) is None and out is not None:
        return len(p) - bd - (len(out) - (len(i) - 1))
    return index_depth(node, i)


@rule("GatherNd")
def _gather_nd_shape(n, ins, checks):
    p, i = ins
    bd = n.attrs.get("batch_dims", 0)
    k = _gather_nd_depth(n, p, i)
    what = f"GatherNd '{n.name}'"
    if sym.const_value(i[-1]) is None:
        checks.append((sym.eq(i[-1], k), f"{what}: index vectors must have length {k}"))
    for a, b in zip(p[:bd], i[:bd]):
        if a != b:
            checks.append((sym.eq(a, b), f"{what}: batch dimensions of params and indices "
                                         "differ"))  # fmt: skip
    return tuple(i[:-1]) + tuple(p[bd + k :])


def nd_index(g, node, i_ref, batch_dims, k, pshape, op_what):
    """Index vector ``indices[batch_dims, :]`` as clamped int64 dims of ``pshape[:k]`` plus the
    bool "all in range" (out-of-range raises the op's status flag)."""
    ishape = g.shape(i_ref)
    dims, ok = [], Const(True, _dt.bool_)
    cast = g.lw.program.spec(tuple(i_ref)).dtype != _dt.int64
    for j in range(k):
        raw = g.value(i_ref, g.ix(ishape, dims=[*batch_dims, i64(j)]))
        kj = g.bind(Cast(raw, _dt.int64) if cast else raw, _dt.int64)
        ok = sym.logical_and(ok, Math.AND(Math.GE(kj, sym.ZERO), _lt(kj, pshape[j])))
        dims.append(_clamp(kj, pshape[j]))
    if k:
        slot = g.lw.plain_check(node, f"{op_what}: indices out of range")
        g.emit(If(Math.NOT(ok), (Store(STATUS_BUFFER, i64(slot), Const(1, _dt.int32)),)))
        g.writes.add(STATUS_BUFFER)
    return dims, ok


@value_rule("index", "GatherNd")
def _gather_nd(g, node, ix):
    """out[b, i, rest] = params[b, indices[b, i, :], rest] (b: the batch_dims leading dims)."""
    p_ref, i_ref = node.inputs
    p, i = g.shape(p_ref), g.shape(i_ref)
    bd = node.attrs.get("batch_dims", 0)
    k = _gather_nd_depth(node, p, i)
    dims = ix.dims()
    r = len(i) - 1
    pdims, _ = nd_index(g, node, i_ref, dims[:r], k, p[bd:], f"GatherNd '{node.name}'")
    return g.value(p_ref, g.ix(p, dims=[*dims[:bd], *pdims, *dims[r:]]))
