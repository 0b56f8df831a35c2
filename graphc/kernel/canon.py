"""Canonical form of a kernel body, up to the names of its buffers and locals.

Two kernels with the same canonical key compute the same thing on whatever storage they are
given: an unrolled RNN or a deep MLP repeats the same few kernels once per step or layer on
different buffers (W12's 64-step LSTM: 2,080 kernels, about 70 distinct). A renderer keys
each kernel body and emits one native function per key, called once per kernel with that
kernel's buffers, so render and LLVM cost grow with the number of distinct kernels, not with
graph depth.

The key spells the body as a flat token tuple: statements in program order, expressions
post-order with each distinct expression object numbered once (a body is a DAG of shared
frozen expressions; spelling it as a tree could grow exponentially), buffers and locals
(loop variables, ``Let`` names) numbered by first appearance. A buffer's token carries its
element dtype and the number of its storage root among the kernel's roots, so the aliasing
between a kernel's buffers is part of the key; size symbols (``Dim``) stay named, as they
index the program-wide table of run-time sizes. The walk is iterative: its cost is linear in
the body and it never recurses on expression depth.
"""

from __future__ import annotations

from dataclasses import replace

from ..expr import Arg, Call, Cast, Const, Dim, Expr, Load, Var, i64
from .ir import If, Let, LibCall, Loop, Store, exprs_in, walk_stmts


def _literal(v) -> tuple:
    """A constant's token: its type and, for floats, its exact spelling (``0.0 == -0.0`` and
    ``nan != nan`` would make equal tokens of different constants, or never-equal ones)."""
    if isinstance(v, float):
        return ("float", v.hex())
    return (type(v).__name__, repr(v))


class _Namer:
    """Numbers buffers, storage roots and locals by first appearance."""

    def __init__(self, buffers: dict, root: dict):
        self.buffers = buffers
        self.root = root
        self.bufs: dict = {}  # buffer name -> token
        self.roots: dict = {}  # root name -> its position among the kernel's roots
        self.locals: dict = {}

    def buffer(self, name: str) -> tuple:
        tok = self.bufs.get(name)
        if tok is None:
            if name not in self.buffers:
                raise ValueError(f"kernel refers to unknown buffer {name!r}")
            r = self.root[name]
            pos = self.roots.setdefault(r, len(self.roots))
            tok = ("buf", len(self.bufs), pos, self.buffers[name].dtype.name)
            self.bufs[name] = tok
        return tok[:2]

    def local(self, name: str) -> int:
        return self.locals.setdefault(name, len(self.locals))


def _expr_tokens(e: Expr, namer: _Namer, ids: dict, out: list) -> int:
    """Append the tokens of ``e``'s expressions not yet numbered (children first) to
    ``out``; returns ``e``'s number."""
    stack = [(e, False)]
    while stack:
        x, ready = stack.pop()
        if id(x) in ids:
            continue
        if isinstance(x, Call):
            kids = x.args
        elif isinstance(x, Cast):
            kids = (x.x,)
        elif isinstance(x, Load):
            kids = (x.index,)
        else:
            kids = ()
        if kids and not ready:
            stack.append((x, True))
            stack.extend((k, False) for k in reversed(kids) if id(k) not in ids)
            continue
        if isinstance(x, Const):
            tok = ("c", _literal(x.value), x.dtype.name)
        elif isinstance(x, Var):
            tok = ("v", namer.local(x.name), x.dtype.name)
        elif isinstance(x, Dim):
            tok = ("d", x.name)
        elif isinstance(x, Arg):
            tok = ("a", x.index)
        elif isinstance(x, Load):
            tok = ("l", namer.buffer(x.buffer), ids[id(x.index)], x.dtype.name)
        elif isinstance(x, Cast):
            tok = ("x", ids[id(x.x)], x.dtype.name)
        elif isinstance(x, Call):
            tok = ("f", x.fn.name, tuple(ids[id(a)] for a in x.args))
        else:
            raise TypeError(f"not a Kernel IR expression: {x!r}")
        ids[id(x)] = len(out)
        out.append(tok)
    return ids[id(e)]


