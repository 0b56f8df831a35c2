"""Linear algebra: matmul (batch broadcasting, transposes), tensordot and einsum.

``MatMul`` is the one GEMM op backends map to BLAS. ``einsum`` rewrites equations without
'...' into ``reduce_sum``, ``transpose``, ``reshape`` and ``MatMul`` ops (operands contracted
left to right; a contraction of nothing is a broadcast multiply), so backends see only ops they
already have; their gradients come from those ops. The rest ('...' other than a plain batched
matmul, or merged dims of unknown size) becomes one ``Einsum`` op, whose reference is
``np.einsum`` and whose gradient is again an einsum with the operand's and the output's
subscripts swapped. ``tensordot`` is built on ``einsum``.
"""

from __future__ import annotations

import string

import numpy as np

from .. import dtypes as _dt
from ..errors import InvalidArgumentError
from ..graph.core import user_location
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply1,
    broadcast_shapes,
    convert_args,
    register,
)

__all__ = ["matmul", "tensordot", "einsum"]

_rng = np.random.default_rng(3)


def _sample(*shape):
    return _rng.uniform(-1.5, 1.5, shape)


def _same_static(a, b) -> bool:
    return a.shape is not None and a.shape == b.shape and None not in a.shape


def _sum_to(g, x):
    """Sum gradient ``g`` over broadcast batch dims down to ``x``'s shape (no-op if equal)."""
    from .elementwise import sum_to_shape

    if g is None or _same_static(g, x):
        return g
    return sum_to_shape(g, x)


# -- MatMul ------------------------------------------------------------------------------------


