"""Einsum as a generic loop nest over its index space.

``gc.einsum`` already rewrites the common contractions to MatMul/Transpose/reduce_sum, so
the Einsum op that reaches the compiler is the general remainder: one opaque kernel with a
parallel nest over the output subscripts (and the broadcast ``...`` dims), an inner
reduction over the summed subscripts accumulating the product of the operands, and a
store. Operands of an ellipsis broadcast along their size-1 dims, as numpy does. A subscript
repeated within an operand indexes each of its dims with the same loop index (a diagonal).
"""

from __future__ import annotations

from ..expr import Const, Math, Var
from ..ops.linalg.common import _ELL
from ..ops.linalg.einsum import _parse
from . import sym
from .ir import Let, Store
from .lowerings import opaque
from .shapes import broadcast, rule


class _Plan:
    """Subscript sizes and, per operand, which loop index each of its dims reads."""

    def __init__(self, node, shapes, checks):
        self.ins, self.out = _parse(node.attrs["equation"], len(shapes))
        what = f"Einsum '{node.name}'"
        self.sizes: dict = {}
        self.layout = []  # per operand: list of letters / ("...", q, t) entries
        ell_shapes = []
        for sub, shape in zip(self.ins, shapes):
            n_ell = len(shape) - (len(sub) - 1) if _ELL in sub else 0
            dims = list(shape)
            layout = []
            pos = 0
            for c in sub:
                if c == _ELL:
                    ell = tuple(dims[pos : pos + n_ell])
                    ell_shapes.append(ell)
                    layout.extend(("...", q, n_ell) for q in range(n_ell))
                    pos += n_ell
                    continue
                d = dims[pos]
                prev = self.sizes.get(c)
                if prev is None:
                    self.sizes[c] = d
                elif prev != d:
                    checks.append((sym.eq(prev, d), f"{what}: subscript {c!r} has different "
                                                     "sizes (in two operands, or repeated in "
                                                     "one)"))  # fmt: skip
                    if sym.const_value(prev) is None and sym.const_value(d) is not None:
                        self.sizes[c] = d
                layout.append(c)
                pos += 1
            self.layout.append(layout)
        self.ell = broadcast(ell_shapes, checks, what) if ell_shapes else ()
        self.summed = sorted({c for s in self.ins for c in s if c != _ELL} - set(self.out))

    def out_shape(self) -> tuple:
        shape = []
        for c in self.out:
            shape.extend(self.ell if c == _ELL else [self.sizes[c]])
        return tuple(shape)


@rule("Einsum")
def _einsum_shape(n, ins, checks):
    return _Plan(n, ins, checks).out_shape()


@opaque("Einsum")
def _einsum(kb, node):
    refs = [tuple(r) for r in node.inputs]
    shapes = [kb.shape(r) for r in refs]
    plan = _Plan(node, shapes, [])
    dt = node.outs[0].dtype
    out = kb.out_buffer(node)
    out_shape = plan.out_shape()
    zero = Const(dt.np.type(0).item(), dt)

    def product(letter_idx, ell_idx):
        value = None
        for ref, shape, layout in zip(refs, shapes, plan.layout):
            dims = []
            for entry, d in zip(layout, shape):
                if isinstance(entry, tuple):  # an ellipsis dim: broadcast against plan.ell
                    _, q, t = entry
                    e = ell_idx[len(plan.ell) - t + q]
                    if sym.const_value(d) == 1:
                        e = sym.ZERO
                    elif d != plan.ell[len(plan.ell) - t + q]:
                        e = sym.select(sym.eq(d, 1), 0, e)
                    dims.append(e)
                else:
                    dims.append(letter_idx[entry])
            v = kb.load(ref, sym.flat_index(dims, shape))
            value = v if value is None else Math.MUL(value, v)
        return value

    with kb.nest(out_shape) as oidx:
        letter_idx, ell_idx = {}, ()
        pos = 0
        for c in plan.out:
            if c == _ELL:
                ell_idx = tuple(oidx[pos : pos + len(plan.ell)])
                pos += len(plan.ell)
            else:
                letter_idx[c] = oidx[pos]
                pos += 1
        flat = sym.flat_index(oidx, out_shape)
        if not plan.summed:
            kb.emit(Store(out, flat, product(letter_idx, ell_idx)))
        else:
            acc = kb.new_var("acc")
            kb.emit(Let(acc, dt, zero))
            with kb.nest([plan.sizes[c] for c in plan.summed], parallel=False) as sidx:
                v = product({**letter_idx, **dict(zip(plan.summed, sidx))}, ell_idx)
                kb.emit(Let(acc, dt, Math.ADD(Var(acc, dt), v), reduce=True))
            kb.emit(Store(out, flat, Var(acc, dt)))
