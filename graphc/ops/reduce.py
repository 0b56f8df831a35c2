"""Reductions over axes: sum, mean, max, min, prod, any, all, logsumexp, argmax/argmin, cumsum."""

from __future__ import annotations

import functools

import numpy as np

from .. import dtypes as _dt
from .control import identity, stop_gradient
from .elementwise import (
    abs,
    broadcast_like,
    cast,
    divide,
    equal,
    exp,
    floordiv,
    is_finite,
    log,
    logical_and,
    maximum,
    multiply,
    not_equal,
    ones_like_,
    sign,
    where,
    zeros_like_,
)
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply1,
    convert_to_tensor,
    normalize_axis,
    register,
)
from .shape import expand_dims, size, squeeze
from .shape_util import located

__all__ = [
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_any",
    "reduce_all", "reduce_logsumexp", "argmax", "argmin", "cumsum", "count_nonzero",
]  # fmt: skip

_rng = np.random.default_rng(1)


def _axes(axis, rank) -> tuple:
    """Normalised, sorted, unique axes; all axes for None."""
    if rank is None:
        if axis is None:
            return None
        raise ShapeError("reducing over given axes needs a known rank")
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, int | np.integer):
        axis = (int(axis),)
    axes = sorted({normalize_axis(int(a), rank) for a in axis})
    return tuple(axes)


def reduced_shape(shape, axes, keepdims):
    if shape is None:
        return None
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


class Reduction(OpDef):
    """Reduce input 0 over ``attrs['axes']`` (a tuple), keeping dims if ``keepdims``."""

    kinds = "fi"
    np_fn = None
    reduction = True

    def infer(self, specs, attrs):
        x = specs[0]
        if x.dtype.np.kind not in self.kinds:
            raise DTypeError(f"{x.dtype.name} input is not supported")
        rank = None if x.shape is None else len(x.shape)
        axes = attrs["axes"]
        if axes is not None and rank is not None and any(a >= rank for a in axes):
            raise ShapeError(f"axes {axes} out of range for rank {rank}")
        if axes is None:
            return [
                (
                    None
                    if rank is None
                    else reduced_shape(x.shape, range(rank), attrs["keepdims"]),
                    x.dtype,
                )
            ]
        return [(reduced_shape(x.shape, axes, attrs["keepdims"]), self.out_dtype(x.dtype))]

    def out_dtype(self, dtype):
        return dtype

    def ref(self, xs, attrs):
        x = xs[0]
        axes = attrs["axes"] if attrs["axes"] is not None else tuple(range(x.ndim))
        out = self.np_fn(x, axis=axes, keepdims=attrs["keepdims"])
        return np.asarray(out).astype(self.out_dtype(_dt.as_dtype(x.dtype)).np, copy=False)

    def examples(self):
        x = _rng.uniform(-2, 2, (3, 4, 5))
        b = self._build
        return [
            Example(lambda t: b(t, axis=1), [x]),
            Example(lambda t: b(t, axis=(0, -1), keepdims=True), [x]),
            Example(lambda t: b(t), [x]),
            Example(lambda t: b(t, axis=0), [_rng.uniform(-2, 2, (4,))]),
        ]


def _keep(g, op):
    """Gradient ``g`` of a reduction reshaped to keepdims form (broadcastable to the input)."""
    attrs = op.attrs
    if attrs["keepdims"]:
        return g
    rank = len(op.inputs[0].shape)
    for a in attrs["axes"] if attrs["axes"] is not None else range(rank):
        g = expand_dims(g, a)
    return g


def _bcast(g, op):
    return broadcast_like(_keep(g, op), op.inputs[0])


@register
class Sum(Reduction):
    kind = "reduction"
    symbolic_dims = "reduce"

    np_fn = staticmethod(np.sum)

    def _build(self, x, **kw):
        return reduce_sum(x, **kw)

    def vjp(self, op, grads):
        return [_bcast(grads[0], op)]


