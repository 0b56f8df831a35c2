"""Element-wise gathers and scatters along one axis, and scatter-updates by index tuples.

``gather_elements`` / ``scatter_elements`` are ``np.take_along_axis`` / its inverse (PyTorch
``gather``/``scatter``, ONNX GatherElements/ScatterElements); ``tensor_scatter_nd_update``
is TF's (ONNX ScatterND), with an optional reduction. Negative indices count from the end;
an index out of range fails the run (``InvalidArgumentError`` naming the op). Compiled
targets lower them in ``graphc/kernel/lower_elements.py``.
"""

from __future__ import annotations

import numpy as np

from .constant import zeros_like
from .indexing import gather_nd
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply1,
    convert_to_tensor,
    normalize_axis,
    register,
)
from .shape_util import located

__all__ = ["gather_elements", "scatter_elements", "tensor_scatter_nd_update"]

_rng = np.random.default_rng(11)
_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _check_indices(spec):
    if spec.dtype.name not in ("int32", "int64"):
        raise DTypeError(f"indices must be int32 or int64, got {spec.dtype.name}")


def _normalized(idx, dim, what):
    idx = np.asarray(idx, np.int64)
    if idx.size and ((idx < -dim).any() or (idx >= dim).any()):
        bad = idx[(idx < -dim) | (idx >= dim)].reshape(-1)[0]
        raise ValueError(f"{what} index {bad} is out of range for a dimension of "
                                   f"size {dim}")  # fmt: skip
    return np.where(idx < 0, idx + dim, idx)


def _same_rank(a, b, what):
    if a.shape is not None and b.shape is not None and len(a.shape) != len(b.shape):
        raise ShapeError(f"{what}: data and indices must have the same rank, got {a.shape} and "
                         f"{b.shape}")  # fmt: skip


@register
class GatherElements(OpDef):
    """``out[i][j][k] = data[i][idx[i][j][k]][k]`` along ``axis`` (``np.take_along_axis``)."""

    kind = "index"

    def infer(self, specs, attrs):
        data, idx = specs
        _check_indices(idx)
        _same_rank(data, idx, "gather_elements")
        if data.shape is not None:
            normalize_axis(attrs["axis"], len(data.shape))
        return [(idx.shape, data.dtype)]

    def ref(self, xs, attrs):
        data, idx = xs
        axis = attrs["axis"] % data.ndim
        idx = _normalized(idx, data.shape[axis], "gather_elements")
        for d, (a, b) in enumerate(zip(data.shape, idx.shape)):
            if d != axis and b > a:
                raise ValueError(f"gather_elements: indices shape {idx.shape} exceeds "
                                           f"data shape {data.shape} in dimension {d}")  # fmt: skip
        data = data[tuple(slice(0, n) if d != axis else slice(None)
                          for d, n in enumerate(idx.shape))]  # fmt: skip
        return np.take_along_axis(data, idx, axis=axis)

    def vjp(self, op, grads):
        data, idx = op.inputs
        zeros = zeros_like(data)
        return [scatter_elements(zeros, idx, grads[0], op.attrs["axis"], reduction="add"), None]

    def examples(self):
        x = _rng.uniform(-2, 2, (3, 4))
        idx = np.array([[0, 3], [2, -1], [1, 1]], np.int64)
        return [
            Example(lambda d, i: gather_elements(d, i, axis=1), [x, idx]),
            Example(lambda d, i: gather_elements(d, i, axis=0), [x, np.array([[2, 0, 1, 0]],
                                                                             np.int32)]),
            Example(lambda d, i: gather_elements(d, i, axis=0), [x, np.zeros((0, 4), np.int64)],
                    grad=False),
        ]  # fmt: skip