@register
class MatMul(OpDef):
    """``op(a) @ op(b)`` over the last two dims; leading (batch) dims broadcast like numpy.

    ``op`` swaps the last two dims when ``transpose_a``/``transpose_b`` is set.
    """

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
        if not ta and not tb:
            ga, gb = _mm(g, b, False, True), _mm(a, g, True, False)
        elif not ta and tb:
            ga, gb = _mm(g, b, False, False), _mm(g, a, True, False)
        elif ta and not tb:
            ga, gb = _mm(b, g, False, True), _mm(a, g, False, False)
        else:
            ga, gb = _mm(b, g, True, True), _mm(g, a, True, True)
        return [_sum_to(ga, a), _sum_to(gb, b)]

    def examples(self):
        mm = matmul
        return [
            Example(mm, [_sample(3, 4), _sample(4, 5)]),
            Example(lambda a, b: mm(a, b, transpose_a=True), [_sample(4, 3), _sample(4, 2)]),
            Example(lambda a, b: mm(a, b, transpose_b=True), [_sample(3, 4), _sample(2, 4)]),
            Example(lambda a, b: mm(a, b, True, True), [_sample(2, 4, 3), _sample(2, 5, 4)]),
            Example(mm, [_sample(2, 1, 3, 4), _sample(3, 4, 2)]),  # batch broadcasting
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
    from .elementwise import cast
    from .shape import expand_dims, squeeze

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


# -- einsum ------------------------------------------------------------------------------------

_ELL = "."  # one character standing for "..." in parsed subscripts


def _parse(equation: str, n_operands: int) -> tuple[list[str], str]:
    """Explicit form of ``equation``: input subscripts and output subscript, "..." -> "."."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum equation must be a string, got {equation!r}")
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->", 1)
        explicit = True
    else:
        lhs, out, explicit = eq, "", False
    ins = lhs.split(",")
    if len(ins) != n_operands:
        raise ValueError(
            f"einsum: equation {equation!r} has {len(ins)} operand subscripts but "
            f"{n_operands} operands were given"
        )
    parsed = []
    for sub in [*ins, out]:
        if sub.count("...") > 1:
            raise ValueError(f"einsum: {equation!r} has more than one '...' in {sub!r}")
        s = sub.replace("...", _ELL)
        bad = [c for c in s if c != _ELL and c not in string.ascii_letters]
        if bad:
            raise ValueError(f"einsum: invalid subscript character {bad[0]!r} in {equation!r}")
        parsed.append(s)
    ins, out = parsed[:-1], parsed[-1]
    if not explicit:
        counts = {}
        for s in ins:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        ell = _ELL if any(_ELL in s for s in ins) else ""
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c != _ELL))
    if len(set(out)) != len(out):
        raise ValueError(f"einsum: repeated subscript in the output of {equation!r}")
    letters = set("".join(ins))
    missing = [c for c in out if c not in letters]
    if missing:
        raise ValueError(f"einsum: output subscript {missing[0]!r} of {equation!r} is in no input")
    if (_ELL in out) != any(_ELL in s for s in ins):
        raise ValueError(f"einsum: '...' must be in the output of {equation!r} if and only if "
                         "it is in an input")  # fmt: skip
    return ins, out


def _unparse(ins, out) -> str:
    return ",".join(ins).replace(_ELL, "...") + "->" + out.replace(_ELL, "...")


def _dedup(sub: str) -> str:
    """Subscripts without repeats, in order of first appearance ("iji" -> "ij"): the
    subscripts of an operand's diagonal."""
    return "".join(dict.fromkeys(sub))


def _einsum_shape(ins, out, shapes):
    """Output shape of a parsed equation (None dims allowed); ShapeError when dims clash."""
    sizes: dict = {}
    ell_shapes = []
    for k, (sub, shape) in enumerate(zip(ins, shapes)):
        if shape is None:
            if _ELL in sub:
                return None
            for c in sub:
                sizes.setdefault(c, None)
            continue
        named = len(sub) - (1 if _ELL in sub else 0)
        if len(shape) < named or (_ELL not in sub and len(shape) != named):
            raise ShapeError(f"operand {k} has shape {shape}, which does not fit subscripts "
                             f"{sub.replace(_ELL, '...')!r}")  # fmt: skip
        pos = sub.find(_ELL)
        if pos >= 0:
            n_ell = len(shape) - named
            ell_shapes.append(shape[pos : pos + n_ell])
            dims = list(shape[:pos]) + [None] + list(shape[pos + n_ell :])
        else:
            dims = list(shape)
        for c, d in zip(sub, dims):
            if c == _ELL:
                continue
            prev = sizes.get(c)
            if prev is not None and d is not None and prev != d:
                raise ShapeError(f"subscript {c!r} has sizes {prev} and {d} (a subscript names "
                                 "one size, in all operands and repeated within one)")  # fmt: skip
            if prev is None:
                sizes[c] = d
    ell = broadcast_shapes(*ell_shapes) if ell_shapes else ()
    shape = []
    for c in out:
        if c == _ELL:
            shape.extend(ell)
        else:
            shape.append(sizes[c])
    return tuple(shape)


@register
class Einsum(OpDef):
    """``np.einsum`` of an explicit equation; a subscript repeated within an operand reads
    its diagonal ("ii->i", "ii->" the trace, "iij->ij").

    Gradient of operand i: einsum of the output gradient with the other operands, producing
    operand i's subscripts; subscripts only operand i has are summed in the forward pass, so
    the gradient is broadcast along them. An operand with repeated subscripts gets the
    gradient of its diagonal, placed on the diagonal (zeros elsewhere).
    """

    def infer(self, specs, attrs):
        dtypes = {s.dtype for s in specs}
        if len(dtypes) != 1:
            raise DTypeError("operands must have one dtype, got "
                             + ", ".join(s.dtype.name for s in specs))  # fmt: skip
        dtype = specs[0].dtype
        if dtype.is_bool:
            raise DTypeError("einsum of bool operands")
        ins, out = _parse(attrs["equation"], len(specs))
        return [(_einsum_shape(ins, out, [s.shape for s in specs]), dtype)]

    def ref(self, xs, attrs):
        ins, out = _parse(attrs["equation"], len(xs))
        try:
            _einsum_shape(ins, out, [x.shape for x in xs])
        except ShapeError as exc:
            raise InvalidArgumentError(f"Einsum {attrs['equation']!r}: {exc}") from None
        # a copy: np.einsum returns a diagonal as a view of its operand
        return np.array(np.einsum(attrs["equation"], *xs), dtype=xs[0].dtype)

    def vjp(self, op, grads):
        g = grads[0]
        if g is None:
            return [None] * len(op.inputs)
        ins, out = _parse(op.attrs["equation"], len(op.inputs))
        return [_einsum_grad(g, list(op.inputs), ins, out, i) for i in range(len(ins))]

    def examples(self):
        e = _einsum_op  # the op itself, without the matmul/reduce_sum rewrites of ``einsum``
        return [
            Example(lambda a: e("ij->ji", a), [_sample(2, 3)]),
            Example(lambda a, b: e("ij,kj->ik", a, b), [_sample(2, 3), _sample(4, 3)]),
            Example(lambda a, b: e("bij,jk->bki", a, b), [_sample(2, 3, 4), _sample(4, 5)]),
            Example(lambda a, b: e("i,j->ij", a, b), [_sample(3), _sample(4)]),
            Example(
                lambda a, b, c: e("ij,jk,kl->il", a, b, c),
                [_sample(2, 3), _sample(3, 4), _sample(4, 2)],
            ),  # fmt: skip
            Example(lambda a, b: e("...ij,jk->...ki", a, b), [_sample(2, 2, 3), _sample(3, 4)]),
            Example(lambda a, b: e("...i,...i->...", a, b), [_sample(2, 1, 3), _sample(4, 3)]),
            Example(lambda a, b: e("ij,jk", a, b), [_sample(2, 3), _sample(3, 4)]),  # implicit
            Example(lambda a, b: e("ijk,j->ik", a, b), [_sample(2, 3, 4), _sample(3)]),
            Example(lambda a: e("abc->cb", a), [_sample(2, 3, 4)]),
            # repeated subscripts within an operand: diagonals and traces
            Example(lambda a: e("ii->i", a), [_sample(3, 3)]),
            Example(lambda a: e("ii->", a), [_sample(3, 3)]),
            Example(lambda a: e("iij->ji", a), [_sample(3, 3, 2)]),
            Example(lambda a, b: e("ii,ij->j", a, b), [_sample(3, 3), _sample(3, 4)]),
            Example(lambda a: e("ijij->ij", a), [_sample(2, 3, 2, 3)]),
            Example(lambda a: e("...ii->...i", a), [_sample(2, 3, 3)]),
            Example(lambda a: e("iii->i", a), [_sample(2, 2, 2)]),
        ]


def _einsum_op(equation, *operands):
    ins, out = _parse(equation, len(operands))
    return apply1("Einsum", list(operands), {"equation": _unparse(ins, out)})


def _einsum_grad(g, operands, ins, out, i):
    """Gradient of operand i; one with repeated subscripts gets its diagonal's gradient placed
    on the diagonal."""
    sub = ins[i]
    diag = _dedup(sub)
    if diag == sub:
        return _einsum_operand_grad(g, operands, ins, out, i)
    x = operands[i]
    xd = _einsum_op(_unparse([sub], diag), x)  # the diagonal: its shape sizes the gradient
    r = _einsum_operand_grad(g, [*operands[:i], xd, *operands[i + 1 :]],
                             [*ins[:i], diag, *ins[i + 1 :]], out, i)  # fmt: skip
    return _diag_embed(r, x, sub)


def _diag_embed(r, x, sub):
    """``r`` (subscripts ``_dedup(sub)``) placed on the diagonal of a tensor shaped like ``x``
    (subscripts ``sub``): ``out[..i..i..] = r[..i..]``, zero off the diagonal."""
    from .constant import constant, ones_like
    from .elementwise import cast, equal
    from .reduce import cumsum
    from .shape import expand_dims

    if x.shape is None:
        raise ValueError("einsum gradient: repeated subscripts need operands of known rank")
    n_ell = len(x.shape) - (len(sub) - 1) if _ELL in sub else 0
    first: dict = {}
    pairs = []
    axis = 0
    for c in sub:
        if c == _ELL:
            axis += n_ell
            continue
        if c in first:
            r = expand_dims(r, axis)  # r's dims before ``axis`` are x's: the same position
            pairs.append((first[c], axis))
        else:
            first[c] = axis
        axis += 1
    rank = len(x.shape)
    involved = sorted({a for p in pairs for a in p})
    if all(x.shape[a] is not None for a in involved):
        grids = np.indices([x.shape[a] if a in involved else 1 for a in range(rank)])
        mask = np.ones(grids.shape[1:], bool)
        for a, b in pairs:
            mask &= grids[a] == grids[b]
        return r * constant(mask.astype(r.dtype.np))
    ones = ones_like(x)
    iota = {a: cumsum(ones, axis=a, exclusive=True) for a in involved}
    mask = None
    for a, b in pairs:
        m = cast(equal(iota[a], iota[b]), r.dtype)
        mask = m if mask is None else mask * m
    return r * mask


def _einsum_operand_grad(g, operands, ins, out, i):
    from .constant import ones_like
    from .elementwise import broadcast_like
    from .reduce import reduce_sum
    from .shape import expand_dims

    x, sub = operands[i], ins[i]
    others = [s for j, s in enumerate(ins) if j != i]
    other_ops = [t for j, t in enumerate(operands) if j != i]
    seen = set(out).union(*others)
    # subscripts only this operand has were summed forward: broadcast the gradient along them
    dropped = [c for c in sub if c != _ELL and c not in seen]
    target = "".join(c for c in sub if c not in dropped)
    lead = 0
    if _ELL in out and _ELL not in sub:
        # numpy cannot drop '...' in an explicit output: keep it in front and sum it after
        if g.shape is None:
            raise ValueError("einsum gradient: '...' needs operands of known rank")
        lead = len(g.shape) - (len(out) - 1)
        target = _ELL + target
    r = einsum(_unparse([out, *others], target), g, *other_ops)
    if lead:
        r = reduce_sum(r, axis=tuple(range(lead)))
    if dropped:
        if r.shape is None:
            raise ValueError("einsum gradient: '...' needs operands of known rank")
        n_ell = len(r.shape) - len(target.replace(_ELL, ""))
        axis = 0
        for c in sub:
            if c == _ELL:
                axis += n_ell
                continue
            if c in dropped:
                r = expand_dims(r, axis)
            axis += 1
        if _ELL not in sub:
            return broadcast_like(r, x)
        # '...' of r is the broadcast of all operands': widen to x's dims, then sum back
        r = r * ones_like(x)
    if _ELL in sub:
        return _sum_to(r, x)
    return r


def _as_matmul(ins, out):
    """(transpose_a, transpose_b) if ``ins -> out`` is a (batched) matmul, else None."""
    if len(ins) != 2:
        return None
    a, b = ins
    if len(a) < 2 or len(b) < 2 or len(out) < 2 or len(a) != len(b) or len(a) != len(out):
        return None
    batch = out[:-2]
    if a[:-2] != batch or b[:-2] != batch:
        return None
    i, k = out[-2:]
    pa, pb = a[-2:], b[-2:]
    j = ({*pa} - {i}) if i in pa else None
    if not j or len(j) != 1:
        return None
    (j,) = j
    if j in batch or j in (i, k) or {*pb} != {j, k} or i == k:
        return None
    return pa == j + i, pb == k + j


def einsum(equation, *inputs, name=None):
    """Einstein summation. Supports explicit and implicit equations, a '...' per operand
    (broadcast like numpy) and subscripts repeated within one operand (its diagonal:
    "ii->i", the trace "ii->", "iij->ij"), as TF.

    An operand with repeated subscripts is first reduced to its diagonal (a one-operand
    ``Einsum`` op). Equations without '...' then become ``reduce_sum``/``transpose``/
    ``reshape``/``MatMul`` ops (operands contracted left to right), so they use the GEMM and
    reduction paths of every backend; the rest (and merged dims of unknown size) build one
    ``Einsum`` op.
    """
    from .elementwise import cast

    if len(inputs) == 1 and isinstance(inputs[0], list | tuple):
        inputs = tuple(inputs[0])
    if not inputs:
        raise ValueError("einsum needs at least one operand")
    tensors = convert_args(list(inputs))
    dt = _dt.result_type(*[t.dtype for t in tensors])
    tensors = [cast(t, dt) for t in tensors]
    ins, out = _parse(equation, len(tensors))
    # check shapes now so that the error names the equation
    canonical = _unparse(ins, out)
    apply_check = [t.shape for t in tensors]
    try:
        _einsum_shape(ins, out, apply_check)
    except ShapeError as exc:
        shapes = ", ".join(str(s) for s in apply_check)
        file, line = user_location()
        raise ValueError(
            f"einsum {equation!r}: {exc} (operand shapes {shapes}) at {file}:{line}"
        ) from None
    if any(_dedup(s) != s for s in ins):
        tensors = [t if _dedup(s) == s else _einsum_op(_unparse([s], _dedup(s)), t)
                   for t, s in zip(tensors, ins)]  # fmt: skip
        ins = [_dedup(s) for s in ins]
        canonical = _unparse(ins, out)
    mm = _as_matmul(ins, out) if _ELL not in "".join(ins) + out else None
    if mm is None and _ELL in out and all(s.startswith(_ELL) for s in ins) and out[0] == _ELL:
        stripped = _as_matmul([s[1:] for s in ins], out[1:])
        if stripped is not None and all(len(s) == 3 for s in ins):
            mm = stripped  # "...ij,...jk->...ik": matmul broadcasts batch dims the same way
    if mm is not None:
        return matmul(tensors[0], tensors[1], transpose_a=mm[0], transpose_b=mm[1], name=name)
    if _rewritable(tensors, ins, out):
        result = _rewrite(tensors, ins, out)
        if name:
            from .control import identity

            result = identity(result, name=name)
        return result
    return apply1("Einsum", tensors, {"equation": canonical}, name)


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
    from .reduce import reduce_sum

    axes = tuple(i for i, c in enumerate(sub) if c not in keep)
    if not axes:
        return x, sub
    return reduce_sum(x, axis=axes), "".join(c for c in sub if c in keep)


def _permute(x, sub, order):
    from .shape import transpose

    order = "".join(order)
    if sub == order:
        return x
    return transpose(x, [sub.index(c) for c in order])


def _contract_pair(a, sa, b, sb, needed, sizes):
    from .shape import expand_dims

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
    from .shape import expand_dims, reshape

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
    from .shape import reshape, squeeze

    if all(len(g) <= 1 for g in groups):
        empty = [len(batch) + i for i, g in enumerate(groups) if not g]
        return squeeze(x, axis=empty) if empty else x
    target = [sizes.get(c) for c in batch] + [sizes.get(c) for g in groups for c in g]
    return reshape(x, [-1 if d is None else d for d in target])


def tensordot(a, b, axes, name=None):
    """Sum of products over ``axes``: an int N (last N of a with first N of b) or a pair of
    axis lists, as ``np.tensordot``."""
    a, b = convert_args([a, b])
    if a.shape is None or b.shape is None:
        raise ValueError("tensordot needs operands of known rank")
    ra, rb = len(a.shape), len(b.shape)
    if isinstance(axes, int | np.integer):
        n = int(axes)
        if n < 0 or n > min(ra, rb):
            raise ValueError(f"tensordot: axes={n} is out of range for shapes {a.shape}, {b.shape}")
        ax_a, ax_b = list(range(ra - n, ra)), list(range(n))
    else:
        try:
            ax_a, ax_b = axes
        except (TypeError, ValueError):
            raise ValueError(
                f"tensordot: axes must be an int or a pair of lists, got {axes!r}"
            ) from None
        ax_a = [ax_a] if isinstance(ax_a, int | np.integer) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, int | np.integer) else list(ax_b)
        if len(ax_a) != len(ax_b):
            raise ValueError(f"tensordot: axes {axes!r} pair lists of different lengths")
    for ax, r, what in ((ax_a, ra, "a"), (ax_b, rb, "b")):
        for k in ax:
            if not -r <= k < r:
                raise ValueError(f"tensordot: axis {k} out of range for {what} of rank {r}")
    ax_a = [k % ra for k in ax_a]
    ax_b = [k % rb for k in ax_b]
    if len(set(ax_a)) != len(ax_a) or len(set(ax_b)) != len(ax_b):
        raise ValueError(f"tensordot: repeated axis in {axes!r}")
    if ra + rb - len(ax_a) > len(string.ascii_letters):
        raise ValueError("tensordot: too many dimensions")
    letters = iter(string.ascii_letters)
    sa = [next(letters) for _ in range(ra)]
    sb = [next(letters) for _ in range(rb)]
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in ax_a] + [
        c for k, c in enumerate(sb) if k not in ax_b
    ]
    return einsum("".join(sa) + "," + "".join(sb) + "->" + "".join(out), a, b, name=name)
