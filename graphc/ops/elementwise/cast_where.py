"""cast (floating to integer truncates and saturates, the same on every target) and where:
``Select`` (elements, or whole rows for a rank-1 condition, as TF1) and ``Where`` (the
coordinates of the true elements, a data-dependent size)."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from ...expr import Cast as CastExpr
from ...expr import Math, cast_values
from ..registry import (
    DTypeError,
    Example,
    OpDef,
    apply1,
    broadcast_shapes,
    convert_args,
    convert_to_tensor,
    register,
)
from ..shape_util import located
from .base import Elementwise, Unary, _sample, zeros_like_
from .broadcast import _unbroadcast

_CAST_EDGES = np.array([
    np.nan, np.inf, -np.inf, 3e9, -3e9, 1e19, -1e19, 1e30, -1e30, 2.7, -2.7, 0.5, -0.5,
    2147483520.0, -2147483648.0, 9.2e18, -9.2e18,
])  # fmt: skip


@register
class Cast(Unary):
    """Convert to ``attrs['dtype']``.

    Floating -> int32/int64 truncates toward zero and *saturates*, the same on every target
    (XLA's and JAX's convert): NaN -> 0, +inf and values above the range -> the dtype's
    maximum, -inf and values below it -> its minimum (numpy and TF leave those undefined).
    """

    symbolic_dims = "input0"

    kinds = "fib"

    def infer(self, specs, attrs):
        return [(specs[0].shape, attrs["dtype"])]

    def scalar(self, args, attrs):
        return CastExpr(args[0], attrs["dtype"])

    def ref(self, xs, attrs):
        return cast_values(xs[0], attrs["dtype"].np)

    def vjp(self, op, grads):
        x = op.inputs[0]
        if not (x.dtype.is_floating and op.outputs[0].dtype.is_floating) or grads[0] is None:
            return [None]
        return [cast(grads[0], x.dtype)]

    def examples(self):
        x = _sample((3, 4), -3, 3)
        return [
            Example(lambda t: cast(t, _dt.float32), [x], grad=False),
            Example(lambda t: cast(t, _dt.float64), [x.astype("f4")], float64=False, grad_tol=1e-2),
            Example(lambda t: cast(t, _dt.int32), [x], grad=False),
            Example(lambda t: cast(t > 0, _dt.float64), [x], grad=False),
            # saturating: NaN -> 0, out of range -> the int range's ends, truncation
            Example(lambda t: cast(t, _dt.int32), [_CAST_EDGES.astype("f4")], grad=False),
            Example(lambda t: cast(t, _dt.int64), [_CAST_EDGES], grad=False),
            Example(lambda t: cast(t, _dt.int64), [_CAST_EDGES.astype("f4")], grad=False),
        ]


@register
class Select(Elementwise):
    """Elementwise choice, broadcasting all three inputs (numpy rules). ``where`` builds it,
    reshaping a rank-1 condition first to select rows (TF1)."""

    math = Math.SELECT

    def infer(self, specs, attrs):
        cond, x, y = specs
        if not cond.dtype.is_bool:
            raise DTypeError(f"condition must be bool, got {cond.dtype.name}")
        if x.dtype != y.dtype:
            raise DTypeError(f"x and y must have one dtype, got {x.dtype.name} and {y.dtype.name}")
        return [(broadcast_shapes(cond.shape, x.shape, y.shape), x.dtype)]

    def ref(self, xs, attrs):
        return np.where(xs[0], xs[1], xs[2]).astype(xs[1].dtype)

    def vjp(self, op, grads):
        g = grads[0]
        c, x, y = op.inputs
        z = zeros_like_(g)
        return [None, _unbroadcast(where(c, g, z), x), _unbroadcast(where(c, z, g), y)]

    def examples(self):
        c = np.array([[True, False, True]])
        rows = np.array([True, False, True])
        return [
            Example(lambda c, x, y: where(c, x, y), [c, _sample((2, 3)), _sample((2, 1))]),
            # TF1: a rank-1 condition picks whole rows of higher-rank values
            Example(lambda c, x, y: where(c, x, y), [rows, _sample((3, 2)), _sample((3, 2))]),
            Example(lambda c, x, y: where(c, x, y), [rows, _sample((3, 2, 2)), _sample((2,))]),
        ]


@located("cast")
def cast(x, dtype, name=None):
    """Convert ``x`` to ``dtype``; a no-op when it already has it.

    Floating -> integer truncates toward zero and saturates (NaN -> 0, out-of-range values
    and infinities -> the integer type's minimum or maximum), on every target.
    """
    x = convert_to_tensor(x)
    dtype = _dt.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply1("Cast", [x], {"dtype": dtype}, name)


@located("where")
def where(condition, x=None, y=None, name=None):
    """TF1's ``tf.where``.

    ``where(condition, x, y)``: ``x`` where ``condition`` is true, else ``y``. A condition of
    the shape of ``x`` selects elements (condition, x and y also broadcast like numpy); a
    rank-1 condition with ``x``/``y`` of higher rank selects *rows*, as TF1: its length is
    the first dimension of ``x``, and ``condition[i]`` picks ``x[i]`` or ``y[i]`` whole.

    ``where(condition)``: the coordinates of the true (non-zero) elements of ``condition``,
    an int64 tensor of shape ``(num_true, rank(condition))`` in row-major order. Its size
    depends on the values: the cpu target runs it on the host (``host_fallback:``).
    """
    c = convert_to_tensor(condition)
    if x is None and y is None:
        return apply1("Where", [c], None, name)
    if x is None or y is None:
        raise ValueError("give both x and y, or neither (where(condition): coordinates)")
    a, b = convert_args([x, y])
    if a.dtype != b.dtype:
        dt = _dt.result_type(a.dtype, b.dtype)
        a, b = cast(a, dt), cast(b, dt)
    if c.shape is not None and len(c.shape) == 1:
        c = _rows_condition(c, broadcast_shapes(a.shape, b.shape))
    return apply1("Select", [c, a, b], None, name)


def _rows_condition(c, shape):
    """A rank-1 condition reshaped to pick whole rows of values of ``shape`` (TF1's where)."""
    if shape is None:
        raise ValueError(
            "a rank-1 condition needs x and y of known rank (it selects rows when they have "
            "rank > 1, elements when rank 1)"
        )
    if len(shape) <= 1:
        return c
    n, rows = c.shape[0], shape[0]
    if n is not None and rows is not None and n != rows:
        raise ValueError(
            f"a rank-1 condition selects rows: its length {n} must equal the first "
            f"dimension of x and y, {rows}"
        )
    # shape.reshape's op (ops/shape sits above the elementwise ops)
    return apply1("Reshape", [c], {"shape": (-1,) + (1,) * (len(shape) - 1)})


@register
class Where(OpDef):
    """``where(condition)``: int64 coordinates ``(num_true, rank)`` of the non-zero elements.

    The output size depends on the condition's values; the compiled targets cannot size
    such a buffer before the run, so the cpu target runs it on the host (labelled)."""

    kind = "host"
    host_reason = "its output size is the number of true elements, known only after the run"
    static_shape_reason = "a host op (kind 'host'): never lowered"

    differentiable = False
    no_examples_reason = (
        "data-dependent output size (num_true, rank): static inputs do not give a static "
        "shape; tested on the reference and cpu targets in tests/ops/test_semantics_tf1.py"
    )

    def infer(self, specs, attrs):
        (c,) = specs
        return [((None, None if c.shape is None else len(c.shape)), _dt.int64)]

    def ref(self, xs, attrs):
        return np.argwhere(xs[0]).astype(np.int64)
