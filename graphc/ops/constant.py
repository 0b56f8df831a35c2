"""Ops that create values: constants, placeholders, fills and ranges."""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..graph.core import Tensor, get_default_graph
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply1,
    apply_op,
    convert_to_tensor,
    register,
    set_constant_builder,
)
from .shape_util import located

__all__ = [
    "constant", "placeholder", "placeholder_with_default", "zeros", "ones", "fill",
    "zeros_like", "ones_like", "range",
]  # fmt: skip

_builtin_range = range


def shape_argument(shape, what: str):
    """A ``shape`` argument given as a tensor, TF-style: ``(static_shape, like)``.

    ``gc.shape(t)`` gives ``(None, t)``: the result takes t's runtime shape, so ``None`` dims
    keep working. A constant tensor gives its static value. A shape computed any other way
    would make the output's shape data-dependent: a ValueError naming the tensor.
    Non-tensors give ``(shape, None)`` unchanged.
    """
    if hasattr(shape, "_as_graph_tensor"):
        shape = shape._as_graph_tensor()
    if not isinstance(shape, Tensor):
        return shape, None
    if not shape.dtype.is_integer:
        raise TypeError(
            f"{what}: a shape tensor must be integer, got {shape.name} of {shape.dtype.name}"
        )
    if shape.op.type == "Shape":
        return None, shape.op.inputs[0]
    if shape.op.type == "Const":
        return tuple(int(d) for d in np.asarray(shape.op.attrs["value"]).reshape(-1)), None
    raise ValueError(
        f"{what}: the shape tensor {shape.name} is computed at run time; give a static shape, "
        "a constant, or gc.shape(t) of another tensor"
    )


def _as_shape(shape, what="shape") -> tuple:
    if shape is None:
        return None
    if isinstance(shape, int | np.integer):
        shape = (int(shape),)
    try:
        dims = tuple(None if d is None or (isinstance(d, int) and d < 0) else int(d) for d in shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of ints/None, got {shape!r}") from None
    return dims


@register
class Const(OpDef):
    """A constant array, stored in ``attrs['value']``."""

    kind = "source"
    source = "const"
    static_shape_reason = "its shape is that of its value: always static"

    differentiable = False

    def infer(self, specs, attrs):
        v = attrs["value"]
        return [(v.shape, _dt.as_dtype(v.dtype))]

    def ref(self, xs, attrs):
        return attrs["value"]

    def examples(self):
        return [Example(lambda: constant([[1.0, 2.0]]), [], grad=False)]


@located("constant")
def constant(value, dtype=None, shape=None, name=None, graph=None):
    """A constant tensor of ``value`` (optionally cast to ``dtype``, broadcast to ``shape``)."""
    if dtype is not None:
        dt = _dt.as_dtype(dtype)
    else:
        dt = _dt.default_dtype_for_value(value)
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"cannot make a constant from {type(value).__name__}: {value!r}")
    if dt.is_integer and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"cannot convert non-finite {value!r} to {dt.name}")
    if (
        (dt.is_integer or dt.is_bool)
        and arr.dtype.kind == "f"
        and not isinstance(value, np.ndarray | np.generic)
        and not np.all(arr == np.trunc(arr))
    ):
        # TF: Python data that does not fit the requested dtype is a TypeError, not a silent
        # truncation (numpy arrays are converted with astype, as TF does).
        raise TypeError(
            f"constant: cannot convert {value!r} to {dt.name} without losing its fraction"
        )
    if (
        dt.is_integer
        and arr.dtype.kind in "iu"
        and arr.size
        and not isinstance(value, np.ndarray | np.generic)
    ):
        info = np.iinfo(dt.np)
        if arr.min() < info.min or arr.max() > info.max:
            # a Python int that does not fit would wrap around silently
            raise TypeError(f"constant: {value!r} does not fit in {dt.name}")
    arr = arr.astype(dt.np)
    if shape is not None:
        shape = _as_shape(shape)
        if arr.size == 1:
            arr = np.broadcast_to(arr.reshape(()), shape)
        elif int(np.prod(shape)) == arr.size:
            arr = arr.reshape(shape)
        else:
            raise ValueError(f"constant of {arr.size} elements cannot take shape {shape}")
    arr = np.array(arr, order="C", copy=True)
    arr.setflags(write=False)
    return apply_op(
        "Const", [], {"value": arr, "dtype": dt}, name, graph=graph or get_default_graph()
    ).outputs[0]


@register
class Placeholder(OpDef):
    """A value that must be fed at run time."""

    kind = "source"
    source = "placeholder"
    static_shape_reason = "replaced by a Feed when the Program is extracted: never lowered"

    no_examples_reason = "stateful or internal: tested through the Session tests"

    differentiable = False

    def infer(self, specs, attrs):
        return [(attrs["shape"], attrs["dtype"])]

    def ref(self, xs, attrs):  # the interpreter reports the missing feed before this
        raise AssertionError("placeholder evaluated without a feed")

    def examples(self):
        return []


@located("placeholder")
def placeholder(dtype, shape=None, name=None):
    """A tensor to be fed with ``feed_dict``; ``None`` dims take any size at run time."""
    attrs = {"dtype": _dt.as_dtype(dtype), "shape": _as_shape(shape)}
    return apply_op("Placeholder", [], attrs, name, graph=get_default_graph()).outputs[0]


@register
class PlaceholderWithDefault(OpDef):
    """Its input unless fed."""

    kind = "elementwise"
    symbolic_dims = "input0"

    def infer(self, specs, attrs):
        shape = attrs["shape"]
        given = specs[0].shape
        if shape is not None and given is not None:
            if len(shape) != len(given) or any(
                s is not None and g is not None and s != g for s, g in zip(shape, given)
            ):
                raise ShapeError(f"default value of shape {given} does not fit shape {shape}")
        return [(shape if shape is not None else given, specs[0].dtype)]

    def ref(self, xs, attrs):
        return xs[0]

    def vjp(self, op, grads):
        return [grads[0]]

    def examples(self):
        return [Example(lambda x: placeholder_with_default(x, (2, 3)), [np.ones((2, 3), "f8")])]


