"""XLA-style operator fusion: a generic driver plus a policy that returns (decision, reason).

The driver walks the Program from its outputs back to its inputs and offers each producer
to the kernel(s) of its consumers:

* loop fusion: elementwise ops and broadcasts/reshapes/transposes join their consumers;
* input fusion: elementwise producers join the reduction that reads them, and reductions
  join their elementwise consumers as a row kernel (reduce, then elementwise over the row):
  softmax and layer norm become one kernel each;
* epilogue fusion: bias adds and activations after a MatMul join its GEMM kernel;
* a cheap producer read by several kernels is duplicated into each of them; an expensive
  one (transcendental, random, reduction, GEMM) is not, and the refusal says why;
* multi-output (sibling) fusion then merges independent kernels that read the same input.

Every candidate is checked by lowering it (``kernel.lower.emit_group``): a merge is legal
exactly when the merged group is one kernel. ``CompileOptions(fusion=False)`` keeps one
kernel per op: the unfused baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnimplementedError
from ..kernel import lowerings as L
from ..kernel.lower import Illegal, Lowering, emit_group, ref_consumers, stored_refs
from ..program import Program


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
        return "conv" if any(program.node(n).op == "Conv2D" for n in nodes) else "gemm"
    if "conv" in kinds:
        return "conv"
    if "reduction" in kinds:
        if len(nodes) == 1 and program.node(nodes[0]).op == "SumToShape":
            node = program.node(nodes[0])
            if shapes is None or L.REDUCTIONS["SumToShape"](node, shapes) is None:
                return "opaque"
        return "reduction"
    if kinds & {"opaque", None}:
        return "opaque"
    return "loop"


def _name(program, kind, nodes, i) -> str:
    root = program.node(nodes[-1])
    return f"{kind}{i}_{root.op.lower()}"


def fuse(program: Program, options=None) -> FusionPlan:
    """Group the Program's compute nodes into kernels (see the module docstring)."""
    fusion = True if options is None else getattr(options, "fusion", True)
    compute = [n.id for n in program.nodes if L.op_kind(n) != "source"]
    try:
        lw = Lowering(program, None)
    except UnimplementedError:
        lw = None
    if not fusion or lw is None:
        why = (
            "fusion disabled (CompileOptions(fusion=False))"
            if not fusion
            else ("shapes not lowerable")
        )
        plan = _finish(program, [[n] for n in compute], (), lw and lw.shapes)
        plan.decisions.append(("all ops", "refuse", why))
        return plan
    return _Driver(program, lw, compute).run()


def _finish(program, groups, decisions=(), shapes=None) -> FusionPlan:
    pos = {n.id: i for i, n in enumerate(program.nodes)}
    groups = [sorted(g, key=pos.get) for g in groups if g]
    groups.sort(key=lambda g: pos[g[0]])
    out = []
    for i, g in enumerate(groups):
        kind = _kind_of(program, g, shapes)
        out.append(FusionGroup(_name(program, kind, g, i), kind, tuple(g)))
    return FusionPlan(out, list(decisions))


