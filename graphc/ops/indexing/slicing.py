"""Slicing: numpy-style ``t[...]`` (``getitem``, strided slices), ``slice`` and TF1's
``strided_slice``, one op (StridedSlice) with its gradient (StridedSliceGrad).

An index key is stored as a tuple of items, resolved against the runtime shape (so ``None``
dims work and the same attrs serve the op and its gradient):
  ``("int", i)``                   one element, the dimension disappears (negative from the end)
  ``("slice", start, stop, step)`` Python slice semantics (clamped, any step but 0)
  ``("span", begin, size)``        ``slice(x, begin, size)``: checked bounds, size -1 = to end
  ``("new",)``                     a new dimension of size 1 (``None`` / ``gc.newaxis``)
  ``("ellipsis",)``                as many full slices as the rank needs
"""

from __future__ import annotations

import builtins

import numpy as np

from ...errors import InvalidArgumentError
from ...graph.core import Tensor
from ..control import identity
from ..elementwise import add, cast, multiply
from ..registry import Example, OpDef, ShapeError, apply1, convert_to_tensor, register
from ..shape.reshape import shape
from ..shape_util import located, static_ints
from .common import _INDEX_DTYPES, _sample
from .gather import gather

_pyslice = builtins.slice  # ``slice`` below is the TF op


_CONSUMES = ("int", "slice", "span")


def _expand_key(key, rank):
    """The key with its ellipsis (explicit, or implicit at the end) spelled out as full slices."""
    consumed = sum(1 for it in key if it[0] in _CONSUMES)
    if consumed > rank:
        raise ShapeError(f"too many indices ({consumed}) for a tensor of rank {rank}")
    fill = [("slice", None, None, None)] * (rank - consumed)
    out = []
    for it in key:
        out.extend(fill if it[0] == "ellipsis" else [it])
    if not any(it[0] == "ellipsis" for it in key):
        out.extend(fill)
    return out


def _span_error(begin, size, axis, dim):
    return f"slice begin {begin} size {size} does not fit dimension {axis} of size {dim}"


def _index_shape(key, shape):
    """Static result shape of ``key`` on ``shape`` (dims may be None); ShapeError if invalid."""
    out = []
    axis = 0
    for it in _expand_key(key, len(shape)):
        kind = it[0]
        if kind == "new":
            out.append(1)
            continue
        d = shape[axis]
        if kind == "int":
            if d is not None and not -d <= it[1] < d:
                raise ShapeError(f"index {it[1]} is out of range for dimension {axis} of size {d}")
        elif kind == "slice":
            out.append(None if d is None else len(range(*_pyslice(*it[1:]).indices(d))))
        else:  # span
            begin, size = it[1], it[2]
            if d is not None and (begin > d or (size != -1 and begin + size > d)):
                raise ShapeError(_span_error(begin, size, axis, d))
            out.append(size if size != -1 else (None if d is None else d - begin))
        axis += 1
    return tuple(out)


def _np_key(key, shape):
    """The numpy basic-indexing key for ``key`` on a runtime ``shape`` (bounds checked)."""
    try:
        items = _expand_key(key, len(shape))
    except ShapeError as exc:
        raise InvalidArgumentError(str(exc)) from None
    out = []
    axis = 0
    for it in items:
        kind = it[0]
        if kind == "new":
            out.append(None)
            continue
        d = shape[axis]
        if kind == "int":
            if not -d <= it[1] < d:
                raise InvalidArgumentError(
                    f"index {it[1]} is out of range for dimension {axis} of size {d}"
                )
            out.append(it[1])
        elif kind == "slice":
            out.append(_pyslice(*it[1:]))
        else:
            begin, size = it[1], it[2]
            if begin > d or (size != -1 and begin + size > d):
                raise InvalidArgumentError(_span_error(begin, size, axis, d))
            out.append(_pyslice(begin, None if size == -1 else begin + size))
        axis += 1
    return tuple(out)