def _mean(x, axis, keepdims):
    """np.mean without its warning for an empty axis (0 / 0: NaN, as TF)."""
    if all(x.shape[a] for a in axis):
        return np.mean(x, axis=axis, keepdims=keepdims)
    return np.full(reduced_shape(x.shape, axis, keepdims), np.nan, x.dtype)


@register
class Mean(Reduction):
    kind = "reduction"
    symbolic_dims = "reduce"

    np_fn = staticmethod(_mean)
    kinds = "f"

    def _build(self, x, **kw):
        return reduce_mean(x, **kw)

    def vjp(self, op, grads):
        n = divide(size(op.inputs[0], out_type=_dt.int64), size(op.outputs[0], out_type=_dt.int64))
        return [_bcast(grads[0], op) / cast(n, op.inputs[0].dtype)]


class _MaxMin(Reduction):
    def examples(self):
        b = self._build
        return super().examples() + [
            # empty axis: -inf / +inf for floats, the dtype's lowest / highest for integers
            Example(lambda t: b(t, axis=1), [np.zeros((2, 0))], grad=False),
            Example(lambda t: b(t, axis=1), [np.zeros((2, 0), np.int32)], grad=False),
            Example(lambda t: b(t, axis=0), [np.zeros((0, 3), np.int64)], grad=False),
        ]

    def vjp(self, op, grads):
        x = op.inputs[0]
        y = broadcast_like(_keep(op.outputs[0], op), x)
        mask = cast(equal(x, y), x.dtype)
        count = reduce_sum(mask, axis=op.attrs["axes"], keepdims=True)
        return [mask * _bcast(grads[0], op) / count]


def _empty_identity(fn, largest):
    """``fn`` (np.max / np.min) with TF's value for an empty reduction: -inf / +inf for
    floats, the dtype's lowest / highest value for integers (numpy raises instead)."""

    def reduce(x, axis, keepdims):
        if x.dtype.kind == "f":
            init = np.inf if largest else -np.inf
        else:
            info = np.iinfo(x.dtype)
            init = info.max if largest else info.min
        return fn(x, axis=axis, keepdims=keepdims, initial=x.dtype.type(init))

    return staticmethod(reduce)


@register
class Max(_MaxMin):
    """Maximum over axes; over an empty axis -inf (floats) or the dtype's minimum, as TF."""

    kind = "reduction"
    symbolic_dims = "reduce"

    np_fn = _empty_identity(np.max, largest=False)

    def _build(self, x, **kw):
        return reduce_max(x, **kw)


@register
class Min(_MaxMin):
    """Minimum over axes; over an empty axis +inf (floats) or the dtype's maximum, as TF."""

    kind = "reduction"
    symbolic_dims = "reduce"

    np_fn = _empty_identity(np.min, largest=True)

    def _build(self, x, **kw):
        return reduce_min(x, **kw)


@register
class Prod(Reduction):
    kind = "reduction"
    symbolic_dims = "reduce"

    np_fn = staticmethod(np.prod)

    def _build(self, x, **kw):
        return reduce_prod(x, **kw)

    def vjp(self, op, grads):
        """d prod / dx_i = product of the other elements, finite where rows hold zeros.

        Counting the zeros of each row (TF computes the same with exclusive cumprods):
        none: prod / x_i; one: the product ``p`` of the non-zero elements at the zero, 0
        elsewhere; two or more: 0 everywhere. The zeros' own sum ``z`` (0, but it depends on
        them) enters where the value is 0, so that second derivatives are exact as well."""
        if grads[0] is None:
            return [None]
        x = op.inputs[0]
        axes = op.attrs["axes"]
        zero = equal(x, zeros_like_(x))
        count = reduce_sum(cast(zero, _dt.int32), axes, keepdims=True)
        safe = where(zero, ones_like_(x), x)  # zeros replaced by 1
        p = reduce_prod(safe, axes, keepdims=True)
        z = reduce_sum(where(zero, x, zeros_like_(x)), axes, keepdims=True)
        two_zeros = logical_and(equal(count, 2), zero)
        others = where(
            equal(count, 0),
            p / safe,
            where(
                equal(count, 1),
                where(zero, p, z * p / safe),
                where(two_zeros, (z - x) * p, zeros_like_(x)),
            ),
        )
        return [_bcast(grads[0], op) * others]

    def examples(self):
        x = _rng.uniform(0.5, 1.5, (3, 4))
        zeros = np.array([[1.5, 0.0, -2.0, 0.5], [0.0, 0.0, 3.0, 1.0], [0.7, 1.2, -0.9, 1.1]])
        return [
            Example(lambda t: reduce_prod(t, axis=1), [x]),
            Example(reduce_prod, [x]),
            # rows with one zero and with two: the gradient stays finite and exact
            Example(lambda t: reduce_prod(t, axis=1), [zeros]),
            Example(lambda t: reduce_prod(t, axis=0, keepdims=True), [zeros]),
        ]