def kernel_key(body, buffers: dict, root: dict) -> tuple[tuple, list]:
    """(key, roots) of a kernel body: ``key`` is equal for two bodies exactly when they are
    the same computation up to buffer and local names (see the module docstring); ``roots``
    lists the storage roots the body uses, in the order their positions in the key number
    them: a function emitted for one body, taking its roots in this order, serves every body
    with the same key when called with that body's roots in its own order.

    ``buffers`` maps buffer names to ``Buffer``s; ``root`` maps every buffer to the buffer
    that owns its storage (itself unless planning made it an alias)."""
    namer = _Namer(buffers, root)
    ids: dict = {}
    out: list = []
    # (statements, position) frames; an end marker closes each nested body
    stack = [iter(body)]
    while stack:
        s = next(stack[-1], None)
        if s is None:
            stack.pop()
            out.append(("end",))
            continue
        if isinstance(s, Loop):
            start = _expr_tokens(s.start, namer, ids, out)
            stop = _expr_tokens(s.stop, namer, ids, out)
            out.append(("loop", namer.local(s.var), start, stop, s.parallel))
            stack.append(iter(s.body))
        elif isinstance(s, Let):
            v = _expr_tokens(s.value, namer, ids, out)
            out.append(("let", namer.local(s.var), s.dtype.name, v, s.reduce))
        elif isinstance(s, Store):
            i = _expr_tokens(s.index, namer, ids, out)
            v = _expr_tokens(s.value, namer, ids, out)
            out.append(("store", namer.buffer(s.buffer), i, v))
        elif isinstance(s, If):
            c = _expr_tokens(s.cond, namer, ids, out)
            out.append(("if", c))
            # the else branch is pushed first so the then branch is walked first
            stack.append(iter((_Else(s.orelse),)))
            stack.append(iter(s.then))
        elif isinstance(s, _Else):
            out.append(("else",))
            stack.append(iter(s.body))
        elif isinstance(s, LibCall):
            args = []
            for a in s.args:
                if isinstance(a, Expr):
                    args.append(("e", _expr_tokens(a, namer, ids, out)))
                elif isinstance(a, str):  # a library call's string arguments name buffers
                    args.append(namer.buffer(a))
                else:
                    args.append(("k", _literal(a)))
            out.append(("call", s.fn, tuple(args)))
        else:
            raise TypeError(f"not a Kernel IR statement: {s!r}")
    bufs = tuple(tok for tok in namer.bufs.values())
    return (tuple(out), bufs), list(namer.roots)


def constant_store_bases(body, buffers: dict, root: dict) -> dict:
    """Storage roots that ``body`` only writes, each store at a constant element index of
    buffers of one element size (the run-time check flags: each step of an unrolled loop
    sets its own slot), mapped to (smallest such index, element size): where the kernel's
    pointer to that root can start, so that kernels differing only in which slots they set
    become the same kernel."""
    bases: dict = {}
    other: set = set()
    for s in walk_stmts(body):
        if isinstance(s, Store):
            r = root[s.buffer]
            size = buffers[s.buffer].dtype.itemsize
            if isinstance(s.index, Const) and isinstance(s.index.value, int):
                lo, sz = bases.get(r, (s.index.value, size))
                if sz != size:
                    other.add(r)
                bases[r] = (min(lo, s.index.value), size)
            else:
                other.add(r)
        elif isinstance(s, LibCall):
            other.update(root[a] for a in s.args if isinstance(a, str))
    other.update(root[x.buffer] for x in exprs_in(body) if isinstance(x, Load))
    return {r: b for r, b in bases.items() if r not in other and b[0] > 0}


def rebase_stores(body, root: dict, bases: dict) -> tuple:
    """``body`` with every store into a root of ``bases`` (all at constant indices, see
    ``constant_store_bases``) moved down by that root's base. Recurses on statement
    nesting (loop depth), never on expressions."""
    if not bases:
        return body
    out = []
    for s in body:
        if isinstance(s, Store) and root[s.buffer] in bases:
            s = replace(s, index=i64(s.index.value - bases[root[s.buffer]][0]))
        elif isinstance(s, Loop):
            s = replace(s, body=rebase_stores(s.body, root, bases))
        elif isinstance(s, If):
            s = replace(
                s,
                then=rebase_stores(s.then, root, bases),
                orelse=rebase_stores(s.orelse, root, bases),
            )
        out.append(s)
    return tuple(out)


class _Else:
    """Marks where an ``If``'s else branch starts in the walk of ``kernel_key``."""

    __slots__ = ("body",)

    def __init__(self, body):
        self.body = body
