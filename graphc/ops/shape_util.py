"""Helpers shared by the shape and indexing op families: static arguments, dim merging, and
located argument errors for builders."""

from __future__ import annotations

import functools
import re

import numpy as np

from ..errors import InvalidArgumentError
from ..graph.core import Tensor, user_location
from .registry import ShapeError

_LOCATED = re.compile(r" at \S+:\d+$")


def located(op_name: str):
    """Builder decorator: argument errors raised before the op exists get what ``apply_op``
    gives shape errors - the op name, the input shapes and the user's file and line."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (ValueError, TypeError) as exc:
                msg = str(exc)
                if isinstance(exc, InvalidArgumentError) or _LOCATED.search(msg):
                    raise  # already located (by apply_op or a nested builder)
                if not msg.startswith(op_name):
                    msg = f"{op_name}: {msg}"
                flat = [
                    a
                    for v in [*args, *kwargs.values()]
                    for a in (v if isinstance(v, list | tuple) else [v])
                ]
                shapes = ", ".join(
                    f"{'?' if t.shape is None else tuple(t.shape)} {t.dtype.name}"
                    for t in flat
                    if isinstance(t, Tensor)
                )
                file, line = user_location()
                kind = TypeError if isinstance(exc, TypeError) else ValueError
                raise kind(f"{msg} (inputs: {shapes}) at {file}:{line}") from None

        return wrapper

    return deco


def merge_dim(a, b, what: str):
    """The one dimension two static dims (``None`` = unknown) agree on; ShapeError if none."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise ShapeError(f"{what}: {a} != {b}")


def static_ints(value, what: str, op_name: str) -> np.ndarray:
    """Integers known at build time: Python ints, sequences, arrays, or a constant tensor.

    Attributes such as paddings or tile multiples size the output, so they must be static;
    a computed tensor gets a ValueError that names the op and the argument.
    """
    if hasattr(value, "_as_graph_tensor"):
        value = value._as_graph_tensor()
    if isinstance(value, Tensor):
        if value.op.type != "Const":
            raise ValueError(
                f"{op_name}: {what} must be static (Python ints or a constant), got the computed "
                f"tensor {value.name}"
            )
        value = value.op.attrs["value"]
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{op_name}: {what} must be integers, got {value!r}") from None
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{op_name}: {what} must be integers, got {value!r}")
    return arr.astype(np.int64)


def static_int(value, what: str, op_name: str) -> int:
    """One integer known at build time (an axis, a count): see ``static_ints``."""
    arr = static_ints(value, what, op_name)
    if arr.shape != ():
        raise TypeError(f"{op_name}: {what} must be a single integer, got {value!r}")
    return int(arr)
