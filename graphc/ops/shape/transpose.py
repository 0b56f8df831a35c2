"""transpose and broadcast_to: the output's elements are the input's, permuted or repeated
along new or size-1 dimensions; each one's gradient is the other direction (transpose back, sum
to the input's shape)."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ...graph.core import Tensor
from ..elementwise import broadcast_like, sum_to_shape
from ..registry import Example, OpDef, ShapeError, apply1, convert_to_tensor, register
from ..shape_util import located, static_ints
from .common import _known_rank, _sample


@register
class Transpose(OpDef):
    """Permute dimensions: output dim i is input dim ``perm[i]``."""

    kind = "index"
    symbolic_dims = "transpose"
    reads_each_once = True

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

    kind = "index"
    broadcasts = True
    copies_input0 = True

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
        # the runtime shape of another tensor: broadcasting like it keeps None dims working
        return broadcast_like(x, shape.op.inputs[0], name=name)
    target = tuple(int(d) for d in static_ints(shape, "shape", "broadcast_to").reshape(-1))
    if any(d < 0 for d in target):
        raise ValueError(f"broadcast_to: invalid target shape {target}")
    return apply1("BroadcastTo", [x], {"shape": target}, name)
