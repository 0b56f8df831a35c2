"""XLA-style operator fusion: a generic driver plus a policy that returns (decision, reason).

The driver walks the Program from its outputs back to its inputs and offers each producer
to the kernel(s) of its consumers:

* loop fusion: elementwise ops and broadcasts/reshapes/transposes join their consumers;
* input fusion: elementwise producers join the reduction that reads them, and reductions
  join their elementwise consumers as a row kernel (reduce, then elementwise over the row):
  softmax and layer norm become one kernel each;
* epilogue fusion: bias adds and activations after a MatMul join its GEMM kernel, also
  when other kernels read the product (a GELU's gradient reads its input): it is then
  stored for them, unless one of them feeds the epilogue (a cycle of kernels);
* a cheap producer read by several kernels is duplicated into each of them; an expensive
  one (transcendental, random, reduction, GEMM) is not, and the refusal says why;
* multi-output (sibling) fusion then merges independent kernels that read the same input.

Every candidate is checked by lowering it (``kernel.lower.emit_group``): a merge is legal
exactly when the merged group is one kernel. ``CompileOptions(fusion=False)`` keeps one
kernel per op: the unfused baseline.

This module is the driver (offering producers, the legality probe, bookkeeping);
``fusion_policy.py`` decides which merges to try and says why not, ``fusion_siblings.py``
merges sibling kernels, and ``fusion_plan.py`` holds the resulting ``FusionPlan``.
"""

from __future__ import annotations

from bisect import insort

from ..errors import UnimplementedError
from ..kernel import lowerings as L
from ..kernel.lower import Illegal, Lowering, emit_group, ref_consumers
from ..program import Program, node_signature
from .fusion_legality import UNDECIDED, legality
from .fusion_plan import FusionPlan, _finish, _Trial
from .fusion_policy import FusionPolicy
from .fusion_siblings import SiblingFusion

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

#: The most nodes ``feeds_back`` looks at before it gives up and refuses a merge (a GEMM
#: read by several kernels merged into one of them as its epilogue: the kernels reachable
#: from the others must not include that one).
FEEDS_BACK_BUDGET = 4096


def fuse(program: Program, options=None, reduction_layout: str = "rows", shapes=None) -> FusionPlan:
    """Group the Program's compute nodes into kernels (see the module docstring).

    ``reduction_layout``: the lowering's layout of reductions over leading axes (see
    ``kernel.lower.lower``). With "columns" such a reduction is fused only with consumers of
    its rows: a kernel that also computes over the full space is lowered in the row layout,
    one strided sweep per kept element (batch norm's moments and normalisation in one kernel
    ran 6x slower on cpu than as a column reduction and a loop). ``shapes``: the program's
    SymShapes, if already built (the pipeline builds them once for fusion and lowering)."""
    fusion = True if options is None else getattr(options, "fusion", True)
    compute = [n.id for n in program.nodes if L.op_kind(n) != "source"]
    try:
        lw = Lowering(program, None, shapes=shapes)
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
    verify = bool(getattr(options, "verify", False))
    return _Driver(program, lw, compute, reduction_layout, verify).run()


