"""Common-subexpression elimination: one node per distinct pure computation.

Two nodes merge when they have the same op, the same inputs (in any order for commutative
ops), the same control inputs, the same declared outputs and equal attributes, compared
canonically (numpy arrays by dtype, shape and content; ``1``, ``1.0`` and ``True`` differ;
``-0.0`` and ``0.0`` differ; NaN equals NaN). Stateful ops (variables, assignments, random
numbers, feeds) never merge: two reads or draws are two events. Targets are kept as they are.
The later node's uses, fetches and control edges move to the earlier one.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..program import Node, Program


def canonical(value):
    """A hashable key for an attribute value; equal keys mean interchangeable values."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return ("ndarray", arr.dtype.str, arr.shape, arr.tobytes())
    if isinstance(value, np.generic):
        return ("np", value.dtype.str, value.tobytes())
    if isinstance(value, _dt.DType):
        return ("dtype", value.name)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, bool | int | str | bytes) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, list | tuple):
        return (type(value).__name__,) + tuple(canonical(v) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple((k, canonical(value[k])) for k in sorted(value))
    if isinstance(value, frozenset | set):
        return ("set",) + tuple(sorted(repr(canonical(v)) for v in value))
    return ("repr", type(value).__name__, repr(value))


def node_key(n: Node) -> tuple:
    """What identifies the value(s) ``n`` computes, given its inputs' identities."""
    inputs = tuple(n.inputs)
    if n.op_def.commutative and len(inputs) == 2:
        inputs = tuple(sorted(inputs))
    return (n.op, inputs, tuple(sorted(n.control)), canonical(n.attrs), n.outs)


def cse(program: Program) -> Program:
    """Merge equivalent pure nodes (see the module doc string)."""
    targets = set(program.targets)
    seen: dict = {}
    replaced: dict = {}  # node id -> id of the node it merged into
    nodes = []
    for n in program.nodes:
        if replaced:
            inputs = tuple((replaced.get(i, i), k) for i, k in n.inputs)
            control = _dedup(replaced.get(c, c) for c in n.control)
            if inputs != n.inputs or control != n.control:
                n = Node(n.id, n.op, inputs, n.outs, n.attrs, control, n.name, n.location)
        mergeable = not n.op_def.stateful and n.outs and n.id not in targets
        if mergeable:
            key = node_key(n)
            first = seen.get(key)
            if first is not None:
                replaced[n.id] = first
                continue
            seen[key] = n.id
        nodes.append(n)
    if not replaced:
        return program
    fetches = tuple((replaced.get(i, i), k) for i, k in program.fetches)
    return program.with_nodes(nodes, fetches=fetches)


def _dedup(ids) -> tuple:
    out: list = []
    for i in ids:
        if i not in out:
            out.append(i)
    return tuple(out)
