"""one_hot: ``on_value`` where the last axis (or ``axis``) equals the index, ``off_value``
elsewhere; out-of-range indices give a row of ``off_value`` (as TF)."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from ...graph.core import Tensor
from ..registry import (
    Example,
    OpDef,
    ShapeError,
    apply1,
    convert_to_tensor,
    normalize_axis,
    register,
)
from ..shape_util import located, static_int, static_ints
from .common import _check_index_dtype


@register
class OneHot(OpDef):
    """``on_value`` where ``indices == k`` along a new dim of size ``depth`` else ``off_value``
    (indices outside [0, depth) give a row of ``off_value``, as in TF)."""

    kind = "index"

    differentiable = False

    def infer(self, specs, attrs):
        i = specs[0]
        _check_index_dtype(i)
        if i.shape is None:
            return [(None, attrs["dtype"])]
        shape = list(i.shape)
        if not 0 <= attrs["axis"] <= len(shape):
            raise ShapeError(f"axis {attrs['axis']} is out of range for rank {len(shape)} + 1")
        shape.insert(attrs["axis"], attrs["depth"])
        return [(tuple(shape), attrs["dtype"])]

    def ref(self, xs, attrs):
        idx, axis, depth = xs[0], attrs["axis"], attrs["depth"]
        ks = np.arange(depth).reshape((depth,) + (1,) * (idx.ndim - axis))
        hit = np.expand_dims(idx, axis) == ks
        dt = attrs["dtype"].np
        return np.where(hit, np.asarray(attrs["on_value"], dt), np.asarray(attrs["off_value"], dt))

    def examples(self):
        i = np.array([[0, 2, -1], [3, 1, 5]], dtype=np.int32)
        return [
            Example(lambda t: one_hot(t, 4), [i], grad=False),
            Example(lambda t: one_hot(t, 3, on_value=5, off_value=-1, axis=0, dtype=_dt.int32),
                    [i], grad=False),
            Example(lambda t: one_hot(t, 2, axis=1, dtype=_dt.float64), [i], grad=False),
            Example(lambda t: one_hot(t, 3), [np.array(1, np.int64)], grad=False),
            Example(lambda t: one_hot(t, 0), [np.zeros((0,), np.int32)], grad=False),
        ]  # fmt: skip


def _scalar(value, what):
    if isinstance(value, Tensor):
        if value.op.type != "Const" or value.shape != ():
            raise ValueError(f"one_hot: {what} must be a Python number or a scalar constant")
        value = value.op.attrs["value"]
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise ValueError(f"one_hot: {what} must be a scalar number, got {value!r}")
    return arr.item()


@located("one_hot")
def one_hot(indices, depth, on_value=1, off_value=0, axis=-1, dtype=_dt.float32, name=None):
    """One-hot encoding of integer ``indices`` along a new dimension ``axis`` of size ``depth``."""
    i = convert_to_tensor(indices)
    if i.shape is None:
        raise ValueError("one_hot needs indices of known rank")
    depth = static_ints(depth, "depth", "one_hot")
    if depth.shape != () or int(depth) < 0:
        raise ValueError(f"one_hot: depth must be an int >= 0, got {depth}")
    dtype = _dt.as_dtype(dtype)
    axis = normalize_axis(static_int(axis, "axis", "one_hot"), len(i.shape) + 1)
    attrs = {
        "depth": int(depth),
        "axis": axis,
        "dtype": dtype,
        "on_value": _scalar(on_value, "on_value"),
        "off_value": _scalar(off_value, "off_value"),
    }
    return apply1("OneHot", [i], attrs, name)
