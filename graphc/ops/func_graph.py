"""Tracing a Python function into a sub-Program: the bodies of control flow.

``trace(fn, specs, ...)`` calls ``fn`` once on placeholders inside a ``FuncGraph``, a child
graph of the graph being built. Ops the function builds go into the child; a tensor of an
enclosing graph that the function uses is *captured*: the child gets a placeholder for it
and the control op takes the outer tensor as an explicit input (so autodiff, pruning and
scheduling see the dependency). The result becomes a ``Program`` (``graphc/program.py``)
stored in the control op's attributes: a structured region that graph passes never look
into, compiled on its own by the normal pipeline.

``import_program`` replays a Program's nodes into the current graph (used to build the
gradient of a body from the body itself).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

from ..graph.core import Graph, Tensor, TensorSpec, get_default_graph
from ..program import Node, Program, extract
from . import nest
from .registry import apply_op, convert_to_tensor

#: stateful ops that only read state: a body that contains only these has no side effect
_PURE_STATEFUL = frozenset({"VariableV2", "ReadVariable", "IsVariableInitialized", "Feed"})


class FuncGraph(Graph):
    """The graph one control-flow body is traced into (see the module doc string).

    ``captured``: the enclosing graph's tensors the body reads, in first-use order (the
    control op's extra inputs); ``capture_placeholders``: their stand-ins in this graph.
    """

    def __init__(self, outer: Graph, name: str):
        super().__init__()
        self.outer_graph = outer
        self.body_name = name
        self.seed = outer.seed
        self._captures: dict = {}  # outer tensor -> placeholder here
        self.captured: list[Tensor] = []
        self.capture_placeholders: list[Tensor] = []
        self._closed = False
        #: id(placeholder) -> attrs of the variable a captured tensor reads (see to_program)
        self.captured_vars: dict = {}
        # collections are the outermost graph's, as in TF1 (a body is part of one graph):
        # global_variables() inside a body sees the variables, and what a body adds is seen
        self._collections = self.outermost_graph._collections

    def close(self) -> None:
        """Called once the body is a Program: building on its tensors afterwards (a tensor
        kept from inside the body and used outside) is an error, never a silent no-op."""
        self._closed = True

    def _create_op(self, op_def, inputs, attrs, specs, name, location):
        if self._closed:
            raise ValueError(
                f"{op_def.type}: a tensor of the control-flow body '{self.body_name}' is used "
                f"outside it (at {location[0]}:{location[1]}); return it from the body instead"
            )
        return super()._create_op(op_def, inputs, attrs, specs, name, location)

    @property
    def outermost_graph(self) -> Graph:
        """The graph that is no body: where variables are created."""
        g: Graph = self
        while isinstance(g, FuncGraph):
            g = g.outer_graph
        return g

    def encloses(self, graph) -> bool:
        """Whether ``graph`` is this one or one of the graphs it is nested in."""
        g = self
        while g is not None:
            if g is graph:
                return True
            g = g.outer_graph if isinstance(g, FuncGraph) else None
        return False

    def capture(self, t: Tensor) -> Tensor:
        """``t`` as a tensor of this graph: itself, or the placeholder standing for it."""
        if t.graph is self:
            return t
        ph = self._captures.get(t)
        if ph is not None:
            return ph
        if not self.encloses(t.graph):
            raise ValueError(
                f"tensor {t.name} belongs to a graph that does not enclose the control-flow "
                f"body '{self.body_name}' being built"
            )
        source = t if t.graph is self.outer_graph else self.outer_graph.capture(t)
        ph = self._captures.get(source)
        if ph is not None:  # the same outer value reached through another path
            self._captures[t] = ph
            return ph
        with self.as_default(), self.control_dependencies(None):
            ph = apply_op("Placeholder", [], {"dtype": t.dtype, "shape": t.shape},
                          name="captured", graph=self).outputs[0]  # fmt: skip
        self._captures[t] = ph
        self._captures[source] = ph
        var = _variable_of(source)
        if var is not None:
            self.captured_vars[id(ph)] = var
        self.captured.append(source)
        self.capture_placeholders.append(ph)
        return ph


def _variable_of(t):
    """The attributes (var, shape, dtype) of the variable ``t`` reads, or None: ``t`` is a
    Variable, or an enclosing body's placeholder for one."""
    if t.op.type in ("VariableV2", "ReadVariable"):
        return {k: t.op.attrs[k] for k in ("var", "shape", "dtype")}
    return getattr(t.graph, "captured_vars", {}).get(id(t))


_ASSIGNS = frozenset({"Assign", "AssignAdd", "AssignSub"})


def _assigned(nodes) -> set:
    """Names of the variables that ``nodes`` (ops or Program nodes) assign, nested bodies
    included."""
    out: set = set()
    for n in nodes:
        if n.op_def.type in _ASSIGNS:
            out.add(n.attrs["var"])
        for v in n.attrs.values():
            if isinstance(v, Program):
                out |= _assigned(v.nodes)
    return out


def enclosing_capture():
    """The ``capture`` method of the body being traced, or None outside any body."""
    return getattr(get_default_graph(), "capture", None)


