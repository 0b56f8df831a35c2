"""State while emitting one LLVM function (``_Fn``: builder, local scope, dims, buffer
pointers), shared by the statement, loop and expression emitters of ``render.py``."""

from __future__ import annotations

import re

from llvmlite import ir

from .irutil import I64, gep, mark_cold, memory_type


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)[:48]


class _SSA:
    """A scope entry bound to an SSA value (a local assigned by exactly one Let)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v


class _Fn:
    """State while emitting one LLVM function: builder, local scope, dims, buffer pointers.
    ``r`` is the ``Renderer`` the function belongs to (its module, layout and program)."""

    def __init__(self, r, fn: ir.Function, roots: dict, dims_ptr):
        self.r = r
        self.fn = fn
        self.entry = fn.append_basic_block("entry")
        self.body_block = fn.append_basic_block("body")
        self.b = ir.IRBuilder(self.body_block)
        self.roots = roots  # root name -> ptr value
        self.dims_ptr = dims_ptr
        self.dim_vals: dict = {}
        self.scope: dict = {}  # var -> (alloca, dtype)
        self.memo: dict = {}
        self.single: set = set()  # locals bound as SSA values (see _single_lets)
        self.hot = False  # set when a loop is emitted into this function

    def finish(self):
        ir.IRBuilder(self.entry).branch(self.body_block)
        if not self.hot:
            mark_cold(self.fn)

    def alloca(self, ty, name=""):
        with_b = ir.IRBuilder(self.entry)
        return with_b.alloca(ty, name=name)

    def dim(self, name: str):
        v = self.dim_vals.get(name)
        if v is None:
            idx = self.r.layout.dims.index(name)
            eb = ir.IRBuilder(self.entry)
            p = gep(eb, self.dims_ptr, [ir.Constant(I64, idx)], inbounds=True, source_etype=I64)
            v = eb.load(p, name=f"dim.{_sanitize(name)}", typ=I64)
            self.dim_vals[name] = v
        return v

    def buf_ptr(self, buffer: str, index):
        r = self.r
        root = r.layout.root[buffer]
        base = self.roots[root]
        ety = memory_type(r.kp.buffers[buffer].dtype)
        return gep(self.b, base, [index], inbounds=True, source_etype=ety), ety