@register
class StridedSlice(OpDef):
    """Basic numpy indexing with ``attrs['key']`` (see the module docstring)."""

    kind = "index"
    reads_each_once = True

    def infer(self, specs, attrs):
        x = specs[0]
        if x.shape is None:
            return [(None, x.dtype)]
        return [(_index_shape(attrs["key"], x.shape), x.dtype)]

    def ref(self, xs, attrs):
        x = xs[0]
        return np.array(x[_np_key(attrs["key"], x.shape)])

    def vjp(self, op, grads):
        return [apply1("StridedSliceGrad", [grads[0], op.inputs[0]], {"key": op.attrs["key"]})]

    def examples(self):
        x = _sample((4, 5, 3))
        return [
            Example(lambda t: t[1:, ::2, None, ..., 2], [x]),
            Example(lambda t: t[::-1, -1], [x]),
            Example(lambda t: t[..., None, 1:-1], [x]),
            Example(lambda t: t[3:0:-2, :, -3], [x]),
            Example(lambda t: t[2], [_sample((4,))]),
            Example(lambda t: t[5:], [_sample((4, 2))]),
            Example(lambda t: slice(t, [1, 0], [2, -1]), [_sample((4, 3))]),
            Example(lambda t: t[:, 0], [np.arange(6, dtype=np.int32).reshape(3, 2)], grad=False),
        ]


@register
class StridedSliceGrad(OpDef):
    """Gradient of StridedSlice: input 0 scattered into zeros shaped like input 1."""

    kind = "index"

    def infer(self, specs, attrs):
        g, x = specs
        if x.shape is not None and g.shape is not None:
            want = _index_shape(attrs["key"], x.shape)
            if len(want) != len(g.shape) or any(
                a is not None and b is not None and a != b for a, b in zip(want, g.shape)
            ):
                raise ShapeError(f"gradient of shape {g.shape} does not fit the slice {want}")
        return [(x.shape, g.dtype)]

    def ref(self, xs, attrs):
        g, x = xs
        out = np.zeros(x.shape, dtype=g.dtype)
        key = _np_key(attrs["key"], x.shape)
        if out[key].shape != g.shape:
            raise InvalidArgumentError(
                f"gradient of shape {g.shape} does not fit the slice {out[key].shape}"
            )
        out[key] = g
        return out

    def vjp(self, op, grads):
        return [apply1("StridedSlice", [grads[0]], {"key": op.attrs["key"]}), None]

    def examples(self):
        key = (("slice", 1, None, None), ("new",), ("int", -1))
        return [
            Example(
                lambda g, x: apply1("StridedSliceGrad", [g, x], {"key": key}),
                [_sample((2, 1)), _sample((3, 4))],
            ),
        ]


def _key_items(key):
    """Parse a Python index key into (items, [(item position, scalar int tensor)])."""
    if not isinstance(key, tuple):
        key = (key,)
    items, tensors = [], []
    for k in key:
        if hasattr(k, "_as_graph_tensor"):
            k = k._as_graph_tensor()
        if isinstance(k, np.ndarray) and k.ndim == 0 and k.dtype.kind in "iub":
            k = k[()]  # a 0-d array indexes like the scalar it holds, as in numpy
        if k is None:
            items.append(("new",))
        elif k is Ellipsis:
            items.append(("ellipsis",))
        elif isinstance(k, _pyslice):
            bounds = []
            for part, v in zip(("start", "stop", "step"), (k.start, k.stop, k.step)):
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | np.integer)):
                    raise TypeError(
                        f"slice {part} must be a Python int or None, got {v!r} "
                        "(for computed bounds use gc.gather)"
                    )
                bounds.append(None if v is None else int(v))
            if bounds[2] == 0:
                raise ValueError("slice step cannot be zero")
            items.append(("slice", *bounds))
        elif isinstance(k, bool | np.bool_):
            raise TypeError("boolean indices are not supported (no mask indexing)")
        elif isinstance(k, int | np.integer):
            items.append(("int", int(k)))
        elif isinstance(k, Tensor):
            if k.dtype not in _INDEX_DTYPES or k.shape != ():
                raise TypeError(
                    f"a tensor index must be a scalar int32/int64, got {k.name} "
                    f"{k.shape} {k.dtype.name} (use gc.gather for vectors of indices)"
                )
            tensors.append((len(items), k))
            items.append(("slice", None, None, None))
        else:
            raise TypeError(
                f"unsupported index {k!r}: use ints, slices, None, Ellipsis or scalar int "
                "tensors (gc.gather for lists of indices)"
            )
    if sum(1 for it in items if it[0] == "ellipsis") > 1:
        raise ValueError("an index can only have a single ellipsis ('...')")
    return tuple(items), tensors


