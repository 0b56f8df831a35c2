"""tile and reverse: the input's elements laid out again (repeated along each dimension, or
in reverse order along some), with gradients that sum the copies back (TileGrad) or reverse
again."""

from __future__ import annotations

import numpy as np

from ..registry import (
    Example,
    OpDef,
    ShapeError,
    apply1,
    convert_to_tensor,
    normalize_axis,
    register,
)
from ..shape_util import located, static_ints
from .common import _known_rank, _sample


@register
class Tile(OpDef):
    """Repeat the whole input ``multiples[i]`` times along dimension i."""

    kind = "index"

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

    kind = "index"
    reads_each_once = True

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

    kind = "index"
    reads_each_once = True

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
