"""Dead-code elimination: drop the nodes no fetch, target or side effect needs.

Live roots: the fetched nodes, the targets, every ``Feed`` (the feed list names them) and
every stateful node with a side effect (assignments, random draws that advance their run
counter, check_numerics, and any stateful op this pass does not know to be a pure read).
Liveness flows back along data edges, and along control edges to nodes kept anyway.

A control edge to a *pure* node that is otherwise dead does not keep it alive (running a pure
node has no effect): the edge is forwarded to what that node itself waited for, so the order
of side effects is preserved exactly.
"""

from __future__ import annotations

from dataclasses import replace

from ..program import Program


def _is_root(n, targets) -> bool:
    if n.id in targets or n.op_def.source == "feed":
        return True
    return n.op_def.stateful and not n.op_def.reads_state_only


def dce(program: Program) -> Program:
    """Remove dead nodes (see the module doc string)."""
    targets = set(program.targets)
    live = {i for i, _ in program.fetches}
    live.update(n.id for n in program.nodes if _is_root(n, targets))
    for n in reversed(program.nodes):
        if n.id in live:
            live.update(i for i, _ in n.inputs)
    if len(live) == len(program.nodes):
        return program

    by_id = {n.id: n for n in program.nodes}
    position = {n.id: k for k, n in enumerate(program.nodes)}
    frontier_memo: dict = {}

    def frontier(node_id) -> tuple:
        """The live nodes a dead node ``node_id`` (transitively) waited for."""
        if node_id in live:
            return (node_id,)
        if node_id not in frontier_memo:
            frontier_memo[node_id] = ()  # guards against (impossible) cycles
            dead = by_id[node_id]
            found: set = set()
            for dep in [i for i, _ in dead.inputs] + list(dead.control):
                found.update(frontier(dep))
            frontier_memo[node_id] = tuple(sorted(found, key=position.__getitem__))
        return frontier_memo[node_id]

    nodes = []
    for n in program.nodes:
        if n.id not in live:
            continue
        if any(c not in live for c in n.control):
            control: list = []
            for c in n.control:
                for d in frontier(c):
                    if d not in control and d != n.id:
                        control.append(d)
            n = _with_control(n, tuple(control))
        nodes.append(n)
    return program.with_nodes(nodes)


def _with_control(n, control):
    return replace(n, control=control)