class _Driver:
    def __init__(self, program, lw, compute):
        self.program = program
        self.lw = lw
        self.compute = compute
        self.groups: list = [{n} for n in compute]  # index -> set of node ids (None: gone)
        self.consumers = ref_consumers(program)
        self.decisions: list = []
        self.fetches = {tuple(r) for r in program.fetches}

    # -- helpers -------------------------------------------------------------------------
    def node(self, nid):
        return self.program.node(nid)

    def label(self, nid) -> str:
        n = self.node(nid)
        return f"{n.op} '{n.name}'"

    def gname(self, gi) -> str:
        nodes = sorted(self.groups[gi], key=self._pos)
        return "{" + ", ".join(self.node(n).op for n in nodes) + "}"

    def _pos(self, nid):
        return self._posmap[nid]

    @property
    def _posmap(self):
        pm = self.__dict__.get("_pm")
        if pm is None:
            pm = {n.id: i for i, n in enumerate(self.program.nodes)}
            self.__dict__["_pm"] = pm
        return pm

    def groups_of(self, nid) -> list:
        return [gi for gi, g in enumerate(self.groups) if g is not None and nid in g]

    def compute_consumers(self, nid) -> list:
        out = []
        for k in range(len(self.node(nid).outs)):
            for c in self.consumers.get((nid, k), ()):
                if L.op_kind(self.node(c)) != "source" and c not in out:
                    out.append(c)
        return out

    def plan_with(self, groups) -> FusionPlan:
        live = [sorted(g, key=self._pos) for g in groups if g]
        return FusionPlan([FusionGroup("g", "loop", tuple(g)) for g in live])

    def legal(self, groups, gi_new) -> str | None:
        """None when the changed groups each lower to one kernel, else the reason."""
        plan = self.plan_with(groups)
        live = [g for g in groups if g]
        for target in gi_new:
            g = groups[target]
            idx = live.index(g)
            nodes = [self.node(n) for n in plan.groups[idx].nodes]
            try:
                stored = stored_refs(self.program, plan, idx, self.consumers)
                emit_group(self.lw, "probe", nodes, stored, None)
            except Illegal as exc:
                return str(exc)
            except UnimplementedError as exc:
                return str(exc)
        return None

    # -- the driver ------------------------------------------------------------------------
    def run(self) -> FusionPlan:
        for p in reversed(self.compute):
            self.offer(p)
        self.siblings()
        live = [g for g in self.groups if g]
        return _finish(self.program, live, self.decisions, self.lw.shapes)

    def offer(self, p):
        kind = L.op_kind(self.node(p))
        consumers = self.compute_consumers(p)
        if not consumers:
            return
        what = self.label(p)
        if kind in (None, "opaque"):
            self.decisions.append((what, "refuse", f"{self.node(p).op} needs a kernel of its own"))
            return
        cgroups = sorted({gi for c in consumers for gi in self.groups_of(c)})
        (own,) = self.groups_of(p)
        if len(cgroups) == 1:
            gi = cgroups[0]
            reason = self.policy(p, gi)
            if reason:
                self.decisions.append((what, "refuse", reason))
                return
            trial = list(self.groups)
            trial[gi] = self.groups[gi] | self.groups[own]
            trial[own] = None
            why = self.legal(trial, [gi])
            if why:
                self.decisions.append((what, "refuse", why))
                return
            self.groups = trial
            self.decisions.append((what, "fuse", self.fuse_reason(p, gi)))
            return
        # several consumer kernels: duplicate a cheap producer into each of them
        why = self.duplication_refusal(p, cgroups)
        if why:
            self.decisions.append((what, "refuse", why))
            return
        trial = list(self.groups)
        for gi in cgroups:
            trial[gi] = self.groups[gi] | {p}
        trial[own] = None
        why = self.legal(trial, cgroups)
        if why:
            self.decisions.append((what, "refuse", why))
            return
        self.groups = trial
        self.decisions.append(
            (what, "fuse", f"cheap producer duplicated into {len(cgroups)} consumer kernels")
        )

    # -- the policy ----------------------------------------------------------------------
    def policy(self, p, gi) -> str | None:
        """None to try the merge of producer ``p`` into group ``gi``, else why not."""
        node = self.node(p)
        kind = L.op_kind(node)
        members = [self.node(n) for n in self.groups[gi]]
        kinds = {L.op_kind(n) for n in members}
        if "opaque" in kinds or None in kinds:
            return "the consumer needs a kernel of its own"
        readers = [c for c in self.compute_consumers(p) if c in self.groups[gi]]
        if any(L.op_kind(self.node(c)) == "gemm" for c in readers):
            return "GEMM operands are read from memory by the BLAS library"
        if kind == "gemm" and ("reduction" in kinds or "gemm" in kinds):
            return "a GEMM kernel takes only an elementwise epilogue"
        if kind == "reduction" and "gemm" in kinds:
            return "a GEMM kernel takes only an elementwise epilogue"
        if L.is_expensive(node) and "reduction" not in kinds and self.replicates(p, readers):
            # (in a row kernel a row-shaped value is computed once per row: no replication)
            return (f"{node.op} is expensive and its consumer reads each element several "
                    "times (broadcast): computed once in its own kernel instead")  # fmt: skip
        return None

    def downstream_of_row(self, p) -> bool:
        """``p`` is an elementwise function of a reduction's row (it will live in a row
        kernel, computed once per row)."""
        shape = self.lw.shapes[(p, 0)]
        stack, seen = [p], set()
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            node = self.node(nid)
            kind = L.op_kind(node)
            if kind == "reduction" and nid != p:
                return _strip(self.lw.shapes[(nid, 0)]) == _strip(shape)
            if kind in ("elementwise", "reduction"):
                stack.extend(src for src, _ in node.inputs)
        return False

    def replicates(self, p, readers) -> bool:
        if self.downstream_of_row(p):
            return False
        shape = self.lw.shapes[(p, 0)]
        for c in readers:
            cn = self.node(c)
            ck = L.op_kind(cn)
            if ck == "reduction":
                continue
            out = self.lw.shapes[(c, 0)]
            if ck == "index" and cn.op not in _READS_EACH_ONCE:
                return True
            if ck == "elementwise" and _strip(out) != _strip(shape):
                return True
        return False

    def duplication_refusal(self, p, cgroups) -> str | None:
        node = self.node(p)
        kind = L.op_kind(node)
        n = len(cgroups)
        if kind == "reduction":
            return f"producer is a reduction with consumers in {n} kernels (not duplicated)"
        if kind == "gemm":
            return f"producer is a GEMM with consumers in {n} kernels (not duplicated)"
        if L.is_expensive(node):
            return (f"producer {node.op} is expensive (transcendental/division/random) with "
                    f"consumers in {n} kernels: not duplicated")  # fmt: skip
        if any((p, k) in self.fetches for k in range(len(node.outs))):
            return f"producer is fetched and read by {n} kernels: stored once"
        if node.op in ("Assign", "AssignAdd", "AssignSub", "CheckNumerics"):
            return f"{node.op} has an effect and runs once"
        for gi in cgroups:
            if any(L.op_kind(self.node(c)) == "gemm" for c in self.compute_consumers(p)
                   if c in self.groups[gi]):  # fmt: skip
                return "GEMM operands are read from memory by the BLAS library"
        return None

    def fuse_reason(self, p, gi) -> str:
        node = self.node(p)
        kind = L.op_kind(node)
        kinds = {L.op_kind(self.node(n)) for n in self.groups[gi]}
        if kind == "gemm":
            return "elementwise epilogue fused after the GEMM"
        if kind == "reduction":
            return "reduction fused with its elementwise consumers (row kernel)"
        if "reduction" in kinds:
            return "input fusion into the reduction kernel"
        if "gemm" in kinds:
            return "epilogue fusion into the GEMM kernel"
        return "loop fusion into its consumer"

    # -- multi-output (sibling) fusion -------------------------------------------------------
    def siblings(self):
        changed = True
        while changed:
            changed = False
            live = [gi for gi, g in enumerate(self.groups) if g]
            reads = {gi: self.external_inputs(gi) for gi in live}
            for a_i, a in enumerate(live):
                for b in live[a_i + 1 :]:
                    if not self.groups[a] or not self.groups[b]:
                        continue
                    shared = reads[a] & reads[b]
                    if not shared or not self.sibling_kinds_ok(a, b):
                        continue
                    if self.reachable(a, b) or self.reachable(b, a):
                        continue
                    trial = list(self.groups)
                    trial[a] = self.groups[a] | self.groups[b]
                    trial[b] = None
                    what = f"siblings {self.gname(a)} + {self.gname(b)}"
                    why = self.legal(trial, [a])
                    if why:
                        self.decisions.append((what, "refuse", why))
                        continue
                    src = self.label(sorted(shared)[0][0])
                    self.decisions.append((what, "fuse", f"both read {src}: one pass over it"))
                    self.groups = trial
                    changed = True
                    break
                if changed:
                    break

    def sibling_kinds_ok(self, a, b) -> bool:
        for gi in (a, b):
            kinds = {L.op_kind(self.node(n)) for n in self.groups[gi]}
            if kinds & {"gemm", "conv", "opaque", None}:
                return False
        return True

    def external_inputs(self, gi) -> set:
        g = self.groups[gi]
        out = set()
        for nid in g:
            for ref in self.node(nid).inputs:
                src = self.node(ref[0])
                if ref[0] not in g and not (src.op == "Const" and src.attrs["value"].size == 1):
                    out.add(tuple(ref))
        return out

    def reachable(self, a, b) -> bool:
        """True when group ``b`` depends (transitively, through any kernel) on group ``a``."""
        from ..kernel.lower import node_deps

        deps = self.__dict__.get("_deps")
        if deps is None:
            deps = node_deps(self.program)
            self.__dict__["_deps"] = deps
        ga = self.groups[a]
        owner: dict = {}
        for gi, g in enumerate(self.groups):
            for nid in g or ():
                owner.setdefault(nid, []).append(gi)
        stack = list(self.groups[b])
        seen = set(stack)
        while stack:
            nid = stack.pop()
            for src in deps[nid]:
                if src in ga:
                    return True
                for nxt in [src, *(m for gj in owner.get(src, ()) for m in self.groups[gj])]:
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
        return False


#: index ops that compute each input element at most once, with no masked (discarded) read:
#: an expensive producer fused into them is not recomputed (Concat/Pad/gathers evaluate
#: clamped reads that a SELECT discards, Tile/broadcasts read elements repeatedly)
_READS_EACH_ONCE = (
    "Reshape", "ReshapeLike", "ExpandDims", "Squeeze", "Transpose", "StridedSlice", "ReverseV2",
    "SplitV", "SplitLike", "Unpack", "TileGrad",
)  # fmt: skip


def _strip(shape):
    from ..kernel import sym

    shape = list(shape)
    while shape and sym.const_value(shape[0]) == 1:
        shape.pop(0)
    return tuple(shape)
