"""``MatMul``, the one GEMM op backends map to BLAS: batch broadcasting, transposes, integer
and mixed dtypes promoted, and its gradient (two more matmuls)."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from ...errors import InvalidArgumentError
from ..elementwise import cast
from ..registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply1,
    broadcast_shapes,
    convert_args,
    register,
)
from ..shape import expand_dims, reshape, squeeze
from .common import _sample, _sum_to

# -- MatMul ------------------------------------------------------------------------------------


def _rank(t):
    return None if t.shape is None else len(t.shape)


def _rows_times_weight(a, b, g) -> bool:
    """Whether ``a @ b`` multiplies rows of a rank > 2 ``a`` by a rank-2 ``b`` with the
    contracted and output widths known (so both can be flattened to rows)."""
    return (
        a.shape is not None and len(a.shape) > 2 and b.shape is not None and len(b.shape) == 2
        and a.shape[-1] is not None and g.shape is not None and g.shape[-1] is not None
    )  # fmt: skip


@register
class MatMul(OpDef):
    """``op(a) @ op(b)`` over the last two dims; leading (batch) dims broadcast like numpy.

    ``op`` swaps the last two dims when ``transpose_a``/``transpose_b`` is set.
    """

    kind = "gemm"
    matrix_product = True
    opaque_lowering = "MatMul_loops"
    symbolic_dims = "matmul"

    def lowered_kind(self, outs):
        # BLAS has no integer GEMM: integer products are a plain loop nest
        return self.kind if outs[0].dtype.is_floating else "opaque"

    def infer(self, specs, attrs):
        a, b = specs
        if a.dtype != b.dtype:
            raise DTypeError(f"operands must have one dtype, got {a.dtype.name} and {b.dtype.name}")
        if a.dtype.is_bool:
            raise DTypeError("matmul of bool operands")
        for s, what in ((a, "a"), (b, "b")):
            if s.shape is not None and len(s.shape) < 2:
                raise ShapeError(f"operand {what} must have rank >= 2, got shape {s.shape}")
        if a.shape is None or b.shape is None:
            return [(None, a.dtype)]
        m, ka = a.shape[-2:][::-1] if attrs["transpose_a"] else a.shape[-2:]
        kb, n = b.shape[-2:][::-1] if attrs["transpose_b"] else b.shape[-2:]
        if ka is not None and kb is not None and ka != kb:
            raise ShapeError(
                f"inner dimensions do not match: {ka} (a {a.shape}, transpose_a="
                f"{attrs['transpose_a']}) vs {kb} (b {b.shape}, transpose_b={attrs['transpose_b']})"
            )
        try:
            batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ShapeError:
            raise ShapeError(
                f"batch dimensions {a.shape[:-2]} and {b.shape[:-2]} are not broadcastable"
            ) from None
        return [((*batch, m, n), a.dtype)]

    def ref(self, xs, attrs):
        a, b = xs
        if attrs["transpose_a"]:
            a = np.swapaxes(a, -1, -2)
        if attrs["transpose_b"]:
            b = np.swapaxes(b, -1, -2)
        if a.shape[-1] != b.shape[-2]:
            raise InvalidArgumentError(
                f"MatMul: inner dimensions do not match at run time: {a.shape} @ {b.shape}"
            )
        return np.asarray(np.matmul(a, b)).astype(xs[0].dtype, copy=False)

    def vjp(self, op, grads):
        g = grads[0]
        if g is None:
            return [None, None]
        a, b = op.inputs
        ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
        # C = op(A) op(B); dop(A) = G op(B)^T, dop(B) = op(A)^T G, then undo the op().
        if not ta and not tb and _rows_times_weight(a, b, g):
            # [..., m, k] @ [k, n]: the weight's gradient is one product over all the rows,
            # not one per batch item summed afterwards
            k, n = a.shape[-1], g.shape[-1]
            ga = _mm(g, b, False, True)
            gb = _mm(reshape(a, (-1, k)), reshape(g, (-1, n)), True, False)
        elif not ta and not tb:
            ga, gb = _mm(g, b, False, True), _mm(a, g, True, False)
        elif not ta and tb:
            ga, gb = _mm(g, b, False, False), _mm(g, a, True, False)
        elif ta and not tb:
            ga, gb = _mm(b, g, False, True), _mm(a, g, False, False)
        else:
            ga, gb = _mm(b, g, True, True), _mm(g, a, True, True)
        if _rank(a) == 2 and _rank(b) == 2:  # no batch dims: nothing was broadcast
            return [ga, gb]
        return [_sum_to(ga, a), _sum_to(gb, b)]

    def examples(self):
        mm = matmul
        return [
            Example(mm, [_sample(3, 4), _sample(4, 5)]),
            Example(lambda a, b: mm(a, b, transpose_a=True), [_sample(4, 3), _sample(4, 2)]),
            Example(lambda a, b: mm(a, b, transpose_b=True), [_sample(3, 4), _sample(2, 4)]),
            Example(lambda a, b: mm(a, b, True, True), [_sample(2, 4, 3), _sample(2, 5, 4)]),
            Example(mm, [_sample(2, 1, 3, 4), _sample(3, 4, 2)]),  # batch broadcasting
            Example(mm, [_sample(2, 3, 4), _sample(4, 5)]),  # rows times a weight
            Example(mm, [_sample(3, 0), _sample(0, 2)], grad=False),  # empty contraction
            Example(
                mm,
                [np.arange(6, dtype=np.int32).reshape(2, 3), np.ones((3, 2), np.int32)],
                grad=False,
            ),
        ]


def _mm(a, b, ta, tb):
    return apply1("MatMul", [a, b], {"transpose_a": ta, "transpose_b": tb})


def matmul(a, b, transpose_a=False, transpose_b=False, name=None):
    """Matrix product of the last two dims, batch dims broadcasting (numpy ``matmul``).

    A rank-1 operand is treated like numpy does: as a row (``a``) or column (``b``) vector
    whose added dim is removed from the result.
    """
    a, b = convert_args([a, b])
    if a.dtype != b.dtype:
        dt = _dt.result_type(a.dtype, b.dtype)
        a, b = cast(a, dt), cast(b, dt)
    for t, what in ((a, "a"), (b, "b")):
        if t.shape is not None and len(t.shape) == 0:
            raise ValueError(f"MatMul: operand {what} ({t.name}) is a scalar; use multiply")
    a_vec = a.shape is not None and len(a.shape) == 1
    b_vec = b.shape is not None and len(b.shape) == 1
    if a_vec:
        a, transpose_a = expand_dims(a, 0), False
    if b_vec:
        b, transpose_b = expand_dims(b, -1), False
    attrs = {"transpose_a": bool(transpose_a), "transpose_b": bool(transpose_b)}
    out = apply1("MatMul", [a, b], attrs, None if (a_vec or b_vec) else name)
    if a_vec or b_vec:
        axes = ([-2] if a_vec else []) + ([-1] if b_vec else [])
        out = squeeze(out, axis=axes, name=name)
    return out
