"""Indexing ops: numpy-style ``t[...]`` (strided slices), slice, gather, gather_nd, one_hot and
the scatter-adds that are their gradients (also public: scatter_nd, unsorted_segment_sum).

Registered through ``shape.py``, which re-exports the public builders.

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

from .. import dtypes as _dt
from ..errors import InvalidArgumentError
from ..graph.core import Tensor
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
from .shape_util import located, merge_dim, static_int, static_ints

__all__ = [
    "slice", "strided_slice", "gather", "gather_nd", "one_hot", "scatter_nd",
    "unsorted_segment_sum",
]  # fmt: skip

_pyslice = builtins.slice  # ``slice`` below is the TF op
_rng = np.random.default_rng(3)
_INDEX_DTYPES = (_dt.int32, _dt.int64)


def _sample(shape):
    return _rng.uniform(-2, 2, shape)


def _check_index_dtype(spec, what="indices"):
    if spec.dtype not in _INDEX_DTYPES:
        raise DTypeError(f"{what} must be int32 or int64, got {spec.dtype.name}")


# -- index keys --------------------------------------------------------------------------------

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


def _wrap_negative(idx, y, axis):
    """``idx + dim`` where ``idx < 0``, as Python indexing counts from the end."""
    from .elementwise import add, cast, multiply
    from .shape import shape

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
        from .control import identity

        y = identity(y, name=name)
    return y


# -- gather and its scatter-add gradient -------------------------------------------------------


def _check_range(idx, n, what):
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        pos = tuple(int(p) for p in np.argwhere(bad)[0])
        raise InvalidArgumentError(f"{what}{list(pos)} = {idx[pos]} is not in [0, {n})")


def _gather_out_shape(p, i, axis, bd):
    batch = tuple(merge_dim(a, b, "batch dimensions of params and indices differ")
                  for a, b in zip(p[:bd], i[:bd]))  # fmt: skip
    return batch + tuple(p[bd:axis]) + tuple(i[bd:]) + tuple(p[axis + 1 :])


def _batched(a, bd):
    """View ``a`` with its ``bd`` leading dims merged into one (size 1 when ``bd == 0``)."""
    return a.reshape((int(np.prod(a.shape[:bd], dtype=np.int64)),) + a.shape[bd:])


def _check_gather(p_shape, idx, axis, bd):
    if tuple(p_shape[:bd]) != tuple(idx.shape[:bd]):
        raise InvalidArgumentError(
            f"batch dimensions of params {p_shape} and indices {idx.shape} differ"
        )
    _check_range(idx, p_shape[axis], "indices")


@register
class GatherV2(OpDef):
    """``params`` gathered along ``axis`` at ``indices``, with ``batch_dims`` leading dims
    shared by both (TF ``gather``); out-of-range indices are an error, as in TF on CPU."""

    def infer(self, specs, attrs):
        p, i = specs
        _check_index_dtype(i)
        axis, bd = attrs["axis"], attrs["batch_dims"]
        if p.shape is None or i.shape is None:
            return [(None, p.dtype)]
        if not 0 <= axis < len(p.shape):
            raise ShapeError(f"axis {axis} is out of range for params of rank {len(p.shape)}")
        if bd > len(i.shape) or bd > axis:
            raise ShapeError(f"batch_dims {bd} must be <= axis {axis} and the indices' rank")
        return [(_gather_out_shape(p.shape, i.shape, axis, bd), p.dtype)]

    def ref(self, xs, attrs):
        p, idx = xs
        axis, bd = attrs["axis"], attrs["batch_dims"]
        _check_gather(p.shape, idx, axis, bd)
        if bd == 0:
            return np.take(p, idx, axis=axis)
        out_shape = _gather_out_shape(p.shape, idx.shape, axis, bd)
        pb, ib = _batched(p, bd), _batched(idx, bd)
        out = np.empty((pb.shape[0],) + out_shape[bd:], dtype=p.dtype)
        for b in range(pb.shape[0]):
            out[b] = np.take(pb[b], ib[b], axis=axis - bd)
        return out.reshape(out_shape)

    def vjp(self, op, grads):
        p, idx = op.inputs
        g = apply1("GatherGrad", [grads[0], idx, p], dict(op.attrs))
        return [g, None]

    def examples(self):
        p = _sample((5, 3))
        rep = np.array([0, 2, 2, 4, 2], dtype=np.int32)
        return [
            Example(lambda a, i: gather(a, i), [p, rep]),
            Example(lambda a, i: gather(a, i, axis=1),
                    [_sample((2, 4, 3)), np.array([[3, 0], [1, 1]], dtype=np.int64)]),
            Example(lambda a, i: gather(a, i, axis=-1), [_sample((2, 3)), np.array(2)]),
            Example(lambda a, i: gather(a, i, axis=1, batch_dims=1),
                    [_sample((2, 5, 3)), np.array([[4, 0, 0, 1], [2, 2, 3, 3]])]),
            Example(lambda a, i: gather(a, i), [p, np.zeros((0,), np.int32)]),
            Example(lambda a, i: gather(a, i), [np.arange(4), np.array([3, 1])], grad=False),
        ]  # fmt: skip


@register
class GatherGrad(OpDef):
    """Gradient of GatherV2: input 0 scatter-added (repeated indices sum) into zeros shaped
    like input 2 at ``indices`` (input 1)."""

    def infer(self, specs, attrs):
        g, i, p = specs
        _check_index_dtype(i)
        if g.shape is not None and p.shape is not None and i.shape is not None:
            want = _gather_out_shape(p.shape, i.shape, attrs["axis"], attrs["batch_dims"])
            if len(want) != len(g.shape) or any(
                a is not None and b is not None and a != b for a, b in zip(g.shape, want)
            ):
                raise ShapeError(f"gradient of shape {g.shape} does not fit the gather {want}")
        return [(p.shape, g.dtype)]

    def ref(self, xs, attrs):
        g, idx, p = xs
        axis, bd = attrs["axis"], attrs["batch_dims"]
        _check_gather(p.shape, idx, axis, bd)
        out = np.zeros(p.shape, dtype=g.dtype)
        ob, gb, ib = _batched(out, bd), _batched(g, bd), _batched(idx, bd)
        a = axis - bd
        k = idx.ndim - bd
        for b in range(ob.shape[0]):
            target = np.moveaxis(ob[b], a, 0)  # a view: add.at writes into out
            src = np.moveaxis(gb[b], list(range(a, a + k)), list(range(k)))
            np.add.at(target, ib[b], src)
        return out

    def vjp(self, op, grads):
        _, idx, _ = op.inputs
        a = op.attrs
        return [gather(grads[0], idx, axis=a["axis"], batch_dims=a["batch_dims"]), None, None]

    def examples(self):
        def build(g, i, p):
            return apply1("GatherGrad", [g, i, p], {"axis": 1, "batch_dims": 0})

        return [Example(build, [_sample((2, 3, 2)), np.array([1, 1, 0]), _sample((2, 2, 2))])]


@located("gather")
def gather(params, indices, axis=None, batch_dims=0, name=None, validate_indices=None):
    """Slices of ``params`` along ``axis`` at integer ``indices`` (TF ``gather``).

    The result has shape ``params.shape[:axis] + indices.shape[batch_dims:] +
    params.shape[axis + 1:]``; the first ``batch_dims`` dims of params and indices are
    shared (``batch_dims < 0`` counts from the indices' rank), and ``axis`` defaults to
    ``batch_dims`` (TF's first non-batch dimension). Indices out of
    ``[0, params.shape[axis])`` raise ``InvalidArgumentError`` at run time. The gradient
    scatter-adds (repeated indices sum).
    """
    del validate_indices  # TF1 compatibility: indices are always validated
    p = convert_to_tensor(params)
    i = convert_to_tensor(indices)
    batch_dims = static_int(batch_dims, "batch_dims", "gather")
    if batch_dims < 0:
        if i.shape is None:
            raise ValueError("gather: negative batch_dims needs indices of known rank")
        batch_dims += len(i.shape)
    if i.shape is not None and not 0 <= batch_dims <= len(i.shape):
        raise ValueError(f"gather: batch_dims must be in [-{len(i.shape)}, {len(i.shape)}] for "
                         f"indices {i.name} of shape {i.shape}")  # fmt: skip
    axis = batch_dims if axis is None else static_int(axis, "axis", "gather")
    if axis < 0:
        if p.shape is None:
            raise ValueError("gather: a negative axis needs params of known rank")
        axis = normalize_axis(axis, len(p.shape))
    if batch_dims < 0 or batch_dims > axis:
        raise ValueError(f"gather: batch_dims {batch_dims} must be in [0, axis={axis}]")
    return apply1("GatherV2", [p, i], {"axis": axis, "batch_dims": batch_dims}, name)


# -- gather_nd, scatter_nd ---------------------------------------------------------------------


def _nd_index(idx, shape):
    """numpy advanced index for the last-axis index vectors ``idx`` into ``shape`` (checked)."""
    k = idx.shape[-1]
    for j in range(k):
        _check_range(idx[..., j], shape[j], f"indices[..., {j}] at ")
    return tuple(np.moveaxis(idx, -1, 0))


def _nd_out_shape(p, i, bd=0):
    k = i[-1]
    if bd + k > len(p):
        raise ShapeError(f"index vectors of length {k} for params of rank {len(p)}"
                         + (f" with {bd} batch dims" if bd else ""))  # fmt: skip
    batch = tuple(merge_dim(a, b, "batch dimensions of params and indices differ")
                  for a, b in zip(p[:bd], i[:bd]))  # fmt: skip
    return batch + tuple(i[bd:-1]) + tuple(p[bd + k :])


def _nd_infer_shape(p, i, bd=0):
    if p is not None and i is not None and bd > min(len(p), len(i) - 1):
        raise ShapeError(f"batch_dims {bd} must be below the indices' rank {len(i)} and at most "
                         f"the params' rank {len(p)}")  # fmt: skip
    if p is None or i is None or not i or i[-1] is None:
        return None
    return _nd_out_shape(p, i, bd)


def _per_batch(fn, bd, *arrays):
    """``fn`` applied to each batch entry of ``arrays`` (their ``bd`` leading dims shared);
    the results stacked back under those dims."""
    if bd == 0:
        return fn(*arrays)
    lead = arrays[0].shape[:bd]
    flat = [_batched(a, bd) for a in arrays]
    outs = [fn(*(a[b] for a in flat)) for b in range(flat[0].shape[0])]
    return np.stack(outs).reshape(lead + outs[0].shape) if outs else None


def _scatter_nd_add(out, idx, updates):
    if idx.shape[-1] == 0:  # every index vector names the whole tensor
        out += updates.reshape((-1,) + out.shape).sum(axis=0, dtype=out.dtype)
    else:
        np.add.at(out, _nd_index(idx, out.shape), updates)
    return out


def _check_updates(updates, want, what="updates"):
    if updates is None or want is None:
        return
    if len(updates) != len(want) or any(
        a is not None and b is not None and a != b for a, b in zip(updates, want)
    ):
        raise ShapeError(f"{what} of shape {updates} do not fit the indexed shape {want}")


def _check_nd_batch(p_shape, idx, bd):
    if idx.ndim < 1 or bd > min(len(p_shape), idx.ndim - 1):
        raise InvalidArgumentError(f"batch_dims {bd} does not fit params {p_shape} and indices "
                                   f"{idx.shape}")  # fmt: skip
    if tuple(p_shape[:bd]) != tuple(idx.shape[:bd]):
        raise InvalidArgumentError(
            f"batch dimensions of params {p_shape} and indices {idx.shape} differ"
        )
    if bd + idx.shape[-1] > len(p_shape):
        raise InvalidArgumentError(f"index vectors of length {idx.shape[-1]} for {p_shape} "
                                   f"with {bd} batch dims")  # fmt: skip


def _gather_nd0(p, idx):
    if idx.shape[-1] == 0:
        return np.array(np.broadcast_to(p, idx.shape[:-1] + p.shape))
    return np.array(p[_nd_index(idx, p.shape)])


@register
class GatherNd(OpDef):
    """``out[b..., i...] = params[b..., indices[b..., i..., :]]``: index vectors along the
    last axis of ``indices`` pick elements (or slices) of ``params``; the ``batch_dims``
    leading dims (attr, default 0) are shared by both."""

    def infer(self, specs, attrs):
        p, i = specs
        _check_index_dtype(i)
        if i.shape == ():
            raise ShapeError("indices must have rank >= 1")
        return [(_nd_infer_shape(p.shape, i.shape, attrs.get("batch_dims", 0)), p.dtype)]

    def ref(self, xs, attrs):
        p, idx = xs
        bd = attrs.get("batch_dims", 0)
        _check_nd_batch(p.shape, idx, bd)
        out_shape = _nd_out_shape(p.shape, idx.shape, bd)
        if int(np.prod(p.shape[:bd], dtype=np.int64)) == 0:
            return np.zeros(out_shape, p.dtype)
        return _per_batch(_gather_nd0, bd, p, idx).reshape(out_shape)

    def vjp(self, op, grads):
        p, idx = op.inputs
        return [apply1("GatherNdGrad", [grads[0], idx, p], dict(op.attrs)), None]

    def examples(self):
        p = _sample((3, 4, 2))
        nd = gather_nd
        return [
            Example(lambda a, i: nd(a, i), [p, np.array([[0, 1], [2, 3], [0, 1]])]),
            Example(lambda a, i: nd(a, i), [p, np.array([[[1, 3, 0]], [[2, 0, 1]]])]),
            Example(lambda a, i: nd(a, i), [p, np.array([2, 1])]),
            Example(lambda a, i: nd(a, i), [p, np.zeros((0, 1), np.int32)]),
            # batch_dims: per batch entry, index vectors into the remaining dims
            Example(lambda a, i: nd(a, i, batch_dims=1),
                    [p, np.array([[[3], [0], [3]], [[1], [1], [2]], [[0], [2], [2]]])]),
            Example(lambda a, i: nd(a, i, batch_dims=1),
                    [p, np.array([[1, 0], [3, 1], [1, 1]], np.int64)]),
            Example(lambda a, i: nd(a, i, batch_dims=2),
                    [_sample((2, 3, 4)), np.array([[[3], [0], [1]], [[2], [2], [0]]])]),
            Example(lambda a, i: nd(a, i, batch_dims=1),
                    [_sample((2, 3)), np.zeros((2, 4, 0), np.int32)]),
        ]  # fmt: skip


def _scatter_nd_add_batched(out, idx, updates, bd):
    """``_scatter_nd_add`` per batch entry of the ``bd`` leading dims (shared by all three)."""
    if bd == 0:
        return _scatter_nd_add(out, idx, updates)
    ob, ib = _batched(out, bd), _batched(idx, bd)
    ub = updates.reshape(ob.shape[:1] + updates.shape[bd:])
    for b in range(ob.shape[0]):
        _scatter_nd_add(ob[b], ib[b], ub[b])  # ob[b] is a view into out
    return out


@register
class GatherNdGrad(OpDef):
    """Gradient of GatherNd: input 0 scatter-added into zeros shaped like input 2 (same
    ``batch_dims`` attr)."""

    def infer(self, specs, attrs):
        g, i, p = specs
        _check_index_dtype(i)
        bd = attrs.get("batch_dims", 0)
        _check_updates(g.shape, _nd_infer_shape(p.shape, i.shape, bd), "gradient")
        return [(p.shape, g.dtype)]

    def ref(self, xs, attrs):
        g, idx, p = xs
        bd = attrs.get("batch_dims", 0)
        _check_nd_batch(p.shape, idx, bd)
        if g.shape != _nd_out_shape(p.shape, idx.shape, bd):
            raise InvalidArgumentError(f"gradient of shape {g.shape} does not fit indices "
                                       f"{idx.shape} into {p.shape}")  # fmt: skip
        return _scatter_nd_add_batched(np.zeros(p.shape, dtype=g.dtype), idx, g, bd)

    def vjp(self, op, grads):
        bd = op.attrs.get("batch_dims", 0)
        return [gather_nd(grads[0], op.inputs[1], batch_dims=bd), None, None]

    def examples(self):
        idx = np.array([[1, 0], [1, 0], [0, 2]])
        bidx = np.array([[[2], [2], [0]], [[1], [0], [1]]])
        return [
            Example(lambda g, i, p: apply1("GatherNdGrad", [g, i, p]),
                    [_sample((3, 2)), idx, _sample((2, 3, 2))]),
            Example(lambda g, i, p: apply1("GatherNdGrad", [g, i, p], {"batch_dims": 1}),
                    [_sample((2, 3, 2)), bidx, _sample((2, 3, 2))]),
        ]  # fmt: skip


@located("gather_nd")
def gather_nd(params, indices, name=None, batch_dims=0):
    """Gather by index vectors: ``indices[..., :k]`` index dims ``batch_dims`` to
    ``batch_dims + k`` of ``params``; the first ``batch_dims`` dims (TF's batch_dims) are
    shared by params and indices. Out-of-range indices raise at run time."""
    bd = static_int(batch_dims, "batch_dims", "gather_nd")
    p = convert_to_tensor(params)
    i = convert_to_tensor(indices)
    if bd < 0:
        raise ValueError(f"gather_nd: batch_dims must be >= 0, got {bd}")
    attrs = {"batch_dims": bd} if bd else None
    return apply1("GatherNd", [p, i], attrs, name)


@register
class ScatterNd(OpDef):
    """Zeros of static ``attrs['shape']`` with ``updates`` added at the index vectors
    ``indices`` (duplicates sum, as in TF)."""

    def infer(self, specs, attrs):
        i, u = specs
        _check_index_dtype(i)
        shape = attrs["shape"]
        if i.shape == ():
            raise ShapeError("indices must have rank >= 1")
        _check_updates(u.shape, _nd_infer_shape(shape, i.shape))
        return [(shape, u.dtype)]

    def ref(self, xs, attrs):
        idx, u = xs
        shape = attrs["shape"]
        if idx.shape[-1] > len(shape):
            raise InvalidArgumentError(f"index vectors of length {idx.shape[-1]} for {shape}")
        if u.shape != _nd_out_shape(shape, idx.shape):
            raise InvalidArgumentError(f"updates of shape {u.shape} do not fit {idx.shape}")
        return _scatter_nd_add(np.zeros(shape, dtype=u.dtype), idx, u)

    def vjp(self, op, grads):
        return [None, gather_nd(grads[0], op.inputs[0])]

    def examples(self):
        return [
            Example(lambda i, u: scatter_nd(i, u, (4, 3)),
                    [np.array([[1], [3], [1]]), _sample((3, 3))]),
            Example(lambda i, u: scatter_nd(i, u, (2, 2)),
                    [np.array([[0, 1], [1, 1], [0, 1]]), _sample((3,))]),
        ]  # fmt: skip


@located("scatter_nd")
def scatter_nd(indices, updates, shape, name=None):
    """Zeros of ``shape`` (static) with ``updates`` summed in at the index vectors ``indices``."""
    i = convert_to_tensor(indices)
    u = convert_to_tensor(updates)
    dims = tuple(int(d) for d in static_ints(shape, "shape", "scatter_nd").reshape(-1))
    if any(d < 0 for d in dims):
        raise ValueError(f"scatter_nd: invalid shape {dims}")
    return apply1("ScatterNd", [i, u], {"shape": dims}, name)


# -- unsorted_segment_sum ----------------------------------------------------------------------


@register
class UnsortedSegmentSum(OpDef):
    """``out[s] = sum of data[j] where segment_ids[j] == s`` (negative ids are dropped)."""

    def infer(self, specs, attrs):
        data, ids = specs
        _check_index_dtype(ids, "segment_ids")
        if data.shape is None or ids.shape is None:
            return [(None, data.dtype)]
        k = len(ids.shape)
        if k > len(data.shape):
            raise ShapeError(f"segment_ids {ids.shape} must be a prefix of data {data.shape}")
        for a, b in zip(data.shape, ids.shape):
            merge_dim(a, b, f"segment_ids {ids.shape} must be a prefix of data {data.shape}")
        return [((attrs["num_segments"],) + tuple(data.shape[k:]), data.dtype)]

    def ref(self, xs, attrs):
        data, ids = xs
        n = attrs["num_segments"]
        if data.shape[: ids.ndim] != ids.shape:
            raise InvalidArgumentError(
                f"segment_ids {ids.shape} must be a prefix of data {data.shape}"
            )
        if (ids >= n).any():
            raise InvalidArgumentError(f"segment id {int(ids.max())} is not below {n}")
        out = np.zeros((n,) + data.shape[ids.ndim :], dtype=data.dtype)
        keep = ids >= 0
        np.add.at(out, ids[keep], data[keep])
        return out

    def vjp(self, op, grads):
        from .elementwise import cast, greater_equal, maximum, multiply
        from .shape import expand_dims

        data, ids = op.inputs
        g = grads[0]
        picked = gather(g, maximum(ids, 0))
        # dropped (negative) ids get no gradient
        mask = cast(greater_equal(ids, 0), g.dtype)
        for _ in range(len(data.shape) - len(ids.shape)):
            mask = expand_dims(mask, -1)
        return [multiply(picked, mask), None]

    def examples(self):
        return [
            Example(lambda d, s: unsorted_segment_sum(d, s, 4),
                    [_sample((5, 2)), np.array([0, 3, 0, -1, 1], dtype=np.int32)]),
            Example(lambda d, s: unsorted_segment_sum(d, s, 3),
                    [_sample((2, 2, 3)), np.array([[2, 2], [0, 2]])]),
            Example(lambda d, s: unsorted_segment_sum(d, s, 2),
                    [_sample((0,)), np.zeros((0,), np.int32)]),
        ]  # fmt: skip


@located("unsorted_segment_sum")
def unsorted_segment_sum(data, segment_ids, num_segments, name=None):
    """Sum the slices of ``data`` into ``num_segments`` (static) rows by ``segment_ids``."""
    d = convert_to_tensor(data)
    s = convert_to_tensor(segment_ids)
    if d.shape is None or s.shape is None:
        raise ValueError("unsorted_segment_sum needs data and segment_ids of known rank")
    n = static_ints(num_segments, "num_segments", "unsorted_segment_sum")
    if n.shape != () or int(n) < 0:
        raise ValueError(f"unsorted_segment_sum: num_segments must be an int >= 0, got {n}")
    return apply1("UnsortedSegmentSum", [d, s], {"num_segments": int(n)}, name)


# -- one_hot -----------------------------------------------------------------------------------


@register
class OneHot(OpDef):
    """``on_value`` where ``indices == k`` along a new dim of size ``depth`` else ``off_value``
    (indices outside [0, depth) give a row of ``off_value``, as in TF)."""

    differentiable = False

    def infer(self, specs, attrs):
        i = specs[0]
        _check_index_dtype(i)
        if i.shape is None:
            return [(None, attrs["dtype"])]
        shape = list(i.shape)
        if not 0 <= attrs["axis"] <= len(shape):
            raise ShapeError(f"axis {attrs['axis']} is out of range for rank {len(shape)} + 1")
        shape.insert(attrs["axis"], attrs["depth"])
        return [(tuple(shape), attrs["dtype"])]

    def ref(self, xs, attrs):
        idx, axis, depth = xs[0], attrs["axis"], attrs["depth"]
        ks = np.arange(depth).reshape((depth,) + (1,) * (idx.ndim - axis))
        hit = np.expand_dims(idx, axis) == ks
        dt = attrs["dtype"].np
        return np.where(hit, np.asarray(attrs["on_value"], dt), np.asarray(attrs["off_value"], dt))

    def examples(self):
        i = np.array([[0, 2, -1], [3, 1, 5]], dtype=np.int32)
        return [
            Example(lambda t: one_hot(t, 4), [i], grad=False),
            Example(lambda t: one_hot(t, 3, on_value=5, off_value=-1, axis=0, dtype=_dt.int32),
                    [i], grad=False),
            Example(lambda t: one_hot(t, 2, axis=1, dtype=_dt.float64), [i], grad=False),
            Example(lambda t: one_hot(t, 3), [np.array(1, np.int64)], grad=False),
            Example(lambda t: one_hot(t, 0), [np.zeros((0,), np.int32)], grad=False),
        ]  # fmt: skip


def _scalar(value, what):
    if isinstance(value, Tensor):
        if value.op.type != "Const" or value.shape != ():
            raise ValueError(f"one_hot: {what} must be a Python number or a scalar constant")
        value = value.op.attrs["value"]
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise ValueError(f"one_hot: {what} must be a scalar number, got {value!r}")
    return arr.item()


@located("one_hot")
def one_hot(indices, depth, on_value=1, off_value=0, axis=-1, dtype=_dt.float32, name=None):
    """One-hot encoding of integer ``indices`` along a new dimension ``axis`` of size ``depth``."""
    i = convert_to_tensor(indices)
    if i.shape is None:
        raise ValueError("one_hot needs indices of known rank")
    depth = static_ints(depth, "depth", "one_hot")
    if depth.shape != () or int(depth) < 0:
        raise ValueError(f"one_hot: depth must be an int >= 0, got {depth}")
    dtype = _dt.as_dtype(dtype)
    axis = normalize_axis(static_int(axis, "axis", "one_hot"), len(i.shape) + 1)
    attrs = {
        "depth": int(depth),
        "axis": axis,
        "dtype": dtype,
        "on_value": _scalar(on_value, "on_value"),
        "off_value": _scalar(off_value, "off_value"),
    }
    return apply1("OneHot", [i], attrs, name)
