"""Cumulative product along an axis (``tf.math.cumprod``): ``exclusive`` and ``reverse`` as
``cumsum``'s. Compiled targets lower it to a scan (``graphc/kernel/lower_sort.py``).

The gradient is exact at zeros. TF divides by ``x`` (``cumsum(g * y, reverse) / x``), which
is NaN or inf wherever ``x`` is 0; here that quotient is used only before the first zero
(in the direction of the product), where ``x`` is not 0. At the first zero the gradient is
the same sum with that factor replaced by 1 (a second cumprod, no division), and after it
every product that involves the input also involves the zero, so the gradient is 0."""

from __future__ import annotations

import numpy as np

from .constant import ones_like, zeros_like
from .elementwise import cast, equal, logical_and, where
from .reduce import ScanOp, cumsum
from .registry import Example, apply1, convert_to_tensor, register
from .shape_util import located, static_int

__all__ = ["cumprod"]


@register
class Cumprod(ScanOp):
    """Cumulative product along ``axis``; ``exclusive`` starts from 1, ``reverse`` from the end."""

    kind = "opaque"

    def scan(self, x, axis, exclusive):
        if exclusive and x.shape[axis]:  # (an empty axis stays empty)
            ones = np.ones_like(np.take(x, [0], axis=axis))
            x = np.concatenate([ones, np.delete(x, -1, axis=axis)], axis=axis)
        return np.cumprod(x, axis=axis, dtype=x.dtype)

    def vjp(self, op, grads):
        (g,) = grads
        if g is None:
            return [None]
        x, y = op.inputs[0], op.outputs[0]
        a = op.attrs
        axis, excl, rev = a["axis"], a["exclusive"], a["reverse"]
        zero = equal(x, zeros_like(x))
        seen = cumsum(cast(zero, "int32"), axis, reverse=rev)  # zeros up to here, inclusive
        before = equal(seen, zeros_like(seen))  # no zero up to and including this element
        first = logical_and(zero, equal(seen, ones_like(seen)))
        ones = ones_like(x)
        # d y_i / d x_j = y_i / x_j for each y_i that contains x_j (exact while x_j != 0)
        quotient = cumsum(g * y, axis, exclusive=excl, reverse=not rev) / where(before, x, ones)
        at_zero = cumsum(g * cumprod(where(first, ones, x), axis, excl, rev), axis,
                         exclusive=excl, reverse=not rev)  # fmt: skip
        return [where(before, quotient, where(first, at_zero, zeros_like(x)))]

    def examples(self):
        x = np.random.default_rng(2).uniform(-2, 2, (3, 4))
        zeros = x.copy()
        zeros[0, 1] = zeros[1, 0] = zeros[1, 2] = zeros[2, 3] = 0.0  # one and two zeros a row
        return [
            Example(lambda t: cumprod(t, axis=1), [x]),
            Example(lambda t: cumprod(t, axis=0, exclusive=True, reverse=True), [x]),
            Example(lambda t: cumprod(t, axis=-1), [np.arange(1, 7, dtype=np.int32)], grad=False),
            Example(lambda t: cumprod(t, axis=1), [zeros]),
            Example(lambda t: cumprod(t, axis=1, exclusive=True), [zeros]),
            Example(lambda t: cumprod(t, axis=1, reverse=True), [zeros]),
            Example(lambda t: cumprod(t, axis=-1, exclusive=True, reverse=True), [zeros]),
            Example(lambda t: cumprod(t, axis=0), [np.zeros((0, 3))], grad=False),
        ]


@located("cumprod")
def cumprod(x, axis=0, exclusive=False, reverse=False, name=None):
    """Cumulative product of ``x`` along ``axis`` (static int)."""
    t = convert_to_tensor(x)
    axis = static_int(axis, "axis", "cumprod")
    attrs = {"axis": axis, "exclusive": bool(exclusive), "reverse": bool(reverse)}
    return apply1("Cumprod", [t], attrs, name)
