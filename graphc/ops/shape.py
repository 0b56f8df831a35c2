"""Shape ops: reshape, transpose, broadcast_to, concat/stack/split, pad, tile, reverse...

Indexing ops (slicing, ``t[...]``, gather, scatter, one_hot) live in ``indexing.py`` and are
re-exported here, so ``graphc.ops.shape`` stays the one public face of the family.
"""

from __future__ import annotations

import builtins

import numpy as np

from .. import dtypes as _dt
from ..errors import InvalidArgumentError
from ..graph.core import Tensor
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply1,
    apply_op,
    convert_to_tensor,
    normalize_axis,
    num_elements,
    register,
)
from .shape_util import located, merge_dim, static_int, static_ints

__all__ = [
    "reshape", "expand_dims", "squeeze", "shape", "size", "rank", "transpose", "broadcast_to",
    "concat", "stack", "unstack", "split", "pad", "tile", "reverse",
    # from indexing.py
    "slice", "strided_slice", "gather", "gather_nd", "one_hot", "scatter_nd",
    "unsorted_segment_sum",
]  # fmt: skip

_rng = np.random.default_rng(2)


def _sample(shape):
    return _rng.uniform(-2, 2, shape)


@register
class Reshape(OpDef):
    """Reshape to ``attrs['shape']`` (one -1 allowed, inferred at run time)."""

    def infer(self, specs, attrs):
        x = specs[0]
        target = attrs["shape"]
        if sum(1 for d in target if d == -1) > 1:
            raise ShapeError(f"reshape target {target} has more than one -1")
        n = num_elements(x.shape)
        known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
        if -1 in target:
            if n is not None:
                if known == 0 or n % known:
                    raise ShapeError(f"cannot reshape {x.shape} ({n} elements) to {target}")
                out = tuple(n // known if d == -1 else d for d in target)
            else:
                out = tuple(None if d == -1 else d for d in target)
        else:
            if n is not None and n != known:
                raise ShapeError(f"cannot reshape {x.shape} ({n} elements) to {target}")
            out = tuple(target)
        return [(out, x.dtype)]

    def ref(self, xs, attrs):
        return np.reshape(xs[0], attrs["shape"])

    def vjp(self, op, grads):
        from .elementwise import broadcast_like  # noqa: F401

        return [reshape_like(grads[0], op.inputs[0])]

    def examples(self):
        return [
            Example(lambda x: reshape(x, (4, -1)), [_sample((2, 3, 4))], dynamic=False),
            Example(lambda x: reshape(x, (-1,)), [_sample((2, 3))]),
        ]


@register
class ReshapeLike(OpDef):
    """Reshape input 0 to the runtime shape of input 1 (used by gradients)."""

    def infer(self, specs, attrs):
        x, like = specs
        n, m = num_elements(x.shape), num_elements(like.shape)
        if n is not None and m is not None and n != m:
            raise ShapeError(f"cannot reshape {x.shape} to {like.shape}")
        return [(like.shape, x.dtype)]

    def ref(self, xs, attrs):
        return np.reshape(xs[0], xs[1].shape)

    def vjp(self, op, grads):
        return [reshape_like(grads[0], op.inputs[0]), None]

    def examples(self):
        return [Example(lambda x, l: reshape_like(x, l), [_sample((6,)), _sample((2, 3))])]


@register
class ExpandDims(OpDef):
    """Insert a size-1 dimension at ``attrs['axis']`` (already normalised)."""

    def infer(self, specs, attrs):
        x = specs[0]
        if x.shape is None:
            return [(None, x.dtype)]
        axis = attrs["axis"]
        if not 0 <= axis <= len(x.shape):
            raise ShapeError(f"axis {axis} out of range for rank {len(x.shape)} + 1")
        shape = list(x.shape)
        shape.insert(axis, 1)
        return [(tuple(shape), x.dtype)]

    def ref(self, xs, attrs):
        return np.expand_dims(xs[0], attrs["axis"])

    def vjp(self, op, grads):
        return [squeeze(grads[0], axis=[op.attrs["axis"]])]

    def examples(self):
        return [
            Example(lambda x: expand_dims(x, 1), [_sample((2, 3))]),
            Example(lambda x: expand_dims(x, -1), [_sample((2, 3))]),
        ]


@register
class Squeeze(OpDef):
    """Remove size-1 dimensions ``attrs['axes']`` (normalised)."""

    def infer(self, specs, attrs):
        x = specs[0]
        if x.shape is None:
            return [(None, x.dtype)]
        axes = attrs["axes"]
        for a in axes:
            if x.shape[a] not in (1, None):
                raise ShapeError(f"cannot squeeze axis {a} of size {x.shape[a]}")
        return [(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)]

    def ref(self, xs, attrs):
        return np.squeeze(xs[0], axis=tuple(attrs["axes"])) if attrs["axes"] else xs[0]

    def vjp(self, op, grads):
        return [reshape_like(grads[0], op.inputs[0])]

    def examples(self):
        return [
            Example(lambda x: squeeze(x), [_sample((2, 1, 3, 1))], dynamic=False),
            Example(lambda x: squeeze(x, axis=1), [_sample((2, 1, 3))]),
        ]


@register
class Shape(OpDef):
    """The runtime shape as a 1-D integer tensor."""

    differentiable = False

    def infer(self, specs, attrs):
        x = specs[0]
        return [((None if x.shape is None else len(x.shape),), attrs["out_type"])]

    def ref(self, xs, attrs):
        return np.array(xs[0].shape, dtype=attrs["out_type"].np)

    def examples(self):
        return [Example(lambda x: shape(x), [_sample((2, 3))], grad=False)]


@register
class Size(OpDef):
    """The runtime number of elements as an integer scalar."""

    differentiable = False

    def infer(self, specs, attrs):
        return [((), attrs["out_type"])]

    def ref(self, xs, attrs):
        return np.array(xs[0].size, dtype=attrs["out_type"].np)

    def examples(self):
        return [Example(lambda x: size(x), [_sample((2, 3))], grad=False)]


def reshape(tensor, shape, name=None):
    """Same elements in a new shape; one dimension may be -1 (inferred)."""
    x = convert_to_tensor(tensor)
    if isinstance(shape, Tensor) and shape.op.type == "Shape":
        # gc.shape(u): the run-time shape of another tensor (as TF's shape tensors)
        return reshape_like(x, shape.op.inputs[0], name=name)
    if hasattr(shape, "dtype") and hasattr(shape, "op"):
        target = tuple(int(d) for d in static_ints(shape, "shape", "reshape").reshape(-1))
        return reshape(x, target, name=name)
    target = tuple(-1 if d is None else int(d) for d in shape)
    if any(d < -1 for d in target):
        raise ValueError(f"reshape: invalid target shape {shape}")
    if -1 not in target and x.shape is not None and tuple(x.shape) == target:
        return x
    return apply1("Reshape", [x], {"shape": target}, name)


def reshape_like(x, like, name=None):
    """Reshape ``x`` to the runtime shape of ``like``."""
    x, like = convert_to_tensor(x), convert_to_tensor(like)
    if x.shape is not None and like.shape is not None and x.shape == like.shape:
        if None not in x.shape:
            return x
    return apply1("ReshapeLike", [x, like], None, name)


def expand_dims(input, axis, name=None):  # noqa: A002 - TF name
    """Insert a dimension of size 1 at ``axis`` (negative counts from the end)."""
    x = convert_to_tensor(input)
    if x.shape is None:
        raise ValueError("expand_dims needs a known rank")
    axis = normalize_axis(int(axis), len(x.shape) + 1)
    return apply1("ExpandDims", [x], {"axis": axis}, name)


def squeeze(input, axis=None, name=None):  # noqa: A002 - TF name
    """Remove dimensions of size 1 (all of them, or those in ``axis``)."""
    x = convert_to_tensor(input)
    if x.shape is None:
        raise ValueError("squeeze needs a known rank")
    rank = len(x.shape)
    if axis is None:
        if any(d is None for d in x.shape):
            raise ValueError(f"squeeze without axis needs a fully known shape, got {x.shape}")
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        if isinstance(axis, int):
            axis = [axis]
        axes = tuple(sorted({normalize_axis(int(a), rank) for a in axis}))
    try:
        return apply1("Squeeze", [x], {"axes": axes}, name)
    except ValueError:
        raise


def shape(input, out_type=_dt.int32, name=None):  # noqa: A002 - TF name
    """The runtime shape of ``input`` as a 1-D int32 tensor."""
    return apply1("Shape", [convert_to_tensor(input)], {"out_type": _dt.as_dtype(out_type)}, name)


def size(input, out_type=_dt.int32, name=None):  # noqa: A002 - TF name
    """The runtime number of elements of ``input``."""
    return apply1("Size", [convert_to_tensor(input)], {"out_type": _dt.as_dtype(out_type)}, name)


def rank(input, name=None):  # noqa: A002 - TF name
    """The (static) rank of ``input`` as an int32 constant."""
    x = convert_to_tensor(input)
    if x.shape is None:
        raise ValueError("rank of a tensor of unknown rank")
    from .constant import constant

    return constant(len(x.shape), dtype=_dt.int32, name=name)


# -- helpers shared by the shape and indexing ops ---------------------------------------------

_pyslice = builtins.slice  # this module defines its own ``slice`` (the TF op)


def _known_rank(x: Tensor, op_name: str) -> int:
    if x.shape is None:
        raise ValueError(f"{op_name}: input {x.name} needs a known rank")
    return len(x.shape)


def _one_dtype(specs):
    dtypes = {s.dtype for s in specs}
    if len(dtypes) > 1:
        raise DTypeError(
            "inputs must have one dtype, got " + ", ".join(s.dtype.name for s in specs)
        )
    return specs[0].dtype


def _convert_list(values, op_name):
    """Tensors for a list input (concat, stack): Python/numpy values take the dtype of the
    list's first tensor when they convert losslessly (ints into floats), as TF's preferred dtype."""
    if isinstance(values, Tensor) or not isinstance(values, list | tuple):
        raise TypeError(f"{op_name} takes a list of tensors, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{op_name} of an empty list")
    values = [v._as_graph_tensor() if hasattr(v, "_as_graph_tensor") else v for v in values]
    hint = next((v.dtype for v in values if isinstance(v, Tensor)), None)
    out = []
    for v in values:
        if not isinstance(v, Tensor) and hint is not None:
            kind = np.asarray(v).dtype.kind
            fits = kind == hint.np.kind or (kind in "iu" and hint.is_floating)
            v = convert_to_tensor(v, dtype=hint if fits else None)
        out.append(convert_to_tensor(v))
    return out


def _fill_none_grads(grads, outputs):
    """Missing output gradients as zeros, for ops whose VJP needs every piece (split, unstack)."""
    from .constant import zeros_like

    return [zeros_like(t) if g is None else g for g, t in zip(grads, outputs)]


# -- transpose, broadcast_to -------------------------------------------------------------------


@register
class Transpose(OpDef):
    """Permute dimensions: output dim i is input dim ``perm[i]``."""

    def infer(self, specs, attrs):
        x, perm = specs[0], attrs["perm"]
        if x.shape is None:
            return [((None,) * len(perm), x.dtype)]
        if len(perm) != len(x.shape):
            raise ShapeError(f"perm {perm} does not match rank {len(x.shape)}")
        return [(tuple(x.shape[p] for p in perm), x.dtype)]

    def ref(self, xs, attrs):
        return np.ascontiguousarray(np.transpose(xs[0], attrs["perm"]))

    def vjp(self, op, grads):
        inverse = tuple(int(i) for i in np.argsort(op.attrs["perm"]))
        return [transpose(grads[0], inverse)]

    def examples(self):
        return [
            Example(lambda x: transpose(x, (2, 0, 1)), [_sample((2, 3, 4))]),
            Example(lambda x: transpose(x), [_sample((3, 4))]),
            Example(lambda x: transpose(x, (-1, 0, 1)), [_sample((1, 3, 2))]),
            Example(lambda x: transpose(x, (1, 0)), [_sample((0, 3))]),
        ]


@located("transpose")
def transpose(a, perm=None, name=None):
    """Permute the dimensions of ``a``; default ``perm`` reverses them (matrix transpose)."""
    x = convert_to_tensor(a)
    rank = _known_rank(x, "transpose")
    if perm is None:
        perm = tuple(range(rank - 1, -1, -1))
    perm = tuple(int(p) for p in static_ints(perm, "perm", "transpose").reshape(-1))
    if len(perm) != rank:
        raise ValueError(f"transpose: perm {perm} has {len(perm)} entries for rank {rank} input")
    norm = tuple(p + rank if p < 0 else p for p in perm)
    if sorted(norm) != list(range(rank)):
        raise ValueError(f"transpose: perm {perm} is not a permutation of 0..{rank - 1}")
    return apply1("Transpose", [x], {"perm": norm}, name)


@register
class BroadcastTo(OpDef):
    """Broadcast the input to the static ``attrs['shape']`` (numpy rules)."""

    def infer(self, specs, attrs):
        x, target = specs[0], attrs["shape"]
        if x.shape is not None:
            if len(x.shape) > len(target):
                raise ShapeError(f"cannot broadcast {x.shape} to lower-rank {target}")
            lead = len(target) - len(x.shape)
            for d, t in zip(x.shape, target[lead:]):
                if d is not None and d not in (1, t):
                    raise ShapeError(f"cannot broadcast {x.shape} to {target}")
        return [(target, x.dtype)]

    def ref(self, xs, attrs):
        try:
            return np.array(np.broadcast_to(xs[0], attrs["shape"]))
        except ValueError:
            raise InvalidArgumentError(
                f"cannot broadcast shape {xs[0].shape} to {attrs['shape']}"
            ) from None

    def vjp(self, op, grads):
        from .elementwise import sum_to_shape

        return [sum_to_shape(grads[0], op.inputs[0])]

    def examples(self):
        return [
            Example(lambda x: broadcast_to(x, (2, 3, 4)), [_sample((3, 1))]),
            Example(lambda x: broadcast_to(x, (3,)), [_sample(())]),
            Example(lambda x: broadcast_to(x, (0, 4)), [_sample((1, 4))]),
        ]


@located("broadcast_to")
def broadcast_to(input, shape, name=None):  # noqa: A002 - TF name
    """Broadcast ``input`` to ``shape`` (static ints, or ``gc.shape(t)`` of another tensor)."""
    x = convert_to_tensor(input)
    if isinstance(shape, Tensor) and shape.op.type == "Shape":
        from .elementwise import broadcast_like

        # the runtime shape of another tensor: broadcasting like it keeps None dims working
        return broadcast_like(x, shape.op.inputs[0], name=name)
    target = tuple(int(d) for d in static_ints(shape, "shape", "broadcast_to").reshape(-1))
    if any(d < 0 for d in target):
        raise ValueError(f"broadcast_to: invalid target shape {target}")
    return apply1("BroadcastTo", [x], {"shape": target}, name)


# -- concat, split, stack, unstack -------------------------------------------------------------


@register
class ConcatV2(OpDef):
    """Join the inputs along ``attrs['axis']`` (normalised); other dims must agree."""

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


# -- pad, tile, reverse ------------------------------------------------------------------------

_PAD_MODES = ("CONSTANT", "REFLECT", "SYMMETRIC")


def _check_mirror(mode, paddings, dims, error):
    """TF limits: REFLECT pads < dim, SYMMETRIC pads <= dim (so the mirror stays inside)."""
    if mode == "CONSTANT":
        return
    for i, ((lo, hi), d) in enumerate(zip(paddings, dims)):
        if d is None:
            continue
        limit = d - 1 if mode == "REFLECT" else d
        if lo > limit or hi > limit:
            raise error(
                f"{mode} paddings {(lo, hi)} of dimension {i} must be at most {limit} for size {d}"
            )


@register
class Pad(OpDef):
    """Pad each dimension by ``paddings[i] = (before, after)``; CONSTANT/REFLECT/SYMMETRIC."""

    def infer(self, specs, attrs):
        x, paddings = specs[0], attrs["paddings"]
        if x.shape is None:
            return [((None,) * len(paddings), x.dtype)]
        if len(paddings) != len(x.shape):
            raise ShapeError(f"paddings {paddings} do not match rank {len(x.shape)}")
        _check_mirror(attrs["mode"], paddings, x.shape, ShapeError)
        out = tuple(None if d is None else d + lo + hi for d, (lo, hi) in zip(x.shape, paddings))
        return [(out, x.dtype)]

    def ref(self, xs, attrs):
        x, paddings, mode = xs[0], attrs["paddings"], attrs["mode"]
        _check_mirror(mode, paddings, x.shape, InvalidArgumentError)
        if mode == "CONSTANT":
            value = np.asarray(attrs["constant_values"]).astype(x.dtype)
            return np.pad(x, paddings, mode="constant", constant_values=value)
        return np.pad(x, paddings, mode=mode.lower())

    def vjp(self, op, grads):
        paddings = op.attrs["paddings"]
        if op.attrs["mode"] == "CONSTANT":
            from .indexing import getitem

            key = tuple(_pyslice(lo, -hi if hi else None) for lo, hi in paddings)
            return [getitem(grads[0], key)]
        return [apply1("PadGrad", [grads[0]], {"paddings": paddings, "mode": op.attrs["mode"]})]

    def examples(self):
        x = _sample((2, 3))
        return [
            Example(lambda t: pad(t, [[1, 0], [2, 1]]), [x]),
            Example(lambda t: pad(t, [[0, 0], [1, 2]], constant_values=-1.5), [x]),
            Example(lambda t: pad(t, [[1, 1], [2, 2]], mode="REFLECT"), [x]),
            Example(lambda t: pad(t, [[2, 1], [0, 3]], mode="symmetric"), [x]),
            Example(lambda t: pad(t, [[1, 1], [0, 0]]), [_sample((0, 2))]),
            Example(lambda t: pad(t, [[0, 2]]), [np.arange(3, dtype=np.int32)], grad=False),
        ]


@register
class PadGrad(OpDef):
    """Gradient of Pad: sum each padded position back onto the input element it copies."""

    def infer(self, specs, attrs):
        g, paddings = specs[0], attrs["paddings"]
        if g.shape is None:
            return [((None,) * len(paddings), g.dtype)]
        if len(paddings) != len(g.shape):
            raise ShapeError(f"paddings {paddings} do not match rank {len(g.shape)}")
        out = []
        mode = attrs["mode"]
        for d, (lo, hi) in zip(g.shape, paddings):
            if d is not None and d - lo - hi < 0:
                raise ShapeError(f"padded size {d} is smaller than the paddings {(lo, hi)}")
            size = None if d is None else d - lo - hi
            # the forward Pad's rule, on the unpadded size: a mirror pad copies at most the
            # dimension less one (REFLECT) or the whole dimension (SYMMETRIC)
            limit = None if size is None else size - (mode == "REFLECT")
            if mode != "CONSTANT" and (lo or hi) and limit is not None and max(lo, hi) > limit:
                raise ShapeError(f"{mode} paddings {(lo, hi)} are too large for size {size}")
            out.append(size)
        return [(tuple(out), g.dtype)]

    def ref(self, xs, attrs):
        g, mode = xs[0], attrs["mode"].lower()
        for axis, (lo, hi) in enumerate(attrs["paddings"]):
            n = g.shape[axis] - lo - hi
            if mode == "constant":
                src = np.concatenate([np.full(lo, -1), np.arange(n), np.full(hi, -1)])
            else:
                src = np.pad(np.arange(n), (lo, hi), mode=mode)
            keep = src >= 0
            out = np.zeros(g.shape[:axis] + (n,) + g.shape[axis + 1 :], dtype=g.dtype)
            moved = np.moveaxis(out, axis, 0)  # a view: add.at writes into out
            np.add.at(moved, src[keep], np.moveaxis(g, axis, 0)[keep])
            g = out
        return g

    def vjp(self, op, grads):
        return [pad(grads[0], op.attrs["paddings"], mode=op.attrs["mode"])]

    def examples(self):
        pads = ((1, 2), (2, 0))
        return [
            Example(lambda g, m=m: apply1("PadGrad", [g], {"paddings": pads, "mode": m}), [x])
            for m, x in [
                ("REFLECT", _sample((6, 5))),
                ("SYMMETRIC", _sample((5, 4))),
                ("CONSTANT", _sample((4, 2))),
            ]
        ]


@located("pad")
def pad(tensor, paddings, mode="CONSTANT", constant_values=0, name=None):
    """Pad ``tensor``: ``paddings`` is [[before, after]] per dimension (static ints).

    ``mode``: "CONSTANT" (fill with ``constant_values``), "REFLECT" (mirror without the edge)
    or "SYMMETRIC" (mirror with the edge), as in TF.
    """
    x = convert_to_tensor(tensor)
    mode = str(mode).upper()
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    arr = static_ints(paddings, "paddings", "pad")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"pad: paddings must have shape [rank, 2], got {arr.shape}")
    if (arr < 0).any():
        raise ValueError(f"pad: paddings must be >= 0, got {arr.tolist()}")
    pads = tuple((int(lo), int(hi)) for lo, hi in arr)
    if isinstance(constant_values, Tensor):
        if constant_values.op.type != "Const":
            raise ValueError("pad: constant_values must be a Python number or a constant")
        constant_values = constant_values.op.attrs["value"]
    value = np.asarray(constant_values)
    if value.shape != ():
        raise ValueError(f"pad: constant_values must be a scalar, got shape {value.shape}")
    attrs = {"paddings": pads, "mode": mode, "constant_values": value.item()}
    return apply1("Pad", [x], attrs, name)