def _scatter(out, idx, upd, axis, reduction):
    full = np.indices(idx.shape)
    pos = list(full)
    pos[axis] = idx
    pos = tuple(p.reshape(-1) for p in pos)
    upd = upd.reshape(-1)
    if reduction == "none":
        out[pos] = upd
    elif reduction == "add":
        np.add.at(out, pos, upd)
    elif reduction == "mul":
        np.multiply.at(out, pos, upd)
    elif reduction == "max":
        np.maximum.at(out, pos, upd)
    else:
        np.minimum.at(out, pos, upd)
    return out


@register
class ScatterElements(OpDef):
    """A copy of ``data`` with ``updates`` written at ``indices`` along ``axis`` (the inverse
    of gather_elements); ``reduction`` "none" (the last write of a repeated index wins), "add",
    "mul", "max" or "min" combines with what is there."""

    kind = "opaque"

    def infer(self, specs, attrs):
        data, idx, upd = specs
        _check_indices(idx)
        _same_rank(data, idx, "scatter_elements")
        if upd.dtype != data.dtype:
            raise DTypeError(f"updates dtype {upd.dtype.name} != data dtype {data.dtype.name}")
        if idx.shape is not None and upd.shape is not None:
            if any(
                a is not None and b is not None and a != b for a, b in zip(idx.shape, upd.shape)
            ) or len(idx.shape) != len(upd.shape):
                raise ShapeError(f"updates {upd.shape} must have the shape of indices "
                                 f"{idx.shape}")  # fmt: skip
        if data.shape is not None:
            normalize_axis(attrs["axis"], len(data.shape))
        return [data]

    def ref(self, xs, attrs):
        data, idx, upd = xs
        if idx.shape != upd.shape:
            raise ValueError(f"scatter_elements: updates {upd.shape} must have the "
                                       f"shape of indices {idx.shape}")  # fmt: skip
        axis = attrs["axis"] % data.ndim
        idx = _normalized(idx, data.shape[axis], "scatter_elements")
        for d, (a, b) in enumerate(zip(data.shape, idx.shape)):
            if d != axis and b > a:
                raise ValueError(f"scatter_elements: indices shape {idx.shape} "
                                           f"exceeds data shape {data.shape}")  # fmt: skip
        return _scatter(data.copy(), idx, upd, axis, attrs["reduction"])

    def vjp(self, op, grads):
        data, idx, upd = op.inputs
        g = grads[0]
        if op.attrs["reduction"] == "add":
            return [g, None, gather_elements(g, idx, op.attrs["axis"])]
        if op.attrs["reduction"] != "none":
            raise NotImplementedError(f"no gradient for scatter_elements with reduction "
                                      f"{op.attrs['reduction']}")  # fmt: skip
        axis = op.attrs["axis"]
        masked = scatter_elements(g, idx, zeros_like(upd), axis)
        return [masked, None, gather_elements(g, idx, axis)]

    def examples(self):
        x = _rng.uniform(-2, 2, (3, 4))
        idx = np.array([[0, 3], [2, 1], [1, -2]], np.int64)
        u = _rng.uniform(-2, 2, (3, 2))
        return [
            Example(lambda d, i, v: scatter_elements(d, i, v, axis=1), [x, idx, u]),
            Example(lambda d, i, v: scatter_elements(d, i, v, axis=1, reduction="add"),
                    [x, np.array([[0, 0], [2, 1], [1, 1]], np.int64), u]),
            Example(lambda d, i, v: scatter_elements(d, i, v, axis=0, reduction="max"),
                    [x, np.array([[2, 0, 1, 0]], np.int32), u.reshape(-1)[:4].reshape(1, 4)],
                    grad=False),
        ]  # fmt: skip


