"""Loop-invariant work of a ``While`` body, computed once per run of the loop on cpu.

A node of the body whose inputs are all captured tensors (the op's inputs after the loop
variables and sliced inputs), constants or such nodes computes the same value at every
iteration. ``hoist`` splits the body into a *prologue* (those nodes, fetching the ones the
rest of the body reads) and the body reading them as extra inputs after the op's own, so
``ControlStep`` runs the prologue once before the first iteration and hands its values to
every iteration. Example: a loop gradient whose input gradient nobody reads multiplies by a
slice of the captured weight (``passes/narrow.py``); the slice is copied once per run, not
once per step. Only pure nodes with fully static output shapes move (the body's run-time
sizes, ``body_dims.py``, concern the op's own inputs only).
"""

from __future__ import annotations

from dataclasses import replace

from ...passes.dce import dce
from ...program import Node


def _static(spec) -> bool:
    return spec.shape is not None and all(isinstance(d, int) for d in spec.shape)


def hoist(body, first_cap: int, n_inputs: int):
    """``(prologue, body)`` with the invariant work of ``body`` in ``prologue`` (reading the
    op's inputs by their indexes, fetching the values the new body reads as inputs
    ``n_inputs``, ``n_inputs + 1``, ...), or None when nothing moves."""
    invariant: set = set()
    computed: set = set()
    for n in body.nodes:
        source = n.op_def.source
        if source == "feed":
            if n.attrs["index"] >= first_cap:
                invariant.add(n.id)
        elif source == "const":
            invariant.add(n.id)
        elif (not n.op_def.stateful and not n.control and n.inputs
              and all(src in invariant for src, _ in n.inputs)):  # fmt: skip
            invariant.add(n.id)
            computed.add(n.id)
    if not computed:
        return None
    spec_of = {n.id: n.outs for n in body.nodes}
    frontier: list = []
    for n in body.nodes:
        if n.id not in invariant:
            frontier.extend(tuple(r) for r in n.inputs if r[0] in computed)
    frontier.extend(tuple(r) for r in body.fetches if r[0] in computed)
    frontier = [r for r in dict.fromkeys(frontier) if _static(spec_of[r[0]][r[1]])]
    if not frontier:
        return None
    pro_nodes = [n for n in body.nodes if n.id in invariant]
    pro_ids = {n.id for n in pro_nodes}
    prologue = dce(
        replace(
            body,
            nodes=tuple(pro_nodes),
            fetches=tuple(frontier),
            targets=(),
            feeds=tuple(f for f in body.feeds if f[0] in pro_ids),
        )  # fmt: skip
    )
    next_id = max(n.id for n in body.nodes) + 1
    new_ref: dict = {}
    feeds_nodes = []
    for j, ref in enumerate(frontier):
        spec = spec_of[ref[0]][ref[1]]
        index = n_inputs + j
        attrs = {"index": index, "shape": tuple(spec.shape), "dtype": spec.dtype,
                 "tensor": f"in{index}"}  # fmt: skip
        first = body.node(ref[0])
        feeds_nodes.append(Node(next_id + j, "Feed", (), (spec,), attrs, (), f"in{index}",
                                first.location))  # fmt: skip
        new_ref[ref] = (next_id + j, 0)
    nodes = list(feeds_nodes)
    for n in body.nodes:
        inputs = tuple(new_ref.get(tuple(r), tuple(r)) for r in n.inputs)
        nodes.append(
            n if inputs == tuple(tuple(r) for r in n.inputs) else replace(n, inputs=inputs)
        )
    fetches = tuple(new_ref.get(tuple(r), tuple(r)) for r in body.fetches)
    feeds = tuple(body.feeds) + tuple((f.id, f"invariant/{f.attrs['index']}:0")
                                      for f in feeds_nodes)  # fmt: skip
    return prologue, dce(replace(body, nodes=tuple(nodes), fetches=fetches, feeds=feeds))
