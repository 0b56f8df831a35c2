"""Machinery shared by the rewriting passes: a node-by-node Program rebuilder and rule tables.

A pass built on ``Rewriter`` walks the input Program in order and asks a ``visit`` function
what to do with each (input-remapped) node. ``visit`` returns

* ``None``: keep the node as it is;
* a ``Ref``: the node's output equals that existing value (an *alias*): every later use and
  fetch reads the Ref instead. The node itself stays in place (dead) so that control edges
  and targets naming it remain valid; DCE removes it afterwards;
* a ``Replace``: the node becomes another op *with the same id*, outputs and control edges
  (in-place rewrite, e.g. ``x / c`` becomes ``x * c'``). New helper nodes made with
  ``Rewriter.add`` are inserted right before it, with fresh ids.

The Rewriter never touches stateful nodes, never aliases a node that carries control edges
(its consumers would lose the ordering), rejects aliases and replacements whose dtype or
static shape do not fit the original, and never mutates the input Program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .. import dtypes as _dt
from ..graph.core import TensorSpec
from ..ops.registry import REGISTRY, DTypeError, ShapeError, get_op_def
from ..program import Node, Program
from . import symshape

#: How many successive rewrites one node may go through in one pass (a guard against rules
#: that would undo each other).
MAX_REWRITES_PER_NODE = 8


@dataclass(frozen=True)
class Replace:
    """Result of a rule: the node becomes ``op(inputs; attrs)`` in place (same id)."""

    op: str
    inputs: tuple
    attrs: dict


@dataclass(frozen=True)
class Rule:
    """One documented rewrite rule: ``fn(node, rewriter)`` -> None | Ref | Replace."""

    name: str
    ops: tuple  # op types the rule looks at
    fn: Callable
    match: Callable | None = None  # or a predicate on the node (e.g. "any elementwise op")

    def matches(self, node: Node) -> bool:
        return node.op in self.ops or (self.match is not None and self.match(node))

    @property
    def doc(self) -> str:
        """The rule's ``"lhs -> rhs"`` description (first paragraph of its doc string)."""
        return (self.fn.__doc__ or "").strip().split("\n\n")[0]


class RuleTable:
    """An ordered table of rewrite rules, indexed by the op type they match."""

    def __init__(self, name: str):
        self.name = name
        self.rules: list[Rule] = []
        self._by_op: dict = {}  # op type -> the rules that may match it, in table order

    def rule(self, *ops: str, match: Callable | None = None):
        """Decorator adding a rule for nodes of the given op types, or for the nodes
        ``match(node)`` accepts (a doc string ``lhs -> rhs`` is required)."""

        def deco(fn):
            doc = (fn.__doc__ or "").strip()
            if "->" not in doc:
                raise ValueError(f"rewrite rule {fn.__name__} needs a doc string 'lhs -> rhs'")
            self.rules.append(Rule(fn.__name__, tuple(ops), fn, match))
            self._by_op.clear()
            return fn

        return deco

    def for_node(self, node: Node) -> list[Rule]:
        """The rules matching ``node``, in table order (those naming other op types are
        skipped through an index by op type: the table is asked about every node)."""
        rules = self._by_op.get(node.op)
        if rules is None:
            rules = [r for r in self.rules if node.op in r.ops or r.match is not None]
            self._by_op[node.op] = rules
        return [r for r in rules if r.matches(node)]

    def describe(self) -> str:
        """One line per rule: name, then its ``lhs -> rhs`` doc."""
        return "\n".join(f"{r.name:24s} {' '.join(r.doc.split())}" for r in self.rules)

    def visit(self, node: Node, rw: Rewriter):
        """Try the rules for ``node`` in order; the first that applies wins."""
        for rule in self.for_node(node):
            mark = len(rw.pending)
            try:
                result = rule.fn(node, rw)
            except (ShapeError, DTypeError):
                # A helper node the rule wanted to build does not type-check here: the rule
                # does not apply (the original program stays as it was).
                result = None
            if result is None:
                rw.discard(mark)
                continue
            rw.fired.append(rule.name)
            return result
        return None

    def apply(self, program: Program) -> Program:
        """One sweep of the table over ``program`` (a pass)."""
        return Rewriter(program).run(self.visit)


# -- static shape helpers ----------------------------------------------------------------------


def fully_known(shape) -> bool:
    return shape is not None and all(d is not None for d in shape)