@register
class Tile(OpDef):
    """Repeat the whole input ``multiples[i]`` times along dimension i."""

    def infer(self, specs, attrs):
        x, mult = specs[0], attrs["multiples"]
        if x.shape is None:
            return [(tuple(0 if m == 0 else None for m in mult), x.dtype)]
        if len(mult) != len(x.shape):
            raise ShapeError(f"multiples {mult} do not match rank {len(x.shape)}")
        out = tuple(0 if m == 0 else (None if d is None else d * m) for d, m in zip(x.shape, mult))
        return [(out, x.dtype)]

    def ref(self, xs, attrs):
        x = xs[0]
        return np.tile(x, attrs["multiples"]) if x.ndim else x.copy()

    def vjp(self, op, grads):
        attrs = {"multiples": op.attrs["multiples"]}
        return [apply1("TileGrad", [grads[0], op.inputs[0]], attrs)]

    def examples(self):
        return [
            Example(lambda t: tile(t, [2, 3]), [_sample((2, 3))]),
            Example(lambda t: tile(t, [1, 2, 1]), [_sample((1, 2, 2))]),
            Example(lambda t: tile(t, [3, 0]), [_sample((2, 2))]),
            Example(lambda t: tile(t, [2]), [_sample((0,))]),
        ]


@register
class TileGrad(OpDef):
    """Gradient of Tile: sum the tiled copies; input 1 gives the untiled shape."""

    def infer(self, specs, attrs):
        g, x = specs
        if g.shape is not None and x.shape is not None:
            want = [None if d is None else d * m for d, m in zip(x.shape, attrs["multiples"])]
            if len(g.shape) != len(want) or any(
                a is not None and b is not None and a != b for a, b in zip(g.shape, want)
            ):
                raise ShapeError(f"gradient of shape {g.shape} does not fit the tiling {want}")
        return [(x.shape, g.dtype)]

    def ref(self, xs, attrs):
        g, x = xs
        mult = attrs["multiples"]
        if x.size == 0 or 0 in mult:
            return np.zeros(x.shape, dtype=g.dtype)
        split = [s for m, d in zip(mult, x.shape) for s in (m, d)]
        axes = tuple(range(0, 2 * len(mult), 2))
        return g.reshape(split).sum(axis=axes, dtype=g.dtype)

    def vjp(self, op, grads):
        return [tile(grads[0], op.attrs["multiples"]), None]

    def examples(self):
        return [
            Example(
                lambda g, x: apply1("TileGrad", [g, x], {"multiples": (2, 3)}),
                [_sample((4, 6)), _sample((2, 2))],
            )
        ]


