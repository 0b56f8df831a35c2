"""Joining and cutting along an axis: concat and stack, and their inverses split and unstack
(each one's gradient is the other)."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ..registry import (
    Example,
    OpDef,
    ShapeError,
    apply1,
    apply_op,
    convert_to_tensor,
    normalize_axis,
    register,
)
from ..shape_util import located, merge_dim, static_int, static_ints
from .common import _convert_list, _fill_none_grads, _known_rank, _one_dtype, _sample


@register
class ConcatV2(OpDef):
    """Join the inputs along ``attrs['axis']`` (normalised); other dims must agree."""

    kind = "index"
    symbolic_dims = "concat"

    def infer(self, specs, attrs):
        dtype = _one_dtype(specs)
        axis = attrs["axis"]
        known = [s.shape for s in specs if s.shape is not None]
        if not known:
            return [(None, dtype)]
        rank = len(known[0])
        if any(len(s) != rank for s in known):
            raise ShapeError("inputs must have one rank, got " + ", ".join(map(str, known)))
        if rank == 0:
            raise ShapeError("cannot concatenate scalars (use stack)")
        if not 0 <= axis < rank:
            raise ShapeError(f"axis {axis} is out of range for rank {rank}")
        out = []
        for i in range(rank):
            dims = [s[i] for s in known]
            if i == axis:
                full = len(known) == len(specs) and None not in dims
                out.append(sum(dims) if full else None)
            else:
                d = None
                for e in dims:
                    d = merge_dim(d, e, f"dimension {i} differs between inputs")
                out.append(d)
        return [(tuple(out), dtype)]

    def ref(self, xs, attrs):
        return np.concatenate(xs, axis=attrs["axis"])

    def vjp(self, op, grads):
        return list(_split_like(grads[0], op.inputs, op.attrs["axis"]))

    def examples(self):
        a, b, c = _sample((2, 3)), _sample((2, 1)), _sample((2, 0))
        return [
            Example(lambda x, y, z: concat([x, y, z], axis=-1), [a, b, c]),
            Example(lambda x, y: concat([x, y], 0), [_sample((1, 2, 2)), _sample((3, 2, 2))]),
            Example(lambda x: concat([x], 0), [_sample((3,))]),
        ]


@located("concat")
def concat(values, axis, name=None):
    """Join ``values`` (tensors of one dtype and rank) along ``axis``."""
    xs = _convert_list(values, "concat")
    ranks = [len(x.shape) for x in xs if x.shape is not None]
    if not ranks:
        raise ValueError("concat needs at least one input of known rank")
    rank = ranks[0]  # ConcatV2.infer reports differing ranks, with the user's line
    axis = static_int(axis, "axis", "concat")
    axis = normalize_axis(axis, rank) if rank else axis
    return apply1("ConcatV2", xs, {"axis": axis}, name)


@register
class SplitLike(OpDef):
    """Split input 0 along ``axis`` into pieces as long as inputs 1.. are (concat's gradient)."""

    kind = "index"
    symbolic_dims = "split"
    reads_each_once = True

    def infer(self, specs, attrs):
        g, likes, axis = specs[0], specs[1:], attrs["axis"]
        outs = []
        for like in likes:
            if like.shape is None:
                shape = None
                if g.shape is not None:
                    shape = tuple(None if i == axis else d for i, d in enumerate(g.shape))
            elif g.shape is None:
                shape = like.shape
            else:
                if len(g.shape) != len(like.shape):
                    raise ShapeError(f"cannot split rank {len(g.shape)} like {like.shape}")
                shape = tuple(
                    e if i == axis else merge_dim(d, e, f"dimension {i} differs")
                    for i, (d, e) in enumerate(zip(g.shape, like.shape))
                )
            outs.append((shape, g.dtype))
        return outs

    def ref(self, xs, attrs):
        g, likes, axis = xs[0], xs[1:], attrs["axis"]
        sizes = [like.shape[axis] for like in likes]
        if sum(sizes) != g.shape[axis]:
            raise InvalidArgumentError(
                f"cannot split dimension {axis} of shape {g.shape} into pieces {sizes}"
            )
        cuts = np.cumsum(sizes)[:-1]
        return [np.array(p) for p in np.split(g, cuts, axis=axis)]

    def vjp(self, op, grads):
        full = _fill_none_grads(grads, op.outputs)
        return [concat(full, op.attrs["axis"])] + [None] * (len(op.inputs) - 1)

    def examples(self):
        return [
            Example(
                lambda g, a, b: _split_like(g, [a, b], 1),
                [_sample((2, 5)), _sample((2, 2)), _sample((2, 3))],
            )
        ]


def _split_like(g, likes, axis):
    return apply_op("SplitLike", [g, *likes], {"axis": axis}).outputs


def _split_sizes(dim, num, sizes):
    """Piece lengths along the split axis (``None`` where unknown); ShapeError if impossible."""
    if sizes is None:
        if dim is None:
            return [None] * num
        if dim % num:
            raise ShapeError(f"dimension of size {dim} cannot be split into {num} equal pieces")
        return [dim // num] * num
    known = sum(s for s in sizes if s != -1)
    if -1 in sizes:
        if dim is None:
            return [None if s == -1 else s for s in sizes]
        if known > dim:
            raise ShapeError(f"split sizes {list(sizes)} exceed the dimension size {dim}")
        return [dim - known if s == -1 else s for s in sizes]
    if dim is not None and known != dim:
        raise ShapeError(f"split sizes {list(sizes)} do not add up to the dimension size {dim}")
    return list(sizes)


@register
class SplitV(OpDef):
    """Split along ``axis`` into ``num`` equal pieces or pieces of ``sizes`` (one -1 allowed)."""

    kind = "index"
    symbolic_dims = "split"
    reads_each_once = True

    def infer(self, specs, attrs):
        x, axis, num = specs[0], attrs["axis"], attrs["num"]
        if x.shape is None:
            return [(None, x.dtype)] * num
        if not 0 <= axis < len(x.shape):
            raise ShapeError(f"axis {axis} is out of range for rank {len(x.shape)}")
        pieces = _split_sizes(x.shape[axis], num, attrs["sizes"])
        return [(x.shape[:axis] + (p,) + x.shape[axis + 1 :], x.dtype) for p in pieces]

    def ref(self, xs, attrs):
        x, axis = xs[0], attrs["axis"]
        try:
            pieces = _split_sizes(x.shape[axis], attrs["num"], attrs["sizes"])
        except ShapeError as exc:
            raise InvalidArgumentError(f"split of shape {x.shape}: {exc}") from None
        return [np.array(p) for p in np.split(x, np.cumsum(pieces)[:-1], axis=axis)]

    def vjp(self, op, grads):
        return [concat(_fill_none_grads(grads, op.outputs), op.attrs["axis"])]

    def examples(self):
        x = _sample((4, 6))
        return [
            Example(lambda t: split(t, 3, axis=1), [x]),
            Example(lambda t: split(t, [1, -1, 2], axis=-1), [x]),
            Example(lambda t: split(t, [0, 4], axis=0), [x]),
            Example(lambda t: split(t, 2), [_sample((0, 2))]),
        ]


@located("split")
def split(value, num_or_size_splits, axis=0, num=None, name=None):
    """Split ``value`` along ``axis``: into N equal pieces (an int) or pieces of given sizes."""
    x = convert_to_tensor(value)
    rank = _known_rank(x, "split")
    axis = normalize_axis(static_int(axis, "axis", "split"), rank)
    if isinstance(num_or_size_splits, int | np.integer):
        n, sizes = int(num_or_size_splits), None
        if n < 1:
            raise ValueError(f"split: number of pieces must be >= 1, got {n}")
    else:
        sizes = tuple(int(s) for s in static_ints(num_or_size_splits, "sizes", "split").reshape(-1))
        if any(s < -1 for s in sizes) or sum(1 for s in sizes if s == -1) > 1:
            raise ValueError(f"split: invalid sizes {list(sizes)} (>= 0, at most one -1)")
        if not sizes:
            raise ValueError("split: empty list of sizes")
        n = len(sizes)
    if num is not None and int(num) != n:
        raise ValueError(f"split: num={num} does not match {n} pieces")
    return list(apply_op("SplitV", [x], {"axis": axis, "num": n, "sizes": sizes}, name).outputs)


@register
class Pack(OpDef):
    """Stack same-shaped inputs along a new dimension ``axis``."""

    kind = "index"

    def infer(self, specs, attrs):
        dtype = _one_dtype(specs)
        known = [s.shape for s in specs if s.shape is not None]
        if not known:
            return [(None, dtype)]
        rank = len(known[0])
        if any(len(s) != rank for s in known):
            raise ShapeError("inputs must have one shape, got " + ", ".join(map(str, known)))
        shape = []
        for i in range(rank):
            d = None
            for s in known:
                d = merge_dim(d, s[i], "inputs must have one shape")
            shape.append(d)
        shape.insert(attrs["axis"], len(specs))
        return [(tuple(shape), dtype)]

    def ref(self, xs, attrs):
        return np.stack(xs, axis=attrs["axis"])

    def vjp(self, op, grads):
        return unstack(grads[0], num=len(op.inputs), axis=op.attrs["axis"])

    def examples(self):
        a, b = _sample((2, 3)), _sample((2, 3))
        return [
            Example(lambda x, y: stack([x, y]), [a, b]),
            Example(lambda x, y: stack([x, y], axis=-1), [a, b]),
            Example(lambda x: stack([x], axis=1), [_sample((0, 2))]),
            Example(lambda x, y: stack([x, y]), [_sample(()), _sample(())]),
        ]


@located("stack")
def stack(values, axis=0, name=None):
    """Stack tensors of one shape along a new dimension ``axis`` (rank + 1 result)."""
    xs = _convert_list(values, "stack")
    ranks = [len(x.shape) for x in xs if x.shape is not None]
    if not ranks:
        raise ValueError("stack needs at least one input of known rank")
    axis = static_int(axis, "axis", "stack")
    axis = normalize_axis(axis, ranks[0] + 1)  # Pack.infer reports differing shapes
    return apply1("Pack", xs, {"axis": axis}, name)


@register
class Unpack(OpDef):
    """Split along ``axis`` into ``num`` tensors with that dimension removed."""

    kind = "index"
    reads_each_once = True

    interchangeable_outputs = True

    def infer(self, specs, attrs):
        x, axis, num = specs[0], attrs["axis"], attrs["num"]
        if x.shape is None:
            return [(None, x.dtype)] * num
        if not 0 <= axis < len(x.shape):
            raise ShapeError(f"axis {axis} is out of range for rank {len(x.shape)}")
        if x.shape[axis] not in (None, num):
            raise ShapeError(f"cannot unstack dimension of size {x.shape[axis]} into {num}")
        out = x.shape[:axis] + x.shape[axis + 1 :]
        return [(out, x.dtype)] * num

    def ref(self, xs, attrs):
        x, axis, num = xs[0], attrs["axis"], attrs["num"]
        if x.shape[axis] != num:
            raise InvalidArgumentError(
                f"cannot unstack dimension {axis} of shape {x.shape} into {num} tensors"
            )
        return [np.array(np.take(x, i, axis=axis)) for i in range(num)]

    def vjp(self, op, grads):
        return [stack(_fill_none_grads(grads, op.outputs), axis=op.attrs["axis"])]

    def examples(self):
        return [
            Example(lambda x: unstack(x), [_sample((3, 2))], dynamic=False),
            Example(lambda x: unstack(x, num=4, axis=-1), [_sample((2, 1, 4))]),
            Example(lambda x: unstack(x, num=2, axis=1), [_sample((0, 2))]),
        ]


@located("unstack")
def unstack(value, num=None, axis=0, name=None):
    """The list of slices of ``value`` along ``axis`` (``num`` defaults to that static size)."""
    x = convert_to_tensor(value)
    rank = _known_rank(x, "unstack")
    axis = normalize_axis(static_int(axis, "axis", "unstack"), rank)
    if num is None:
        num = x.shape[axis]
        if num is None:
            raise ValueError(
                f"unstack: dimension {axis} of {x.name} {x.shape} is unknown; pass num="
            )
    num = int(num)
    if num == 0:
        return []
    return list(apply_op("Unpack", [x], {"axis": axis, "num": num}, name).outputs)
