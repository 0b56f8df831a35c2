"""pad (CONSTANT, REFLECT, SYMMETRIC, as TF) and its gradient: a slice for CONSTANT, the
mirrored elements summed back (PadGrad) for the others."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ...graph.core import Tensor
from ..indexing.slicing import getitem
from ..registry import Example, OpDef, ShapeError, apply1, convert_to_tensor, register
from ..shape_util import located, static_ints
from .common import _sample

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

    kind = "index"

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
            key = tuple(slice(lo, -hi if hi else None) for lo, hi in paddings)
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

    kind = "index"

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
