"""scatter_nd (updates summed into zeros at index vectors) and unsorted_segment_sum: the public
scatter-adds, each the adjoint of a gather."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ..elementwise import cast, greater_equal, maximum, multiply
from ..registry import Example, OpDef, ShapeError, apply1, convert_to_tensor, register
from ..shape.reshape import expand_dims  # (the module: the shape package imports indexing)
from ..shape_util import located, merge_dim, static_ints
from .common import (
    _check_index_dtype,
    _check_updates,
    _nd_infer_shape,
    _nd_out_shape,
    _sample,
    _scatter_nd_add,
)
from .gather import gather, gather_nd


@register
class ScatterNd(OpDef):
    """Zeros of static ``attrs['shape']`` with ``updates`` added at the index vectors
    ``indices`` (duplicates sum, as in TF)."""

    kind = "opaque"

    def infer(self, specs, attrs):
        i, u = specs
        _check_index_dtype(i)
        shape = attrs["shape"]
        if i.shape == ():
            raise ShapeError("indices must have rank >= 1")
        _check_updates(u.shape, _nd_infer_shape(shape, i.shape))
        return [(shape, u.dtype)]

    def ref(self, xs, attrs):
        idx, u = xs
        shape = attrs["shape"]
        if idx.shape[-1] > len(shape):
            raise InvalidArgumentError(f"index vectors of length {idx.shape[-1]} for {shape}")
        if u.shape != _nd_out_shape(shape, idx.shape):
            raise InvalidArgumentError(f"updates of shape {u.shape} do not fit {idx.shape}")
        return _scatter_nd_add(np.zeros(shape, dtype=u.dtype), idx, u)

    def vjp(self, op, grads):
        return [None, gather_nd(grads[0], op.inputs[0])]

    def examples(self):
        return [
            Example(lambda i, u: scatter_nd(i, u, (4, 3)),
                    [np.array([[1], [3], [1]]), _sample((3, 3))]),
            Example(lambda i, u: scatter_nd(i, u, (2, 2)),
                    [np.array([[0, 1], [1, 1], [0, 1]]), _sample((3,))]),
        ]  # fmt: skip


@located("scatter_nd")
def scatter_nd(indices, updates, shape, name=None):
    """Zeros of ``shape`` (static) with ``updates`` summed in at the index vectors ``indices``."""
    i = convert_to_tensor(indices)
    u = convert_to_tensor(updates)
    dims = tuple(int(d) for d in static_ints(shape, "shape", "scatter_nd").reshape(-1))
    if any(d < 0 for d in dims):
        raise ValueError(f"scatter_nd: invalid shape {dims}")
    return apply1("ScatterNd", [i, u], {"shape": dims}, name)


# -- unsorted_segment_sum ----------------------------------------------------------------------


@register
class UnsortedSegmentSum(OpDef):
    """``out[s] = sum of data[j] where segment_ids[j] == s`` (negative ids are dropped)."""

    kind = "opaque"

    def infer(self, specs, attrs):
        data, ids = specs
        _check_index_dtype(ids, "segment_ids")
        if data.shape is None or ids.shape is None:
            return [(None, data.dtype)]
        k = len(ids.shape)
        if k > len(data.shape):
            raise ShapeError(f"segment_ids {ids.shape} must be a prefix of data {data.shape}")
        for a, b in zip(data.shape, ids.shape):
            merge_dim(a, b, f"segment_ids {ids.shape} must be a prefix of data {data.shape}")
        return [((attrs["num_segments"],) + tuple(data.shape[k:]), data.dtype)]

    def ref(self, xs, attrs):
        data, ids = xs
        n = attrs["num_segments"]
        if data.shape[: ids.ndim] != ids.shape:
            raise InvalidArgumentError(
                f"segment_ids {ids.shape} must be a prefix of data {data.shape}"
            )
        if (ids >= n).any():
            raise InvalidArgumentError(f"segment id {int(ids.max())} is not below {n}")
        out = np.zeros((n,) + data.shape[ids.ndim :], dtype=data.dtype)
        keep = ids >= 0
        np.add.at(out, ids[keep], data[keep])
        return out

    def vjp(self, op, grads):
        data, ids = op.inputs
        g = grads[0]
        picked = gather(g, maximum(ids, 0))
        # dropped (negative) ids get no gradient
        mask = cast(greater_equal(ids, 0), g.dtype)
        for _ in range(len(data.shape) - len(ids.shape)):
            mask = expand_dims(mask, -1)
        return [multiply(picked, mask), None]

    def examples(self):
        return [
            Example(lambda d, s: unsorted_segment_sum(d, s, 4),
                    [_sample((5, 2)), np.array([0, 3, 0, -1, 1], dtype=np.int32)]),
            Example(lambda d, s: unsorted_segment_sum(d, s, 3),
                    [_sample((2, 2, 3)), np.array([[2, 2], [0, 2]])]),
            Example(lambda d, s: unsorted_segment_sum(d, s, 2),
                    [_sample((0,)), np.zeros((0,), np.int32)]),
        ]  # fmt: skip


@located("unsorted_segment_sum")
def unsorted_segment_sum(data, segment_ids, num_segments, name=None):
    """Sum the slices of ``data`` into ``num_segments`` (static) rows by ``segment_ids``."""
    d = convert_to_tensor(data)
    s = convert_to_tensor(segment_ids)
    if d.shape is None or s.shape is None:
        raise ValueError("unsorted_segment_sum needs data and segment_ids of known rank")
    n = static_ints(num_segments, "num_segments", "unsorted_segment_sum")
    if n.shape != () or int(n) < 0:
        raise ValueError(f"unsorted_segment_sum: num_segments must be an int >= 0, got {n}")
    return apply1("UnsortedSegmentSum", [d, s], {"num_segments": int(n)}, name)
