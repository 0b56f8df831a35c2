"""LLVM IR building blocks shared by the kernel renderer (render.py) and the BLAS call
emitter (blas.py): scalar types, the dtype -> LLVM type maps, constants, ``getelementptr``
with opaque pointers, counted helper loops, and the ``optnone`` marking of loop-free glue."""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from ... import dtypes as _dt

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F64 = ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()

#: mark loop-free functions ``optnone`` (see mark_cold); off only to compare compile times
OPTNONE_GLUE = True

_VALUE_TYPES = {
    _dt.float16: ir.HalfType(),
    _dt.float32: ir.FloatType(),
    _dt.float64: ir.DoubleType(),
    _dt.int32: I32,
    _dt.int64: I64,
    _dt.bool_: I1,
}


# llvmlite fills the escape table of byte-array constants (our const globals) on first use,
# without a lock: a second thread printing one meanwhile reads a half-filled table (KeyError).
# Printing one here, while this module is imported (under the import lock), fills it.
str(ir.Constant(ir.ArrayType(I8, 1), bytearray(1)))

#: joins the IR texts of several modules in one string (a split program, the worker pool)
MODULE_SEP = "\n; ==== graphc: next module ====\n"


def value_type(dtype):
    """LLVM type of a scalar value of ``dtype`` (bool is i1 in registers)."""
    return _VALUE_TYPES[dtype]


def memory_type(dtype):
    """LLVM type of one element in memory (bool is a byte, as in numpy)."""
    return I8 if dtype == _dt.bool_ else _VALUE_TYPES[dtype]


def mark_cold(fn: ir.Function):
    """Exempt loop-free glue (the entry point, kernel dispatch, thread start-up, BLAS calls)
    from optimisation: ``optnone`` makes LLVM skip its IR passes and select its instructions
    the fast way, so only functions with loops go through the O3 pipeline. Measured on the
    W3 step: LLVM time 0.37 -> 0.24 s; the unoptimised glue costs nanoseconds per call."""
    if OPTNONE_GLUE:
        fn.attributes.add("noinline")  # LLVM requires it next to optnone
        fn.attributes.add("optnone")


def splat(b, x, vty):
    """``x`` in every lane of a vector of type ``vty`` (an insert and a zero shuffle, which
    LLVM selects as one broadcast)."""
    undef = ir.Constant(vty, ir.Undefined)
    e = b.insert_element(undef, x, ir.Constant(I32, 0))
    return b.shuffle_vector(e, undef, ir.Constant(ir.VectorType(I32, vty.count), [0] * vty.count))


def load_fields(b, args, ty, names) -> dict:
    """{name: value} of the fields of the ``ty`` struct at ``args`` (field j named
    ``names[j]``): a kernel's argument struct."""
    return {name: b.load(gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                             source_etype=ty), typ=ty.elements[j])
            for j, name in enumerate(names)}  # fmt: skip


def store_fields(b, args, ty, names, values) -> None:
    """Store ``values[name]`` into each field of the ``ty`` struct at ``args``."""
    for j, name in enumerate(names):
        b.store(values[name], gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                                  source_etype=ty))  # fmt: skip


def gep(b, base, indices, inbounds=False, source_etype=None):
    """getelementptr returning an opaque ``ptr`` (llvmlite's IR layer otherwise hands back
    typed pointers whose store type checks reject opaque values)."""
    r = b.gep(base, indices, inbounds=inbounds, source_etype=source_etype)
    if r.type.is_opaque:
        return r
    cast = ir.instructions.CastInstr(b.block, "bitcast", r, PTR)  # builder skips "equal" types
    b._insert(cast)
    return cast


def as_fn(b, ptr, fty):
    """``ptr`` typed as a pointer to ``fty`` so llvmlite can build an indirect call."""
    cast = ir.instructions.CastInstr(b.block, "bitcast", ptr, ir.PointerType(fty))
    b._insert(cast)
    return cast


def const(value, dtype):
    ty = value_type(dtype)
    if dtype == _dt.bool_:
        return ir.Constant(I1, 1 if value else 0)
    if dtype.is_floating:
        v = float(value)
        if dtype == _dt.float16:
            v = float(np.float16(v))
        elif dtype == _dt.float32:
            v = float(np.float32(v))
        return ir.Constant(ty, v)
    return ir.Constant(ty, int(np.asarray(value).astype(dtype.np)))


class for_range:
    """``with for_range(b, fn, lo, hi) as i:`` emits a counted loop (runtime helper loops)."""

    def __init__(self, b, fn, lo, hi):
        self.b, self.fn, self.lo, self.hi = b, fn, lo, hi

    def __enter__(self):
        b = self.b
        self.pre = b.block
        self.head = self.fn.append_basic_block("l.head")
        self.body = self.fn.append_basic_block("l.body")
        self.exit = self.fn.append_basic_block("l.exit")
        b.branch(self.head)
        b.position_at_end(self.head)
        self.i = b.phi(I64)
        self.i.add_incoming(self.lo, self.pre)
        b.cbranch(b.icmp_signed("<", self.i, self.hi), self.body, self.exit)
        b.position_at_end(self.body)
        return self.i

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        b = self.b
        nxt = b.add(self.i, ir.Constant(I64, 1))
        self.i.add_incoming(nxt, b.block)
        b.branch(self.head)
        b.position_at_end(self.exit)
        return False


class StandaloneModule:
    """A module of its own with the little of the renderer's interface a kernel emitter
    needs (``module`` and ``declare``): the native kernels compiled apart from any program
    (``nativegemm.py``, ``packedgemm.py``)."""

    def __init__(self, name: str):
        self.module = ir.Module(name)
        self._decls: dict = {}

    def declare(self, name, ret, args):
        fn = self._decls.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
            self._decls[name] = fn
        return fn
