"""Nested element structures of gc.data: flatten/pack, element specs, and validation.

An element is a leaf (a numpy array or scalar) or a nesting of tuples, namedtuples and dicts
of elements, as in ``tf.data``. Components are flattened depth first, dict keys in sorted
order, so that flatten(pack(spec, leaves)) gives the same list on every run. A Python list
inside an element is a leaf (numpy turns it into an array), as ``tf.data`` does.

The spec of an element is the same nesting of ``gc.TensorSpec(shape, dtype)``: graphc dtypes,
shapes with ``None`` for a dim that differs between elements (the last, partial batch).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import dtypes as _dt
from ..errors import InvalidArgumentError
from ..graph.core import TensorSpec


class Failed:
    """An element that could not be produced (a generator element that does not fit the
    declared spec, a map fn that raised, a batch of unequal shapes). It travels down the
    pipeline like an element, so the pass goes on after it, as in tf.data; the consumer
    (Python iteration, or the run that reads it) raises ``exc``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


def _is_tuple(x) -> bool:
    """A tuple that nests elements (a TensorSpec, a NamedTuple too, is a leaf)."""
    return isinstance(x, tuple) and not isinstance(x, TensorSpec)


def _is_namedtuple(x) -> bool:
    return _is_tuple(x) and hasattr(x, "_fields")


def flatten(structure) -> list:
    """The leaves of ``structure``, depth first, dict keys sorted."""
    out: list = []
    stack = [structure]
    while stack:
        x = stack.pop()
        if _is_tuple(x):
            stack.extend(reversed(x))
        elif isinstance(x, Mapping):
            stack.extend(x[k] for k in reversed(sorted(x)))
        else:
            out.append(x)
    return out


def pack(template, leaves):
    """``template``'s nesting with its leaves replaced, in order, by ``leaves``."""
    it = iter(leaves)

    def build(t):
        if _is_namedtuple(t):
            return type(t)(*[build(x) for x in t])
        if _is_tuple(t):
            return tuple(build(x) for x in t)
        if isinstance(t, Mapping):
            built = {k: build(t[k]) for k in sorted(t)}
            try:
                return type(t)((k, built[k]) for k in t)
            except TypeError:
                return {k: built[k] for k in t}
        return next(it)

    return build(template)


def map_structure(fn, structure):
    return pack(structure, [fn(x) for x in flatten(structure)])


def same_nesting(a, b) -> bool:
    """True when ``a`` and ``b`` nest tuples and dicts (with the same keys) alike."""
    if _is_tuple(a) != _is_tuple(b) or isinstance(a, Mapping) != isinstance(b, Mapping):
        return False
    if _is_tuple(a):
        return len(a) == len(b) and all(same_nesting(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping):
        return set(a) == set(b) and all(same_nesting(a[k], b[k]) for k in a)
    return True


def describe(structure) -> str:
    """A short text of a nesting, for error messages: ``(x, {'a': x})``."""
    if _is_namedtuple(structure):
        return f"{type(structure).__name__}({', '.join(describe(x) for x in structure)})"
    if _is_tuple(structure):
        inner = ", ".join(describe(x) for x in structure)
        return f"({inner}{',' if len(structure) == 1 else ''})"
    if isinstance(structure, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe(structure[k])}" for k in sorted(structure)) + "}"
    return "x"


def as_shape(shape) -> tuple | None:
    """A shape argument (None: unknown rank; dims None or -1: unknown) as a tuple."""
    if shape is None:
        return None
    if isinstance(shape, int | np.integer):
        shape = (int(shape),)
    try:
        return tuple(None if d is None or int(d) < 0 else int(d) for d in shape)
    except (TypeError, ValueError):
        raise TypeError(f"a shape must be a tuple of ints or None, got {shape!r}") from None


def spec_of_value(value) -> TensorSpec:
    """The spec of one numpy component (its exact shape). A component without a graphc
    dtype (text, such as file names to load in a ``map``) keeps its numpy dtype: Python
    iteration and ``map`` take it, a graph iterator refuses it (``graph_dtype_problem``)."""
    arr = np.asarray(value)
    try:
        dt = _dt.as_dtype(arr.dtype)
    except TypeError:
        dt = arr.dtype
    return TensorSpec(tuple(arr.shape), dt)


