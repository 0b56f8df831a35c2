"""Reshape and the shape queries: reshape (to a static shape or another tensor's run-time
shape), expand_dims, squeeze, shape, size and rank."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from ...graph.core import Tensor
from ..constant import constant
from ..registry import (
    Example,
    OpDef,
    ShapeError,
    apply1,
    convert_to_tensor,
    normalize_axis,
    num_elements,
    register,
)
from ..shape_util import static_ints
from .common import _sample


@register
class Reshape(OpDef):
    """Reshape to ``attrs['shape']`` (one -1 allowed, inferred at run time)."""

    kind = "index"
    copies_input0 = True
    symbolic_dims = "reshape"
    view = True
    reads_each_once = True

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
        return [reshape_like(grads[0], op.inputs[0])]

    def examples(self):
        return [
            Example(lambda x: reshape(x, (4, -1)), [_sample((2, 3, 4))], dynamic=False),
            Example(lambda x: reshape(x, (-1,)), [_sample((2, 3))]),
        ]


@register
class ReshapeLike(OpDef):
    """Reshape input 0 to the runtime shape of input 1 (used by gradients)."""

    kind = "index"
    symbolic_dims = "input1"
    view = True
    reads_each_once = True

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

    kind = "index"
    copies_input0 = True
    symbolic_dims = "expand_dims"
    view = True
    reads_each_once = True

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

    kind = "index"
    copies_input0 = True
    symbolic_dims = "squeeze"
    view = True
    reads_each_once = True

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

    kind = "elementwise"
    from_static_shape = True

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

    kind = "elementwise"
    from_static_shape = True

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
    return constant(len(x.shape), dtype=_dt.int32, name=name)
