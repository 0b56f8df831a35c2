"""Render a Kernel IR ``KernelProgram`` to one LLVM module (llvmlite's IR builder).

The module exports one entry point (the XLA-style "buffer table" function)::

    i32 gc_entry(ptr bufs, ptr dims, ptr trace, i32 nthreads)

``bufs[slot]`` holds a descriptor of each storage root (a buffer and every buffer that
``alias_of`` it share one slot; const buffers are module globals and take none): the address
of a numpy array object, whose word ``DATA_WORD`` is its data pointer (``PyArrayObject.data``
right after the PyObject header), or of an equivalent 3-word block (see ``runtime.py``).
Reading the pointer in native code saves the ~1 us ``arr.ctypes.data`` costs per buffer in
Python. ``dims[i]`` is the runtime size of each ``None`` dimension; ``trace`` is null or a
``double[2 * kernels]`` that receives CLOCK_MONOTONIC start/end times (the clock of
``time.perf_counter``) of every kernel; ``nthreads`` caps the threads a kernel uses.

Each Kernel becomes ``void kN(ptr noalias root..., ptr dims, i32 nthreads)``. Distinct storage
roots are distinct allocations, so every pointer parameter is ``noalias``: LLVM needs that to
vectorise loops without runtime checks. A top-level ``Loop(parallel=True)`` is outlined into
``kN.parJ(ptr noalias root..., ptr dims, ptr frame, i64 lo, i64 hi)`` (``frame``: the scalar
locals it reads). When its estimated work (trip count x static body cost) is below
PARALLEL_MIN_WORK the kernel calls it directly; otherwise the
process-wide worker pool (``gc_parallel_for``, ``pool.py``) splits the range over its
threads, the calling thread taking a share (measured: W1 on 2^24 floats runs 16.4 -> 8.4 ms
on 2 threads). Large GEMMs are split by rows of C the same way, each chunk one
single-threaded OpenBLAS call; a GEMM's epilogue loop then runs inside each row chunk right
after its sgemm when no chunk can see another's rows (``epilogue.py``). Scalar locals
(``Let``) live in allocas that SROA promotes to SSA values; a ``Let(reduce=True)`` update
gets the ``reassoc`` fast-math flag so LLVM may vectorise the reduction, and its loop asks
for interleaved vector bodies (several independent accumulators, REDUCE_INTERLEAVE). A
division by a loop-invariant local becomes a multiply by its reciprocal where that is exact
to an ulp (``recip.py``). Transcendentals come from ``math.py`` (vectorisable polynomials).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir

from ... import dtypes as _dt
from ...errors import UnimplementedError
from ...expr import Call, Cast, Const, Dim, Load, Math, Var, expr_dtype
from ...kernel.ir import If, KernelProgram, Let, LibCall, Loop, Store, exprs_in, walk_stmts
from . import math as _m
from .blas import emit_libcall
from .epilogue import row_epilogue
from .irutil import (
    F64,
    I1,
    I8,
    I32,
    I64,
    PTR,
    VOID,
    const,
    gep,
    mark_cold,
    memory_type,
    value_type,
)
from .recip import hoist_divisors

#: index (in pointer words) of the data pointer in a buffer descriptor (PyArrayObject.data)
DATA_WORD = 2

#: estimated work units (roughly: scalar loads/stores/flops; a transcendental counts 20) per
#: thread below which a parallel loop stays on the calling thread. Measured (2 cores, shared):
#: one unit ~0.03 ns of vector code, a thread start + join 25-70 us, so splitting pays from
#: ~150 us of serial work; exp(x)*2+1 on 2^16 floats took 27 us on 1 thread and 95 us on 2
#: with the old threshold of 2^17 units, 2^20 floats 365 us vs 286 us.
PARALLEL_MIN_WORK = 1 << 22

#: vector bodies interleaved (independent accumulators) in an innermost loop that carries a
#: ``reduce`` accumulator, for a cheap body and for one with a transcendental. The JIT turns
#: interleaving off in general (code size, compile time); a single accumulator chain makes a
#: reduction latency-bound instead: a float32 (4096, 1024) row max took 0.98 ms on one thread
#: with one chain and 0.39 ms with four (W2 softmax 2.4 -> 1.9 ms), a row sum 0.41 -> 0.33 ms.
#: Two suffice where an exp already fills the pipes.
REDUCE_INTERLEAVE = 4
REDUCE_INTERLEAVE_COSTLY = 2


@dataclass
class Layout:
    """Where each buffer lives at run time: shared by the renderer and the runtime."""

    slots: list = field(default_factory=list)  # root buffer names in slot order
    root: dict = field(default_factory=dict)  # buffer name -> root buffer name
    dims: list = field(default_factory=list)  # dim names in dims[] order

    @classmethod
    def of(cls, kp: KernelProgram) -> Layout:
        lay = cls()
        for name in kp.buffers:
            seen = set()
            r = name
            while kp.buffers[r].alias_of is not None:
                if r in seen:
                    raise ValueError(f"alias_of cycle through buffer {name!r}")
                seen.add(r)
                r = kp.buffers[r].alias_of
            lay.root[name] = r
        for name, buf in kp.buffers.items():
            if lay.root[name] == name and buf.kind != "const":
                lay.slots.append(name)
        lay.dims = list(kp.dims)
        return lay


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)[:48]


def buffers_used(body) -> set:
    """Buffer names loaded, stored or passed to a library call anywhere in ``body``."""
    out = {x.buffer for x in exprs_in(body) if isinstance(x, Load)}
    for s in walk_stmts(body):
        if isinstance(s, Store):
            out.add(s.buffer)
        elif isinstance(s, LibCall):
            out.update(a for a in s.args if isinstance(a, str))
    return out


class _SSA:
    """A scope entry bound to an SSA value (a local assigned by exactly one Let)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v


