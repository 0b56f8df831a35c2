"""Narrowing: a product of which only some columns are read computes only those columns.

``SplitLike(a @ b, likes)`` on the product's last axis (concat's gradient: the gradient of
``concat([x, h]) @ W`` with respect to the concatenation, split into ``dx`` and ``dh``)
where some pieces are read by nothing: each piece that is read becomes its own product
``a @ b[:, lo:hi]`` (``b[lo:hi]`` with ``transpose_b``) and the split, the full product
and the unread columns go (DCE). A loop gradient whose input gradient nobody reads
(``While.body_for_needed`` drops that output of the gradient body) thus skips the input's
share of the per-step product (W11: the one-hot input's columns, about a fifth of the
body's GEMM work). Every column is still the same dot product over the same ``K`` (equal
within rounding; bit for bit wherever the GEMM's summation order does not depend on the
width).
"""

from __future__ import annotations

from ..program import Program
from .rewrite import Rewriter

_ALL = ("slice", None, None, None)


def _split_product(n, rw: Rewriter) -> None:
    """Alias the read pieces of SplitLike ``n`` to narrower products (see the module doc)."""
    g, likes = n.inputs[0], n.inputs[1:]
    m = rw.producer(g)
    if not m.op_def.matrix_product or rw.src_uses(g) != 1 or len(m.outs) != 1:
        return
    a, b = m.inputs
    specs = [rw.spec(r) for r in (a, b, g)]
    if any(s.shape is None or len(s.shape) != 2 for s in specs) or n.attrs["axis"] not in (1, -1):
        return
    read = [rw.src_uses((n.id, k)) > 0 for k in range(len(likes))]
    if all(read) or not any(read):
        return
    sizes = [rw.shape(r) for r in likes]
    if any(s is None or len(s) != 2 or s[1] is None for s in sizes):
        return
    width = specs[2].shape[1]
    if width is None or sum(s[1] for s in sizes) != width:
        return
    lo = 0
    for k, s in enumerate(sizes):
        if read[k]:
            span = ("span", lo, s[1])
            key = (span, _ALL) if m.attrs.get("transpose_b") else (_ALL, span)
            part = rw.add("StridedSlice", (b,), {"key": key}, suffix=f"narrow{k}")
            rw.alias[(n.id, k)] = rw.add(m.op, (a, part), dict(m.attrs), suffix=f"narrow{k}")
        lo += s[1]


#: the rewrite of each op type this pass looks at
_RULES = {"SplitLike": _split_product}


def narrow_products(program: Program) -> Program:
    """The pass: see the module doc string."""
    if not any(n.op in _RULES for n in program.nodes):
        return program

    def visit(n, rw):
        rule = _RULES.get(n.op)
        if rule is not None:
            rule(n, rw)
        return None

    return Rewriter(program).run(visit)