class _Logical(Reduction):
    kinds = "b"
    differentiable = False

    def examples(self):
        x = np.array([[True, False, True], [True, True, True]])
        return [Example(lambda t: self._build(t, axis=1), [x], grad=False),
                Example(lambda t: self._build(t), [x], grad=False)]  # fmt: skip


@register
class Any(_Logical):
    kind = "reduction"
    symbolic_dims = "reduce"

    np_fn = staticmethod(np.any)

    def _build(self, x, **kw):
        return reduce_any(x, **kw)


@register
class All(_Logical):
    kind = "reduction"
    symbolic_dims = "reduce"

    np_fn = staticmethod(np.all)

    def _build(self, x, **kw):
        return reduce_all(x, **kw)


class _Arg(OpDef):
    differentiable = False

    def infer(self, specs, attrs):
        x = specs[0]
        if x.dtype.is_bool:
            raise DTypeError("argmax/argmin of bool")
        if x.shape is None:
            return [(None, attrs["output_type"])]
        axis = normalize_axis(attrs["axis"], len(x.shape))
        if x.shape[axis] == 0:
            raise ShapeError("argmax/argmin over an empty axis")
        return [(tuple(d for i, d in enumerate(x.shape) if i != axis), attrs["output_type"])]

    def ref(self, xs, attrs):
        # numpy's argmax/argmin: the first NaN wins (the kernels' rule too)
        return self.np_fn(xs[0], axis=attrs["axis"]).astype(attrs["output_type"].np)

    def examples(self):
        x = _rng.uniform(-2, 2, (3, 4))
        nan = np.nan
        with_nan = np.array([[1.0, nan, 3.0, nan], [-np.inf, 2.0, 2.0, -1.0],
                             [nan, 5.0, -5.0, 0.0]], np.float32)  # fmt: skip
        return [Example(lambda t: self.build(t, axis=1), [x], grad=False),
                Example(lambda t: self.build(t, axis=0), [x], grad=False),
                # NaN: the index of the first NaN; ties: the first index
                Example(lambda t: self.build(t, axis=1), [with_nan], grad=False),
                Example(lambda t: self.build(t, axis=0), [with_nan], grad=False),
                Example(lambda t: self.build(t, axis=0), [np.array([1.0, nan, 3.0])], grad=False),
                Example(lambda t: self.build(t, axis=0), [np.array([4, 9, 9, -2], np.int32)],
                        grad=False)]  # fmt: skip


@register
class ArgMax(_Arg):
    kind = "reduction"

    np_fn = staticmethod(np.argmax)

    def build(self, x, axis):
        return argmax(x, axis)


@register
class ArgMin(_Arg):
    kind = "reduction"

    np_fn = staticmethod(np.argmin)

    def build(self, x, axis):
        return argmin(x, axis)