def _single_lets(body) -> set:
    """Locals assigned by exactly one Let in ``body`` (nested bodies included), minus loop
    variables: their one definition dominates every use (a local is visible only after its
    Let, in the same body and nested ones), so they can be SSA values."""
    counts: dict = {}
    loops: set = set()

    def walk(stmts):
        for s in stmts:
            if isinstance(s, Let):
                counts[s.var] = counts.get(s.var, 0) + 1
            elif isinstance(s, Loop):
                loops.add(s.var)
                walk(s.body)
            elif isinstance(s, If):
                walk(s.then)
                walk(s.orelse)

    walk(body)
    return {v for v, n in counts.items() if n == 1 and v not in loops}


def _has_vars(e) -> bool:
    """Whether an expression reads a loop variable, a local or memory (not only Dims)."""
    if isinstance(e, Var | Load):
        return True
    if isinstance(e, Call):
        return any(_has_vars(a) for a in e.args)
    if isinstance(e, Cast):
        return _has_vars(e.x)
    return False


def _body_cost(body) -> int:
    """Static work estimate of one execution of ``body`` (inner loops of unknown trip count
    count as 64 iterations)."""
    total = 0
    for s in body:
        if isinstance(s, Loop):
            trips = 64
            if isinstance(s.start, Const) and isinstance(s.stop, Const):
                trips = max(int(s.stop.value) - int(s.start.value), 0)
            total += trips * max(_body_cost(s.body), 1)
        elif isinstance(s, LibCall):
            total += 1 << 20
        elif isinstance(s, If):
            total += 1 + max(_body_cost(s.then), _body_cost(s.orelse))
        else:
            total += 1 + _expr_cost(getattr(s, "value", None))
    return total


def _expr_cost(e) -> int:
    if isinstance(e, Call):
        own = 20 if e.fn.name in _m.TRANSCENDENTAL or e.fn in (Math.POW, Math.MOD) else 1
        return own + sum(_expr_cost(a) for a in e.args)
    if isinstance(e, Cast):
        return _expr_cost(e.x)
    if isinstance(e, Load):
        return 1
    return 0


class _Fn:
    """State while emitting one LLVM function: builder, local scope, dims, buffer pointers."""

    def __init__(self, r: Renderer, fn: ir.Function, roots: dict, dims_ptr):
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