@located("placeholder_with_default")
def placeholder_with_default(value, shape, name=None):
    """A placeholder that evaluates to ``value`` when not fed."""
    return apply1(
        "PlaceholderWithDefault", [convert_to_tensor(value)], {"shape": _as_shape(shape)}, name
    )


@register
class Fill(OpDef):
    """A tensor of static ``shape`` filled with a scalar input."""

    kind = "elementwise"
    broadcasts = True
    copies_input0 = True
    static_shape_reason = (
        "its output shape is an input's value: compiled targets need it known when built"
    )

    def infer(self, specs, attrs):
        if specs[0].shape not in (None, ()):
            raise ShapeError(f"fill value must be a scalar, got shape {specs[0].shape}")
        return [(attrs["shape"], specs[0].dtype)]

    def ref(self, xs, attrs):
        return np.full(attrs["shape"], xs[0], dtype=xs[0].dtype)

    def vjp(self, op, grads):
        g = grads[0]  # the sum of every element (ops/reduce.py sits above this module)
        axes = None if g.shape is None else tuple(k for k, _ in enumerate(g.shape))
        return [apply1("Sum", [g], {"axes": axes, "keepdims": False})]

    def examples(self):
        return [Example(lambda v: fill((2, 3), v), [np.array(1.5)])]


@located("fill")
def fill(dims, value, name=None):
    """A tensor of shape ``dims`` with every element ``value``.

    ``dims`` may be ``gc.shape(t)`` (TF idiom): the result then has t's runtime shape.
    """
    dims, like = shape_argument(dims, "fill")
    if like is not None:
        v = convert_to_tensor(value)
        if v.shape not in (None, ()):
            raise ValueError(f"fill: value must be a scalar, got {v.name} of shape {v.shape}")
        return apply1("BroadcastLike", [v, like], None, name)  # elementwise.broadcast_like
    shape = _as_shape(dims)
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"fill needs a fully known shape, got {dims}")
    return apply1("Fill", [convert_to_tensor(value)], {"shape": shape}, name)


@located("zeros")
def zeros(shape, dtype=_dt.float32, name=None):
    """A tensor of zeros."""
    return fill(shape, constant(0, dtype=dtype), name=name)


@located("ones")
def ones(shape, dtype=_dt.float32, name=None):
    """A tensor of ones."""
    return fill(shape, constant(1, dtype=dtype), name=name)


@register
class ZerosLike(OpDef):
    """Zeros (or ones, with ``attrs['value']``) of the input's shape and dtype."""

    kind = "elementwise"
    splat_attr = "value"
    symbolic_dims = "input0"

    differentiable = False

    def infer(self, specs, attrs):
        return [(specs[0].shape, attrs.get("dtype") or specs[0].dtype)]

    def ref(self, xs, attrs):
        return np.full(
            xs[0].shape, attrs["value"], dtype=(attrs.get("dtype") or _dt.as_dtype(xs[0].dtype)).np
        )

    def examples(self):
        return [Example(lambda x: ones_like(x), [np.ones((2, 3))], grad=False)]


@located("zeros_like")
def zeros_like(tensor, dtype=None, name=None):
    """Zeros with the shape (and by default the dtype) of ``tensor``."""
    t = convert_to_tensor(tensor)
    attrs = {"value": 0, "dtype": None if dtype is None else _dt.as_dtype(dtype)}
    return apply1("ZerosLike", [t], attrs, name)


@located("ones_like")
def ones_like(tensor, dtype=None, name=None):
    """Ones with the shape (and by default the dtype) of ``tensor``."""
    t = convert_to_tensor(tensor)
    attrs = {"value": 1, "dtype": None if dtype is None else _dt.as_dtype(dtype)}
    return apply1("ZerosLike", [t], attrs, name)


@register
class Range(OpDef):
    """``range(start, limit, delta)`` with static bounds."""

    kind = "elementwise"
    static_shape_reason = (
        "its length comes from its inputs' values: compiled targets need it known when built"
    )

    differentiable = False

    def infer(self, specs, attrs):
        start, limit, delta = attrs["start"], attrs["limit"], attrs["delta"]
        if delta == 0:
            raise ShapeError("range delta must not be zero")
        n = max(0, int(np.ceil((limit - start) / delta)))
        return [((n,), attrs["dtype"])]

    def ref(self, xs, attrs):
        return np.arange(attrs["start"], attrs["limit"], attrs["delta"], dtype=attrs["dtype"].np)

    def examples(self):
        return [Example(lambda: range(1, 10, 2), [], grad=False)]


@located("range")
def range(start, limit=None, delta=1, dtype=None, name=None):  # noqa: A001 - TF name
    """Numbers from ``start`` up to (not including) ``limit`` by ``delta``."""
    if limit is None:
        start, limit = 0, start
    for v in (start, limit, delta):
        if not isinstance(v, int | float | np.number):
            raise TypeError(f"range bounds must be Python numbers, got {v!r}")
    if dtype is None:
        dtype = (
            _dt.float32 if any(isinstance(v, float) for v in (start, limit, delta)) else _dt.int32
        )
    dtype = _dt.as_dtype(dtype)
    if dtype.is_bool:
        raise DTypeError("range of bool")
    attrs = {"start": start, "limit": limit, "delta": delta, "dtype": dtype}
    return apply1("Range", [], attrs, name)


set_constant_builder(constant)  # convert_to_tensor builds constants through it