class _Driver(FusionPolicy, SiblingFusion):
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

    def __init__(self, program, lw, compute, reduction_layout="rows", verify=False):
        self.program = program
        self.verify = verify  # check every decision of the facts against a lowering
        self.reduction_layout = reduction_layout
        self.lw = lw
        self.compute = compute
        self.groups: list = [{n} for n in compute]  # index -> set of node ids (None: gone)
        self.owner: dict = {n: [gi] for gi, n in enumerate(compute)}  # node -> group indices
        self.consumers = ref_consumers(program)
        self.decisions: list = []
        self.fetches = {tuple(r) for r in program.fetches}
        self._probes: dict = {}  # _probe_key(nodes, stored refs) -> None (legal) or why not
        self._sigs: dict = {}  # node id -> node_signature
        self._refs: dict = {}  # ref read from outside a group -> its key (_outside)
        self._gnames: dict = {}  # (group index, size) -> gname (groups only grow)
        self._first_reduction: dict = {}  # node id -> first reduction above it, or None
        # the stored refs of the groups that passed a probe while producers are offered
        self._probed_stored: dict = {}
        self._nkind: dict = {}  # node id -> lowering kind (``kind``)
        self._ccons: dict = {}  # node id -> its consumers that are not sources
        self._kinds = {gi: {self.kind(n)} for gi, n in enumerate(compute)}

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
            name = self._gnames[key] = self.gname_of(sorted(self.groups[gi], key=self._pos))
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
            self._kinds[gi] |= {self.kind(n) for n in added}
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
            and not node.op_def.must_store
            and not any((p, k) in self.fetches for k in range(len(node.outs)))
        )

    def _owners(self, trial: _Trial, nid) -> list:
        """Indices of the groups of ``trial`` that compute ``nid`` (in no order)."""
        changes = trial.changes
        base = self.owner.get(nid, ())
        out = [gi for gi in base if gi not in changes] if changes else list(base)
        for gi, g in changes.items():
            if g and nid in g:
                out.append(gi)
        return out

    def kind(self, nid) -> str | None:
        """``lowerings.op_kind`` of node ``nid`` (asked for every node of every candidate)."""
        k = self._nkind.get(nid, _UNKNOWN)
        if k is _UNKNOWN:
            k = self._nkind[nid] = L.op_kind(self.node(nid))
        return k

    def compute_consumers(self, nid) -> list:
        out = self._ccons.get(nid)
        if out is None:
            out = []
            for k in range(len(self.node(nid).outs)):
                for c in self.consumers.get((nid, k), ()):
                    if self.kind(c) != "source" and c not in out:
                        out.append(c)
            self._ccons[nid] = out
        return list(out)

    def stored(self, trial: _Trial, target, nodes) -> list:
        """Outputs of group ``target`` of ``trial`` (``nodes``: its nodes in program order)
        that another kernel, a fetch or the runtime needs in memory: ``lower.stored_refs`` of
        the plan ``trial`` would make, found from the group's nodes and their consumers."""
        out = []
        members = trial[target]
        owner = self.owner
        changes = trial.changes
        for nid in nodes:
            node = self.node(nid)
            if self.kind(nid) == "source" or min(self._owners(trial, nid)) != target:
                continue  # (a node duplicated into several groups is stored by the first)
            for k in range(len(node.outs)):
                ref = (nid, k)
                need = ref in self.fetches or node.op_def.must_store
                for c in self.consumers.get(ref, ()) if not need else ():
                    base = owner.get(c, ())
                    if c in members and len(base) == 1 and (base[0] == target or not changes):
                        continue  # computed in this group only: read where it is made
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
            why = legality(self.lw, [self.node(n) for n in nodes], stored)
            if why is UNDECIDED or self.verify:
                probed = self._probe(nodes, stored)
                if why is not UNDECIDED and (why is None) != (probed is None):
                    raise AssertionError(
                        f"fusion legality facts and lowering disagree on "
                        f"{self.gname_of(nodes)}: facts {why!r}, lowering {probed!r}"
                    )
                why = probed
            if why:
                return why
        return None

    def _probe(self, nodes, stored) -> str | None:
        """Lower the group (``emit_group``, memoised by ``_probe_key``): None when it is one
        kernel, else why not. For what the facts leave undecided, and for verification."""
        key = self._probe_key(nodes, stored)
        why = self._probes.get(key, _UNKNOWN)
        if why is _UNKNOWN:
            why = None
            try:
                emit_group(self.lw, "probe", [self.node(n) for n in nodes], stored, None)
            except (Illegal, UnimplementedError) as exc:
                why = str(exc)
            self._probes[key] = why
        return why

    def gname_of(self, nodes) -> str:
        """``{Op, Op, ...}``: the ops of ``nodes`` (node ids, in program order)."""
        return "{" + ", ".join(self.node(n).op for n in nodes) + "}"

    def _probe_key(self, nodes, stored) -> tuple:
        """The probe's memo key: the group up to node ids. Each node by what it computes
        (``node_signature``) and where its inputs come from (a node of the group by its
        position, any other tensor by ``_outside``), plus which outputs are stored. The
        lowering of a group depends on nothing else, so the steps of an unrolled loop and
        the layers of a deep network are probed once per distinct shape of group. Outputs
        of an op with ``interchangeable_outputs`` (unstack) are numbered by first use in
        the group: step t of an unrolled loop reads output t. Variables (an op's ``var``
        attribute) are numbered by first use too: the optimizer updates of two parameters of
        one shape are the same kernel on other storage."""
        local = {nid: i for i, nid in enumerate(nodes)}
        variables: dict = {}  # variable name -> number by first use in the group

        def var(attrs):
            v = attrs.get("var")
            return None if v is None else variables.setdefault(v, len(variables))

        renumber: dict = {}  # (node, output) -> output number by first use in the group
        for nid in nodes:
            if self.node(nid).op_def.interchangeable_outputs:
                renumber[nid] = {}

        def inside(src, k):
            outs = renumber.get(src)
            return (local[src], k if outs is None else outs.setdefault(k, len(outs)))

        desc = []
        for nid in nodes:
            n = self.node(nid)
            sig = self._sigs.get(nid)
            if sig is None:
                sig = self._sigs[nid] = node_signature(n, skip=("var",))
            ins = tuple(
                inside(src, k)
                if src in local
                else self._outside(src, k) + (var(self.node(src).attrs),)
                for src, k in n.inputs
            )
            desc.append((sig, var(n.attrs), ins))
        return tuple(desc), tuple(inside(src, k) for src, k in stored)

    def _outside(self, src, k) -> tuple:
        """Key of tensor ``(src, k)`` read by a group it is not computed in: a source (feed,
        variable, constant) by its node signature (its value or variable), another kernel's
        output by its dtype, symbolic shape and whether it is fetched."""
        ref = (src, k)
        key = self._refs.get(ref)
        if key is None:
            n = self.node(src)
            if L.op_kind(n) == "source":
                sig = node_signature(n, skip=("var",))  # the variable: numbered per group
                key = ("source", sig, k, tuple(self.lw.shapes[ref]))
            else:
                spec = n.outs[k]
                key = ("tensor", spec.dtype.name, tuple(self.lw.shapes[ref]), ref in self.fetches)
            self._refs[ref] = key
        return key

    # -- the driver ------------------------------------------------------------------------
    def epilogue_for_one(self, p, cgroups, own, what) -> bool:
        """Merge GEMM ``p``, read by the kernels ``cgroups``, into the first of them (in
        group order) that the policy and the lowering take as its epilogue and that no
        other of them reaches (``feeds_back``), its product stored for the others (a GELU
        after a GEMM in a train step: the GELU's gradient reads the pre-activation); whether
        it did."""
        for gi in cgroups:
            if self.policy(p, gi) or self.feeds_back(p, gi):
                continue
            trial = _Trial(self.groups, {gi: self.groups[gi] | self.groups[own], own: None})
            if self.legal(trial, [gi]):
                continue
            self.commit(trial)
            others = len(cgroups) - 1
            self.decisions.append((what, "fuse", f"elementwise epilogue fused after the GEMM, "
                                   f"its product stored for {others} other kernel"
                                   f"{'s' if others > 1 else ''}"))  # fmt: skip
            return True
        return False

    def feeds_back(self, p, gi) -> bool:
        """Whether another kernel reading ``p`` reaches group ``gi``: merging ``p`` into
        ``gi`` would then make a cycle of kernels. A walk over kernels from those readers (a
        kernel reached through one node goes on from all of its nodes: one that computes a
        node reading ``p`` and another that ``gi`` reads is a cycle even where no data path
        joins them); past FEEDS_BACK_BUDGET nodes it answers yes (the merge is refused), so
        a GEMM early in a long program costs a bounded walk, not the rest of the program."""
        todo, seen = [], {gi}
        for k in range(len(self.node(p).outs)):
            for c in self.consumers.get((p, k), ()):
                for g in self.owner.get(c, ()):
                    if g not in seen and p not in self.groups[g]:
                        seen.add(g)
                        todo.append(g)
        budget = FEEDS_BACK_BUDGET
        while todo:
            members = self.groups[todo.pop()]
            budget -= len(members)
            if budget < 0:
                return True
            for n in members:
                for k in range(len(self.node(n).outs)):
                    for c in self.consumers.get((n, k), ()):
                        # (a copy of c in another kernel reads n from here too)
                        for g in self.owner.get(c, ()):
                            if n in self.groups[g]:
                                continue  # g computes n itself: no edge from here
                            if g == gi:
                                return True
                            if g not in seen:
                                seen.add(g)
                                todo.append(g)
        return False

    def run(self) -> FusionPlan:
        for p in reversed(self.compute):
            self.offer(p)
        self.siblings()
        live = [g for g in self.groups if g]
        return _finish(self.program, live, self.decisions, self.lw.shapes)

    def offer(self, p):
        kind = self.kind(p)
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
            if kind == "gemm" and self.epilogue_for_one(p, cgroups, own, what):
                return
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