def graph_dtype_problem(specs) -> str | None:
    """Why these component specs cannot become tensors, or None."""
    for i, s in enumerate(specs):
        if not isinstance(s.dtype, _dt.DType):
            return (
                f"component {i} has numpy dtype {s.dtype}, which has no graphc dtype "
                "(float16, float32, float64, int32, int64, bool); map it to numbers first"
            )
    return None


def as_leaf_array(value) -> np.ndarray:
    """A leaf of from_tensor_slices as an array: numpy values keep their dtype, Python
    numbers take TF's defaults (float32, int32) as ``gc.constant`` gives them."""
    if isinstance(value, np.ndarray | np.generic):
        return np.asarray(value)
    try:
        return np.asarray(value, dtype=_dt.default_dtype_for_value(value).np)
    except (TypeError, ValueError):
        return np.asarray(value)  # text and other values without a graphc dtype


def compatible(shape, given) -> bool:
    if shape is None:
        return True
    return len(shape) == len(given) and all(d is None or d == g for d, g in zip(shape, given))


def relax(a: TensorSpec, b: TensorSpec) -> TensorSpec:
    """The most specific spec both ``a`` and ``b`` fit (dims that differ become None)."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        shape = None
    else:
        shape = tuple(x if x == y else None for x, y in zip(a.shape, b.shape))
    return TensorSpec(shape, a.dtype)


def fmt_shape(shape) -> str:
    return "<unknown>" if shape is None else str(tuple(shape))


def to_component(value, spec: TensorSpec, what: str) -> np.ndarray:
    """``value`` as a C-contiguous array of ``spec``'s dtype, or InvalidArgumentError.

    Casts follow feed_dict's rules: within a kind (float64 -> float32), integer or bool to
    float, bool to integer; never float to integer, never a non-number. ``what`` names the
    component in the message (the dataset and the component's index).
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the producer's value
        raise InvalidArgumentError(
            f"{what}: cannot convert {type(value).__name__}: {exc}"
        ) from None
    target = spec.dtype.np
    if arr.dtype != target:
        ok = (
            arr.dtype != object
            and arr.dtype.kind in "biuf"
            and (
                np.can_cast(arr.dtype, target, "same_kind")
                or (arr.dtype.kind in "biu" and target.kind == "f")
                or (arr.dtype.kind == "b" and target.kind in "iu")
            )
        )
        if not ok:
            raise InvalidArgumentError(
                f"{what}: expected dtype {spec.dtype.name}, got a value of dtype {arr.dtype}"
            )
        if target.kind in "iu" and arr.dtype.kind in "iu" and arr.size:
            info = np.iinfo(target)
            if int(arr.min()) < info.min or int(arr.max()) > info.max:
                raise InvalidArgumentError(
                    f"{what}: a value does not fit dtype {spec.dtype.name} (it would wrap)"
                )
        arr = arr.astype(target)
    if not compatible(spec.shape, arr.shape):
        raise InvalidArgumentError(
            f"{what}: expected shape {fmt_shape(spec.shape)}, got a value of shape {arr.shape}"
        )
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def element_components(element, spec, where: str) -> list:
    """The flattened components of ``element`` checked against the nesting ``spec``."""
    if not same_nesting(spec, element):
        raise InvalidArgumentError(
            f"{where}: an element has the structure {describe(element)}, the dataset declares "
            f"{describe(spec)}"
        )
    specs = flatten(spec)
    values = flatten(element)
    return [
        to_component(v, s, f"{where}, component {i}" if len(specs) > 1 else where)
        for i, (v, s) in enumerate(zip(values, specs))
    ]


def specs_of(output_types, output_shapes):
    """The nesting of TensorSpecs from parallel nestings of dtypes and shapes."""

    def build(types, shapes):
        if isinstance(types, tuple | list):
            if shapes is not None and (
                not isinstance(shapes, tuple | list) or len(shapes) != len(types)
            ):
                raise ValueError(f"output_shapes {shapes!r} do not match output_types {types!r}")
            parts = [
                build(t, None if shapes is None else s) for t, s in zip(types, shapes or types)
            ]
            if _is_namedtuple(types):
                return type(types)(*parts)
            return tuple(parts)
        if isinstance(types, dict):
            if shapes is not None and (not isinstance(shapes, dict) or set(shapes) != set(types)):
                raise ValueError(f"output_shapes {shapes!r} do not match output_types {types!r}")
            return {k: build(types[k], None if shapes is None else shapes[k]) for k in types}
        return TensorSpec(as_shape(shapes), _dt.as_dtype(types))

    return build(output_types, output_shapes)
