"""Bitwise ops on integers: and, or, xor, invert, shifts (``tf.bitwise``).

Elementwise ops with a ``Math`` body each (``BITAND``, ``BITOR``, ``BITXOR``, ``BITNOT``,
``SHL``, ``SAR``, ``LSHR``): they lower natively and fuse with their neighbours. ``ref`` keeps
the numpy meaning written out independently of those bodies (the oracle of the tests).
"""

from __future__ import annotations

import numpy as np

from ..expr import Math
from .registry import (
    DTypeError,
    Example,
    OpDef,
    apply1,
    broadcast_shapes,
    convert_args,
    register,
)
from .shape_util import located

__all__ = ["bitwise_and", "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift"]

_rng = np.random.default_rng(7)


def _ints(*shape):
    return _rng.integers(-100, 100, shape).astype(np.int32)


class _BitwiseBinary(OpDef):
    differentiable = False
    elementwise = True
    np_fn = None
    math = None

    def scalar(self, args, attrs):
        return type(self).math(*args)

    def infer(self, specs, attrs):
        a, b = specs
        if not a.dtype.is_integer or a.dtype != b.dtype:
            raise DTypeError(f"needs two integer tensors of one dtype, got {a.dtype.name} and "
                             f"{b.dtype.name}")  # fmt: skip
        return [(broadcast_shapes(a.shape, b.shape), a.dtype)]

    def ref(self, xs, attrs):
        a, b = xs
        return np.asarray(type(self).np_fn(a, b), dtype=a.dtype)

    def examples(self):
        build = _BUILDERS[self.type]
        return [
            Example(build, [_ints(3, 4), _ints(3, 4)]),
            Example(build, [_ints(2, 1, 3), _ints(4, 1)]),
            Example(build, [_ints(0, 3), _ints(3)]),
        ]


@register
class BitwiseAnd(_BitwiseBinary):
    """Bitwise and of two integer tensors (broadcasting)."""

    np_fn, math = np.bitwise_and, Math.BITAND


@register
class BitwiseOr(_BitwiseBinary):
    """Bitwise or of two integer tensors (broadcasting)."""

    np_fn, math = np.bitwise_or, Math.BITOR


@register
class BitwiseXor(_BitwiseBinary):
    """Bitwise exclusive or of two integer tensors (broadcasting)."""

    np_fn, math = np.bitwise_xor, Math.BITXOR


@register
class LeftShift(_BitwiseBinary):
    """``a << b`` (bits shifted out are lost; a count outside [0, width) gives 0)."""

    math = Math.SHL

    def ref(self, xs, attrs):
        a, b = xs
        bits = a.dtype.itemsize * 8
        shape = np.broadcast_shapes(a.shape, b.shape)
        big = np.broadcast_to((b < 0) | (b >= bits), shape)
        count = np.broadcast_to(np.clip(b, 0, bits - 1), shape).astype(np.uint64)
        u = np.broadcast_to(a, shape).astype(np.int64).astype(np.uint64)
        out = np.where(big, np.uint64(0), np.left_shift(u, count))
        return out.astype(np.uint64).view(np.int64).astype(a.dtype)


@register
class RightShift(_BitwiseBinary):
    """``a >> b``: arithmetic for signed integers, or logical (``logical=True``: the bits are
    read as unsigned, zeros shift in). A count outside [0, width) shifts every bit out: 0,
    or -1 for a negative ``a`` shifted arithmetically."""

    def ref(self, xs, attrs):
        a, b = xs
        bits = a.dtype.itemsize * 8
        shape = np.broadcast_shapes(a.shape, b.shape)
        b = np.broadcast_to(np.clip(b, 0, bits - 1), shape).astype(np.uint64)
        big = np.broadcast_to((xs[1] < 0) | (xs[1] >= bits), shape)
        a = np.broadcast_to(a, shape)
        if attrs.get("logical"):
            u = a.view(np.dtype(f"u{a.dtype.itemsize}")).astype(np.uint64)
            out = np.where(big, 0, np.right_shift(u, b)).astype(np.dtype(f"u{a.dtype.itemsize}"))
            return out.view(a.dtype).copy()
        out = np.where(big, np.where(a < 0, -1, 0), np.right_shift(a, b.astype(a.dtype)))
        return out.astype(a.dtype)

    def scalar(self, args, attrs):
        return (Math.LSHR if attrs.get("logical") else Math.SAR)(*args)

    def examples(self):
        pos = _rng.integers(0, 31, (3, 4)).astype(np.int32)
        return [
            Example(right_shift, [_ints(3, 4), pos]),
            Example(lambda a, b: right_shift(a, b, logical=True), [_ints(3, 4), pos]),
            Example(right_shift, [_ints(0, 3), pos[0, :3]]),
            # counts outside [0, width), negative ones too, and int64 words
            Example(right_shift, [_ints(3, 4), _ints(3, 4)]),
            Example(lambda a, b: right_shift(a, b, logical=True), [_ints(3, 4), _ints(1, 4)]),
            Example(
                right_shift,
                [_ints(2, 3).astype(np.int64) * 2**40, (_ints(3) % 70).astype(np.int64)],
            ),
        ]


@register
class Invert(OpDef):
    """Bitwise not of an integer tensor (``~x``)."""

    differentiable = False
    elementwise = True

    def scalar(self, args, attrs):
        return Math.BITNOT(args[0])

    def infer(self, specs, attrs):
        (x,) = specs
        if not x.dtype.is_integer:
            raise DTypeError(f"needs an integer tensor, got {x.dtype.name}")
        return [x]

    def ref(self, xs, attrs):
        return np.invert(xs[0])

    def examples(self):
        return [Example(invert, [_ints(3, 4)]), Example(invert, [_ints(0, 2)])]


def _binary(type_name, a, b, name, attrs=None):
    a, b = convert_args([a, b])
    return apply1(type_name, [a, b], attrs, name)


@located("bitwise_and")
def bitwise_and(x, y, name=None):
    """Elementwise ``x & y`` of integer tensors."""
    return _binary("BitwiseAnd", x, y, name)


@located("bitwise_or")
def bitwise_or(x, y, name=None):
    """Elementwise ``x | y`` of integer tensors."""
    return _binary("BitwiseOr", x, y, name)


@located("bitwise_xor")
def bitwise_xor(x, y, name=None):
    """Elementwise ``x ^ y`` of integer tensors."""
    return _binary("BitwiseXor", x, y, name)


@located("left_shift")
def left_shift(x, y, name=None):
    """Elementwise ``x << y`` of integer tensors."""
    return _binary("LeftShift", x, y, name)


@located("right_shift")
def right_shift(x, y, logical=False, name=None):
    """Elementwise ``x >> y``: arithmetic, or logical with ``logical=True``."""
    return _binary("RightShift", x, y, name, {"logical": bool(logical)})


@located("invert")
def invert(x, name=None):
    """Elementwise bitwise not of an integer tensor."""
    a = convert_args([x])[0]
    return apply1("Invert", [a], None, name)


_BUILDERS = {
    "BitwiseAnd": bitwise_and, "BitwiseOr": bitwise_or, "BitwiseXor": bitwise_xor,
    "LeftShift": left_shift, "RightShift": right_shift,
}  # fmt: skip