def shape_compatible(a, b) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def merge_shapes(declared, inferred):
    """The more precise of two compatible static shapes, dim by dim."""
    if declared is None:
        return None if inferred is None else tuple(inferred)
    if inferred is None:
        return tuple(declared)
    return tuple(d if d is not None else i for d, i in zip(declared, inferred))


def fits_into(small, big) -> bool:
    """Broadcasting ``small`` against ``big`` provably leaves ``big``'s shape unchanged."""
    if small is None or big is None or len(small) > len(big):
        return False
    tail = big[len(big) - len(small) :]
    return all(s == 1 or (s is not None and s == b) for s, b in zip(small, tail))


# -- the rebuilder -----------------------------------------------------------------------------


class Rewriter:
    """Rebuilds a Program node by node; see the module doc string."""

    def __init__(self, program: Program):
        self.src = program
        self.nodes: list[Node] = []
        self.by_id: dict = {}
        self.alias: dict = {}
        self.pending: list[Node] = []
        self.fired: list[str] = []
        self.current: Node | None = None
        self._shapes = symshape.SymbolicShapes(self.by_id.__getitem__)
        self.next_id = max((n.id for n in program.nodes), default=-1) + 1

    # -- queries rules use -------------------------------------------------------------------
    def resolve(self, ref):
        ref = tuple(ref)
        seen = 0
        while ref in self.alias:
            ref = self.alias[ref]
            seen += 1
            if seen > 10_000:
                raise AssertionError("alias cycle")
        return ref

    def producer(self, ref) -> Node:
        """The node that computes ``ref`` (already rewritten)."""
        return self.by_id[self.resolve(ref)[0]]

    def spec(self, ref) -> TensorSpec:
        ref = self.resolve(ref)
        return self.by_id[ref[0]].outs[ref[1]]

    def shape(self, ref):
        return self.spec(ref).shape

    def dtype(self, ref) -> _dt.DType:
        return self.spec(ref).dtype

    def const(self, ref) -> np.ndarray | None:
        """The value of ``ref`` if a Const node produces it."""
        n = self.producer(ref)
        return n.attrs["value"] if n.op_def.source == "const" else None

    def splat(self, ref, depth: int = 4):
        """The single value every element of ``ref`` holds, if statically known, else None.

        Knows Const (all elements equal, at least one element), ops whose every element is an
        attribute (``OpDef.splat_attr``: zeros_like/ones_like), and ops that copy input 0's
        elements (``OpDef.copies_input0``: fill, broadcasts, reshapes, identity) of such a
        value.
        """
        n = self.producer(ref)
        if n.op_def.source == "const":
            v = n.attrs["value"]
            if v.size == 0:
                return None
            first = v.reshape(-1)[0]
            return first if np.all(v == first) else None
        if n.op_def.splat_attr:
            return np.asarray(n.attrs[n.op_def.splat_attr]).astype(n.outs[0].dtype.np)[()]
        if depth and n.op_def.copies_input0:
            return self.splat(n.inputs[0], depth - 1)
        return None

    def src_uses(self, ref) -> int:
        """How often the input Program reads ``ref`` (node inputs and fetches). A rule that
        folds a value into one consumer duplicates work unless this is 1."""
        counts = self.__dict__.get("_src_uses")
        if counts is None:
            counts = {}
            for r in [r for n in self.src.nodes for r in n.inputs] + list(self.src.fetches):
                counts[tuple(r)] = counts.get(tuple(r), 0) + 1
            self._src_uses = counts
        return counts.get(tuple(ref), 0)

    def dims(self, ref):
        """Symbolic dims of ``ref``: ints, or keys equal for provably equal unknown sizes."""
        return self._shapes.dims(self.resolve(ref))

    def same_runtime_shape(self, a, b) -> bool:
        """``a`` and ``b`` provably have one shape at run time."""
        da, db = self.dims(a), self.dims(b)
        return da is not None and da == db

    def fits(self, small, big) -> bool:
        """Broadcasting ``small`` against ``big`` provably gives ``big``'s runtime shape."""
        return symshape.fits(self.dims(small), self.dims(big))

    # -- building ------------------------------------------------------------------------
    def add(self, op: str, inputs, attrs=None, suffix: str = "") -> tuple:
        """A new node, inserted before the current one; returns its output-0 Ref.

        Raises ShapeError/DTypeError when the op does not type-check on these inputs.
        """
        attrs = dict(attrs or {})
        inputs = tuple(self.resolve(r) for r in inputs)
        outs = self._infer(op, inputs, attrs)
        base = self.current.name if self.current is not None else ""
        name = f"{base}/{suffix or op}" if base else (suffix or op)
        loc = self.current.location if self.current is not None else ("<unknown>", 0)
        node = Node(self.next_id, op, inputs, outs, attrs, (), name, loc)
        self.next_id += 1
        self.pending.append(node)
        self.by_id[node.id] = node
        return (node.id, 0)

    def const_node(self, value: np.ndarray, suffix: str = "const") -> tuple:
        """A new Const node holding ``value`` (copied, made read-only)."""
        arr = np.array(value, order="C", copy=True)
        arr.setflags(write=False)
        return self.add("Const", (), {"value": arr, "dtype": _dt.as_dtype(arr.dtype)}, suffix)

    def discard(self, mark: int) -> None:
        """Forget helper nodes added after ``mark`` (the rule that made them did not apply)."""
        for node in self.pending[mark:]:
            self.by_id.pop(node.id, None)
        del self.pending[mark:]

    def _infer(self, op, inputs, attrs) -> tuple:
        specs = [self.spec(r) for r in inputs]
        inferred = get_op_def(op).infer(specs, attrs)
        return tuple(
            TensorSpec(None if s is None else tuple(s), _dt.as_dtype(d)) for s, d in inferred
        )

    # -- the walk ------------------------------------------------------------------------
    def _remap(self, n: Node) -> Node:
        inputs = tuple(self.resolve(r) for r in n.inputs)
        return n if inputs == n.inputs else replace(n, inputs=inputs)

    def _alias_ok(self, n: Node, ref) -> bool:
        if n.control or len(n.outs) != 1:
            return False
        target = self.spec(ref)
        out = n.outs[0]
        return (
            target.dtype == out.dtype
            and shape_compatible(target.shape, out.shape)
            and _no_widening(target.shape, out.shape)
        )

    def _in_place(self, n: Node, r: Replace) -> Node | None:
        inputs = tuple(self.resolve(x) for x in r.inputs)
        try:
            outs = self._infer(r.op, inputs, r.attrs)
        except (ShapeError, DTypeError):
            return None
        if len(outs) != len(n.outs):
            return None
        merged = []
        for new, old in zip(outs, n.outs):
            if new.dtype != old.dtype or not shape_compatible(new.shape, old.shape):
                return None
            merged.append(TensorSpec(merge_shapes(old.shape, new.shape), old.dtype))
        return replace(n, op=r.op, inputs=inputs, attrs=dict(r.attrs), outs=tuple(merged))

    def _emit(self, n: Node) -> None:
        self.nodes.extend(self.pending)
        self.pending = []
        self.nodes.append(n)
        self.by_id[n.id] = n

    def run(self, visit: Callable) -> Program:
        """Rebuild the Program, asking ``visit(node, self)`` about every pure node."""
        for n in self.src.nodes:
            n = self._remap(n)
            self.current = n
            self.pending = []
            for _ in range(MAX_REWRITES_PER_NODE):
                if n.op not in REGISTRY or n.op_def.stateful:
                    break
                self.by_id[n.id] = n  # rules may look at the node itself
                mark = len(self.pending)
                result = visit(n, self)
                if result is None:
                    break
                if isinstance(result, Replace):
                    new = self._in_place(n, result)
                    if new is None:
                        self.discard(mark)
                        break
                    n = new
                    self.current = n
                    continue
                ref = self.resolve(result)
                if ref[0] == n.id or not self._alias_ok(n, ref):
                    self.discard(mark)
                    break
                self.alias[(n.id, 0)] = ref
                break
            self._emit(n)
        fetches = tuple(self.resolve(r) for r in self.src.fetches)
        return Program(tuple(self.nodes), self.src.feeds, fetches, self.src.targets)


def _no_widening(target, out) -> bool:
    """Aliasing a node to ``target`` keeps every static size the node promised: where its
    output is static, so is the target. Otherwise the node is the only thing that holds fed
    sizes to its static shape (``placeholder_with_default(x, (2, 3))`` with ``x`` of shape
    ``(None, None)``), and dropping it would drop that run-time contract."""
    if out is None:
        return True
    if target is None:
        return False
    return all(o is None or t == o for t, o in zip(target, out))
