"""An einsum without '...' as ``reduce_sum``, ``transpose``, ``reshape`` and ``MatMul`` ops
(operands contracted left to right; a contraction of nothing is a broadcast multiply), so
backends see only ops they already have and the gradients come from those ops."""

from __future__ import annotations

import numpy as np

from ..reduce import reduce_sum
from ..shape import expand_dims, reshape, squeeze, transpose
from .common import _ELL
from .matmul import matmul

# -- einsum as reduce_sum / transpose / reshape / matmul / multiply ----------------------------


def _letter_sizes(tensors, ins) -> dict:
    sizes: dict = {}
    for t, sub in zip(tensors, ins):
        for c, d in zip(sub, t.shape):
            if d is not None:
                sizes[c] = d
    return sizes


def _pair_groups(sa, sb, needed):
    """Letters of a pairwise contraction: batch, contracted, a-only and b-only (kept)."""
    batch = [c for c in sa if c in sb and c in needed]
    contracted = [c for c in sa if c in sb and c not in needed]
    fa = [c for c in sa if c not in sb and c in needed]
    fb = [c for c in sb if c not in sa and c in needed]
    return batch, contracted, fa, fb


def _groupable(batch, groups, sizes) -> bool:
    """Can ``batch + merged groups`` be a reshape (or just expand/squeeze) target?"""
    if all(len(g) <= 1 for g in groups):
        return True
    if any(sizes.get(c) is None for g in groups if len(g) > 1 for c in g):
        return False
    unknown = sum(sizes.get(c) is None for c in batch) + sum(
        sizes.get(g[0]) is None for g in groups if len(g) == 1
    )
    return unknown <= 1


def _rewritable(tensors, ins, out) -> bool:
    """True when every step of ``_rewrite`` can be built (no '...', known ranks, and merged
    dims of known size)."""
    if _ELL in "".join(ins) + out or any(t.shape is None for t in tensors):
        return False
    sizes = _letter_sizes(tensors, ins)
    cur = ins[0]
    for k in range(1, len(ins)):
        needed = set(out).union(*ins[k + 1 :])
        batch, contracted, fa, fb = _pair_groups(cur, ins[k], needed)
        if contracted and not (
            _groupable(batch, [fa, contracted], sizes)
            and _groupable(batch, [contracted, fb], sizes)
            and _groupable(batch, [fa, fb], sizes)
        ):
            return False
        cur = "".join(batch + fa + fb)
    return True


def _rewrite(tensors, ins, out):
    """Contract operands left to right, each pair as one matmul (or a broadcast multiply when
    nothing is contracted), summing subscripts no later operand or the output needs first."""
    cur, sub = tensors[0], ins[0]
    sizes = _letter_sizes(tensors, ins)
    for k in range(1, len(ins)):
        needed = set(out).union(*ins[k + 1 :])
        cur, sub = _contract_pair(cur, sub, tensors[k], ins[k], needed, sizes)
    cur, sub = _sum_private(cur, sub, set(out))
    return _permute(cur, sub, out)


def _sum_private(x, sub, keep):
    axes = tuple(i for i, c in enumerate(sub) if c not in keep)
    if not axes:
        return x, sub
    return reduce_sum(x, axis=axes), "".join(c for c in sub if c in keep)


def _permute(x, sub, order):
    order = "".join(order)
    if sub == order:
        return x
    return transpose(x, [sub.index(c) for c in order])


def _contract_pair(a, sa, b, sb, needed, sizes):
    a, sa = _sum_private(a, sa, needed | set(sb))
    b, sb = _sum_private(b, sb, needed | set(sa))
    batch, contracted, fa, fb = _pair_groups(sa, sb, needed)
    out_sub = "".join(batch + fa + fb)
    if not contracted:  # outer/elementwise product: broadcast multiply
        a = _permute(a, sa, batch + fa)
        for _ in fb:
            a = expand_dims(a, -1)
        b = _permute(b, sb, batch + fb)
        for _ in fa:
            b = expand_dims(b, len(batch))
        return a * b, out_sub
    a = _merge_groups(_permute(a, sa, batch + fa + contracted), batch, [fa, contracted], sizes)
    b = _merge_groups(_permute(b, sb, batch + contracted + fb), batch, [contracted, fb], sizes)
    c = _split_groups(matmul(a, b), batch, [fa, fb], sizes)
    return c, out_sub


def _merge_groups(x, batch, groups, sizes):
    """x laid out as batch + groups -> batch + one dim per group (size 1 for an empty group)."""
    if all(len(g) <= 1 for g in groups):
        pos = len(batch)
        for g in groups:
            if not g:
                x = expand_dims(x, pos)
            pos += 1
        return x
    target = [sizes.get(c) for c in batch]
    for g in groups:
        target.append(int(np.prod([sizes[c] for c in g], dtype=np.int64)) if len(g) != 1
                      else sizes.get(g[0]))  # fmt: skip
    return reshape(x, [-1 if d is None else d for d in target])


def _split_groups(x, batch, groups, sizes):
    """Inverse of ``_merge_groups``: batch + one dim per group -> batch + group letters."""
    if all(len(g) <= 1 for g in groups):
        empty = [len(batch) + i for i, g in enumerate(groups) if not g]
        return squeeze(x, axis=empty) if empty else x
    target = [sizes.get(c) for c in batch] + [sizes.get(c) for g in groups for c in g]
    return reshape(x, [-1 if d is None else d for d in target])
