"""Constant folding: evaluate at compile time what depends on constants only.

A pure node whose inputs are all ``Const`` is evaluated with its OpDef's numpy reference and
replaced, in place (same id), by a ``Const``. ``Shape``/``Size`` of a tensor with a static
shape fold too. Never folded: stateful ops and feeds (their values are known at run time
only), results over ``MAX_ELEMENTS``, results that would *grow* a small constant into a big
one (a broadcast/fill of a scalar: better computed inside a fused kernel than stored), and
nodes whose evaluation fails (the error is left to happen at run time, with its message).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..program import Program
from .rewrite import Replace, Rewriter, fully_known

#: the largest folded result, in elements
MAX_ELEMENTS = 1 << 20
#: a result larger than its inputs together folds only up to this many elements
MAX_GROWTH_ELEMENTS = 1024


def fold_constants(program: Program) -> Program:
    """Replace every foldable node by a Const holding its value."""
    return Rewriter(program).run(_visit)


def _visit(n, rw):
    if n.op_def.source == "const" or len(n.outs) != 1 or n.op_def.stateful:
        return None
    if n.op_def.from_static_shape:  # folded whatever computes its input's values
        shape = rw.shape(n.inputs[0])
        if not fully_known(shape):
            return None
        # only the shape is read: a zero-stride view costs no memory
        values = [np.broadcast_to(np.zeros((), rw.dtype(n.inputs[0]).np), shape)]
        in_size = 0
    else:
        values = [rw.const(r) for r in n.inputs]
        if any(v is None for v in values):
            return None
        in_size = sum(int(v.size) for v in values)
    out = n.outs[0]
    if fully_known(out.shape) and not _size_ok(int(np.prod(out.shape, dtype=np.int64)), in_size):
        return None
    try:
        with np.errstate(all="ignore"):
            result = n.op_def.ref(values, n.attrs)
    except Exception:  # noqa: BLE001 - any failure: leave it to run time, with its message
        return None
    if isinstance(result, list | tuple):
        if len(result) != 1:
            return None
        result = result[0]
    result = np.asarray(result)
    if (
        result.dtype != out.dtype.np
        or not _size_ok(result.size, in_size)
        or (out.shape is not None and not _fits(result.shape, out.shape))
    ):
        return None
    value = np.array(result, order="C", copy=True)
    value.setflags(write=False)
    return Replace("Const", (), {"value": value, "dtype": _dt.as_dtype(value.dtype)})


def _size_ok(size: int, in_size: int) -> bool:
    return size <= MAX_ELEMENTS and (size <= max(in_size, MAX_GROWTH_ELEMENTS))


def _fits(shape, declared) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))
