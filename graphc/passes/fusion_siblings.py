"""Multi-output (sibling) fusion: independent kernels that read a common input are merged
into one pass over it, when neither depends on the other (a reachability closure of the
groups, contracted at each merge) and the merged kernel is legal."""

from __future__ import annotations

from bisect import insort

from ..kernel.lower import node_deps
from .fusion_plan import _Trial


class SiblingFusion:
    """The sibling-fusion half of the fusion driver."""

    def siblings(self):
        """Merge independent groups that read a common input: pairs (a, b), a < b, in order;
        after each merge the scan starts again from the first pair, skipping the pairs
        refused before whose groups have not changed since (each refusal is decided and
        reported once: without that, an unrolled loop's steps, whose kernels share a weight,
        were refused again after every merge, quadratic in the steps). Only pairs sharing
        an input are looked at (an index from each input to its readers); whether one
        depends on the other is a bit of a reachability closure of the groups, contracted at
        each merge."""
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
        exact = self.reach_closure(live, copies=False)
        refused: set = set()  # pairs refused, until one of the two groups changes
        while True:
            merged = None
            for a in live:
                if not kinds_ok[a]:
                    continue
                for b in sorted({b for ref in reads[a] for b in readers[ref] if b > a}):
                    # two loop kernels by the lowering's own edges; with a reduction, also
                    # through copies (merging W10's batch norm statistics with their
                    # updates, which only copies kept apart, made its step 10-20% slower)
                    loops = "reduction" not in self._kinds[a] | self._kinds[b]
                    r = exact if loops else reach
                    if not kinds_ok[b] or (r[b] >> a) & 1 or (r[a] >> b) & 1:
                        continue
                    if (a, b) in refused:
                        continue
                    what = f"siblings {self.gname(a)} + {self.gname(b)}"
                    trial = _Trial(self.groups, {a: self.groups[a] | self.groups[b], b: None})
                    why = (
                        self.too_long([a, b])
                        or self.too_many_reductions([a, b])
                        or self.legal(trial, [a])
                    )
                    if why:
                        self.decisions.append((what, "refuse", why))
                        refused.add((a, b))
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
            refused = {pair for pair in refused if a not in pair and b not in pair}
            live.remove(b)
            for ref in reads.pop(b) | reads[a]:
                readers[ref] = [gi for gi in readers[ref] if gi not in (a, b)]
            reads[a] = self.external_inputs(a)
            for ref in reads[a]:
                insort(readers.setdefault(ref, []), a)
            kinds_ok[a] = self._sibling_kind_ok(a)
            _contract(reach, live, a, b)
            _contract(exact, live, a, b)

    def _sibling_kind_ok(self, gi) -> bool:
        return not self._kinds[gi] & {"gemm", "conv", "opaque", None}

    def external_inputs(self, gi) -> set:
        """The values group ``gi`` reads from outside it that make sharing a pass worth it:
        one-element values (a scalar constant, a learning rate, a step count) are left out,
        as XLA's multi-output fusion leaves out scalar operands: two kernels reading the
        same scalar save nothing by running as one, and merging every Adam update of a model
        through its shared learning rate made one kernel of every parameter's update (one
        large function for LLVM instead of a few identical small ones it compiles once)."""
        g = self.groups[gi]
        out = set()
        for nid in g:
            for ref in self.node(nid).inputs:
                if ref[0] not in g and not self._one_element(tuple(ref)):
                    out.add(tuple(ref))
        return out

    def _one_element(self, ref) -> bool:
        src = self.node(ref[0])
        if src.op_def.source == "const" and src.attrs["value"].size == 1:
            return True
        shape = self.lw.shapes.shapes.get(ref) if self.lw is not None else None
        return shape is not None and all(d == 1 for d in shape)

    def reach_closure(self, live, copies: bool = True) -> dict:
        """group -> bitset of the groups it depends on, transitively through any kernel.

        Group ``g`` depends on every group computing a node that a node of ``g`` depends on
        (``lower.node_deps``), a node duplicated into several groups on all of them. With
        ``copies`` also on the groups computing copies of a node ``g`` computes itself (no
        data flows there: an over-approximation); without, exactly the edges the lowering
        orders kernels by (``lower.ordered_groups``), where an LSTM gradient step's four
        gates, each computed from its copy of the gates' split, are independent. The graph
        may have cycles (through duplicated nodes): its strongly connected components
        (Tarjan, an explicit stack) are closed in reverse topological order.
        """
        deps = self.__dict__.get("_deps")
        if deps is None:
            deps = self.__dict__["_deps"] = node_deps(self.program)
        succ = {}
        for gi in live:
            out = set()
            members = self.groups[gi]
            for nid in members:
                for src in deps[nid]:
                    if copies or src not in members:
                        out.update(self.owner.get(src, ()))
            if not copies:
                out.discard(gi)
            succ[gi] = sorted(out)
        return _closure(live, succ)


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
