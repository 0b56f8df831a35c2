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

from bisect import insort
from dataclasses import dataclass, field

from ..errors import UnimplementedError
from ..kernel import lowerings as L
from ..kernel import sym
from ..kernel.lower import MUST_STORE, Illegal, Lowering, emit_group, node_deps, ref_consumers
from ..program import Program

_UNKNOWN = object()

#: The most ops one kernel computes. A merge is checked by lowering the merged kernel, so a
#: kernel growing with the program (a chain of ops, the reductions of every step of an
#: unrolled loop) would cost lowerings quadratic in it, and LLVM's optimiser takes time
#: superlinear in a function's length (one loop of 1,000 chained ops: 0.4 s; of 5,000:
#: 10 s). Longer kernels are cut; 256 ops per element are compute-bound already.
MAX_KERNEL_OPS = 256

#: The most kernels a cheap producer is duplicated into when one of its consumers is itself
#: copied into several (copies of copies). Without it a chain of cheap ops read at every
#: step (an LSTM's cell state) is recomputed from its start in every kernel that reads a
#: step: kernels, compile and run time quadratic in the number of steps. A producer read
#: by many kernels computed once each (slices of one tensor) is still copied into all.
MAX_COPIES = 8


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


def fuse(program: Program, options=None, reduction_layout: str = "rows") -> FusionPlan:
    """Group the Program's compute nodes into kernels (see the module docstring).

    ``reduction_layout``: the lowering's layout of reductions over leading axes (see
    ``kernel.lower.lower``). With "columns" such a reduction is fused only with consumers of
    its rows: a kernel that also computes over the full space is lowered in the row layout,
    one strided sweep per kept element (batch norm's moments and normalisation in one kernel
    ran 6x slower on cpu than as a column reduction and a loop)."""
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
    return _Driver(program, lw, compute, reduction_layout).run()


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
    """The fusion driver. Its bookkeeping costs what a decision touches, not the program:
    ``owner`` maps each node to the groups computing it, a legality probe derives the
    probed group's stored outputs from its own nodes and their consumers (and is lowered
    once per distinct (nodes, stored outputs)), and sibling fusion asks a reachability
    closure of the groups kept up to date as groups merge.

    While producers are offered, a node changes groups only when it is offered itself, and
    by then its consumers have been: so the outputs a group must store do not change after
    it was probed except by the producers that join it. An elementwise producer joining a
    loop or row kernel, read there only and stored nowhere, leaves the kernel's stored
    outputs and so its loop nests as they were (the producer is computed inline from loads
    where it was loaded, and lowering refuses nothing for that): that merge needs no probe
    (``joins_without_probe``).
    """

    def __init__(self, program, lw, compute, reduction_layout="rows"):
        self.program = program
        self.reduction_layout = reduction_layout
        self.lw = lw
        self.compute = compute
        self.groups: list = [{n} for n in compute]  # index -> set of node ids (None: gone)
        self.owner: dict = {n: [gi] for gi, n in enumerate(compute)}  # node -> group indices
        self.consumers = ref_consumers(program)
        self.decisions: list = []
        self.fetches = {tuple(r) for r in program.fetches}
        self._probes: dict = {}  # (nodes, stored refs) -> None (legal) or why not
        self._gnames: dict = {}  # (group index, size) -> gname (groups only grow)
        self._first_reduction: dict = {}  # node id -> first reduction above it, or None
        # the stored refs of the groups that passed a probe while producers are offered
        self._probed_stored: dict = {}
        self._kinds = {gi: {L.op_kind(self.node(n))} for gi, n in enumerate(compute)}

    # -- helpers -------------------------------------------------------------------------
    def node(self, nid):
        return self.program.node(nid)

    def label(self, nid) -> str:
        n = self.node(nid)
        return f"{n.op} '{n.name}'"

    def gname(self, gi) -> str:
        """``{Op, Op, ...}``: the ops of group ``gi`` in program order (kept per group until
        the group changes: sibling fusion names each pair it decides on)."""
        key = (gi, len(self.groups[gi]))
        name = self._gnames.get(key)
        if name is None:
            nodes = sorted(self.groups[gi], key=self._pos)
            name = self._gnames[key] = "{" + ", ".join(self.node(n).op for n in nodes) + "}"
        return name

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
        """Indices of the groups computing node ``nid``, ascending."""
        return list(self.owner.get(nid, ()))

    def commit(self, trial: _Trial) -> None:
        """Make ``trial`` the grouping."""
        for gi, new in trial.changes.items():
            old = self.groups[gi] or set()
            new = new or set()
            for nid in old - new:
                self.owner[nid].remove(gi)
            added = new - old
            for nid in added:
                insort(self.owner.setdefault(nid, []), gi)
            self._kinds[gi] |= {L.op_kind(self.node(n)) for n in added}
            self.groups[gi] = new or None
            if gi in trial.stored:
                self._probed_stored[gi] = trial.stored[gi]
            else:
                self._probed_stored.pop(gi, None)

    def absorb(self, gis, own) -> None:
        """Commit the merge of the offered producer's group ``own`` (just that producer)
        into each group of ``gis`` in place: what ``joins_without_probe`` allows, at a cost
        independent of the size of the groups."""
        (p,) = self.groups[own]
        for gi in gis:
            self.groups[gi].add(p)
            self._kinds[gi] |= self._kinds[own]
        self.groups[own] = None
        self.owner[p] = sorted(gis)
        self._probed_stored.pop(own, None)

    def _scalar(self, nid) -> bool:
        return L.value_fn(self.node(nid)) is L.scalar_body

    def too_long(self, gis, extra=0) -> str | None:
        """Why the union of groups ``gis`` and ``extra`` more ops is refused as a kernel
        longer than MAX_KERNEL_OPS, else None."""
        n = sum(len(self.groups[gi]) for gi in gis) + extra
        if n <= MAX_KERNEL_OPS:
            return None
        return f"the kernel would compute {n} ops, more than the {MAX_KERNEL_OPS} one takes"

    def joins_without_probe(self, p, gi) -> bool:
        """Merging producer ``p`` (offered; its consumers all in ``gi``, or ``p`` copied into
        each of their groups) into ``gi`` is legal without a probe (see the class doc
        string): ``gi`` passed a probe, is a loop or row kernel (no GEMM), and ``p`` is an
        elementwise op stored nowhere."""
        node = self.node(p)
        return (
            gi in self._probed_stored
            and not self._kinds[gi] & {"gemm", "conv", "opaque", None}
            and self._scalar(p)
            and node.op not in MUST_STORE
            and not any((p, k) in self.fetches for k in range(len(node.outs)))
        )

    def _owners(self, trial: _Trial, nid) -> list:
        """Indices of the groups of ``trial`` that compute ``nid``, ascending."""
        changes = trial.changes
        out = [gi for gi in self.owner.get(nid, ()) if gi not in changes]
        out += [gi for gi, g in changes.items() if g and nid in g]
        return sorted(out)

    def compute_consumers(self, nid) -> list:
        out = []
        for k in range(len(self.node(nid).outs)):
            for c in self.consumers.get((nid, k), ()):
                if L.op_kind(self.node(c)) != "source" and c not in out:
                    out.append(c)
        return out

    def stored(self, trial: _Trial, target, nodes) -> list:
        """Outputs of group ``target`` of ``trial`` (``nodes``: its nodes in program order)
        that another kernel, a fetch or the runtime needs in memory: ``lower.stored_refs`` of
        the plan ``trial`` would make, found from the group's nodes and their consumers."""
        out = []
        for nid in nodes:
            node = self.node(nid)
            if L.op_kind(node) == "source" or min(self._owners(trial, nid)) != target:
                continue  # (a node duplicated into several groups is stored by the first)
            for k in range(len(node.outs)):
                ref = (nid, k)
                need = ref in self.fetches or node.op in MUST_STORE
                for c in self.consumers.get(ref, ()) if not need else ():
                    if any(nid not in trial[gj] for gj in self._owners(trial, c)):
                        need = True
                        break
                if need:
                    out.append(ref)
        return out

    def legal(self, trial: _Trial, gi_new) -> str | None:
        """None when the groups ``gi_new`` of ``trial`` each lower to one kernel, else the
        reason."""
        for target in gi_new:
            nodes = sorted(trial[target], key=self._pos)
            stored = self.stored(trial, target, nodes)
            trial.stored[target] = tuple(stored)
            key = (tuple(nodes), tuple(stored))
            why = self._probes.get(key, _UNKNOWN)
            if why is _UNKNOWN:
                why = None
                try:
                    emit_group(self.lw, "probe", [self.node(n) for n in nodes], stored, None)
                except (Illegal, UnimplementedError) as exc:
                    why = str(exc)
                self._probes[key] = why
            if why:
                return why
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
            if self.joins_without_probe(p, gi):
                self.absorb([gi], own)
                self.decisions.append((what, "fuse", self.fuse_reason(p, gi)))
                return
            trial = _Trial(self.groups, {gi: self.groups[gi] | self.groups[own], own: None})
            why = self.legal(trial, [gi])
            if why:
                self.decisions.append((what, "refuse", why))
                return
            self.commit(trial)
            self.decisions.append((what, "fuse", self.fuse_reason(p, gi)))
            return
        # several consumer kernels: duplicate a cheap producer into each of them
        why = self.duplication_refusal(p, cgroups)
        if why:
            self.decisions.append((what, "refuse", why))
            return
        fast = all(self.joins_without_probe(p, gi) for gi in cgroups)
        if not fast:
            changes = {gi: self.groups[gi] | {p} for gi in cgroups}
            changes[own] = None
            trial = _Trial(self.groups, changes)
            why = self.legal(trial, cgroups)
            if why:
                self.decisions.append((what, "refuse", why))
                return
        if len(cgroups) > MAX_COPIES and any(len(self.owner[c]) > 1 for c in consumers):
            # (after the probe: its reason comes first)
            self.decisions.append((what, "refuse", f"producer is read by {len(cgroups)} "
                                   f"kernels, through copies: stored once, not computed in "
                                   f"more than {MAX_COPIES}"))  # fmt: skip
            return
        if fast:
            self.absorb(cgroups, own)
        else:
            self.commit(trial)
        self.decisions.append(
            (what, "fuse", f"cheap producer duplicated into {len(cgroups)} consumer kernels")
        )

    # -- the policy ----------------------------------------------------------------------
    def policy(self, p, gi) -> str | None:
        """None to try the merge of producer ``p`` into group ``gi``, else why not."""
        node = self.node(p)
        kind = L.op_kind(node)
        kinds = self._kinds[gi]
        if "opaque" in kinds or None in kinds:
            return "the consumer needs a kernel of its own"
        readers = [c for c in self.compute_consumers(p) if c in self.groups[gi]]
        if any(L.op_kind(self.node(c)) == "gemm" for c in readers):
            return "GEMM operands are read from memory by the BLAS library"
        if kind == "gemm" and ("reduction" in kinds or "gemm" in kinds):
            return "a GEMM kernel takes only an elementwise epilogue"
        if kind == "reduction" and "gemm" in kinds:
            return "a GEMM kernel takes only an elementwise epilogue"
        if kind == "reduction" and self.reduction_layout == "columns":
            why = self.column_refusal(p, gi)
            if why:
                return why
        if L.is_expensive(node) and "reduction" not in kinds and self.replicates(p, readers):
            # (in a row kernel a row-shaped value is computed once per row: no replication)
            return (f"{node.op} is expensive and its consumer reads each element several "
                    "times (broadcast): computed once in its own kernel instead")  # fmt: skip
        return self.too_long([gi], 1)

    def column_refusal(self, p, gi) -> str | None:
        """Why reduction ``p`` over leading axes (its row: the kept trailing axes) stays out of
        group ``gi``, which computes over more than its row; None when it may join."""
        node = self.node(p)
        spec = L.REDUCTIONS[node.op](node, self.lw.shapes) if node.op in L.REDUCTIONS else None
        if spec is None:
            return None
        space, axes = self.lw.shapes[spec.ref], sorted(spec.axes)
        if not axes or axes[-1] == len(space) - 1:
            return None  # the reduced axis is innermost: the row layout is unit-stride
        row = _strip(self.lw.shapes[(p, 0)])
        shapes = self.lw.shapes.shapes
        if all(_strip(shapes.get((n, 0), row)) == row for n in self.groups[gi]):
            return None  # an epilogue over its rows: the column kernel computes it
        return ("a reduction over leading axes is fused only with consumers of its rows: "
                f"{self.gname(gi)} computes over more than the row, and the kernel would "
                "sweep the reduced axes once per row element with a stride")  # fmt: skip

    def downstream_of_row(self, p) -> bool:
        """``p`` is an elementwise function of a reduction's row (it will live in a row
        kernel, computed once per row): the first reduction a depth-first walk up its
        elementwise inputs meets (last input first) has its shape."""
        if L.op_kind(self.node(p)) not in ("elementwise", "reduction"):
            return False
        red = None
        for src, _ in reversed(self.node(p).inputs):
            red = self.first_reduction(src)
            if red is not None:
                break
        if red is None:
            return False
        return _strip(self.lw.shapes[(red, 0)]) == _strip(self.lw.shapes[(p, 0)])

    def first_reduction(self, nid):
        """The first reduction met walking up from ``nid`` through elementwise ops, depth
        first, last input first (``nid`` itself when it is one); None if none. Memoised for
        the whole program and computed with an explicit stack: chains of elementwise ops run
        through every step of an unrolled loop."""
        memo = self._first_reduction
        stack = [nid]
        while stack:
            n = stack[-1]
            if n in memo:
                stack.pop()
                continue
            node = self.node(n)
            kind = L.op_kind(node)
            if kind == "reduction":
                memo[n] = n
            elif kind != "elementwise":
                memo[n] = None
            else:
                pending = [src for src, _ in node.inputs if src not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                memo[n] = next((memo[src] for src, _ in reversed(node.inputs)
                                if memo[src] is not None), None)  # fmt: skip
            stack.pop()
        return memo[nid]

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
        for gi in cgroups:
            too_long = self.too_long([gi], 1)
            if too_long:
                return too_long
        return None

    def fuse_reason(self, p, gi) -> str:
        node = self.node(p)
        kind = L.op_kind(node)
        kinds = self._kinds[gi]
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
        """Merge independent groups that read a common input: pairs (a, b), a < b, in order;
        after each merge the scan starts again from the first pair (so refusals before it
        are reported again, as they were decided again). Only pairs sharing an input are
        looked at (an index from each input to its readers); whether one depends on the
        other is a bit of a reachability closure of the groups, contracted at each merge."""
        # merges below move nodes offered long ago: stored outputs may change
        self._probed_stored.clear()
        live = [gi for gi, g in enumerate(self.groups) if g]
        reads = {gi: self.external_inputs(gi) for gi in live}
        readers: dict = {}
        for gi in live:
            for ref in reads[gi]:
                readers.setdefault(ref, []).append(gi)
        kinds_ok = {gi: self._sibling_kind_ok(gi) for gi in live}
        reach = self.reach_closure(live)
        while True:
            merged = None
            for a in live:
                if not kinds_ok[a]:
                    continue
                for b in sorted({b for ref in reads[a] for b in readers[ref] if b > a}):
                    if not kinds_ok[b] or (reach[b] >> a) & 1 or (reach[a] >> b) & 1:
                        continue
                    what = f"siblings {self.gname(a)} + {self.gname(b)}"
                    trial = _Trial(self.groups, {a: self.groups[a] | self.groups[b], b: None})
                    why = self.too_long([a, b]) or self.legal(trial, [a])
                    if why:
                        self.decisions.append((what, "refuse", why))
                        continue
                    src = self.label(sorted(reads[a] & reads[b])[0][0])
                    self.decisions.append((what, "fuse", f"both read {src}: one pass over it"))
                    self.commit(trial)
                    merged = (a, b)
                    break
                if merged:
                    break
            if merged is None:
                return
            a, b = merged
            live.remove(b)
            for ref in reads.pop(b) | reads[a]:
                readers[ref] = [gi for gi in readers[ref] if gi not in (a, b)]
            reads[a] = self.external_inputs(a)
            for ref in reads[a]:
                insort(readers.setdefault(ref, []), a)
            kinds_ok[a] = self._sibling_kind_ok(a)
            _contract(reach, live, a, b)

    def _sibling_kind_ok(self, gi) -> bool:
        return not self._kinds[gi] & {"gemm", "conv", "opaque", None}

    def external_inputs(self, gi) -> set:
        g = self.groups[gi]
        out = set()
        for nid in g:
            for ref in self.node(nid).inputs:
                src = self.node(ref[0])
                if ref[0] not in g and not (src.op == "Const" and src.attrs["value"].size == 1):
                    out.add(tuple(ref))
        return out

    def reach_closure(self, live) -> dict:
        """group -> bitset of the groups it depends on, transitively through any kernel.

        Group ``g`` depends on every group computing a node that a node of ``g`` depends on
        (``lower.node_deps``), a node duplicated into several groups on all of them. The
        graph may have cycles (through duplicated nodes): its strongly connected components
        (Tarjan, an explicit stack) are closed in reverse topological order.
        """
        deps = self.__dict__.get("_deps")
        if deps is None:
            deps = self.__dict__["_deps"] = node_deps(self.program)
        succ = {}
        for gi in live:
            out = set()
            for nid in self.groups[gi]:
                for src in deps[nid]:
                    out.update(self.owner.get(src, ()))
            succ[gi] = sorted(out)
        return _closure(live, succ)


#: index ops that compute each input element at most once, with no masked (discarded) read:
#: an expensive producer fused into them is not recomputed (Concat/Pad/gathers evaluate
#: clamped reads that a SELECT discards, Tile/broadcasts read elements repeatedly)
_READS_EACH_ONCE = (
    "Reshape", "ReshapeLike", "ExpandDims", "Squeeze", "Transpose", "StridedSlice", "ReverseV2",
    "SplitV", "SplitLike", "Unpack", "TileGrad",
)  # fmt: skip


def _closure(nodes, succ) -> dict:
    """node -> bitset (an int) of the nodes reachable from it by one or more ``succ`` edges."""
    index: dict = {}
    low: dict = {}
    on_stack: set = set()
    stack: list = []
    reach: dict = {}
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            edges = succ[v]
            while i < len(edges):
                w = edges[i]
                i += 1
                if w not in index:
                    work.append((v, i))
                    work.append((w, 0))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                if low[v] == index[v]:  # v roots a component: close it
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    members = set(comp)
                    bits = 0
                    for u in comp:
                        for w in succ[u]:
                            if w not in members:
                                bits |= (1 << w) | reach[w]
                    if len(comp) > 1 or v in succ[v]:
                        for u in comp:
                            bits |= 1 << u
                    for u in comp:
                        reach[u] = bits
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
                continue
    return reach


def _contract(reach: dict, live, a, b) -> None:
    """Update the closure ``reach`` after group ``b`` merged into group ``a``: a group that
    reached either now reaches all that either reached (the edges of the merged group are
    the union of both groups' edges); bit ``b`` becomes bit ``a``."""
    both = (1 << a) | (1 << b)
    merged = reach[a] | reach[b]

    def rename(bits):
        return (bits & ~(1 << b)) | (1 << a) if (bits >> b) & 1 else bits

    merged = rename(merged)
    for x in live:
        if x != a and reach[x] & both:
            reach[x] = rename(reach[x] | merged)
    reach[a] = merged
    reach.pop(b, None)


def _strip(shape):
    shape = list(shape)
    while shape and sym.const_value(shape[0]) == 1:
        shape.pop(0)
    return tuple(shape)
