"""Helpers shared by the indexing op modules: registry example inputs (one seeded generator,
so the examples are the same from run to run), index dtype and range checks, and the index
geometry that gather_nd and scatter_nd share (index vectors along the last axis, batch dims)."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from ...errors import InvalidArgumentError
from ..registry import DTypeError, ShapeError
from ..shape_util import merge_dim

_rng = np.random.default_rng(3)
_INDEX_DTYPES = (_dt.int32, _dt.int64)


def _sample(shape):
    return _rng.uniform(-2, 2, shape)


def _check_index_dtype(spec, what="indices"):
    if spec.dtype not in _INDEX_DTYPES:
        raise DTypeError(f"{what} must be int32 or int64, got {spec.dtype.name}")


# -- index keys --------------------------------------------------------------------------------
def _check_range(idx, n, what):
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        pos = tuple(int(p) for p in np.argwhere(bad)[0])
        raise InvalidArgumentError(f"{what}{list(pos)} = {idx[pos]} is not in [0, {n})")


def _batched(a, bd):
    """View ``a`` with its ``bd`` leading dims merged into one (size 1 when ``bd == 0``)."""
    return a.reshape((int(np.prod(a.shape[:bd], dtype=np.int64)),) + a.shape[bd:])


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
