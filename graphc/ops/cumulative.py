"""Cumulative product along an axis (``tf.math.cumprod``): ``exclusive`` and ``reverse`` as
``cumsum``'s. No gradient yet (the product rule needs care at zeros) and no native lowering:
on the cpu target it runs on the host with its numpy reference, labelled."""

from __future__ import annotations

import numpy as np

from .registry import (
    DTypeError,
    Example,
    OpDef,
    apply1,
    convert_to_tensor,
    normalize_axis,
    register,
)
from .shape_util import located, static_int

__all__ = ["cumprod"]


@register
class Cumprod(OpDef):
    """Cumulative product along ``axis``; ``exclusive`` starts from 1, ``reverse`` from the end."""

    differentiable = False

    def infer(self, specs, attrs):
        x = specs[0]
        if x.dtype.is_bool:
            raise DTypeError("cumprod of bool")
        if x.shape is not None:
            normalize_axis(attrs["axis"], len(x.shape))
        return [x]

    def ref(self, xs, attrs):
        x = xs[0]
        axis = attrs["axis"] % x.ndim
        if attrs["reverse"]:
            x = np.flip(x, axis)
        if attrs["exclusive"]:
            ones = np.ones_like(np.take(x, [0], axis=axis))
            x = np.concatenate([ones, np.delete(x, -1, axis=axis)], axis=axis) if x.shape[
                axis] else x  # fmt: skip
        out = np.cumprod(x, axis=axis, dtype=x.dtype)
        if attrs["reverse"]:
            out = np.flip(out, axis)
        return np.array(out, order="C")

    def examples(self):
        x = np.random.default_rng(2).uniform(-2, 2, (3, 4))
        return [
            Example(lambda t: cumprod(t, axis=1), [x]),
            Example(lambda t: cumprod(t, axis=0, exclusive=True, reverse=True), [x]),
            Example(lambda t: cumprod(t, axis=-1), [np.arange(1, 7, dtype=np.int32)]),
        ]


@located("cumprod")
def cumprod(x, axis=0, exclusive=False, reverse=False, name=None):
    """Cumulative product of ``x`` along ``axis`` (static int)."""
    t = convert_to_tensor(x)
    axis = static_int(axis, "axis", "cumprod")
    attrs = {"axis": axis, "exclusive": bool(exclusive), "reverse": bool(reverse)}
    return apply1("Cumprod", [t], attrs, name)
