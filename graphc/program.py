"""Program: the immutable, hashable SSA form of a pruned subgraph that the compiler works on.

``extract`` turns (graph, fetches, feeds) into a Program: only the ops the fetches need, fed
tensors replaced by ``Feed`` nodes, in a topological order. Passes map Program -> Program.
The hash of the printed form is the compile-cache key: stable across processes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from . import dtypes as _dt
from .errors import InvalidArgumentError
from .graph.core import Operation, Tensor, TensorSpec
from .ops.registry import OpDef, get_op_def, register

Ref = tuple  # (node_id, output_index)


@register
class Feed(OpDef):
    """A value bound at run time: a fed placeholder or any fed tensor (internal op)."""

    kind = "source"
    source = "feed"
    static_shape_reason = (
        "its unknown dims are the run's Dims themselves (kernel/shapes.py SymShapes)"
    )
    replayable = True

    no_examples_reason = "stateful or internal: tested through the Session tests"

    differentiable = False
    stateful = True  # never folded: its value is only known at run time

    def infer(self, specs, attrs):
        return [(attrs["shape"], attrs["dtype"])]

    def ref_stateful(self, xs, attrs, ctx):
        return ctx.feeds[attrs["index"]]


@dataclass(frozen=True)
class Node:
    """One operation of a Program. ``inputs`` are (node id, output index) refs."""

    id: int
    op: str
    inputs: tuple
    outs: tuple  # tuple[TensorSpec]
    attrs: dict = field(default_factory=dict, compare=False, hash=False)
    control: tuple = ()
    name: str = ""
    location: tuple = ("<unknown>", 0)

    @property
    def op_def(self) -> OpDef:
        """The op's definition (looked up once per node: passes ask it of every node)."""
        d = self.__dict__.get("_op_def")
        if d is None:
            d = get_op_def(self.op)
            object.__setattr__(self, "_op_def", d)
        return d

    def __hash__(self):
        return hash((self.id, self.op))


def _node_line(n: Node) -> str:
    """``n``'s line of ``Program.text``, kept on the node (immutable, and shared by the
    Programs a pass leaves it in: the pass manager's fixpoint test renders each round)."""
    line = n.__dict__.get("_line")
    if line is None:
        ins = ", ".join(f"%{i}" + (f".{k}" if k else "") for i, k in n.inputs)
        attrs = ", ".join(
            f"{k}={_fmt_value(v)}" for k, v in sorted(n.attrs.items()) if not k.startswith("_")
        )
        outs = ", ".join(_fmt_spec(s) for s in n.outs)
        ctl = f" after({','.join('%' + str(c) for c in n.control)})" if n.control else ""
        line = f"%{n.id} = {n.op}({ins}{'; ' if attrs and ins else ''}{attrs}) -> {outs}{ctl}"
        object.__setattr__(n, "_line", line)
    return line