class Renderer:
    """Builds the module for one KernelProgram; ``render()`` returns the llvmlite module."""

    def __init__(self, kp: KernelProgram, fast_math: bool = False, name: str = "graphc"):
        self.kp = kp
        self.layout = Layout.of(kp)
        self.fast_math = fast_math
        self.module = ir.Module(name=name)
        self.module.triple = ""  # filled by the JIT from the target machine
        self.const_globals: dict = {}
        self._decls: dict = {}

    # -- module-level helpers ---------------------------------------------------------------
    def declare(self, name: str, ret, args, var_arg=False) -> ir.Function:
        fn = self._decls.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args, var_arg=var_arg), name)
            self._decls[name] = fn
        return fn

    def const_global(self, name: str):
        g = self.const_globals.get(name)
        if g is None:
            buf = self.kp.buffers[name]
            arr = np.ascontiguousarray(np.asarray(buf.value, dtype=buf.dtype.np))
            data = bytearray(arr.tobytes()) or bytearray(1)
            ty = ir.ArrayType(I8, len(data))
            g = ir.GlobalVariable(self.module, ty, name=f"const.{_sanitize(name)}")
            g.initializer = ir.Constant(ty, data)
            g.global_constant = True
            g.linkage = "internal"
            g.align = 64
            self.const_globals[name] = g
        return g

    # -- top level --------------------------------------------------------------------------
    def render(self) -> ir.Module:
        kfns = [self._kernel(i, k) for i, k in enumerate(self.kp.kernels)]
        self._entry(kfns)
        return self.module

    def _now(self, b: ir.IRBuilder):
        """CLOCK_MONOTONIC seconds as a double (the clock of time.perf_counter on Linux)."""
        fn = self._decls.get("gc.now")
        if fn is None:
            cg = self.declare("clock_gettime", I32, [I32, PTR])
            fn = ir.Function(self.module, ir.FunctionType(F64, []), "gc.now")
            fn.linkage = "internal"
            mark_cold(fn)
            self._decls["gc.now"] = fn
            fb = ir.IRBuilder(fn.append_basic_block("entry"))
            ts = fb.alloca(ir.ArrayType(I64, 2))
            fb.call(cg, [ir.Constant(I32, 1), ts])
            sec = fb.load(
                gep(
                    fb,
                    ts,
                    [ir.Constant(I64, 0), ir.Constant(I32, 0)],
                    source_etype=ts.allocated_type,
                ),
                typ=I64,
            )
            nsec = fb.load(
                gep(
                    fb,
                    ts,
                    [ir.Constant(I64, 0), ir.Constant(I32, 1)],
                    source_etype=ts.allocated_type,
                ),
                typ=I64,
            )
            t = fb.fadd(fb.sitofp(sec, F64), fb.fmul(fb.sitofp(nsec, F64), ir.Constant(F64, 1e-9)))
            fb.ret(t)
        return b.call(fn, [])

    def _entry(self, kfns):
        fn = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR, PTR, I32]), "gc_entry")
        mark_cold(fn)
        bufs, dims, trace, nthreads = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        slot_of = {n: i for i, n in enumerate(self.layout.slots)}
        data = {}  # root -> its data pointer, read once (the table is fixed during a call)
        stamp = self._stamp_fn()
        for i, (kfn, roots) in enumerate(kfns):
            args = []
            for root in roots:
                if self.kp.buffers[root].kind == "const":
                    args.append(self.const_global(root))
                    continue
                if root not in data:
                    p = gep(
                        b, bufs, [ir.Constant(I64, slot_of[root])], inbounds=True, source_etype=PTR
                    )
                    desc = b.load(p, typ=PTR)
                    # a slot holds a descriptor whose third word is the data pointer: a
                    # numpy array object itself (PyArrayObject.data follows PyObject_HEAD)
                    dp = gep(b, desc, [ir.Constant(I64, DATA_WORD)], inbounds=True,
                              source_etype=PTR)  # fmt: skip
                    data[root] = b.load(dp, typ=PTR)
                args.append(data[root])
            b.call(stamp, [trace, ir.Constant(I64, 2 * i)])
            b.call(kfn, args + [dims, nthreads])
            b.call(stamp, [trace, ir.Constant(I64, 2 * i + 1)])
        b.ret(ir.Constant(I32, 0))

    def _stamp_fn(self) -> ir.Function:
        """``gc.stamp(trace, k)``: ``trace[k] = now()`` when tracing (trace is not null); one
        call per stamp keeps the entry point short."""
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR, I64]), "gc.stamp")
        fn.linkage = "internal"
        mark_cold(fn)
        trace, k = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        with b.if_then(b.icmp_unsigned("!=", trace, ir.Constant(PTR, None)), likely=False):
            b.store(self._now(b), gep(b, trace, [k], inbounds=True, source_etype=F64))
        b.ret_void()
        return fn

    def _roots_of(self, body) -> list:
        used = buffers_used(body)
        for name in used:
            if name not in self.kp.buffers:
                raise ValueError(f"kernel refers to unknown buffer {name!r}")
        return sorted({self.layout.root[n] for n in used})

    def _kernel(self, i: int, k):
        body = hoist_divisors(k.body)
        roots = self._roots_of(body)
        name = f"k{i}.{_sanitize(k.name)}"
        fty = ir.FunctionType(VOID, [PTR] * len(roots) + [PTR, I32])
        fn = ir.Function(self.module, fty, name)
        fn.linkage = "internal"
        for a in fn.args[: len(roots)]:
            a.add_attribute("noalias")
        fn.attributes.add("nounwind")
        f = _Fn(self, fn, dict(zip(roots, fn.args)), fn.args[len(roots)])
        f.nthreads = fn.args[len(roots) + 1]
        f.kernel_name = name
        f.par_count = 0
        f.single = _single_lets(body)
        self._stmts(f, body, top=True)
        f.b.ret_void()
        f.finish()
        return fn, roots

    # -- statements -------------------------------------------------------------------------
    def _stmts(self, f: _Fn, body, top=False):
        skip = None
        for j, s in enumerate(body):
            f.memo = {}
            if s is skip:  # an epilogue rendered with its GEMM
                continue
            nxt = body[j + 1] if j + 1 < len(body) else None
            if top and isinstance(s, LibCall) and row_epilogue(s, nxt, self.kp, self.layout.root):
                self._gemm_with_epilogue(f, s, nxt)
                skip = nxt
                continue
            if isinstance(s, Loop):
                if s.parallel and top:
                    self._parallel_loop(f, s)
                else:
                    self._loop(f, s)
            elif isinstance(s, Let):
                self._let(f, s)
            elif isinstance(s, Store):
                idx = self._index(f, s.index)
                ptr, ety = f.buf_ptr(s.buffer, idx)
                dt = self.kp.buffers[s.buffer].dtype
                v = self._cast(f, self._expr(f, s.value), expr_dtype(s.value), dt)
                if dt == _dt.bool_:
                    v = f.b.zext(v, I8)
                f.b.store(v, ptr, align=dt.itemsize)
            elif isinstance(s, LibCall):
                self._libcall(f, s)
            elif isinstance(s, If):
                self._if(f, s)
            else:
                raise TypeError(f"not a Kernel IR statement: {s!r}")

    def _if(self, f: _Fn, s: If):
        cond = self._expr(f, s.cond)
        if expr_dtype(s.cond) != _dt.bool_:
            cond = self._cast(f, cond, expr_dtype(s.cond), _dt.bool_)
        with f.b.if_else(cond) as (then, otherwise):
            with then:
                self._stmts(f, s.then)
            with otherwise:
                self._stmts(f, s.orelse)
        f.memo = {}

    def _let(self, f: _Fn, s: Let):
        if s.var in f.single and not s.reduce:
            # assigned once in the kernel: bind the SSA value itself (no alloca/store/load:
            # a third fewer instructions to print, parse and optimise)
            v = self._cast(f, self._expr(f, s.value), expr_dtype(s.value), s.dtype)
            f.scope[s.var] = (_SSA(v), s.dtype)
            return
        slot = f.scope.get(s.var)
        if slot is None or slot[1] != s.dtype or isinstance(slot[0], _SSA):
            slot = (f.alloca(value_type(s.dtype), name=_sanitize(s.var)), s.dtype)
            f.scope[s.var] = slot
        flags = ("reassoc", "nsz") if s.reduce and s.dtype.is_floating else ()
        v = self._expr(f, s.value, flags)
        v = self._cast(f, v, expr_dtype(s.value), s.dtype)
        f.b.store(v, slot[0])

    def _index(self, f: _Fn, e):
        v = self._expr(f, e)
        dt = expr_dtype(e)
        if dt != _dt.int64:
            v = self._cast(f, v, dt, _dt.int64)
        return v

    def _loop(self, f: _Fn, s: Loop, start=None, stop=None):
        f.hot = True
        b = f.b
        lo = start if start is not None else self._index(f, s.start)
        hi = stop if stop is not None else self._index(f, s.stop)
        iv = f.alloca(I64, name=_sanitize(s.var))
        prev = f.scope.get(s.var)
        f.scope[s.var] = (iv, _dt.int64)
        b.store(lo, iv)
        header = f.fn.append_basic_block(f"{_sanitize(s.var)}.head")
        body = f.fn.append_basic_block(f"{_sanitize(s.var)}.body")
        exit_ = f.fn.append_basic_block(f"{_sanitize(s.var)}.exit")
        b.branch(header)
        b.position_at_end(header)
        i = b.load(iv, typ=I64)
        b.cbranch(b.icmp_signed("<", i, hi), body, exit_)
        b.position_at_end(body)
        self._stmts(f, s.body)
        i = b.load(iv, typ=I64)
        b.store(b.add(i, ir.Constant(I64, 1), flags=("nsw",)), iv)
        back = b.branch(header)
        if _innermost_reduction(s.body):
            n = REDUCE_INTERLEAVE if _body_cost(s.body) < 20 else REDUCE_INTERLEAVE_COSTLY
            back.set_metadata("llvm.loop", self._loop_id(("llvm.loop.interleave.count", n)))
        b.position_at_end(exit_)
        f.memo = {}
        if prev is None:
            del f.scope[s.var]
        else:
            f.scope[s.var] = prev

    def _loop_id(self, *hints):
        """A fresh loop ID (``llvm.loop`` metadata) carrying (name, i32 value) hints."""
        m = self.module
        opts = [m.add_metadata([ir.MetaDataString(m, k), ir.Constant(I32, v)]) for k, v in hints]
        return _LoopID(m, opts)

    def _parallel_loop(self, f: _Fn, s: Loop):
        """Outline the loop body; run it inline or over threads depending on its size."""
        self._dispatch_loop(f, self._setup_loop(f, s))

    def _gemm_with_epilogue(self, f: _Fn, call: LibCall, loop: Loop):
        """A GEMM whose epilogue loop runs inside its row chunks when the sizes allow it
        (see epilogue.py), else after it as usual."""
        p = self._setup_loop(f, loop)
        ctx = self._loop_ctx(f, p)
        fused = emit_libcall(self, f, call, epilogue=(p["outl"].wrapper, ctx, p["lo"], p["hi"]))
        f.memo = {}
        with f.b.if_then(f.b.not_(fused)):
            self._dispatch_loop(f, p, ctx)

    def _loop_ctx(self, f: _Fn, p):
        """Context of the outlined body's wrapper: {roots array, dims, frame}."""
        b = f.b
        root_vals = p["roots"]
        rarr = b.alloca(PTR, ir.Constant(I64, max(len(root_vals), 1)))
        for k, v in enumerate(root_vals):
            b.store(v, gep(b, rarr, [ir.Constant(I64, k)], source_etype=PTR))
        ctx_ty = ir.LiteralStructType([PTR, PTR, PTR])
        ctx = b.alloca(ctx_ty)
        for k, v in enumerate([rarr, f.dims_ptr, p["frame"]]):
            b.store(v, gep(b, ctx, [ir.Constant(I32, 0), ir.Constant(I32, k)],
                            source_etype=ctx_ty))  # fmt: skip
        return ctx

    def _setup_loop(self, f: _Fn, s: Loop) -> dict:
        """Outline parallel loop ``s``; its bounds, frame of locals and thread count."""
        b = f.b
        j = f.par_count
        f.par_count += 1
        roots = list(f.roots)
        # snapshot of the scalar locals the body may read (iterations are independent)
        locals_ = list(f.scope.items())
        frame_ty = ir.LiteralStructType([value_type(dt) for _, (_, dt) in locals_] or [I8])
        outl = self._outline(f, s, roots, locals_, frame_ty, j)

        lo = self._index(f, s.start)
        hi = self._index(f, s.stop)
        frame = f.alloca(frame_ty, name="frame")
        for k, (_, (slot, dt)) in enumerate(locals_):
            p = gep(b, frame, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=frame_ty)
            v = slot.v if isinstance(slot, _SSA) else b.load(slot, typ=value_type(dt))
            b.store(v, p)
        trips = b.sub(hi, lo)
        work = b.mul(trips, self._cost_ir(f, s.body))
        want = b.sdiv(work, ir.Constant(I64, PARALLEL_MIN_WORK))
        nthr = b.sext(f.nthreads, I64)
        n = b.select(b.icmp_signed("<", want, nthr), want, nthr)
        n = b.select(b.icmp_signed("<", trips, n), trips, n)
        root_vals = [f.roots[r] for r in roots]
        return {"outl": outl, "frame": frame, "lo": lo, "hi": hi, "trips": trips, "n": n,
                "roots": root_vals}  # fmt: skip

    def _dispatch_loop(self, f: _Fn, p: dict, ctx=None):
        """Run a set-up loop inline, or over the pool when it is worth it."""
        b = f.b
        serial = b.icmp_signed("<=", p["n"], ir.Constant(I64, 1))
        with b.if_else(serial, likely=True) as (then, otherwise):
            with then:
                b.call(p["outl"], p["roots"] + [f.dims_ptr, p["frame"], p["lo"], p["hi"]])
            with otherwise:
                if ctx is None:
                    ctx = self._loop_ctx(f, p)
                b.call(self._parallel_for(), [p["outl"].wrapper, ctx, p["lo"], p["trips"], p["n"]])

    def _cost_ir(self, f: _Fn, body):
        """Work estimate of one execution of ``body`` as an i64 value: like _body_cost, but
        inner loops whose bounds depend on runtime dims only count their real trip count."""
        b = f.b
        static = 0
        total = None
        for s in body:
            if isinstance(s, Loop) and not (_has_vars(s.start) or _has_vars(s.stop)):
                inner = self._cost_ir(f, s.body)
                n = b.sub(self._index(f, s.stop), self._index(f, s.start))
                n = b.select(b.icmp_signed("<", n, ir.Constant(I64, 0)), ir.Constant(I64, 0), n)
                term = b.mul(n, inner)
                total = term if total is None else b.add(total, term)
            elif isinstance(s, If) and _has_loop(s.then + s.orelse):
                # (hoist_divisors puts row passes under an If: count them like the rest)
                t, e = self._cost_ir(f, s.then), self._cost_ir(f, s.orelse)
                term = b.select(b.icmp_signed(">", t, e), t, e)
                total = term if total is None else b.add(total, term)
            else:
                static += _body_cost((s,))
        const = ir.Constant(I64, max(static, 1))
        return const if total is None else b.add(total, const)

    def _outline(self, f: _Fn, s: Loop, roots, locals_, frame_ty, j):
        args = [PTR] * len(roots) + [PTR, PTR, I64, I64]
        fn = ir.Function(self.module, ir.FunctionType(VOID, args), f"{f.kernel_name}.par{j}")
        fn.linkage = "internal"
        for a in fn.args[: len(roots)]:
            a.add_attribute("noalias")
        fn.attributes.add("nounwind")
        # called from up to three places (serial path, chunk 0, failed thread start):
        # inlining would triple the vectorised loop code and the compile time
        fn.attributes.add("noinline")
        dims, frame, lo, hi = fn.args[len(roots) :]
        g = _Fn(self, fn, dict(zip(roots, fn.args)), dims)
        g.nthreads = ir.Constant(I32, 1)
        g.kernel_name = f"{f.kernel_name}.par{j}"
        g.par_count = 0
        g.single = f.single
        eb = ir.IRBuilder(g.entry)
        for k, (var, (_, dt)) in enumerate(locals_):
            slot = eb.alloca(value_type(dt), name=_sanitize(var))
            p = gep(eb, frame, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=frame_ty)
            eb.store(eb.load(p, typ=value_type(dt)), slot)
            g.scope[var] = (slot, dt)
        self._loop(g, s, start=lo, stop=hi)
        g.b.ret_void()
        g.finish()

        # body wrapper for gc.parallel_for: (ctx = {roots array, dims, frame}, lo, hi)
        wr = ir.Function(self.module, ir.FunctionType(VOID, [PTR, I64, I64]),
                         f"{g.kernel_name}.body")  # fmt: skip
        wr.linkage = "internal"
        mark_cold(wr)
        wb = ir.IRBuilder(wr.append_basic_block("entry"))
        ctx, wlo, whi = wr.args
        ctx_ty = ir.LiteralStructType([PTR, PTR, PTR])

        def field_(k):
            p = gep(wb, ctx, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=ctx_ty)
            return wb.load(p, typ=PTR)

        rptr = field_(0)
        rv = [
            wb.load(gep(wb, rptr, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
            for k in range(len(roots))
        ]
        wb.call(fn, rv + [field_(1), field_(2), wlo, whi])
        wb.ret_void()
        fn.wrapper = wr
        return fn

    def _parallel_for(self) -> ir.Function:
        """``gc_parallel_for(body, ctx, lo, trips, n)``: run ``body(ctx, s, e)`` over n chunks
        of [lo, lo+trips) on the process-wide worker pool (``pool.py``), the calling thread
        taking a share; it returns when every chunk is done."""
        return self.declare("gc_parallel_for", VOID, [PTR, PTR, I64, I64, I64])

    # -- library calls ----------------------------------------------------------------------
    def _libcall(self, f: _Fn, s: LibCall):
        emit_libcall(self, f, s)

    # -- expressions ------------------------------------------------------------------------
    def _expr(self, f: _Fn, e, flags=()):
        key = (id(e), flags)
        hit = f.memo.get(key)
        if hit is not None:
            return hit[0]
        v = self._expr_uncached(f, e, flags)
        f.memo[key] = (v, e)  # keep e alive so its id stays unique
        return v

    def _expr_uncached(self, f: _Fn, e, flags):
        b = f.b
        if isinstance(e, Const):
            return const(e.value, e.dtype)
        if isinstance(e, Var):
            slot = f.scope.get(e.name)
            if slot is None:
                raise ValueError(f"variable {e.name!r} used before definition")
            if isinstance(slot[0], _SSA):
                return slot[0].v
            return b.load(slot[0], typ=value_type(slot[1]))
        if isinstance(e, Dim):
            return f.dim(e.name)
        if isinstance(e, Load):
            ptr, ety = f.buf_ptr(e.buffer, self._index(f, e.index))
            bdt = self.kp.buffers[e.buffer].dtype
            v = b.load(ptr, typ=ety, align=bdt.itemsize)
            if bdt == _dt.bool_:
                v = b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
            return self._cast(f, v, bdt, e.dtype)
        if isinstance(e, Cast):
            return self._cast(f, self._expr(f, e.x, flags), expr_dtype(e.x), e.dtype)
        if isinstance(e, Call):
            dts = [expr_dtype(a) for a in e.args]
            args = [self._expr(f, a, flags if e.fn in (Math.ADD, Math.MUL) else ()) for a in e.args]
            return self._call(f, e.fn, args, dts, flags)
        raise TypeError(f"not a Kernel IR expression: {e!r}")

    def _cast(self, f: _Fn, v, src, dst):
        b = f.b
        if src == dst:
            return v
        st, dty = value_type(src), value_type(dst)
        if dst == _dt.bool_:
            if src.is_floating:
                return b.fcmp_unordered("!=", v, ir.Constant(st, 0.0))
            return b.icmp_signed("!=", v, ir.Constant(st, 0))
        if src == _dt.bool_:
            return b.uitofp(v, dty) if dst.is_floating else b.zext(v, dty)
        if dst == _dt.float16 and src != _dt.float32:
            return _to_half(b, v, src)
        if src == _dt.float16 and not dst.is_floating:
            v, st, src = b.fpext(v, ir.FloatType()), ir.FloatType(), _dt.float32
        if src.is_floating and dst.is_floating:
            return b.fpext(v, dty) if src.itemsize < dst.itemsize else b.fptrunc(v, dty)
        if src.is_floating:
            return b.call(_m.intrinsic(self.module, "llvm.fptosi.sat", st, 1, ret=dty), [v])
        if dst.is_floating:
            return b.sitofp(v, dty)
        if src.itemsize < dst.itemsize:
            return b.sext(v, dty)
        return b.trunc(v, dty)

    def _call(self, f: _Fn, fn: Math, args, dts, flags):
        b = f.b
        dt = dts[-1] if fn is Math.SELECT else dts[0]
        if fn is Math.SELECT:
            cond = args[0]
            return b.select(cond, args[1], args[2])
        if dt == _dt.bool_:
            return self._bool_call(b, fn, args)
        if dt.is_floating:
            fl = ("fast",) if self.fast_math else tuple(flags)
            return self._float_call(f, fn, args, dt, fl)
        return self._int_call(f, fn, args, dt)

    def _bool_call(self, b, fn, args):
        x = args[0]
        y = args[1] if len(args) > 1 else None
        table = {
            Math.AND: lambda: b.and_(x, y),
            Math.MUL: lambda: b.and_(x, y),
            Math.MIN: lambda: b.and_(x, y),
            Math.OR: lambda: b.or_(x, y),
            Math.ADD: lambda: b.or_(x, y),
            Math.MAX: lambda: b.or_(x, y),
            Math.XOR: lambda: b.xor(x, y),
            Math.NE: lambda: b.xor(x, y),
            Math.SUB: lambda: b.xor(x, y),
            Math.NOT: lambda: b.not_(x),
            Math.EQ: lambda: b.not_(b.xor(x, y)),
            Math.LT: lambda: b.icmp_unsigned("<", x, y),
            Math.LE: lambda: b.icmp_unsigned("<=", x, y),
            Math.GT: lambda: b.icmp_unsigned(">", x, y),
            Math.GE: lambda: b.icmp_unsigned(">=", x, y),
            Math.ABS: lambda: x,
            Math.SIGN: lambda: x,
            Math.FLOOR: lambda: x,
            Math.CEIL: lambda: x,
            Math.ROUND: lambda: x,
            Math.ISNAN: lambda: ir.Constant(I1, 0),
            Math.ISFINITE: lambda: ir.Constant(I1, 1),
        }
        if fn not in table:
            raise UnimplementedError(f"cpu backend: Math.{fn.name} on bool")
        return table[fn]()

    def _float_call(self, f: _Fn, fn: Math, args, dt, flags):
        b = f.b
        ty = value_type(dt)
        x = args[0]
        y = args[1] if len(args) > 1 else None

        def c(v):
            return ir.Constant(ty, v)

        def intr(name, *a):
            return b.call(_m.intrinsic(self.module, name, ty, len(a)), list(a))

        if fn is Math.ADD:
            return b.fadd(x, y, flags=flags)
        if fn is Math.SUB:
            return b.fsub(x, y, flags=flags)
        if fn is Math.MUL:
            return b.fmul(x, y, flags=flags)
        if fn is Math.DIV:
            return b.fdiv(x, y, flags=flags)
        if fn in (Math.MAX, Math.MIN):
            # numpy maximum/minimum propagate NaN from either side. In a reduction, the
            # IEEE-754-2019 intrinsics (same NaN rule) let LLVM vectorise the loop.
            # ``nsz``: which of -0.0 and +0.0 wins is left open (numpy's reductions leave it
            # open too); without it the x86 lowering orders the operands by sign first, three
            # more instructions per vector (W2 softmax on one thread 1.64 -> 1.41 ms)
            if "reassoc" in flags:
                name = "llvm.maximum" if fn is Math.MAX else "llvm.minimum"
                return b.call(_m.intrinsic(self.module, name, ty, 2), [x, y], fastmath=("nsz",))
            pick = b.fcmp_ordered(">" if fn is Math.MAX else "<", x, y)
            r = b.select(pick, x, y)
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        cmp = {Math.EQ: "==", Math.LT: "<", Math.LE: "<=", Math.GT: ">", Math.GE: ">="}
        if fn in cmp:
            return b.fcmp_ordered(cmp[fn], x, y)
        if fn is Math.NE:
            return b.fcmp_unordered("!=", x, y)
        if fn is Math.NEG:
            return b.fneg(x)
        if fn is Math.ABS:
            return intr("llvm.fabs", x)
        if fn is Math.SIGN:
            r = b.select(b.fcmp_ordered(">", x, c(0.0)), c(1.0), x)
            r = b.select(b.fcmp_ordered("<", x, c(0.0)), c(-1.0), r)
            return b.select(b.fcmp_ordered("==", x, c(0.0)), c(0.0), r)
        if fn is Math.SQRT:
            return intr("llvm.sqrt", x)
        if fn is Math.RSQRT:
            return b.fdiv(c(1.0), intr("llvm.sqrt", x), flags=flags)
        if fn is Math.RECIP:
            return b.fdiv(c(1.0), x, flags=flags)
        if fn is Math.FLOOR:
            return intr("llvm.floor", x)
        if fn is Math.CEIL:
            return intr("llvm.ceil", x)
        if fn is Math.ROUND:
            return intr("llvm.roundeven", x)
        if fn is Math.ISNAN:
            return b.fcmp_unordered("uno", x, x)
        if fn is Math.ISFINITE:
            return b.fcmp_ordered("<", intr("llvm.fabs", x), c(float("inf")))
        if fn is Math.POW:
            if dt == _dt.float16:
                f32 = ir.FloatType()
                p = b.call(
                    _m.intrinsic(self.module, "llvm.pow", f32, 2),
                    [b.fpext(x, f32), b.fpext(y, f32)],
                )
                return b.fptrunc(p, ty)
            return intr("llvm.pow", x, y)
        if fn in (Math.MOD, Math.FLOORDIV):
            return self._float_divmod(b, fn, x, y, ty)
        if fn.name in _m.TRANSCENDENTAL:
            return b.call(_m.math_function(self.module, fn.name, ty), [x])
        raise UnimplementedError(f"cpu backend: Math.{fn.name} on {dt.name}")

    def _float_divmod(self, b, fn, a, d, ty):
        """numpy's npy_divmod: fmod-based, sign of the divisor, exact floor division."""

        def c(v):
            return ir.Constant(ty, v)

        def intr(name, *x):
            return b.call(_m.intrinsic(self.module, name, ty, len(x)), list(x))

        mod = b.frem(a, d)
        fix = b.and_(
            b.fcmp_ordered("!=", mod, c(0.0)),
            b.xor(b.fcmp_ordered("<", d, c(0.0)), b.fcmp_ordered("<", mod, c(0.0))),
        )
        if fn is Math.MOD:
            r = b.select(fix, b.fadd(mod, d), mod)
            r = b.select(b.fcmp_ordered("==", mod, c(0.0)), intr("llvm.copysign", c(0.0), d), r)
            return r
        div = b.fdiv(b.fsub(a, mod), d)
        div = b.select(fix, b.fsub(div, c(1.0)), div)
        fl = intr("llvm.floor", div)
        fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), c(0.5)), b.fadd(fl, c(1.0)), fl)
        q = b.fdiv(a, d)
        r = b.select(b.fcmp_ordered("!=", div, c(0.0)), fl, intr("llvm.copysign", c(0.0), q))
        return b.select(b.fcmp_ordered("==", d, c(0.0)), q, r)

    def _int_call(self, f: _Fn, fn: Math, args, dt):
        b = f.b
        ty = value_type(dt)
        x = args[0]
        y = args[1] if len(args) > 1 else None
        zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
        if fn is Math.ADD:
            return b.add(x, y)
        if fn is Math.SUB:
            return b.sub(x, y)
        if fn is Math.MUL:
            return b.mul(x, y)
        if fn in (Math.DIV, Math.FLOORDIV, Math.MOD):
            # reference: a divisor of 0 acts as 1; avoid the INT_MIN / -1 trap too
            d = b.select(b.icmp_signed("==", y, zero), one, y)
            m1 = b.icmp_signed("==", d, ir.Constant(ty, -1))
            ds = b.select(m1, one, d)
            q = b.sdiv(x, ds)
            r = b.srem(x, ds)
            q = b.select(m1, b.neg(x), q)
            r = b.select(m1, zero, r)
            adj = b.and_(
                b.icmp_signed("!=", r, zero),
                b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", d, zero)),
            )
            if fn is Math.MOD:
                return b.select(adj, b.add(r, d), r)
            return b.select(adj, b.sub(q, one), q)
        if fn is Math.MAX:
            return b.select(b.icmp_signed(">", x, y), x, y)
        if fn is Math.MIN:
            return b.select(b.icmp_signed("<", x, y), x, y)
        cmp = {
            Math.EQ: "==",
            Math.NE: "!=",
            Math.LT: "<",
            Math.LE: "<=",
            Math.GT: ">",
            Math.GE: ">=",
        }
        if fn in cmp:
            return b.icmp_signed(cmp[fn], x, y)
        if fn is Math.NEG:
            return b.neg(x)
        if fn is Math.ABS:
            return b.select(b.icmp_signed("<", x, zero), b.neg(x), x)
        if fn is Math.SIGN:
            r = b.select(b.icmp_signed(">", x, zero), one, zero)
            return b.select(b.icmp_signed("<", x, zero), ir.Constant(ty, -1), r)
        if fn in (Math.FLOOR, Math.CEIL, Math.ROUND):
            return x
        if fn is Math.ISNAN:
            return ir.Constant(I1, 0)
        if fn is Math.ISFINITE:
            return ir.Constant(I1, 1)
        if fn in (Math.AND, Math.OR, Math.XOR):
            op = {Math.AND: b.and_, Math.OR: b.or_, Math.XOR: b.xor}[fn]
            return op(b.icmp_signed("!=", x, zero), b.icmp_signed("!=", y, zero))
        if fn is Math.NOT:
            return b.icmp_signed("==", x, zero)
        if fn is Math.POW:
            return b.call(self._ipow(ty), [x, y])
        if fn is Math.BITXOR:
            return b.xor(x, y)
        if fn is Math.SHR:
            # logical shift; shift counts outside [0, width) would be poison: mask them
            return b.lshr(x, b.and_(y, ir.Constant(ty, ty.width - 1)))
        raise UnimplementedError(f"cpu backend: Math.{fn.name} on {dt.name}")

    def _ipow(self, ty):
        """Integer power by squaring; a negative exponent counts as 0 (the reference's rule)."""
        name = f"gc.ipow.i{ty.width}"
        fn = self._decls.get(name)
        if fn is not None:
            return fn
        fn = ir.Function(self.module, ir.FunctionType(ty, [ty, ty]), name)
        fn.linkage = "internal"
        self._decls[name] = fn
        base, exp = fn.args
        entry = fn.append_basic_block("entry")
        loop = fn.append_basic_block("loop")
        done = fn.append_basic_block("done")
        b = ir.IRBuilder(entry)
        b.branch(loop)
        b.position_at_end(loop)
        r = b.phi(ty)
        x = b.phi(ty)
        e = b.phi(ty)
        r.add_incoming(ir.Constant(ty, 1), entry)
        x.add_incoming(base, entry)
        e.add_incoming(exp, entry)
        odd = b.icmp_signed("!=", b.and_(e, ir.Constant(ty, 1)), ir.Constant(ty, 0))
        pos = b.icmp_signed(">", e, ir.Constant(ty, 0))
        r2 = b.select(b.and_(odd, pos), b.mul(r, x), r)
        x2 = b.mul(x, x)
        e2 = b.ashr(e, ir.Constant(ty, 1))
        r.add_incoming(r2, loop)
        x.add_incoming(x2, loop)
        e.add_incoming(e2, loop)
        b.cbranch(b.icmp_signed(">", e2, ir.Constant(ty, 0)), loop, done)
        b.position_at_end(done)
        b.ret(r2)
        return fn


