"""Helpers shared by the shape op modules: registry example inputs (one seeded generator, so
the examples are the same from run to run) and argument checks: known ranks, one dtype across
list inputs, Python values converted to the dtype of the list's tensors."""

from __future__ import annotations

import numpy as np

from ...graph.core import Tensor
from ..constant import zeros_like
from ..registry import DTypeError, convert_to_tensor

_rng = np.random.default_rng(2)


def _sample(shape):
    return _rng.uniform(-2, 2, shape)


def _known_rank(x: Tensor, op_name: str) -> int:
    if x.shape is None:
        raise ValueError(f"{op_name}: input {x.name} needs a known rank")
    return len(x.shape)


def _one_dtype(specs):
    dtypes = {s.dtype for s in specs}
    if len(dtypes) > 1:
        raise DTypeError(
            "inputs must have one dtype, got " + ", ".join(s.dtype.name for s in specs)
        )
    return specs[0].dtype


def _convert_list(values, op_name):
    """Tensors for a list input (concat, stack): Python/numpy values take the dtype of the
    list's first tensor when they convert losslessly (ints into floats), as TF's preferred dtype."""
    if isinstance(values, Tensor) or not isinstance(values, list | tuple):
        raise TypeError(f"{op_name} takes a list of tensors, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{op_name} of an empty list")
    values = [v._as_graph_tensor() if hasattr(v, "_as_graph_tensor") else v for v in values]
    hint = next((v.dtype for v in values if isinstance(v, Tensor)), None)
    out = []
    for v in values:
        if not isinstance(v, Tensor) and hint is not None:
            kind = np.asarray(v).dtype.kind
            fits = kind == hint.np.kind or (kind in "iu" and hint.is_floating)
            v = convert_to_tensor(v, dtype=hint if fits else None)
        out.append(convert_to_tensor(v))
    return out


def _fill_none_grads(grads, outputs):
    """Missing output gradients as zeros, for ops whose VJP needs every piece (split, unstack)."""
    return [zeros_like(t) if g is None else g for g, t in zip(grads, outputs)]
