"""What fusion produces, ``FusionPlan`` (the groups, each a future kernel with its kind and
name, and every decision with its reason), and ``_Trial``, a candidate grouping the driver
checks before it commits it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..kernel import lowerings as L


class _Trial:
    """The driver's grouping with the groups of ``changes`` (index -> node set, or None for
    a group merged away) in place of its own: a candidate, checked before it is committed."""

    def __init__(self, groups: list, changes: dict):
        self.groups, self.changes = groups, changes
        self.stored: dict = {}  # group index -> the stored refs its probe found

    def __getitem__(self, gi):
        return self.changes[gi] if gi in self.changes else self.groups[gi]


@dataclass
class FusionGroup:
    """One future kernel: node ids (program order), kind and a readable name."""

    name: str
    kind: str  # loop | reduction | gemm | conv | opaque
    nodes: tuple

    def __repr__(self) -> str:
        return f"<{self.kind} group {self.name}: {len(self.nodes)} node(s)>"


@dataclass
class FusionPlan:
    """Groups in program order and every decision (what, "fuse"/"refuse", reason)."""

    groups: list
    decisions: list = field(default_factory=list)

    def groups_of(self) -> dict:
        """node id -> indices of the groups computing it (several when duplicated)."""
        out: dict = {}
        for gi, g in enumerate(self.groups):
            for nid in g.nodes:
                out.setdefault(nid, []).append(gi)
        return out

    def report(self) -> str:
        lines = [f"{g.name} ({g.kind}): {len(g.nodes)} node(s)" for g in self.groups]
        lines += [f"{d:6s} {what}: {why}" for what, d, why in self.decisions]
        return "\n".join(lines)


def _kind_of(program, nodes, shapes=None) -> str:
    kinds = {L.op_kind(program.node(n)) for n in nodes}
    if "gemm" in kinds:
        return "conv" if any(program.node(n).op_def.gemm_group == "conv" for n in nodes) else "gemm"
    if "conv" in kinds:
        return "conv"
    if "reduction" in kinds:
        node = program.node(nodes[0])
        if len(nodes) == 1 and node.op_def.opaque_lowering:
            # a reduction whose axes only the run time knows: a kernel of its own
            if shapes is None or L.REDUCTIONS[node.op](node, shapes) is None:
                return "opaque"
        return "reduction"
    if kinds & {"opaque", None}:
        return "opaque"
    return "loop"


def _name(program, kind, nodes, i) -> str:
    root = program.node(nodes[-1])
    return f"{kind}{i}_{root.op.lower()}"


def _finish(program, groups, decisions=(), shapes=None) -> FusionPlan:
    pos = {n.id: i for i, n in enumerate(program.nodes)}
    groups = [sorted(g, key=pos.get) for g in groups if g]
    groups.sort(key=lambda g: pos[g[0]])
    out = []
    for i, g in enumerate(groups):
        kind = _kind_of(program, g, shapes)
        out.append(FusionGroup(_name(program, kind, g, i), kind, tuple(g)))
    return FusionPlan(out, list(decisions))
