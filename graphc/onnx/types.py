"""ONNX element types and the graphc dtypes that carry them.

graphc computes in six dtypes (float16/32/64, int32, int64, bool). ONNX's narrower integer
types ride in a wider *carrier*: int8/int16/uint8/uint16 in int32, uint32 in int64, and
uint64 in int64 as the same 64-bit pattern. After an op that can leave the narrow type's
range (an add, a shift, a cast...) the importer *wraps* the carrier back into range
(``wrap``), so every value a graph computes equals ONNX's modular arithmetic. Types graphc
cannot carry (strings, bfloat16, float8, int4, complex) raise ``UnimplementedError``.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .. import dtypes as _dt
from ..errors import UnimplementedError
from ..ops import elementwise as _ew

#: ONNX element type -> (numpy dtype, graphc carrier dtype)
_TYPES = {
    TensorProto.FLOAT: (np.float32, _dt.float32),
    TensorProto.DOUBLE: (np.float64, _dt.float64),
    TensorProto.FLOAT16: (np.float16, _dt.float16),
    TensorProto.INT32: (np.int32, _dt.int32),
    TensorProto.INT64: (np.int64, _dt.int64),
    TensorProto.BOOL: (np.bool_, _dt.bool_),
    TensorProto.INT8: (np.int8, _dt.int32),
    TensorProto.INT16: (np.int16, _dt.int32),
    TensorProto.UINT8: (np.uint8, _dt.int32),
    TensorProto.UINT16: (np.uint16, _dt.int32),
    TensorProto.UINT32: (np.uint32, _dt.int64),
    TensorProto.UINT64: (np.uint64, _dt.int64),
}

#: narrow types: (low, modulus) of the range the carrier is wrapped into
_RANGES = {
    TensorProto.INT8: (-(2**7), 2**8),
    TensorProto.INT16: (-(2**15), 2**16),
    TensorProto.UINT8: (0, 2**8),
    TensorProto.UINT16: (0, 2**16),
    TensorProto.UINT32: (0, 2**32),
}

_BY_NP = {np.dtype(v[0]): k for k, v in _TYPES.items()}


def type_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type)


def supported(elem_type: int) -> bool:
    return elem_type in _TYPES


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of ONNX ``elem_type`` (UnimplementedError for types graphc lacks)."""
    try:
        return np.dtype(_TYPES[elem_type][0])
    except KeyError:
        raise UnimplementedError(
            f"ONNX element type {type_name(elem_type)} is not supported by graphc"
        ) from None


def carrier(elem_type: int) -> _dt.DType:
    """The graphc dtype that computes values of ONNX ``elem_type``."""
    numpy_dtype(elem_type)
    return _TYPES[elem_type][1]


def from_numpy(dtype) -> int:
    """The ONNX element type of a numpy dtype."""
    try:
        return _BY_NP[np.dtype(dtype)]
    except KeyError:
        raise UnimplementedError(
            f"numpy dtype {np.dtype(dtype)} has no ONNX type in graphc"
        ) from None


def from_graphc(dtype: _dt.DType) -> int:
    return from_numpy(_dt.as_dtype(dtype).np)


def is_narrow(elem_type: int) -> bool:
    """Whether ``elem_type`` rides in a wider carrier (and needs wrapping)."""
    return elem_type in _RANGES


def to_carrier(array: np.ndarray, elem_type: int) -> np.ndarray:
    """``array`` (of ONNX type ``elem_type``) as the carrier's numpy array."""
    arr = np.asarray(array)
    if elem_type == TensorProto.UINT64:
        return arr.astype(np.uint64).view(np.int64)
    return arr.astype(carrier(elem_type).np, copy=False)


def from_carrier(array: np.ndarray, elem_type: int) -> np.ndarray:
    """A carrier value as ONNX ``elem_type`` (values are in range after ``wrap``): a new
    array, or ``array`` itself when the carrier's dtype is already ``elem_type``'s (a value
    Session.run returned belongs to the caller; no copy)."""
    arr = np.asarray(array)
    if elem_type == TensorProto.UINT64:
        return arr.astype(np.int64).view(np.uint64)
    want = numpy_dtype(elem_type)
    if arr.dtype == want:
        return arr
    with np.errstate(all="ignore"):
        return arr.astype(want)


def wrap(t, elem_type: int):
    """Carrier tensor ``t`` reduced into ``elem_type``'s range (two's-complement wrap)."""
    if elem_type not in _RANGES:
        return t
    low, mod = _RANGES[elem_type]
    dt = t.dtype
    if low:
        shifted = _ew.add(t, np.asarray(-low, dt.np))
        return _ew.subtract(_ew.mod(shifted, np.asarray(mod, dt.np)), np.asarray(-low, dt.np))
    return _ew.mod(t, np.asarray(mod, dt.np))