class ScanOp(OpDef):
    """A cumulative op along ``attrs["axis"]`` (``Cumsum``, ``Cumprod``): the shape and dtype
    rule and the reference's axis and ``reverse`` handling, written once. A subclass gives
    ``scan(x, axis, exclusive)``, the forward scan along a non-negative axis."""

    def infer(self, specs, attrs):
        x = specs[0]
        if x.dtype.is_bool:
            raise DTypeError(f"{self.type.lower()} of bool")
        if x.shape is not None:
            normalize_axis(attrs["axis"], len(x.shape))
        return [x]

    def ref(self, xs, attrs):
        x = xs[0]
        axis = attrs["axis"] % x.ndim
        if attrs["reverse"]:  # a reverse scan is the forward scan of the flipped input
            x = np.flip(x, axis)
        out = self.scan(x, axis, attrs["exclusive"])
        if attrs["reverse"]:
            out = np.flip(out, axis)
        return np.array(out, order="C")

    def scan(self, x, axis: int, exclusive: bool):
        raise NotImplementedError


@register
class Cumsum(ScanOp):
    """Cumulative sum along ``axis``; ``exclusive`` and ``reverse`` as in TF."""

    kind = "opaque"

    def scan(self, x, axis, exclusive):
        out = np.cumsum(x, axis=axis, dtype=x.dtype)
        return out - x if exclusive else out

    def vjp(self, op, grads):
        a = op.attrs
        return [cumsum(grads[0], a["axis"], exclusive=a["exclusive"], reverse=not a["reverse"])]

    def examples(self):
        x = _rng.uniform(-2, 2, (3, 4))
        return [
            Example(lambda t: cumsum(t, axis=1), [x]),
            Example(lambda t: cumsum(t, axis=0, exclusive=True, reverse=True), [x]),
        ]


def _tf1_args(fn):
    """Accept TF1's deprecated spellings ``keep_dims=`` and ``reduction_indices=`` too."""

    @functools.wraps(fn)
    def wrapper(*args, reduction_indices=None, keep_dims=None, **kwargs):
        if reduction_indices is not None:
            if kwargs.get("axis") is not None or len(args) > 1:
                raise ValueError(f"{fn.__name__}: give axis or reduction_indices, not both")
            kwargs["axis"] = reduction_indices
        if keep_dims is not None:
            if "keepdims" in kwargs or len(args) > 2:
                raise ValueError(f"{fn.__name__}: give keepdims or keep_dims, not both")
            kwargs["keepdims"] = keep_dims
        return fn(*args, **kwargs)

    return wrapper


def _reduce(type_name, x, axis, keepdims, name):
    x = convert_to_tensor(x)
    rank = None if x.shape is None else len(x.shape)
    if rank is None and axis is not None:
        raise ValueError(f"{type_name}: reducing over given axes needs a known rank")
    axes = None if rank is None else _axes(axis, rank)
    return apply1(type_name, [x], {"axes": axes, "keepdims": bool(keepdims)}, name)


@located("reduce_sum")
@_tf1_args
def reduce_sum(input_tensor, axis=None, keepdims=False, name=None):
    """Sum over ``axis`` (None: all)."""
    x = convert_to_tensor(input_tensor)
    if x.dtype.is_bool:
        x = cast(x, _dt.int32)
    return _reduce("Sum", x, axis, keepdims, name)