def _fmt_value(v) -> str:
    """Canonical text for an attribute value (stable across processes)."""
    if isinstance(v, np.ndarray):
        if v.size <= 8:
            return f"array({v.dtype.str},{v.shape},{v.tolist()!r})"
        digest = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]
        return f"array({v.dtype.str},{v.shape},sha:{digest})"
    if isinstance(v, _dt.DType):
        return v.name
    if isinstance(v, Program):  # a control-flow body: its whole text, through its hash
        return f"program(sha:{v.hash()})"
    if isinstance(v, tuple | list):
        return "(" + ",".join(_fmt_value(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_fmt_value(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, float):
        return repr(float(v))
    if isinstance(v, np.generic):
        return repr(v.item())
    return repr(v)


def _fmt_spec(s: TensorSpec) -> str:
    shape = "?" if s.shape is None else "x".join("?" if d is None else str(d) for d in s.shape)
    return f"{s.dtype.name}[{shape}]"


def node_signature(n: Node, skip: tuple = ()) -> str:
    """What node ``n`` computes, without its id and inputs: op, attributes (less those named
    in ``skip``) and output specs as the program text spells them (so what the program hash
    ignores, it ignores too)."""
    attrs = ",".join(
        f"{k}={_fmt_value(v)}" for k, v in sorted(n.attrs.items()) if k[:1] != "_" and k not in skip
    )
    return f"{n.op}({attrs}) -> {', '.join(_fmt_spec(s) for s in n.outs)}"


@dataclass(frozen=True)
class Program:
    """Pruned, topologically ordered node list with its feeds and fetches."""

    nodes: tuple  # tuple[Node], topological order
    feeds: tuple  # tuple[(node_id, tensor_name)] in feed-signature order
    fetches: tuple  # tuple[Ref]
    targets: tuple = ()  # node ids run for their effects only

    # -- queries -------------------------------------------------------------------------
    def node(self, node_id: int) -> Node:
        return self._index()[node_id]

    def _index(self) -> dict:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {n.id: n for n in self.nodes}
            object.__setattr__(self, "_idx", idx)
        return idx

    def spec(self, ref: Ref) -> TensorSpec:
        return self.node(ref[0]).outs[ref[1]]

    def users(self) -> dict:
        """node id -> list of node ids that read any of its outputs."""
        out: dict = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for src, _ in n.inputs:
                out[src].append(n.id)
        return out

    def text(self) -> str:
        """Stable, human-readable listing; its sha256 is the program hash. Rendered once per
        Program (it is immutable): the pass manager's fixpoint test and the stage texts
        share it."""
        text = self.__dict__.get("_text")
        if text is None:
            text = self._render_text()
            object.__setattr__(self, "_text", text)
        return text

    def _render_text(self) -> str:
        lines = [_node_line(n) for n in self.nodes]
        lines.append("fetch " + ", ".join(f"%{i}.{k}" for i, k in self.fetches))
        if self.targets:
            lines.append("run " + ", ".join(f"%{i}" for i in self.targets))
        return "\n".join(lines)

    def hash(self) -> str:
        h = self.__dict__.get("_hash")
        if h is None:
            h = hashlib.sha256(self.text().encode()).hexdigest()
            object.__setattr__(self, "_hash", h)
        return h

    def __str__(self) -> str:
        return self.text()

    def __eq__(self, other) -> bool:
        """Same text (``hash()``): attributes count, control-flow bodies included (nodes
        alone compare without their attributes)."""
        if self is other:
            return True
        return isinstance(other, Program) and self.hash() == other.hash()

    def __hash__(self) -> int:
        return hash(self.hash())

    def with_nodes(self, nodes, fetches=None, targets=None) -> Program:
        return replace(
            self,
            nodes=tuple(nodes),
            fetches=self.fetches if fetches is None else tuple(fetches),
            targets=self.targets if targets is None else tuple(targets),
        )

    def verify(self) -> None:
        """Check SSA order, ref validity and re-run shape inference on every node."""
        seen: dict = {}
        feed_ids = {i for i, _ in self.feeds}
        for n in self.nodes:
            if n.id in seen:
                raise AssertionError(f"node %{n.id} defined twice")
            specs = []
            for src, k in n.inputs:
                if src not in seen:
                    raise AssertionError(f"%{n.id} ({n.op}) reads %{src} before its definition")
                if k >= len(seen[src].outs):
                    raise AssertionError(f"%{n.id} reads output {k} of %{src}, which has fewer")
                specs.append(seen[src].outs[k])
            for c in n.control:
                if c not in seen:
                    raise AssertionError(f"%{n.id} has control input %{c} not defined before it")
            inferred = n.op_def.infer(specs, n.attrs)
            for (shape, dtype), out in zip(inferred, n.outs):
                if _dt.as_dtype(dtype) != out.dtype or not _shape_compatible(shape, out.shape):
                    raise AssertionError(
                        f"%{n.id} ({n.op}) declares {_fmt_spec(out)} but infers "
                        f"{_fmt_spec(TensorSpec(shape, _dt.as_dtype(dtype)))}"
                    )
            seen[n.id] = n
        for src, k in self.fetches:
            if src not in seen or k >= len(seen[src].outs):
                raise AssertionError(f"fetch %{src}.{k} is not defined")
        for i in feed_ids:
            if i not in seen:
                raise AssertionError(f"feed %{i} is not defined")
            if seen[i].op != "Feed":
                raise AssertionError(f"feed %{i} is a {seen[i].op} node, not a Feed")
        for i in self.targets:
            if i not in seen:
                raise AssertionError(f"target %{i} is not defined")


def _shape_compatible(a, b) -> bool:
    if a is None or b is None:
        return True
    a, b = tuple(a), tuple(b)
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def extract(fetch_tensors, target_ops, feed_tensors) -> Program:
    """Prune the graph to what ``fetch_tensors`` and ``target_ops`` need, given the feeds.

    Raises InvalidArgumentError naming any placeholder that is needed but not fed.
    """
    fed = {(t.op, t.value_index): k for k, t in enumerate(feed_tensors)}
    needed: set = set()
    stack: list[Operation] = [t.op for t in fetch_tensors] + list(target_ops)
    fed_used: set = set()
    for t in fetch_tensors:
        if (t.op, t.value_index) in fed:
            fed_used.add((t.op, t.value_index))
    stack = [t.op for t in fetch_tensors if (t.op, t.value_index) not in fed] + list(target_ops)
    while stack:
        op = stack.pop()
        if op in needed:
            continue
        needed.add(op)
        for t in op.inputs:
            key = (t.op, t.value_index)
            if key in fed:
                fed_used.add(key)
            elif t.op not in needed:
                stack.append(t.op)
        stack.extend(c for c in op.control_inputs if c not in needed)

    missing = [op for op in needed if op.op_def.source == "placeholder"]
    if missing:
        op = min(missing, key=lambda o: o._id)
        raise InvalidArgumentError(
            f"You must feed a value for placeholder tensor '{op.name}:0' with dtype "
            f"{op.outputs[0].dtype.name} and shape {op.outputs[0].shape} "
            f"(built at {op.where()})"
        )

    nodes: list[Node] = []
    ref_of: dict = {}
    feeds = []
    next_id = 0
    # Feed nodes first, in feed-signature order.
    for k, t in enumerate(feed_tensors):
        key = (t.op, t.value_index)
        if key not in fed_used:
            continue
        spec = TensorSpec(t.shape, t.dtype)
        attrs = {"index": k, "shape": t.shape, "dtype": t.dtype, "tensor": t.name}
        nodes.append(Node(next_id, "Feed", (), (spec,), attrs, (), t.name, t.op.location))
        ref_of[key] = (next_id, 0)
        feeds.append((next_id, t.name))
        next_id += 1
    id_of_op: dict = {}
    for op in sorted(needed, key=lambda o: o._id):
        inputs = tuple(ref_of[(t.op, t.value_index)] for t in op.inputs)
        control = tuple(id_of_op[c] for c in op.control_inputs if c in id_of_op)
        specs = tuple(TensorSpec(t.shape, t.dtype) for t in op.outputs)
        nodes.append(
            Node(next_id, op.type, inputs, specs, dict(op.attrs), control, op.name, op.location)
        )
        id_of_op[op] = next_id
        for t in op.outputs:
            ref_of.setdefault((op, t.value_index), (next_id, t.value_index))
        next_id += 1
    fetches = tuple(ref_of[(t.op, t.value_index)] for t in fetch_tensors)
    targets = tuple(id_of_op[op] for op in target_ops)
    return Program(tuple(nodes), tuple(feeds), fetches, targets)


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


class StageTexts(dict):
    """Stage name -> text of a compilation stage (``Executable.dump_ir``). A value may be a
    callable (``Program.text``, assembly): it is rendered on first access, so a compile
    that nobody inspects renders no text."""

    def __getitem__(self, key):
        v = super().__getitem__(key)
        if callable(v):
            v = v()
            self[key] = v
        return v

    def get(self, key, default=None):
        return self[key] if key in self else default

    def items(self):
        return [(k, self[k]) for k in self]

    def values(self):
        return [self[k] for k in self]
