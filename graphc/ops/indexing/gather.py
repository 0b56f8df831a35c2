"""gather and gather_nd (TF's, with batch dims) and their gradients, scatter-adds of the
output gradient into zeros shaped like the params (repeated indices sum). Out-of-range indices
are an error at run time, as in TF on CPU."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ..registry import (
    Example,
    OpDef,
    ShapeError,
    apply1,
    convert_to_tensor,
    normalize_axis,
    register,
)
from ..shape_util import located, merge_dim, static_int
from .common import (
    _batched,
    _check_index_dtype,
    _check_range,
    _check_updates,
    _nd_index,
    _nd_infer_shape,
    _nd_out_shape,
    _sample,
    _scatter_nd_add,
)


def _gather_out_shape(p, i, axis, bd):
    batch = tuple(merge_dim(a, b, "batch dimensions of params and indices differ")
                  for a, b in zip(p[:bd], i[:bd]))  # fmt: skip
    return batch + tuple(p[bd:axis]) + tuple(i[bd:]) + tuple(p[axis + 1 :])


def _check_gather(p_shape, idx, axis, bd):
    if tuple(p_shape[:bd]) != tuple(idx.shape[:bd]):
        raise InvalidArgumentError(
            f"batch dimensions of params {p_shape} and indices {idx.shape} differ"
        )
    _check_range(idx, p_shape[axis], "indices")


@register
class GatherV2(OpDef):
    """``params`` gathered along ``axis`` at ``indices``, with ``batch_dims`` leading dims
    shared by both (TF ``gather``); out-of-range indices are an error, as in TF on CPU."""

    kind = "index"

    def infer(self, specs, attrs):
        p, i = specs
        _check_index_dtype(i)
        axis, bd = attrs["axis"], attrs["batch_dims"]
        if p.shape is None or i.shape is None:
            return [(None, p.dtype)]
        if not 0 <= axis < len(p.shape):
            raise ShapeError(f"axis {axis} is out of range for params of rank {len(p.shape)}")
        if bd > len(i.shape) or bd > axis:
            raise ShapeError(f"batch_dims {bd} must be <= axis {axis} and the indices' rank")
        return [(_gather_out_shape(p.shape, i.shape, axis, bd), p.dtype)]

    def ref(self, xs, attrs):
        p, idx = xs
        axis, bd = attrs["axis"], attrs["batch_dims"]
        _check_gather(p.shape, idx, axis, bd)
        if bd == 0:
            return np.take(p, idx, axis=axis)
        out_shape = _gather_out_shape(p.shape, idx.shape, axis, bd)
        pb, ib = _batched(p, bd), _batched(idx, bd)
        out = np.empty((pb.shape[0],) + out_shape[bd:], dtype=p.dtype)
        for b in range(pb.shape[0]):
            out[b] = np.take(pb[b], ib[b], axis=axis - bd)
        return out.reshape(out_shape)

    def vjp(self, op, grads):
        p, idx = op.inputs
        g = apply1("GatherGrad", [grads[0], idx, p], dict(op.attrs))
        return [g, None]

    def examples(self):
        p = _sample((5, 3))
        rep = np.array([0, 2, 2, 4, 2], dtype=np.int32)
        return [
            Example(lambda a, i: gather(a, i), [p, rep]),
            Example(lambda a, i: gather(a, i, axis=1),
                    [_sample((2, 4, 3)), np.array([[3, 0], [1, 1]], dtype=np.int64)]),
            Example(lambda a, i: gather(a, i, axis=-1), [_sample((2, 3)), np.array(2)]),
            Example(lambda a, i: gather(a, i, axis=1, batch_dims=1),
                    [_sample((2, 5, 3)), np.array([[4, 0, 0, 1], [2, 2, 3, 3]])]),
            Example(lambda a, i: gather(a, i), [p, np.zeros((0,), np.int32)]),
            Example(lambda a, i: gather(a, i), [np.arange(4), np.array([3, 1])], grad=False),
        ]  # fmt: skip


@register
class GatherGrad(OpDef):
    """Gradient of GatherV2: input 0 scatter-added (repeated indices sum) into zeros shaped
    like input 2 at ``indices`` (input 1)."""

    kind = "opaque"

    def infer(self, specs, attrs):
        g, i, p = specs
        _check_index_dtype(i)
        if g.shape is not None and p.shape is not None and i.shape is not None:
            want = _gather_out_shape(p.shape, i.shape, attrs["axis"], attrs["batch_dims"])
            if len(want) != len(g.shape) or any(
                a is not None and b is not None and a != b for a, b in zip(g.shape, want)
            ):
                raise ShapeError(f"gradient of shape {g.shape} does not fit the gather {want}")
        return [(p.shape, g.dtype)]

    def ref(self, xs, attrs):
        g, idx, p = xs
        axis, bd = attrs["axis"], attrs["batch_dims"]
        _check_gather(p.shape, idx, axis, bd)
        out = np.zeros(p.shape, dtype=g.dtype)
        ob, gb, ib = _batched(out, bd), _batched(g, bd), _batched(idx, bd)
        a = axis - bd
        k = idx.ndim - bd
        for b in range(ob.shape[0]):
            target = np.moveaxis(ob[b], a, 0)  # a view: add.at writes into out
            src = np.moveaxis(gb[b], list(range(a, a + k)), list(range(k)))
            np.add.at(target, ib[b], src)
        return out

    def vjp(self, op, grads):
        _, idx, _ = op.inputs
        a = op.attrs
        return [gather(grads[0], idx, axis=a["axis"], batch_dims=a["batch_dims"]), None, None]

    def examples(self):
        def build(g, i, p):
            return apply1("GatherGrad", [g, i, p], {"axis": 1, "batch_dims": 0})

        return [Example(build, [_sample((2, 3, 2)), np.array([1, 1, 0]), _sample((2, 2, 2))])]


@located("gather")
def gather(params, indices, axis=None, batch_dims=0, name=None, validate_indices=None):
    """Slices of ``params`` along ``axis`` at integer ``indices`` (TF ``gather``).

    The result has shape ``params.shape[:axis] + indices.shape[batch_dims:] +
    params.shape[axis + 1:]``; the first ``batch_dims`` dims of params and indices are
    shared (``batch_dims < 0`` counts from the indices' rank), and ``axis`` defaults to
    ``batch_dims`` (TF's first non-batch dimension). Indices out of
    ``[0, params.shape[axis])`` raise ``InvalidArgumentError`` at run time. The gradient
    scatter-adds (repeated indices sum).
    """
    del validate_indices  # TF1 compatibility: indices are always validated
    p = convert_to_tensor(params)
    i = convert_to_tensor(indices)
    batch_dims = static_int(batch_dims, "batch_dims", "gather")
    if batch_dims < 0:
        if i.shape is None:
            raise ValueError("gather: negative batch_dims needs indices of known rank")
        batch_dims += len(i.shape)
    if i.shape is not None and not 0 <= batch_dims <= len(i.shape):
        raise ValueError(f"gather: batch_dims must be in [-{len(i.shape)}, {len(i.shape)}] for "
                         f"indices {i.name} of shape {i.shape}")  # fmt: skip
    axis = batch_dims if axis is None else static_int(axis, "axis", "gather")
    if axis < 0:
        if p.shape is None:
            raise ValueError("gather: a negative axis needs params of known rank")
        axis = normalize_axis(axis, len(p.shape))
    if batch_dims < 0 or batch_dims > axis:
        raise ValueError(f"gather: batch_dims {batch_dims} must be in [0, axis={axis}]")
    return apply1("GatherV2", [p, i], {"axis": axis, "batch_dims": batch_dims}, name)


def _per_batch(fn, bd, *arrays):
    """``fn`` applied to each batch entry of ``arrays`` (their ``bd`` leading dims shared);
    the results stacked back under those dims."""
    if bd == 0:
        return fn(*arrays)
    lead = arrays[0].shape[:bd]
    flat = [_batched(a, bd) for a in arrays]
    outs = [fn(*(a[b] for a in flat)) for b in range(flat[0].shape[0])]
    return np.stack(outs).reshape(lead + outs[0].shape) if outs else None


def _check_nd_batch(p_shape, idx, bd):
    if idx.ndim < 1 or bd > min(len(p_shape), idx.ndim - 1):
        raise InvalidArgumentError(f"batch_dims {bd} does not fit params {p_shape} and indices "
                                   f"{idx.shape}")  # fmt: skip
    if tuple(p_shape[:bd]) != tuple(idx.shape[:bd]):
        raise InvalidArgumentError(
            f"batch dimensions of params {p_shape} and indices {idx.shape} differ"
        )
    if bd + idx.shape[-1] > len(p_shape):
        raise InvalidArgumentError(f"index vectors of length {idx.shape[-1]} for {p_shape} "
                                   f"with {bd} batch dims")  # fmt: skip


def _gather_nd0(p, idx):
    if idx.shape[-1] == 0:
        return np.array(np.broadcast_to(p, idx.shape[:-1] + p.shape))
    return np.array(p[_nd_index(idx, p.shape)])


@register
class GatherNd(OpDef):
    """``out[b..., i...] = params[b..., indices[b..., i..., :]]``: index vectors along the
    last axis of ``indices`` pick elements (or slices) of ``params``; the ``batch_dims``
    leading dims (attr, default 0) are shared by both."""

    kind = "index"
    dynamic_host_reason = "the index depth (last dim of the indices) sets the output rank"

    def infer(self, specs, attrs):
        p, i = specs
        _check_index_dtype(i)
        if i.shape == ():
            raise ShapeError("indices must have rank >= 1")
        return [(_nd_infer_shape(p.shape, i.shape, attrs.get("batch_dims", 0)), p.dtype)]

    def ref(self, xs, attrs):
        p, idx = xs
        bd = attrs.get("batch_dims", 0)
        _check_nd_batch(p.shape, idx, bd)
        out_shape = _nd_out_shape(p.shape, idx.shape, bd)
        if int(np.prod(p.shape[:bd], dtype=np.int64)) == 0:
            return np.zeros(out_shape, p.dtype)
        return _per_batch(_gather_nd0, bd, p, idx).reshape(out_shape)

    def vjp(self, op, grads):
        p, idx = op.inputs
        return [apply1("GatherNdGrad", [grads[0], idx, p], dict(op.attrs)), None]

    def examples(self):
        p = _sample((3, 4, 2))
        nd = gather_nd
        return [
            Example(lambda a, i: nd(a, i), [p, np.array([[0, 1], [2, 3], [0, 1]])]),
            Example(lambda a, i: nd(a, i), [p, np.array([[[1, 3, 0]], [[2, 0, 1]]])]),
            Example(lambda a, i: nd(a, i), [p, np.array([2, 1])]),
            Example(lambda a, i: nd(a, i), [p, np.zeros((0, 1), np.int32)]),
            # batch_dims: per batch entry, index vectors into the remaining dims
            Example(lambda a, i: nd(a, i, batch_dims=1),
                    [p, np.array([[[3], [0], [3]], [[1], [1], [2]], [[0], [2], [2]]])]),
            Example(lambda a, i: nd(a, i, batch_dims=1),
                    [p, np.array([[1, 0], [3, 1], [1, 1]], np.int64)]),
            Example(lambda a, i: nd(a, i, batch_dims=2),
                    [_sample((2, 3, 4)), np.array([[[3], [0], [1]], [[2], [2], [0]]])]),
            Example(lambda a, i: nd(a, i, batch_dims=1),
                    [_sample((2, 3)), np.zeros((2, 4, 0), np.int32)]),
        ]  # fmt: skip


def _scatter_nd_add_batched(out, idx, updates, bd):
    """``_scatter_nd_add`` per batch entry of the ``bd`` leading dims (shared by all three)."""
    if bd == 0:
        return _scatter_nd_add(out, idx, updates)
    ob, ib = _batched(out, bd), _batched(idx, bd)
    ub = updates.reshape(ob.shape[:1] + updates.shape[bd:])
    for b in range(ob.shape[0]):
        _scatter_nd_add(ob[b], ib[b], ub[b])  # ob[b] is a view into out
    return out


@register
class GatherNdGrad(OpDef):
    """Gradient of GatherNd: input 0 scatter-added into zeros shaped like input 2 (same
    ``batch_dims`` attr)."""

    kind = "opaque"

    def infer(self, specs, attrs):
        g, i, p = specs
        _check_index_dtype(i)
        bd = attrs.get("batch_dims", 0)
        _check_updates(g.shape, _nd_infer_shape(p.shape, i.shape, bd), "gradient")
        return [(p.shape, g.dtype)]

    def ref(self, xs, attrs):
        g, idx, p = xs
        bd = attrs.get("batch_dims", 0)
        _check_nd_batch(p.shape, idx, bd)
        if g.shape != _nd_out_shape(p.shape, idx.shape, bd):
            raise InvalidArgumentError(f"gradient of shape {g.shape} does not fit indices "
                                       f"{idx.shape} into {p.shape}")  # fmt: skip
        return _scatter_nd_add_batched(np.zeros(p.shape, dtype=g.dtype), idx, g, bd)

    def vjp(self, op, grads):
        bd = op.attrs.get("batch_dims", 0)
        return [gather_nd(grads[0], op.inputs[1], batch_dims=bd), None, None]

    def examples(self):
        idx = np.array([[1, 0], [1, 0], [0, 2]])
        bidx = np.array([[[2], [2], [0]], [[1], [0], [1]]])
        return [
            Example(lambda g, i, p: apply1("GatherNdGrad", [g, i, p]),
                    [_sample((3, 2)), idx, _sample((2, 3, 2))]),
            Example(lambda g, i, p: apply1("GatherNdGrad", [g, i, p], {"batch_dims": 1}),
                    [_sample((2, 3, 2)), bidx, _sample((2, 3, 2))]),
        ]  # fmt: skip


@located("gather_nd")
def gather_nd(params, indices, name=None, batch_dims=0):
    """Gather by index vectors: ``indices[..., :k]`` index dims ``batch_dims`` to
    ``batch_dims + k`` of ``params``; the first ``batch_dims`` dims (TF's batch_dims) are
    shared by params and indices. Out-of-range indices raise at run time."""
    bd = static_int(batch_dims, "batch_dims", "gather_nd")
    p = convert_to_tensor(params)
    i = convert_to_tensor(indices)
    if bd < 0:
        raise ValueError(f"gather_nd: batch_dims must be >= 0, got {bd}")
    attrs = {"batch_dims": bd} if bd else None
    return apply1("GatherNd", [p, i], attrs, name)
