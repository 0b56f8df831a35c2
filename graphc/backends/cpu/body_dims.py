"""Shared size symbols for the inputs of a loop body on the cpu target.

Compiled alone, a body gives every ``None`` dim of every input its own run-time size, so
the compiler cannot see that the batch size of each loop variable and of each per-step
slice is one size: a gradient body then keeps a run-time ``SumToShape`` reduction for every
broadcast its gradient may have done, and fusion stops at each of them. This module groups
the ``None`` dims of a ``While`` op's inputs into *classes* of sizes that are equal, and
names each class on the bodies' ``Feed`` nodes (attribute ``dim_names``: one name or None
per axis). ``passes/symshape.py`` then gives the members one symbol (so the clean-up pass
drops the ``SumToShape``s) and ``kernel/shapes.py`` one ``Dim`` (read from the first feed;
the runtime refuses a feed whose size differs from it).

Which dims share, and why that is sound:

- proposed: dims fed by the same symbolic dim of the enclosing program (the same outer
  size, ``passes/symshape.py``), and dims the body itself requires to be equal or to
  broadcast together (an ``a == b`` in the run-time shape checks ``kernel/shapes.py``
  derives for the body alone). The second is a guess (either size may be 1);
- loop variables: a variable's dim stays in its class only if the body, compiled with the
  classes, returns the variable with the class's size on that axis (proved symbolically by
  ``kernel/shapes.py``), to a fixed point. Sliced rows and captured inputs are the same at
  every iteration, so when the members of every class have one size at the loop's entry,
  they have one size at every iteration (induction);
- at run time: ``ControlStep`` checks the entry condition (``holds``) before the first
  iteration, and when it fails runs the bodies compiled without shared dims instead
  (compiled when first needed), so a program whose sizes differ (a broadcast against a
  size 1) runs exactly as it did; nothing is assumed unchecked.
"""

from __future__ import annotations

from ...errors import GraphcError
from ...expr import Call, Dim, Math
from ...kernel.shapes import SymShapes
from ...program import Node


class SharedDims:
    """The classes of a loop's input dims and its bodies compiled with them.

    ``classes``: lists of ``(input index, axis)`` of the op's input arrays that must have
    one size (each at least two members); ``programs``: attr -> body Program whose Feeds
    name the classes."""

    def __init__(self, classes: list, programs: dict):
        self.classes = classes
        self.programs = programs

    def holds(self, xs) -> bool:
        """Whether the op's input arrays ``xs`` have one size in every class."""
        for members in self.classes:
            size = None
            for i, axis in members:
                shape = getattr(xs[i], "shape", None)
                if shape is None or len(shape) <= axis:
                    return False
                if size is None:
                    size = shape[axis]
                elif shape[axis] != size:
                    return False
        return True


def _outer_of(attrs, attr):
    """body Feed index -> (op input index, axis offset of the body's axes in that input)."""
    n, k = attrs["n_vars"], attrs["n_sliced"]
    if attr == "cond":  # reads vars + caps
        return lambda i: (i if i < n else i + k, 0)
    return lambda i: (i, 1 if n <= i < n + k else 0)


