"""Helpers shared by the linear-algebra op modules: registry example inputs (one seeded
generator, so the examples are the same from run to run), the gradient's sum back to a
broadcast operand's shape, and the character that stands for '...' in parsed einsum
subscripts."""

from __future__ import annotations

import numpy as np

from ..elementwise import sum_to_shape

_ELL = "."  # one character standing for "..." in parsed subscripts

_rng = np.random.default_rng(3)


def _sample(*shape):
    return _rng.uniform(-1.5, 1.5, shape)


def _same_static(a, b) -> bool:
    return a.shape is not None and a.shape == b.shape and None not in a.shape


def _sum_to(g, x):
    """Sum gradient ``g`` over broadcast batch dims down to ``x``'s shape (no-op if equal)."""
    if g is None or _same_static(g, x):
        return g
    return sum_to_shape(g, x)
