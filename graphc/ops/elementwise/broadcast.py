"""Gradient helpers: a gradient summed down to (``sum_to_shape``) or broadcast up to
(``broadcast_like``) another tensor's run-time shape, each the other's gradient, and
``_unbroadcast``, which the binary ops' gradients use to undo numpy broadcasting."""

from __future__ import annotations

import numpy as np

from ..registry import Example, OpDef, ShapeError, apply1, broadcast_shapes, register
from .base import _sample


def _unbroadcast(g, x):
    """Sum gradient ``g`` down to the shape of input ``x`` (no-op when shapes are equal)."""
    if g is None:
        return None
    if g.shape is not None and x.shape is not None and g.shape == x.shape and None not in x.shape:
        return g
    return sum_to_shape(g, x)


# -- gradient helpers: reduce to / broadcast to another tensor's runtime shape -----------------


def _sum_to(g: np.ndarray, shape) -> np.ndarray:
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(shape) if d == 1 and g.shape[i + lead] != 1
    )
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


@register
class SumToShape(OpDef):
    """Sum input 0 over the dims broadcasting added, to the runtime shape of input 1."""

    kind = "reduction"
    opaque_lowering = "SumToShape_dynamic"  # axes known only at run time
    symbolic_dims = "input1"

    def infer(self, specs, attrs):
        g, like = specs
        if like.shape is not None and g.shape is not None:
            broadcast_shapes(g.shape, like.shape)
            if len(like.shape) > len(g.shape):
                raise ShapeError(f"cannot sum {g.shape} to a higher-rank shape {like.shape}")
        return [(like.shape, g.dtype)]

    def ref(self, xs, attrs):
        return _sum_to(xs[0], xs[1].shape)

    def vjp(self, op, grads):
        return [broadcast_like(grads[0], op.inputs[0]), None]

    def examples(self):
        return [Example(lambda g, x: sum_to_shape(g, x), [_sample((2, 3, 4)), _sample((3, 1))])]


@register
class BroadcastLike(OpDef):
    """Broadcast input 0 to the runtime shape of input 1 (numpy rules)."""

    kind = "index"
    broadcasts = True
    copies_input0 = True
    symbolic_dims = "input1"

    def infer(self, specs, attrs):
        x, like = specs
        if x.dtype != like.dtype and not like.dtype.is_bool:
            pass
        shape = broadcast_shapes(x.shape, like.shape)
        if shape is not None and like.shape is not None and len(shape) != len(like.shape):
            raise ShapeError(f"cannot broadcast {x.shape} to lower-rank {like.shape}")
        return [(like.shape if like.shape is not None else shape, x.dtype)]

    def ref(self, xs, attrs):
        return np.array(np.broadcast_to(xs[0], xs[1].shape), order="C")

    def vjp(self, op, grads):
        return [sum_to_shape(grads[0], op.inputs[0]), None]

    def examples(self):
        return [Example(lambda x, l: broadcast_like(x, l), [_sample((3, 1)), _sample((2, 3, 4))])]


def sum_to_shape(g, like, name=None):
    """Sum ``g`` over broadcast dims so it takes the (runtime) shape of ``like``."""
    return apply1("SumToShape", [g, like], None, name)


def broadcast_like(x, like, name=None):
    """Broadcast ``x`` to the (runtime) shape of ``like``."""
    return apply1("BroadcastLike", [x, like], None, name)
