"""Sorting-based ops: ``top_k`` (the k largest or smallest along an axis) and ``sort``.

Compiled targets lower TopK to a stable merge sort per row (``graphc/kernel/lower_sort.py``).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from .constant import zeros_like
from .gather_scatter import scatter_elements
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply_op,
    convert_to_tensor,
    normalize_axis,
    register,
)
from .shape_util import located, static_int

__all__ = ["top_k", "sort"]

_rng = np.random.default_rng(5)


def _order(x, axis, largest):
    """Stable order along ``axis``: ties keep the lower index first, and NaN counts as larger
    than every number (first when ``largest``, last otherwise), as numpy's sort. The largest
    first is the ascending order of the reversed axis, reversed (no negation: exact for every
    integer, and +inf does not tie with NaN)."""
    if not largest:
        return np.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    return n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)


@register
class TopK(OpDef):
    """The ``k`` largest (or smallest) values along ``axis`` and their int64 indices, sorted;
    equal values keep their order (lower index first). ``k`` None: the whole axis, whatever
    its run-time length (``sort`` of a dimension that is ``None`` at build time)."""

    kind = "opaque"

    def infer(self, specs, attrs):
        (x,) = specs
        if x.dtype.is_bool:
            raise DTypeError("top_k of bool")
        k = attrs["k"]
        if x.shape is None:
            return [(None, x.dtype), (None, _dt.int64)]
        axis = normalize_axis(attrs["axis"], len(x.shape))
        n = x.shape[axis]
        if k is None:
            return [(x.shape, x.dtype), (x.shape, _dt.int64)]
        if n is not None and not 0 <= k <= n:
            raise ShapeError(f"k={k} is out of range for a dimension of size {n}")
        shape = tuple(k if d == axis else s for d, s in enumerate(x.shape))
        return [(shape, x.dtype), (shape, _dt.int64)]

    def ref(self, xs, attrs):
        (x,) = xs
        axis = attrs["axis"] % x.ndim
        k = x.shape[axis] if attrs["k"] is None else attrs["k"]
        if k > x.shape[axis]:
            raise ValueError(f"top_k: k={k} > dimension size {x.shape[axis]}")
        idx = np.take(_order(x, axis, attrs["largest"]), np.arange(k), axis=axis)
        return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]

    def vjp(self, op, grads):
        x = op.inputs[0]
        g = grads[0]
        if g is None:
            return [None]
        idx = op.outputs[1]
        return [scatter_elements(zeros_like(x), idx, g, op.attrs["axis"], reduction="add")]

    def examples(self):
        x = _rng.permutation(24).reshape(4, 6).astype(np.float64)
        ties = np.array([[1, 3, 3, 2, 1]], np.int32)
        special = np.round(_rng.standard_normal((37, 2)), 1).astype(np.float32)  # with ties
        special[[1, 4, 8, 30], 0] = np.nan
        special[[2, 6, 33], 1] = [np.inf, -np.inf, np.inf]
        special[[3, 5], 0] = [np.inf, -0.0]
        return [
            Example(lambda t: top_k(t, 3)[0], [x]),
            Example(lambda t: top_k(t, 2, axis=0, largest=False)[0], [x]),
            Example(lambda t: top_k(t, 3)[1], [ties], grad=False),
            Example(lambda t: top_k(t, 0)[0], [x], grad=False),
            # k above the kernels' insertion limit (32): a merge sort of each row
            Example(
                lambda t: top_k(t, 40, largest=False)[1], [_rng.integers(0, 4, (3, 40))], grad=False
            ),
            Example(lambda t: top_k(t, 35, axis=0), [special], grad=False),
            Example(lambda t: top_k(t, 6, axis=0, largest=False), [special], grad=False),
            Example(lambda t: top_k(t, 5, axis=0), [special], grad=False),
            # sort: with every dim None (dynamic examples) the whole axis at its run-time length
            Example(lambda t: sort(t, axis=0), [special], grad=False),
            Example(lambda t: sort(t, direction="DESCENDING"), [x]),
        ]


@located("top_k")
def top_k(input, k=1, sorted=True, axis=-1, largest=True, name=None):  # noqa: A002
    """``(values, indices)``: the ``k`` largest (``largest=False``: smallest) entries along
    ``axis`` in order, indices int64 (TF's ``top_k`` on the last axis, plus ONNX's options).
    ``sorted=False`` is accepted; the result is sorted either way."""
    del sorted
    x = convert_to_tensor(input)
    k = static_int(k, "k", "top_k")
    if k < 0:
        raise ValueError(f"top_k: k must be >= 0, got {k}")
    op = apply_op("TopK", [x], {"k": k, "axis": int(axis), "largest": bool(largest)}, name)
    return op.outputs[0], op.outputs[1]


@located("sort")
def sort(values, axis=-1, direction="ASCENDING", name=None):
    """``values`` sorted along ``axis`` (stable), as ``tf.sort``."""
    x = convert_to_tensor(values)
    if x.shape is None:
        raise ValueError("sort: needs a tensor of known rank")
    n = x.shape[normalize_axis(axis, len(x.shape))]
    if direction not in ("ASCENDING", "DESCENDING"):
        raise ValueError(f"sort: direction must be ASCENDING or DESCENDING, got {direction!r}")
    if n is not None:
        return top_k(x, n, axis=axis, largest=direction == "DESCENDING", name=name)[0]
    attrs = {"k": None, "axis": int(axis), "largest": direction == "DESCENDING"}
    return apply_op("TopK", [x], attrs, name).outputs[0]