@dataclass
class Traced:
    """A traced function: its graph, argument placeholders and flat outputs."""

    graph: FuncGraph
    args: list  # placeholders, one per flat argument
    outputs: list  # flat output tensors of graph
    structure: object  # what fn returned (leaves are the user's values)

    @property
    def captured(self) -> list:
        return self.graph.captured


def placeholders(graph: Graph, specs, prefix: str) -> list:
    """One placeholder per TensorSpec in ``graph``."""
    return [
        apply_op("Placeholder", [], {"dtype": s.dtype, "shape": s.shape}, name=f"{prefix}{i}",
                 graph=graph).outputs[0]
        for i, s in enumerate(specs)
    ]  # fmt: skip


def trace(fn, arg_specs, pack_args, outer: Graph, name: str, out_dtypes=None) -> Traced:
    """Call ``fn(*pack_args(placeholders))`` inside a new FuncGraph of ``outer``.

    ``out_dtypes``: optional dtype per flat output, for converting Python numbers the
    function returns. Outputs that are tensors of enclosing graphs are captured.
    """
    fg = FuncGraph(outer, name)
    with fg.as_default(), fg.name_scope(name + "/"), fg.control_dependencies(None):
        phs = placeholders(fg, arg_specs, "arg")
        result = fn(*pack_args(phs))
        flat = nest.flatten(result)
        outs = []
        for i, v in enumerate(flat):
            if v is None:
                raise TypeError(f"the function '{name}' returned None in its result")
            dtype = None if out_dtypes is None or i >= len(out_dtypes) else out_dtypes[i]
            if isinstance(v, Tensor):
                outs.append(fg.capture(v))
            else:
                outs.append(convert_to_tensor(v, dtype=dtype))
    return Traced(fg, phs, outs, result)


def effect_ops(graph: Graph) -> list:
    """Ops of ``graph`` run for their effect (assignments, random draws, checks, nested
    control flow with effects): each run of a body runs them, used or not."""
    out = []
    for op in graph.get_operations():
        if op.op_def.stateful and op.type not in _PURE_STATEFUL and has_effect(op.op_def, op.attrs):
            out.append(op)
    return out


def has_effect(op_def, attrs) -> bool:
    """Whether running an op of ``op_def`` with ``attrs`` changes state or may fail."""
    fn = getattr(op_def, "has_effect", None)
    return True if fn is None else fn(attrs)


def to_program(graph: FuncGraph, outputs, layout) -> Program:
    """The Program computing ``outputs`` of ``graph`` from the placeholders of ``layout``.

    ``layout``: the op's input order; each entry a placeholder of ``graph`` or None (an
    input this body does not read). Feed node ``index`` attributes follow the layout.
    """
    graph.close()
    feeds = [t for t in layout if t is not None]
    index = {id(t): i for i, t in enumerate(layout) if t is not None}
    program = extract(list(outputs), effect_ops(graph), feeds)
    # A variable the body assigns is read afresh at each run of the body (a ReadVariable,
    # not the value captured when the op started), so a loop sees its own writes, as TF1.
    assigned = _assigned(graph.get_operations())
    nodes = []
    for n in program.nodes:
        if n.op == "Feed":
            t = feeds[n.attrs["index"]]
            var = graph.captured_vars.get(id(t))
            if var is not None and var["var"] in assigned:
                n = Node(n.id, "ReadVariable", (), n.outs, dict(var), (), n.name, n.location)
            else:
                attrs = dict(n.attrs, index=index[id(t)], tensor=f"in{index[id(t)]}")
                n = replace(n, attrs=attrs, name=f"in{index[id(t)]}")
        nodes.append(n)
    fed = {n.id for n in nodes if n.op == "Feed"}
    return replace(program.with_nodes(nodes), feeds=tuple(f for f in program.feeds
                                                         if f[0] in fed))  # fmt: skip


def program_has_effect(program: Program) -> bool:
    """Whether running ``program`` changes state or may fail (not a pure function)."""
    return any(
        n.op_def.stateful and n.op not in _PURE_STATEFUL and has_effect(n.op_def, n.attrs)
        for n in program.nodes
    )


def import_program(program: Program, inputs: list, name: str = "body") -> list:
    """Replay ``program`` into the default graph, its Feed ``index`` k reading
    ``inputs[k]``; returns its fetched tensors. Ops keep their types and attributes."""
    graph = get_default_graph()
    values: dict = {}
    ops: dict = {}
    with graph.name_scope(name):
        for n in program.nodes:
            if n.op == "Feed":
                values[(n.id, 0)] = inputs[n.attrs["index"]]
                continue
            args = [values[r] for r in n.inputs]
            control = [ops[c] for c in n.control if c in ops]
            with graph.control_dependencies(control) if control else contextlib.nullcontext():
                op = apply_op(n.op, args, dict(n.attrs), name=_base_name(n), graph=graph)
            ops[n.id] = op
            for k, t in enumerate(op.outputs):
                values[(n.id, k)] = t
    return [values[r] for r in program.fetches]


def _base_name(n: Node) -> str | None:
    base = n.name.rsplit("/", 1)[-1] if n.name else ""
    base = base.rsplit("_", 1)[0] if base[-1:].isdigit() and "_" in base else base
    return base or None


def specs_of(tensors) -> list:
    return [TensorSpec(t.shape, t.dtype) for t in tensors]