class _Union:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        p = self.parent.setdefault(x, x)
        while p != x:
            x, p = p, self.parent.setdefault(p, p)
        return p

    def join(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _feed_keys(program, outer_of) -> dict:
    """(feed index, body axis) -> (op input index, input axis) for the None dims."""
    keys = {}
    for node in program.nodes:
        if node.op_def.source != "feed" or node.attrs["shape"] is None:
            continue
        i = node.attrs["index"]
        j, off = outer_of(i)
        for axis, d in enumerate(node.attrs["shape"]):
            if d is None:
                keys[(i, axis)] = (j, axis + off)
    return keys


def _equal_pairs(ss) -> list:
    """Pairs of ``(feed index, axis)`` (the first feed of each Dim) that the run-time shape
    checks of a body's ``SymShapes`` compare with ``==`` (sizes that must be equal, or
    broadcast together)."""
    pairs = []
    for check in ss.checks:
        stack = [check[0]]
        while stack:
            e = stack.pop()
            if not isinstance(e, Call):
                continue
            if e.fn is Math.EQ and all(isinstance(a, Dim) for a in e.args):
                a, b = (ss.dims.get(a.name) for a in e.args)
                if a is not None and b is not None:
                    pairs.append((a, b))
            elif e.fn in (Math.OR, Math.AND):
                stack.extend(e.args)
    return pairs


def _conflict(symbol) -> bool:
    """A symbol ``passes/symshape.py`` gives to static sizes that do not broadcast."""
    return isinstance(symbol, tuple) and bool(symbol) and symbol[0] == "conflict"


def _named(program, keys: dict, name_of: dict):
    """``program`` with each Feed naming the class of each None dim (None: its own)."""
    nodes = []
    for n in program.nodes:
        if n.op_def.source == "feed" and n.attrs["shape"] is not None:
            i = n.attrs["index"]
            names = tuple(
                name_of.get(keys.get((i, axis))) if d is None else None
                for axis, d in enumerate(n.attrs["shape"])
            )
            if any(names):
                attrs = dict(n.attrs, dim_names=names)
                n = Node(n.id, n.op, n.inputs, n.outs, attrs, n.control, n.name, n.location)
        nodes.append(n)
    return program.with_nodes(tuple(nodes))


def share_dims(attrs, programs: dict, in_dims: list | None) -> SharedDims | None:
    """The classes of a ``While`` op's input dims (see the module doc string) and its
    ``programs`` (attr -> Program: ``body``, maybe ``cond``) naming them; None when no two
    dims can share. ``in_dims``: the symbolic dims of each op input in the enclosing
    program (``passes/symshape.py``), or None."""
    body = programs.get("body")
    if body is None:
        return None
    n = attrs["n_vars"]
    keys = {attr: _feed_keys(p, _outer_of(attrs, attr)) for attr, p in programs.items()}
    uf = _Union()
    every = sorted({k for ks in keys.values() for k in ks.values()})
    for k in every:
        uf.find(k)
    by_symbol: dict = {}
    for j, axis in every:
        dims = in_dims[j] if in_dims is not None and j < len(in_dims) else None
        if dims is not None and axis < len(dims) and not _conflict(dims[axis]):
            by_symbol.setdefault(dims[axis], []).append((j, axis))
    for members in by_symbol.values():
        for m in members[1:]:
            uf.join(members[0], m)
    split: set = set()  # loop-variable dims the body does not keep in their class
    while True:
        groups: dict = {}
        for k in every:
            groups.setdefault(("own", k) if k in split else uf.find(k), []).append(k)
        classes = [sorted(g) for g in groups.values() if len(g) > 1]
        name_of = {k: f"s{c[0][0]}_{c[0][1]}" for c in classes for k in c}
        named = {attr: _named(p, keys[attr], name_of) for attr, p in programs.items()}
        try:
            out = SymShapes(named["body"])
        except GraphcError:
            return None
        # sizes the body compares: joined (a guess, checked at entry), then looked at again
        # with the classes named (a comparison of broadcasts may become one of two dims)
        joined = False
        for a, b in _equal_pairs(out):
            ka, kb = keys["body"].get(a), keys["body"].get(b)
            if ka is None or kb is None or ka in split or kb in split:
                continue
            if uf.find(ka) != uf.find(kb):
                uf.join(ka, kb)
                joined = True
        if joined:
            continue
        if not classes:
            return None
        lost = set()
        for k in name_of:
            j, axis = k
            if j >= n:
                continue
            got = out[named["body"].fetches[j]]
            if axis >= len(got) or got[axis] != Dim(name_of[k]):
                lost.add(k)
        if not lost:
            return SharedDims(classes, named)
        split |= lost
