"""Fusion legality from facts: whether a candidate group is one kernel, decided from its
members' lowering kinds (``OpDef.kind``), how their value rules read their operands
(``lowerings.reads_at``) and the group's symbolic shapes, as XLA's fusion decides from op
kinds and shapes, without emitting the kernel.

The rules are the lowering's own (``kernel/lower.py`` ``emit_group`` and the emitters of
``kernel/lower_rows.py`` and ``kernel/lower_gemm.py``), stated on facts:

* a group with an ``opaque`` member is not a kernel; a GEMM kernel holds one GEMM, no
  reduction, no producer of its operands (BLAS reads them from memory) and an epilogue
  whose stored outputs share one shape;
* a loop kernel's stored outputs share one shape, unless they are the outputs of one
  multi-output op (one loop nest per shape);
* a row (reduction) kernel's reductions reduce the same axes of the same shape, known at
  compile time, and each stored output is either a row or the full shape; and a
  reduction's value, known once its row is reduced, is read only at that row: every member
  between a reduction and its readers reads its operands at a known index map
  (elementwise broadcast, same index, same flat index), and following those maps from the
  places the kernel evaluates values (the reductions' inputs and the full-shaped outputs
  at the full index, the row outputs at the row) reaches each reduction at its row index.

The last rule is decided by following the index maps symbolically (the same ``Ix``,
``broadcast_index`` and ``reshaped_index`` the emitter uses), not by emitting code: an
index that does not come out as the row's is refused with the lowering's own reason. Only
where a member between a reduction and its readers reads at an index only its rule knows
(a transpose, a tile, a slice of a row) do the facts not decide (``UNDECIDED``): the
driver then lowers the group to find out (``fusion.py``). ``CompileOptions(verify=True)``
checks every decision the facts make against that lowering.
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Var
from ..kernel import lowerings as L
from ..kernel import sym
from ..kernel.builder import Illegal, Ix, broadcast_index, is_row_shape, reshaped_index
from ..kernel.lower_rows import fmt_shape, stored_space

#: the facts cannot decide: lower the group to find out
UNDECIDED = "undecided"


class _Owner:
    """Stands in for the emitter an ``Ix`` reports its divmods to."""

    divmod_used = False


def legality(lw, nodes, stored):
    """None when ``nodes`` (program order) storing ``stored`` lower to one kernel, else the
    reason why not, or UNDECIDED."""
    gemms, reductions = [], []
    for n in nodes:
        kind = L.op_kind(n)
        if kind is None:
            return f"no lowering for op type {n.op} ('{n.name}')"
        if kind == "opaque":
            return f"{n.op} '{n.name}' needs a kernel of its own"
        if kind == "gemm":
            gemms.append(n)
        elif kind == "reduction":
            reductions.append(n)
    if gemms:
        return _gemm_group(lw, nodes, stored, gemms, reductions)
    if reductions:
        return _row_group(lw, nodes, stored, reductions)
    if len({r[0] for r in stored}) > 1:
        return _one_shape(lw, stored)
    return None


def _one_shape(lw, refs):
    try:
        stored_space(lw, refs)
    except Illegal as exc:
        return str(exc)
    return None


def _gemm_group(lw, nodes, stored, gemms, reductions):
    if len(gemms) > 1 or reductions:
        return "a GEMM kernel takes one matmul and an elementwise epilogue"
    mm = gemms[0]
    ids = {n.id for n in nodes}
    if any(src in ids for src, _ in mm.inputs):
        return "GEMM operands are read from memory by the BLAS library"
    epilogue = [r for r in stored if r != (mm.id, 0)]
    return _one_shape(lw, epilogue) if epilogue else None


def _row_group(lw, nodes, stored, reductions):
    specs = {}
    for r in reductions:
        spec = L.REDUCTIONS[r.op](r, lw.shapes)
        if spec is None:
            return f"{r.op} '{r.name}': which dims it reduces is only known at run time"
        specs[r.id] = spec
    first = specs[reductions[0].id]
    space, axes = lw.shapes[first.ref], first.axes
    if any(lw.shapes[s.ref] != space or s.axes != axes for s in specs.values()):
        return "reductions over different shapes or axes"
    outer_axes = [d for d in range(len(space)) if d not in axes]
    row_shape = tuple(space[d] for d in outer_axes)
    row_size = sym.product(row_shape)
    rows: dict = {}  # shape -> whether it is the row's (many members share a few shapes)

    def row_like(s) -> bool:
        ok = rows.get(s)
        if ok is None:
            ok = rows[s] = sym.product(s) == row_size and is_row_shape(s, space, axes)
        return ok

    full_stored, row_stored = [], []
    for ref in stored:
        s = lw.shapes[ref]
        if s == space and ref[0] not in specs:
            full_stored.append(ref)
        elif row_like(s):
            row_stored.append(ref)
        else:
            return f"output shape {fmt_shape(s)} is neither the row nor the full shape"
    return _rows_read_at_their_row(
        lw, nodes, specs, space, outer_axes, row_shape, row_like, row_stored, full_stored
    )


def _rows_read_at_their_row(lw, nodes, specs, space, outer_axes, row_shape, row_like,
                            row_stored, full_stored):  # fmt: skip
    """None when every read of a reduction's value, following the index maps from where the
    row kernel evaluates values, is at the reduction's row; the lowering's reason when one
    is not; UNDECIDED when a member on the way reads at an index only its rule knows."""
    dep = set()  # members whose value depends on a reduction of the group
    for n in nodes:
        if n.id in specs or any(src in dep for src, _ in n.inputs):
            dep.add(n.id)
    if len(dep) == len(specs) and not any(s.ref[0] in dep for s in specs.values()):
        return None  # no member reads a reduction: each is stored as its row
    owner = _Owner()
    # the row nest's indices, as ``KernelBuilder.nest`` makes them (a parallel nest gives no
    # loop to leading extents known to be 1) and each reduction's full-space index
    extents = [space[d] for d in outer_axes]
    ovars: list = []
    while len(extents) - len(ovars) > 1 and sym.const_value(extents[len(ovars)]) == 1:
        ovars.append(sym.ZERO)
    ovars += [Var(f"_row{i}", _dt.int64) for i in range(len(ovars), len(extents))]
    row_flat = sym.flat_index(ovars, row_shape)
    row_dims = dict(zip(outer_axes, ovars))
    full_dims = tuple(
        row_dims[d]
        if d in row_dims
        else (sym.ZERO if sym.const_value(space[d]) == 1 else Var(f"_red{d}", _dt.int64))
        for d in range(len(space))
    )

    def full():
        return Ix(owner, space, dims=full_dims)

    def row(shape):
        return Ix(owner, shape, flat=row_flat)

    sites = [(specs[r].ref, full()) for r in specs]
    for n in nodes:
        if n.id in dep and n.id not in specs:
            s = lw.shapes[(n.id, 0)]
            if s != space and row_like(s):
                sites.append(((n.id, 0), row(s)))
    sites += [(ref, row(lw.shapes[ref])) for ref in row_stored]
    sites += [(ref, full()) for ref in full_stored]
    members = {n.id: n for n in nodes}
    seen = set()
    stack = [(tuple(ref), ix) for ref, ix in reversed(sites)]
    while stack:
        ref, ix = stack.pop()
        if ref[0] not in dep:
            continue  # not a member, or one computed inline at any index
        key = (ref, ix.flat())
        if key in seen:
            continue
        seen.add(key)
        if ref[0] in specs:
            if ix.flat() != row_flat:
                r = members[ref[0]]
                return f"{r.op} '{r.name}' (a reduction) is read at another row"
            continue
        node = members[ref[0]]
        how = L.reads_at(node)
        if how == "broadcast":
            for r in node.inputs:
                r = tuple(r)
                stack.append((r, broadcast_index(owner, ix, lw.shapes[r])))
        elif how == "same":
            stack.append((tuple(node.inputs[0]), ix))
        elif how == "flat":
            r = tuple(node.inputs[0])
            stack.append((r, reshaped_index(owner, ix, tuple(lw.shapes[r]))))
        elif how == "scalar":
            stack.append((tuple(node.inputs[0]), Ix(owner, (), (), sym.ZERO)))
        elif how != "none":
            return UNDECIDED
    return None
