"""Kernel building blocks shared by the lowerings: an index into a tensor (``Ix``), a
statement builder with scoped memo tables (``KernelBuilder``), and the reduction identities.

``lower.py`` drives the lowering of a whole program; ``group_emitter.py`` emits one fusion
group on top of these; the per-op lowerings (``lowerings.py``, ``lower_*.py``) use them."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .. import dtypes as _dt
from ..expr import Const, Dim, Expr, Load, Math, Var
from . import sym
from .ir import Buffer, Let, Loop


class Illegal(Exception):
    """A group cannot be lowered as one kernel (the message says why)."""


class Ix:
    """An index into a tensor of ``shape``: its multi-index, its flat index, or both."""

    __slots__ = ("shape", "_dims", "_flat", "owner")

    def __init__(self, owner, shape, dims=None, flat=None):
        self.owner = owner
        self.shape = tuple(shape)
        self._dims = None if dims is None else tuple(dims)
        self._flat = flat

    def flat(self) -> Expr:
        if self._flat is None:
            self._flat = sym.flat_index(self._dims, self.shape)
        return self._flat

    def has_dims(self) -> bool:
        """Whether the multi-index is known without dividing the flat index."""
        return self._dims is not None

    def dims(self) -> tuple:
        if self._dims is None:
            if len(self.shape) <= 1:
                self._dims = (self._flat,) if self.shape else ()
            else:
                self.owner.divmod_used = True
                self._dims = sym.unflatten(self._flat, self.shape)
        return self._dims


class KernelBuilder:
    """Statement lists with scoped memo tables and fresh local names."""

    def __init__(self, lw, name: str):
        self.lw = lw
        self.name = name
        self.blocks: list = [[]]
        self.memos: list = [{}]
        self.counter = 0
        self.divmod_used = False
        self.reads: set = set()
        self.writes: set = set()

    # statements and locals
    def emit(self, stmt) -> None:
        self.blocks[-1].append(stmt)

    def new_var(self, prefix="v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def var(self, name, dtype) -> Var:
        return Var(name, dtype)

    def bind(self, expr, dtype) -> Expr:
        """A local holding ``expr`` (constants and locals are returned as they are)."""
        if isinstance(expr, Const | Var | Dim):
            return expr
        name = self.new_var()
        self.emit(Let(name, dtype, expr))
        return Var(name, dtype)

    def lookup(self, key):
        for memo in reversed(self.memos):
            if key in memo:
                return memo[key]
        return None

    def remember(self, key, value):
        self.memos[-1][key] = value

    @contextmanager
    def loop(self, extent, parallel=False, start=sym.ZERO):
        name = self.new_var("i")
        self.blocks.append([])
        self.memos.append({})
        try:
            yield Var(name, _dt.int64)
        finally:
            body = tuple(self.blocks.pop())
            self.memos.pop()
            self.emit(Loop(name, start, sym.as_expr(extent), body, parallel))

    @contextmanager
    def nest(self, extents, parallel=True):
        """Loops over ``extents`` (outermost first; only the outermost may be parallel).

        A parallel nest gives no loop to leading extents known to be 1 (their index is 0), so
        that its parallel loop is one with work to share: a batch-1 NCHW tensor's (1, C, H, W)
        nest would otherwise run on one thread (an ONNX model's conv epilogues at batch 1)."""
        extents = list(extents)
        if not extents:
            yield ()
            return
        if parallel and len(extents) > 1 and sym.const_value(extents[0]) == 1:
            with self.nest(extents[1:], parallel=True) as rest:
                yield (sym.ZERO, *rest)
            return
        with self.loop(extents[0], parallel=parallel) as v:
            with self.nest(extents[1:], parallel=False) as rest:
                yield (v, *rest)

    # buffers
    def shape(self, ref) -> tuple:
        return self.lw.shapes[tuple(ref)]

    def load(self, ref, flat) -> Expr:
        buf = self.lw.buffer_for_read(ref)
        self.reads.add(buf)
        dt = self.lw.program.spec(tuple(ref)).dtype
        key = ("load", buf, flat)
        hit = self.lookup(key)
        if hit is None:
            hit = self.bind(Load(buf, flat, dt), dt)
            self.remember(key, hit)
        return hit

    def temp(self, name, dt, shape) -> str:
        """A temporary buffer ``name`` of ``dt`` and ``shape`` (int64 expressions or ints)
        that this kernel writes and reads."""
        self.lw.buffers[name] = Buffer(name, dt, tuple(sym.as_expr(d) for d in shape), "temp")
        self.writes.add(name)
        self.reads.add(name)
        return name

    def out_buffer(self, node, k=0) -> str:
        buf = self.lw.buffer_for_write((node.id, k))
        self.writes.add(buf)
        return buf

    def body(self) -> tuple:
        assert len(self.blocks) == 1
        return tuple(self.blocks[0])


def strip_ones(shape):
    shape = list(shape)
    while shape and sym.const_value(shape[0]) == 1:
        shape.pop(0)
    return tuple(shape)


def broadcast_index(owner, ix: Ix, t) -> Ix:
    """Index into an operand of shape ``t`` (numpy broadcasting) for output index ``ix``: the
    emitter's and the fusion legality analysis' one rule (``owner``: the Ix's builder)."""
    s = ix.shape
    if t == s:
        return ix
    if all(sym.const_value(d) == 1 for d in t):
        return Ix(owner, t, tuple(sym.ZERO for _ in t), sym.ZERO)
    if strip_ones(t) == strip_ones(s):
        return Ix(owner, t, flat=ix.flat())
    dims = ix.dims()
    r, n = len(s), len(t)
    out = []
    for k in range(n):
        tk, sd = t[k], s[r - n + k]
        if sym.const_value(tk) == 1:
            out.append(sym.ZERO)
        elif tk == sd:
            out.append(dims[r - n + k])
        else:
            out.append(sym.select(sym.eq(tk, 1), 0, dims[r - n + k]))
    return Ix(owner, t, dims=out)


def reshaped_index(owner, ix: Ix, in_shape) -> Ix:
    """Index into the operand (of shape ``in_shape``) of a reshape for output index ``ix``: the
    same element in row-major order. Trailing dims the reshape keeps keep their index, and
    only the leading ones go through the flat index: ``[B*T, 256]`` read from ``[B, T, 256]``
    divides the row index (once per row, hoisted out of the inner loop) instead of every
    element's flat index by run-time sizes (a transposing reshape of W11's [64, 32, 256]
    outputs ran at ~1 GB/s). The emitter's and the fusion legality analysis' one rule
    (``owner``: the Ix's builder)."""
    out_shape = ix.shape
    keep = 0
    while (keep < min(len(in_shape), len(out_shape)) - 1
           and in_shape[-1 - keep] == out_shape[-1 - keep]):  # fmt: skip
        keep += 1
    if keep and ix.has_dims() and len(in_shape) > keep:
        dims = ix.dims()
        lead = sym.flat_index(dims[: len(dims) - keep], out_shape[: len(out_shape) - keep])
        lead_shape = in_shape[: len(in_shape) - keep]
        lead_dims = sym.unflatten(lead, lead_shape) if len(lead_shape) > 1 else (lead,)
        if len(lead_shape) > 1:
            owner.divmod_used = True
        return Ix(owner, in_shape, dims=(*lead_dims, *dims[-keep:]))
    return Ix(owner, in_shape, flat=ix.flat())


def is_row_shape(s, space, axes) -> bool:
    """``s`` is the row shape: ``space`` with the reduced axes dropped or set to 1."""
    keep = tuple(d for i, d in enumerate(space) if i not in axes)
    ones = tuple(sym.ONE if i in axes else d for i, d in enumerate(space))
    return strip_ones(s) == strip_ones(keep) or strip_ones(s) == strip_ones(ones) or s == keep


REDUCE_INIT = {"sum": 0, "mean": 0, "prod": 1, "any": False, "all": True}
REDUCE_COMBINE = {"sum": Math.ADD, "mean": Math.ADD, "prod": Math.MUL, "max": Math.MAX,
            "min": Math.MIN, "any": Math.OR, "all": Math.AND}  # fmt: skip


def reduce_extreme(dt, largest):
    if dt.is_floating:
        return Const(float("inf") if largest else float("-inf"), dt)
    info = np.iinfo(dt.np)
    return Const(int(info.max if largest else info.min), dt)
