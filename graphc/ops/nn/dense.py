"""The ops of dense layers and embeddings: ``bias_add`` (NHWC or NCHW channel dim),
``dropout`` and ``embedding_lookup`` (sharded tables, ids checked at run time)."""

from __future__ import annotations

import numpy as np

from ..control import identity
from ..elementwise import cast, greater_equal
from ..indexing import gather
from ..random import random_uniform
from ..reduce import cumsum, reduce_sum
from ..registry import ShapeError, broadcast_shapes, convert_to_tensor
from ..shape import concat, shape, stack
from ..shape import reshape as _reshape
from ..shape_util import located
from .common import _ew, _float_tensor, _like_input
from .losses import _in_range


@located("bias_add")
def bias_add(value, bias, data_format=None, name=None):
    """value + bias, bias a vector matching the channel dim of value: the last one (NHWC, the
    default), or dim 1 with ``data_format="NCHW"`` (value of rank >= 2: [N, C, ...])."""
    channels_first = data_format in ("NCHW", "NCW", "NCDHW", "NC...")
    if data_format not in (None, "NHWC", "NWC", "NDHWC", "NC", "N...C") and not channels_first:
        raise ValueError(f"bias_add: data_format {data_format!r} is not supported (NHWC or "
                         "NCHW)")  # fmt: skip
    v = convert_to_tensor(value)
    b = _like_input(v, bias)
    if b.shape is not None and len(b.shape) != 1:
        raise ValueError(f"bias_add: bias {b.name} must be rank 1, got shape {b.shape}")
    min_rank = 2 if channels_first else 1
    if v.shape is not None and len(v.shape) < min_rank:
        raise ValueError(f"bias_add: value {v.name} must have rank >= {min_rank}")
    axis = 1 if channels_first else -1
    if v.shape is not None and b.shape is not None:
        if None not in (v.shape[axis], b.shape[0]) and v.shape[axis] != b.shape[0]:
            raise ValueError(
                f"bias_add: bias {b.name} of shape {b.shape} does not match the channel dim "
                f"({data_format or 'NHWC'}) of value {v.name} of shape {v.shape}"
            )
    if channels_first:
        if v.shape is None:
            raise ValueError(f"bias_add: NCHW needs the rank of value {v.name}")
        b = _reshape(b, (-1,) + (1,) * (len(v.shape) - 2))
    return _ew().add(v, b, name=name)


# == dropout and embeddings ====================================================================


@located("dropout")
def dropout(x, rate=None, noise_shape=None, seed=None, name=None, keep_prob=None):
    """Zero each element with probability ``rate``, scale the rest by 1 / (1 - rate) (as TF).

    ``rate`` may be a tensor (e.g. a placeholder that is 0 at evaluation). ``noise_shape``
    (static) broadcasts one keep/drop decision over dims of size 1. ``keep_prob`` is the TF1
    spelling of ``1 - rate``.
    """
    x = _float_tensor(x, "dropout")
    if (rate is None) == (keep_prob is None):
        raise ValueError("dropout: give exactly one of rate and keep_prob")
    if rate is None:
        rate = 1 - keep_prob
    if isinstance(rate, int | float | np.number):
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout: rate must be in [0, 1), got {rate}")
        if rate == 0.0:
            return identity(x, name=name) if name else x
    else:
        rate = convert_to_tensor(rate)
        if rate.dtype != x.dtype:
            rate = cast(rate, x.dtype)
    if noise_shape is None:
        u = random_uniform(x, dtype=x.dtype, seed=seed)
    else:
        shape = tuple(int(d) for d in noise_shape)
        if x.shape is not None:
            try:
                broadcast_shapes(x.shape, shape)
            except ShapeError:
                raise ValueError(
                    f"dropout: noise_shape {shape} does not broadcast to {x.name} of shape "
                    f"{x.shape}"
                ) from None
        u = random_uniform(shape, dtype=x.dtype, seed=seed)
    keep = cast(greater_equal(u, rate), x.dtype)
    return _ew().multiply(x * (1 / (1 - rate)), keep, name=name)


@located("embedding_lookup")
def embedding_lookup(params, ids, partition_strategy="mod", name=None, validate_indices=True,
                     max_norm=None):  # fmt: skip
    """Rows of ``params`` at ``ids``: shape ``ids.shape + params.shape[1:]`` (TF1).

    ``params`` is a tensor or a list of shards of one table (same dtype and row shape). With
    n shards, ``partition_strategy="mod"`` (TF1's default) keeps id i in shard ``i % n`` at
    row ``i // n``; ``"div"`` splits the ids in contiguous blocks, the first
    ``total % n`` shards one row longer. An id whose row is not in its shard raises
    InvalidArgumentError when run. Gradients flow to each shard.
    """
    del validate_indices  # TF1 compatibility: ids are always validated
    if max_norm is not None:
        raise ValueError("embedding_lookup: max_norm is not supported")
    if partition_strategy not in ("mod", "div"):
        raise ValueError(f"embedding_lookup: partition_strategy must be 'mod' or 'div', got "
                         f"{partition_strategy!r}")  # fmt: skip
    shards = list(params) if isinstance(params, list | tuple) else [params]
    if not shards:
        raise ValueError("embedding_lookup: params is an empty list")
    shards = [convert_to_tensor(p) for p in shards]
    if len(shards) == 1:
        return gather(shards[0], ids, name=name)
    i = convert_to_tensor(ids)
    if not i.dtype.is_integer:
        raise TypeError(f"embedding_lookup: ids {i.name} must be integers, got {i.dtype.name}")
    for p in shards:
        if p.dtype != shards[0].dtype:
            raise TypeError(f"embedding_lookup: shards {shards[0].name} and {p.name} have "
                            f"dtypes {shards[0].dtype.name} and {p.dtype.name}")  # fmt: skip
        if p.shape is not None and len(p.shape) < 1:
            raise ValueError(f"embedding_lookup: shard {p.name} must have rank >= 1")
    ew = _ew()
    n = len(shards)
    static = [None if p.shape is None else p.shape[0] for p in shards]
    if None in static:
        sizes = stack([shape(p, out_type=i.dtype)[0] for p in shards])
        starts = cumsum(sizes, exclusive=True)
    else:
        sizes = convert_to_tensor(np.asarray(static, dtype=i.dtype.np))
        starts = convert_to_tensor(np.cumsum([0, *static[:-1]]).astype(i.dtype.np))
    if partition_strategy == "mod":
        shard = ew.mod(i, n)
        row = ew.floordiv(i, n)
    else:
        total = reduce_sum(sizes) if None in static else sum(static)
        per, extras = total // n, total % n
        shard = ew.maximum(i // (per + 1), (i - extras) // per)
        row = ew.where(shard < extras, i % (per + 1), (i - extras) % per)
    # the row must exist in its shard (TF's gather from that shard checks it); then one
    # gather from the shards laid end to end
    row = _in_range(row, gather(sizes, shard), "embedding_lookup", "row_in_shard")
    flat = gather(starts, shard) + row
    return gather(concat(shards, 0), flat, name=name)