@located("getitem")
def getitem(tensor, key):
    """``tensor[key]`` with numpy basic-indexing semantics (what ``Tensor.__getitem__`` calls).

    Supports ints (negative from the end), slices with any non-zero step, ``None`` /
    ``gc.newaxis``, ``...`` and scalar integer tensors (which gather one element).
    """
    x = convert_to_tensor(tensor)
    items, tensors = _key_items(key)
    y = apply1("StridedSlice", [x], {"key": items})
    # Scalar tensor indices: sliced as ':' above, now gathered, last first so the output
    # positions of the earlier ones stay valid.
    for pos, idx in reversed(tensors):
        axis = 0
        for it in items[:pos]:
            if it[0] == "ellipsis":
                if x.shape is None:
                    raise ValueError(
                        f"indexing {x.name} with '...' before a tensor index needs a known rank"
                    )
                axis += len(x.shape) - sum(1 for i in items if i[0] in _CONSUMES)
            elif it[0] != "int":
                axis += 1
        y = gather(y, _wrap_negative(idx, y, axis), axis=axis)
    return y


def runtime_dim_of(t: Tensor):
    """``(x, k)`` when ``t`` is ``gc.shape(x)[k]`` (one dim of ``x``'s run-time shape, the
    TF1 idiom for a batch size), else None. ``k`` counts from the front."""
    op = t.op
    if op.type != "StridedSlice" or op.inputs[0].op.type != "Shape":
        return None
    key = op.attrs["key"]
    if len(key) != 1 or key[0][0] != "int":
        return None
    source = op.inputs[0].op.inputs[0]
    return source, key[0][1] % len(source.shape)


def _wrap_negative(idx, y, axis):
    """``idx + dim`` where ``idx < 0``, as Python indexing counts from the end."""
    dim = y.shape[axis] if y.shape is not None else None
    if dim is None:
        dim = cast(shape(y)[axis], idx.dtype)
    return add(idx, multiply(dim, cast(idx < 0, idx.dtype)))


@located("slice")
def slice(input_, begin, size, name=None):  # noqa: A001 - TF name
    """The block of ``input_`` starting at ``begin`` with ``size`` (-1: to the end) per dim."""
    x = convert_to_tensor(input_)
    b = [int(v) for v in static_ints(begin, "begin", "slice").reshape(-1)]
    s = [int(v) for v in static_ints(size, "size", "slice").reshape(-1)]
    if len(b) != len(s):
        raise ValueError(f"slice: begin {b} and size {s} have different lengths")
    if x.shape is not None and len(b) != len(x.shape):
        raise ValueError(f"slice: begin/size of length {len(b)} for rank {len(x.shape)} input")
    if any(v < 0 for v in b) or any(v < -1 for v in s):
        raise ValueError(f"slice: begin must be >= 0 and size >= -1, got {b} and {s}")
    key = tuple(("span", bi, si) for bi, si in zip(b, s))
    return apply1("StridedSlice", [x], {"key": key}, name)


@located("strided_slice")
def strided_slice(input_, begin, end, strides=None, begin_mask=0, end_mask=0, ellipsis_mask=0,
                  new_axis_mask=0, shrink_axis_mask=0, name=None):  # fmt: skip
    """TF1 ``strided_slice``: the masks select, per position, what ``t[...]`` would write."""
    b = [int(v) for v in static_ints(begin, "begin", "strided_slice").reshape(-1)]
    e = [int(v) for v in static_ints(end, "end", "strided_slice").reshape(-1)]
    st = [1] * len(b) if strides is None else [
        int(v) for v in static_ints(strides, "strides", "strided_slice").reshape(-1)
    ]  # fmt: skip
    if not len(b) == len(e) == len(st):
        raise ValueError(f"strided_slice: begin {b}, end {e}, strides {st} differ in length")
    key = []
    for i in range(len(b)):
        bit = 1 << i
        if ellipsis_mask & bit:
            key.append(Ellipsis)
        elif new_axis_mask & bit:
            key.append(None)
        elif shrink_axis_mask & bit:
            key.append(b[i])
        else:
            key.append(_pyslice(
                None if begin_mask & bit else b[i], None if end_mask & bit else e[i], st[i]
            ))  # fmt: skip
    y = getitem(input_, tuple(key))
    if name is not None:
        y = identity(y, name=name)
    return y
