"""Element types and numpy-style type promotion.

A ``DType`` wraps a numpy dtype; the six public ones are module constants. Python scalars
are "weak": combined with a tensor they take the tensor's dtype (as in TF and JAX).
"""

from __future__ import annotations

import numpy as np


class DType:
    """An element type: ``gc.float32`` etc. Compare with ``==``; hashable."""

    __slots__ = ("name", "np")

    def __init__(self, name: str, np_dtype: np.dtype):
        self.name = name
        self.np = np.dtype(np_dtype)

    @property
    def is_floating(self) -> bool:
        return self.np.kind == "f"

    @property
    def is_integer(self) -> bool:
        return self.np.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.np.kind == "b"

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def as_numpy_dtype(self):
        return self.np.type

    def __eq__(self, other) -> bool:
        try:
            return self.np == as_dtype(other).np
        except TypeError:
            return False

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"gc.{self.name}"

    def __reduce__(self):
        return (as_dtype, (self.name,))


float16 = DType("float16", np.float16)
float32 = DType("float32", np.float32)
float64 = DType("float64", np.float64)
int32 = DType("int32", np.int32)
int64 = DType("int64", np.int64)
bool_ = DType("bool", np.bool_)
ALL = (float16, float32, float64, int32, int64, bool_)
_BY_NAME = {d.name: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}


def as_dtype(value) -> DType:
    """Convert a DType, numpy dtype, Python type or name to a graphc DType."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    if value is float:
        return float32
    if value is int:
        return int32
    if value is bool:
        return bool_
    try:
        npd = np.dtype(value)
    except TypeError as exc:
        raise TypeError(f"cannot interpret {value!r} as a graphc dtype") from exc
    if npd in _BY_NP:
        return _BY_NP[npd]
    # Narrow/unsigned integers and other floats map onto the nearest supported type.
    if npd.kind in "iu":
        return int64 if npd.itemsize >= 8 or (npd.kind == "u" and npd.itemsize >= 4) else int32
    if npd.kind == "f":
        return float64
    raise TypeError(f"unsupported dtype {npd} (supported: {', '.join(_BY_NAME)})")


def result_type(*dtypes: DType) -> DType:
    """numpy promotion between tensor dtypes."""
    return as_dtype(np.result_type(*[as_dtype(d).np for d in dtypes]))


def default_dtype_for_value(value) -> DType:
    """dtype a constant made from a Python/numpy value gets (TF-style: float32, int32)."""
    if isinstance(value, np.ndarray | np.generic):
        return as_dtype(value.dtype)
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return float32
    if arr.dtype.kind in "iu":
        # as TF: int32, unless a value needs 64 bits
        if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
            return int64
        return int32
    if arr.dtype.kind == "b":
        return bool_
    raise TypeError(f"cannot make a tensor from {type(value).__name__} value {value!r}")
