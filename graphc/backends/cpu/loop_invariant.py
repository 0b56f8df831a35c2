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

A product ``a @ b^T`` (``MatMul`` with ``transpose_b``) whose ``b`` is invariant reads
``transpose(b)`` instead, a transpose the prologue computes once: the per-step product then
has B in row-major ``[K, N]`` layout, which graphc's own GEMM streams without packing
(``backends/llvm/nativegemm.py``; W11's gradient step ``dgates @ W_h^T``).
"""

from __future__ import annotations

from dataclasses import replace

from ...graph.core import TensorSpec
from ...passes.dce import dce
from ...program import Node


def _static(spec) -> bool:
    return spec.shape is not None and all(isinstance(d, int) for d in spec.shape)


def _is_invariant(n, first_cap: int, invariant: set) -> bool:
    source = n.op_def.source
    if source == "feed":
        return n.attrs["index"] >= first_cap
    if source == "const":
        return True
    return (not n.op_def.stateful and not n.control and bool(n.inputs)
            and all(src in invariant for src, _ in n.inputs))  # fmt: skip


def _transpose_invariant_b(body, first_cap: int):
    """``body`` where each rank-2 ``MatMul`` with ``transpose_b`` and an invariant, static
    ``b`` reads a new ``Transpose`` of ``b`` (invariant too, so hoisted) without
    ``transpose_b``."""
    invariant: set = set()
    spec_of = {}
    next_id = max((n.id for n in body.nodes), default=0) + 1
    nodes = []
    changed = False
    for n in body.nodes:
        spec_of[n.id] = n.outs
        if n.op_def.matrix_product and n.attrs.get("transpose_b") and n.id not in invariant:
            src = tuple(n.inputs[1])
            spec = spec_of[src[0]][src[1]]
            a_spec = spec_of[n.inputs[0][0]][n.inputs[0][1]]
            if (src[0] in invariant and _static(spec) and len(spec.shape) == 2
                    and a_spec.shape is not None and len(a_spec.shape) == 2):  # fmt: skip
                t_spec = TensorSpec((spec.shape[1], spec.shape[0]), spec.dtype)
                t = Node(next_id, "Transpose", (src,), (t_spec,), {"perm": (1, 0)}, (),
                         f"{n.name}/transpose_b", n.location)  # fmt: skip
                next_id += 1
                nodes.append(t)
                spec_of[t.id] = t.outs
                invariant.add(t.id)
                attrs = dict(n.attrs, transpose_b=False)
                n = replace(n, inputs=(tuple(n.inputs[0]), (t.id, 0)), attrs=attrs)
                changed = True
        if _is_invariant(n, first_cap, invariant):
            invariant.add(n.id)
        nodes.append(n)
    return replace(body, nodes=tuple(nodes)) if changed else body


def hoist(body, first_cap: int, n_inputs: int):
    """``(prologue, body)`` with the invariant work of ``body`` in ``prologue`` (reading the
    op's inputs by their indexes, fetching the values the new body reads as inputs
    ``n_inputs``, ``n_inputs + 1``, ...), or None when nothing moves."""
    body = _transpose_invariant_b(body, first_cap)
    invariant: set = set()
    computed: set = set()
    for n in body.nodes:
        if _is_invariant(n, first_cap, invariant):
            invariant.add(n.id)
            if n.op_def.source not in ("feed", "const"):
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
