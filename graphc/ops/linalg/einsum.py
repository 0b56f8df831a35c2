"""einsum and tensordot. ``einsum`` parses the equation, takes a plain (batched) matmul as
``MatMul``, rewrites equations without '...' into basic ops (``einsum_rewrite.py``) and keeps
the rest as one ``Einsum`` op, whose reference is ``np.einsum`` and whose gradient is again an
einsum with the operand's and the output's subscripts swapped (repeated subscripts: the
diagonal). ``tensordot`` is built on ``einsum``."""

from __future__ import annotations

import string

import numpy as np

from ... import dtypes as _dt
from ...errors import InvalidArgumentError
from ...graph.core import user_location
from ..constant import constant, ones_like
from ..control import identity
from ..elementwise import broadcast_like, cast, equal
from ..reduce import cumsum, reduce_sum
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
from ..shape import expand_dims
from .common import _ELL, _sample, _sum_to
from .einsum_rewrite import _rewritable, _rewrite
from .matmul import matmul

# -- einsum ------------------------------------------------------------------------------------


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

    kind = "opaque"

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
            result = identity(result, name=name)
        return result
    return apply1("Einsum", tensors, {"equation": canonical}, name)


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
