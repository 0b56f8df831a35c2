"""Helpers shared by the ``gc.nn`` op modules: registry example inputs (one seeded generator,
so the examples are the same from run to run), argument checks of the composite builders, and
the late import of the elementwise ops that the activations' gradients are built from."""

from __future__ import annotations

import numpy as np

from ...graph.core import Tensor
from .. import elementwise
from ..registry import ShapeError, convert_to_tensor, normalize_axis

_rng = np.random.default_rng(4)


def _sample(*shape, low=-2.0, high=2.0):
    return _rng.uniform(low, high, shape)


# == activations ===============================================================================
def _ew():
    return elementwise


def _float_tensor(x, what):
    x = convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"{what}: expected a floating tensor, got {x.name} of {x.dtype.name}")
    if x.shape is None:
        raise ValueError(f"{what}: {x.name} needs a known rank")
    return x


def _axis(x, axis, what):
    try:
        return normalize_axis(int(axis), len(x.shape))
    except ShapeError as exc:
        raise ValueError(f"{what}: {exc} (input {x.name} of shape {x.shape})") from None


def _like_input(x, value):
    """``value`` as a tensor; a non-tensor (numpy array, list) takes the dtype of tensor ``x``,
    as TF converts the later inputs of an op whose inputs share one type attribute."""
    if hasattr(value, "_as_graph_tensor") or isinstance(value, Tensor):
        return convert_to_tensor(value)
    if x.dtype.is_floating and np.asarray(value).dtype.kind in "fiub":
        return convert_to_tensor(np.asarray(value), dtype=x.dtype)
    return convert_to_tensor(value)