@located("tile")
def tile(input, multiples, name=None):  # noqa: A002 - TF name
    """Repeat ``input`` ``multiples[i]`` times along each dimension i (static ints)."""
    x = convert_to_tensor(input)
    rank = _known_rank(x, "tile")
    mult = tuple(int(m) for m in static_ints(multiples, "multiples", "tile").reshape(-1))
    if len(mult) != rank:
        raise ValueError(f"tile: {len(mult)} multiples for rank {rank} input {x.shape}")
    if any(m < 0 for m in mult):
        raise ValueError(f"tile: multiples must be >= 0, got {list(mult)}")
    return apply1("Tile", [x], {"multiples": mult}, name)


@register
class ReverseV2(OpDef):
    """Reverse the order of elements along ``attrs['axes']``."""

    def infer(self, specs, attrs):
        x = specs[0]
        if x.shape is not None and any(a >= len(x.shape) for a in attrs["axes"]):
            raise ShapeError(f"axes {attrs['axes']} out of range for rank {len(x.shape)}")
        return [(x.shape, x.dtype)]

    def ref(self, xs, attrs):
        return np.array(np.flip(xs[0], attrs["axes"]))

    def vjp(self, op, grads):
        return [reverse(grads[0], op.attrs["axes"])]

    def examples(self):
        x = _sample((2, 3, 4))
        return [
            Example(lambda t: reverse(t, [1]), [x]),
            Example(lambda t: reverse(t, [0, -1]), [x]),
            Example(lambda t: reverse(t, 0), [_sample((0, 2))]),
        ]


@located("reverse")
def reverse(tensor, axis, name=None):
    """Reverse ``tensor`` along the dimensions in ``axis`` (an int or a list of ints)."""
    x = convert_to_tensor(tensor)
    rank = _known_rank(x, "reverse")
    axes = [int(a) for a in static_ints(axis, "axis", "reverse").reshape(-1)]
    norm = tuple(sorted(normalize_axis(a, rank) for a in axes))
    if len(set(norm)) != len(norm):
        raise ValueError(f"reverse: axis {axes} names a dimension twice")
    return apply1("ReverseV2", [x], {"axes": norm}, name)


# The indexing family registers on import and shares the public face of this module.
from .indexing import (  # noqa: E402
    gather,
    gather_nd,
    getitem,
    one_hot,
    scatter_nd,
    slice,
    strided_slice,
    unsorted_segment_sum,
)

_ = (getitem, slice)