@located("reduce_mean")
@_tf1_args
def reduce_mean(input_tensor, axis=None, keepdims=False, name=None):
    """Mean over ``axis`` (integer input: integer mean, truncated toward zero, as TF).

    Over an empty axis: NaN for floats, 0 for integers (as TF).
    """
    x = convert_to_tensor(input_tensor)
    if not x.dtype.is_floating:
        s = reduce_sum(x, axis, keepdims)
        # elements per output value; max(., 1): an empty axis gives 0 as TF (the sum is 0
        # there), and an empty output divides nothing
        n = maximum(cast(size(x), s.dtype) // maximum(cast(size(s), s.dtype), 1), 1)
        # C-style division (TF's integer mean): -3 / 2 is -1, where floordiv gives -2
        return multiply(floordiv(abs(s), n), sign(s), name=name)
    return _reduce("Mean", x, axis, keepdims, name)


@located("reduce_max")
@_tf1_args
def reduce_max(input_tensor, axis=None, keepdims=False, name=None):
    """Maximum over ``axis``; over an empty axis -inf (integers: the dtype's minimum), as TF."""
    return _reduce("Max", input_tensor, axis, keepdims, name)


@located("reduce_min")
@_tf1_args
def reduce_min(input_tensor, axis=None, keepdims=False, name=None):
    """Minimum over ``axis``; over an empty axis +inf (integers: the dtype's maximum), as TF."""
    return _reduce("Min", input_tensor, axis, keepdims, name)


@located("reduce_prod")
@_tf1_args
def reduce_prod(input_tensor, axis=None, keepdims=False, name=None):
    """Product over ``axis``."""
    return _reduce("Prod", input_tensor, axis, keepdims, name)


@located("reduce_any")
@_tf1_args
def reduce_any(input_tensor, axis=None, keepdims=False, name=None):
    """Logical or over ``axis``."""
    return _reduce("Any", input_tensor, axis, keepdims, name)


@located("reduce_all")
@_tf1_args
def reduce_all(input_tensor, axis=None, keepdims=False, name=None):
    """Logical and over ``axis``."""
    return _reduce("All", input_tensor, axis, keepdims, name)


@located("reduce_logsumexp")
@_tf1_args
def reduce_logsumexp(input_tensor, axis=None, keepdims=False, name=None):
    """log(sum(exp(x))) over ``axis``, computed stably (max subtracted first); -inf over an
    empty axis, as TF."""
    x = convert_to_tensor(input_tensor)
    if x.shape is not None:
        _axes(axis, len(x.shape))  # a bad axis is reported as this op's, not reduce_max's
    m = stop_gradient(reduce_max(x, axis, keepdims=True))
    m = where(is_finite(m), m, zeros_like_(m))
    s = reduce_sum(exp(x - m), axis, keepdims=True)
    out = log(s) + m
    if not keepdims:
        rank = len(x.shape)
        axes = _axes(axis, rank)
        out = squeeze(out, axis=list(axes)) if axes else out
    if name:
        out = identity(out, name=name)
    return out


@located("argmax")
def argmax(input, axis=None, output_type=_dt.int64, name=None):  # noqa: A002 - TF name
    """Index of the largest value along ``axis`` (default 0), as int64.

    Ties give the first index; a NaN counts as the largest value, so the first NaN's index
    is returned (as numpy and JAX), on every target.
    """
    x = convert_to_tensor(input)
    axis = 0 if axis is None else int(axis)
    return apply1("ArgMax", [x], {"axis": axis, "output_type": _dt.as_dtype(output_type)}, name)


@located("argmin")
def argmin(input, axis=None, output_type=_dt.int64, name=None):  # noqa: A002 - TF name
    """Index of the smallest value along ``axis`` (default 0), as int64.

    Ties give the first index; a NaN counts as the smallest value, so the first NaN's index
    is returned (as numpy and JAX), on every target.
    """
    x = convert_to_tensor(input)
    axis = 0 if axis is None else int(axis)
    return apply1("ArgMin", [x], {"axis": axis, "output_type": _dt.as_dtype(output_type)}, name)


@located("cumsum")
def cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    """Cumulative sum along ``axis``."""
    x = convert_to_tensor(x)
    attrs = {"axis": int(axis), "exclusive": bool(exclusive), "reverse": bool(reverse)}
    return apply1("Cumsum", [x], attrs, name)


@located("count_nonzero")
@_tf1_args
def count_nonzero(input_tensor, axis=None, keepdims=False, dtype=_dt.int64, name=None):
    """Number of non-zero elements over ``axis``."""
    x = convert_to_tensor(input_tensor)
    nz = cast(not_equal(x, 0 if not x.dtype.is_bool else False), dtype)
    return reduce_sum(nz, axis, keepdims, name=name)