class _LoopID(ir.values.MDValue):
    """``distinct !{!self, hints...}``: the self-referential node LLVM expects as a loop ID
    (llvmlite's add_metadata neither makes cycles nor prints ``distinct``)."""

    def __init__(self, module, opts):
        super().__init__(module, [], name=str(len(module.metadata)))
        self.operands = (self, *opts)

    def descr(self, buf):
        buf += ("distinct ",)
        super().descr(buf)

    __hash__ = object.__hash__  # the operands hold the node itself

    def __eq__(self, other):
        return self is other


def _has_loop(body) -> bool:
    return any(isinstance(s, Loop) for s in body)


def _innermost_reduction(body) -> bool:
    """Whether ``body`` (of a loop) has no inner loop and updates a ``reduce`` accumulator."""
    return not any(isinstance(s, (Loop, If)) for s in body) and any(
        isinstance(s, Let) and s.reduce for s in body
    )


def render(kp: KernelProgram, fast_math: bool = False) -> tuple[ir.Module, Layout]:
    """LLVM module (entry ``gc_entry``) and buffer layout of a KernelProgram."""
    r = Renderer(kp, fast_math)
    return r.render(), r.layout


def _to_half(b, v, src):
    """``v`` (float64 or an integer) rounded once to float16, as numpy does. x86 converts
    only float32 to half in hardware; LLVM lowers a direct double or integer conversion to a
    runtime-library call (``__truncdfhf2``) that a JIT-loaded program cannot resolve (the
    process crashed). Going through float32 rounds twice, which can miss the nearest half on a
    tie, so the float32 step rounds to odd: truncate toward zero and set the last bit when
    inexact, then one correctly rounded float32 -> half conversion (round-to-odd makes the
    two-step rounding exact when the intermediate has 2 or more extra bits, and float32 has 13).
    Integers go through float64 first, exact below 2**53, far beyond half's range."""
    f64, f32 = ir.DoubleType(), ir.FloatType()
    if src != _dt.float64:
        v = b.sitofp(v, f64)
    r = b.fptrunc(v, f32)
    back = b.fpext(r, f64)
    exact = b.fcmp_unordered("==", back, v)  # true for NaN too (unordered): keep r
    away = b.fcmp_ordered(">", _fabs(b, back), _fabs(b, v))
    bits = b.bitcast(r, I32)
    bits = b.select(away, b.sub(bits, ir.Constant(I32, 1)), bits)
    bits = b.or_(bits, ir.Constant(I32, 1))
    odd = b.bitcast(bits, f32)
    r = b.select(exact, r, odd)
    return b.fptrunc(r, ir.HalfType())


def _fabs(b, x):
    fn = b.module.declare_intrinsic("llvm.fabs", [x.type])
    return b.call(fn, [x])