@register
class TensorScatterNdUpdate(OpDef):
    """A copy of ``data`` where ``indices[..., :]`` (tuples into data's leading dims) get
    ``updates``; ``reduction`` as scatter_elements'."""

    kind = "opaque"

    def infer(self, specs, attrs):
        data, idx, upd = specs
        _check_indices(idx)
        if upd.dtype != data.dtype:
            raise DTypeError(f"updates dtype {upd.dtype.name} != data dtype {data.dtype.name}")
        if None not in (data.shape, idx.shape, upd.shape) and idx.shape[-1] is not None:
            k = idx.shape[-1]
            want = tuple(idx.shape[:-1]) + tuple(data.shape[k:])
            if (
                k > len(data.shape)
                or len(want) != len(upd.shape)
                or any(a is not None and b is not None and a != b for a, b in zip(want, upd.shape))
            ):
                raise ShapeError(f"updates must have shape {want}, got {upd.shape}")
        return [data]

    def ref(self, xs, attrs):
        data, idx, upd = xs
        out = data.copy()
        k = idx.shape[-1]
        want = idx.shape[:-1] + data.shape[k:]
        if upd.shape != want or k > data.ndim:
            raise ValueError(f"tensor_scatter_nd_update: updates must have shape "
                                       f"{want}, got {upd.shape}")  # fmt: skip
        flat = idx.reshape(-1, k)
        cols = tuple(_normalized(flat[:, j], data.shape[j], "tensor_scatter_nd_update")
                     for j in range(k))  # fmt: skip
        u = upd.reshape((-1,) + data.shape[k:])
        red = attrs["reduction"]
        if red == "none":
            out[cols] = u
        else:
            fn = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[red]
            fn.at(out, cols, u)
        return out

    def vjp(self, op, grads):
        data, idx, upd = op.inputs
        g = grads[0]
        if op.attrs["reduction"] == "add":
            return [g, None, gather_nd(g, idx)]
        if op.attrs["reduction"] != "none":
            raise NotImplementedError("no gradient for tensor_scatter_nd_update with reduction "
                                      f"{op.attrs['reduction']}")  # fmt: skip
        return [tensor_scatter_nd_update(g, idx, zeros_like(upd)), None, gather_nd(g, idx)]

    def examples(self):
        x = _rng.uniform(-2, 2, (4, 3))
        return [
            Example(tensor_scatter_nd_update, [x, np.array([[1], [3]], np.int64),
                                               _rng.uniform(-1, 1, (2, 3))]),
            Example(lambda d, i, u: tensor_scatter_nd_update(d, i, u, reduction="mul"),
                    [x, np.array([[1, 2], [1, 2], [0, 0]], np.int32),
                     _rng.uniform(-1, 1, (3,))], grad=False),
        ]  # fmt: skip


def _reduction(reduction):
    r = str(reduction).lower()
    if r not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return r


@located("gather_elements")
def gather_elements(params, indices, axis=0, name=None):
    """Values of ``params`` at ``indices`` along ``axis`` (same rank; the result has the
    shape of ``indices``), as ``np.take_along_axis``."""
    p, i = convert_to_tensor(params), convert_to_tensor(indices)
    return apply1("GatherElements", [p, i], {"axis": int(axis)}, name)


@located("scatter_elements")
def scatter_elements(data, indices, updates, axis=0, reduction="none", name=None):
    """A copy of ``data`` with ``updates`` written at ``indices`` along ``axis``."""
    d, i, u = convert_to_tensor(data), convert_to_tensor(indices), convert_to_tensor(updates)
    attrs = {"axis": int(axis), "reduction": _reduction(reduction)}
    return apply1("ScatterElements", [d, i, u], attrs, name)


@located("tensor_scatter_nd_update")
def tensor_scatter_nd_update(tensor, indices, updates, reduction="none", name=None):
    """A copy of ``tensor`` with slices at the index tuples ``indices[..., :]`` replaced by
    (or, with ``reduction``, combined with) ``updates``."""
    d, i, u = convert_to_tensor(tensor), convert_to_tensor(indices), convert_to_tensor(updates)
    return apply1("TensorScatterNdUpdate", [d, i, u], {"reduction": _reduction(reduction)}, name)
