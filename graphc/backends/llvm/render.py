"""Render a Kernel IR ``KernelProgram`` to one LLVM module (llvmlite's IR builder).

The module exports one entry point (the XLA-style "buffer table" function)::

    i32 gc_entry(ptr bufs, ptr dims, ptr trace, i32 nthreads)

``bufs[slot]`` holds a descriptor of each storage root (a buffer and every buffer that
``alias_of`` it share one slot; const buffers up to EMBED_CONST_MAX_BYTES are module globals
and take none, larger ones take a slot the runner fills once with their values): the address
of a numpy array object, whose word ``DATA_WORD`` is its data pointer (``PyArrayObject.data``
right after the PyObject header), or of an equivalent 3-word block (see ``runtime.py``).
Reading the pointer in native code saves the ~1 us ``arr.ctypes.data`` costs per buffer in
Python. ``dims[i]`` is the runtime size of each ``None`` dimension; ``trace`` is null or a
``double[2 * kernels]`` that receives CLOCK_MONOTONIC start/end times (the clock of
``time.perf_counter``) of every kernel; ``nthreads`` caps the threads a kernel uses.

Each distinct kernel becomes ``void kN(ptr noalias root..., ptr dims, i32 nthreads)``:
kernels that are the same computation on other buffers (``kernel/canon.py``: the steps of an
unrolled RNN, the layers of a deep MLP) share one function, and ``gc_entry`` is a loop over
constant tables (which function, which buffers) rather than one call per kernel, so the
module grows with the distinct kernels, not with the depth of the program. Distinct storage
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
division by a loop-invariant local has become a multiply by its reciprocal before rendering
(``kernel/recip.py``, a Kernel IR pass the cpu backend asks the pipeline for).
Transcendentals come from ``math.py`` (vectorisable polynomials).

This module is the driver (layout, entry point, kernels, statements); loops and their cost
model (PARALLEL_MIN_WORK, REDUCE_INTERLEAVE) are emitted by ``loops.py``, expressions by
``emit_expr.py``, and ``function.py`` holds the state of the function being emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir

from ... import dtypes as _dt
from ...errors import CompileError
from ...expr import expr_dtype
from ...kernel.canon import constant_store_bases, kernel_key, rebase_stores
from ...kernel.ir import If, KernelProgram, Let, LibCall, Loop, Store
from .blas import emit_libcall
from .emit_expr import ExprEmitter
from .epilogue import ROW_COLUMNS, ROW_EPILOGUES
from .function import _SSA, _Fn, _sanitize
from .irutil import F64, I8, I32, I64, PTR, VOID, gep, mark_cold, value_type
from .loops import LoopEmitter

#: index (in pointer words) of the data pointer in a buffer descriptor (PyArrayObject.data)
DATA_WORD = 2

#: constant buffers of at most this many bytes are module globals (scalars and small tables
#: become immediates); larger ones (an imported model's weights) take a buffer-table slot that
#: the runner fills once from the program's values: LLVM never prints, parses or emits them
#: (ResNet-50's ~100 MB were ~4 s of rendering and ~1.4 s of parsing of a ~16 s compile)
EMBED_CONST_MAX_BYTES = 4096


def static_nbytes(buf) -> int | None:
    """Bytes of a buffer whose shape is static (integer constants), else None."""
    n = buf.dtype.itemsize
    for d in buf.shape:
        v = d if isinstance(d, (int, np.integer)) else getattr(d, "value", None)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            return None
        n *= int(v)
    return n


def slotted_const(buf) -> bool:
    """Whether a const storage root lives in a buffer-table slot (see EMBED_CONST_MAX_BYTES),
    decided from its dtype and static shape alone, so a cache entry or an artifact (which hold
    no values for them) lays its buffers out the same way."""
    n = static_nbytes(buf)
    return buf.kind == "const" and n is not None and n > EMBED_CONST_MAX_BYTES


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
            if lay.root[name] == name and (buf.kind != "const" or slotted_const(buf)):
                lay.slots.append(name)
        lay.dims = list(kp.dims)
        return lay


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


class Renderer(LoopEmitter, ExprEmitter):
    """Builds the module for one KernelProgram; ``render()`` returns the llvmlite module.

    Statements and the module-level driver are here; loops (serial, outlined parallel) come
    from ``LoopEmitter`` (``loops.py``), expressions from ``ExprEmitter`` (``emit_expr.py``)."""

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
        """One function per distinct kernel (``kernel_key``: the same computation up to buffer
        and local names, after ``rebase_stores`` took the check-flag slot numbers out of the
        body), called by the entry point once per kernel with its own buffers."""
        emitted: dict = {}  # kernel key -> its function
        kfns = []
        for i, k in enumerate(self.kp.kernels):
            body = k.body
            bases = constant_store_bases(body, self.kp.buffers, self.layout.root)
            body = rebase_stores(body, self.layout.root, bases)
            key, roots = kernel_key(body, self.kp.buffers, self.layout.root)
            fn = emitted.get(key)
            if fn is None:  # (the same key: the same positions in the same body)
                marks = k.meta.get(ROW_EPILOGUES, ())
                cols = dict(k.meta.get(ROW_COLUMNS, ()))
                fn = emitted[key] = self._kernel(i, k.name, body, roots, marks, cols)
            # each root with the byte offset its pointer starts at (see rebase_stores)
            kfns.append((fn, [(r, bases[r][0] * bases[r][1] if r in bases else 0) for r in roots]))
        self.distinct_kernels = len(emitted)
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
        """``gc_entry``: a loop over the program's kernels, driven by constant tables.

        Per kernel the tables hold which function to call (its case in one ``switch``) and
        its arguments: a slot of ``bufs`` plus a byte offset, or a constant buffer. Straight
        code with one call per kernel grows with the kernel count and LLVM's code generation
        time with it (the 64-step LSTM's entry point of 2,080 calls took seconds); the loop's
        code grows only with the number of distinct kernel functions."""
        fn = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR, PTR, I32]), "gc_entry")
        mark_cold(fn)
        bufs, dims, trace, nthreads = fn.args
        slot_of = {n: i for i, n in enumerate(self.layout.slots)}
        cases: dict = {}  # kernel function -> (case number, argument count)
        consts: dict = {}  # const root -> its index in the constant-pointer array
        case_of, arg_start, arg_slot, arg_offset = [], [], [], []
        for kfn, roots in kfns:
            cases.setdefault(kfn, (len(cases), len(roots)))
            case_of.append(cases[kfn][0])
            arg_start.append(len(arg_slot))
            for root, offset in roots:
                if root not in slot_of:  # an embedded constant (see EMBED_CONST_MAX_BYTES)
                    arg_slot.append(-1 - consts.setdefault(root, len(consts)))
                else:
                    arg_slot.append(slot_of[root])
                arg_offset.append(offset)
        arg_start.append(len(arg_slot))
        t_case = self._table("gc.kernel_case", I32, case_of)
        t_start = self._table("gc.arg_start", I32, arg_start)
        t_slot = self._table("gc.arg_slot", I32, arg_slot)
        t_off = self._table("gc.arg_offset", I64, arg_offset)
        cptrs = self._table("gc.const_ptr", PTR, [self.const_global(r) for r in consts])
        stamp = self._stamp_fn()

        entry = fn.append_basic_block("entry")
        head, body, arg_head, arg_body = (fn.append_basic_block(n) for n in
                                          ("head", "body", "arg.head", "arg.body"))  # fmt: skip
        from_buf, from_const, arg_next, dispatch, latch, done = (
            fn.append_basic_block(n)
            for n in ("arg.buf", "arg.const", "arg.next", "dispatch", "latch", "exit")
        )
        b = ir.IRBuilder(entry)
        nargs = max([n for _, n in cases.values()] + [1])
        argv = b.alloca(ir.ArrayType(PTR, nargs), name="argv")
        b.branch(head)

        b.position_at_end(head)
        i = b.phi(I64, name="k")
        i.add_incoming(ir.Constant(I64, 0), entry)
        b.cbranch(b.icmp_signed("<", i, ir.Constant(I64, len(kfns))), body, done)

        b.position_at_end(body)
        b.call(stamp, [trace, b.shl(i, ir.Constant(I64, 1))])
        case = b.load(self._at(b, t_case, I32, i), typ=I32)
        a0 = b.sext(b.load(self._at(b, t_start, I32, i), typ=I32), I64)
        i1 = b.add(i, ir.Constant(I64, 1))
        a1 = b.sext(b.load(self._at(b, t_start, I32, i1), typ=I32), I64)
        b.branch(arg_head)

        b.position_at_end(arg_head)
        j = b.phi(I64, name="a")
        j.add_incoming(a0, body)
        b.cbranch(b.icmp_signed("<", j, a1), arg_body, dispatch)

        b.position_at_end(arg_body)
        slot = b.sext(b.load(self._at(b, t_slot, I32, j), typ=I32), I64)
        b.cbranch(b.icmp_signed(">=", slot, ir.Constant(I64, 0)), from_buf, from_const)

        b.position_at_end(from_buf)
        # a slot holds a descriptor whose third word is the data pointer: a numpy array
        # object itself (PyArrayObject.data follows PyObject_HEAD)
        desc = b.load(self._at(b, bufs, PTR, slot), typ=PTR)
        data = b.load(self._at(b, desc, PTR, ir.Constant(I64, DATA_WORD)), typ=PTR)
        off = b.load(self._at(b, t_off, I64, j), typ=I64)
        p_buf = gep(b, data, [off], inbounds=True, source_etype=I8)
        b.branch(arg_next)

        b.position_at_end(from_const)
        p_const = b.load(self._at(b, cptrs, PTR, b.sub(ir.Constant(I64, -1), slot)), typ=PTR)
        b.branch(arg_next)

        b.position_at_end(arg_next)
        p = b.phi(PTR)
        p.add_incoming(p_buf, from_buf)
        p.add_incoming(p_const, from_const)
        b.store(p, self._at(b, argv, PTR, b.sub(j, a0)))
        j.add_incoming(b.add(j, ir.Constant(I64, 1)), arg_next)
        b.branch(arg_head)

        b.position_at_end(dispatch)
        sw = b.switch(case, latch)
        for kfn, (c, n) in cases.items():
            blk = fn.append_basic_block(f"case{c}")
            sw.add_case(ir.Constant(I32, c), blk)
            b.position_at_end(blk)
            args = [b.load(self._at(b, argv, PTR, ir.Constant(I64, a)), typ=PTR) for a in range(n)]
            b.call(kfn, args + [dims, nthreads])
            b.branch(latch)

        b.position_at_end(latch)
        b.call(stamp, [trace, b.add(b.shl(i, ir.Constant(I64, 1)), ir.Constant(I64, 1))])
        i.add_incoming(i1, latch)
        b.branch(head)

        b.position_at_end(done)
        b.ret(ir.Constant(I32, 0))

    def _table(self, name: str, ty, values: list) -> ir.GlobalVariable:
        """A constant global array of ``ty`` holding ``values`` (one element at least);
        for ``PTR``, ``values`` are globals whose addresses it holds."""
        arr = ir.ArrayType(ty, max(len(values), 1))
        g = ir.GlobalVariable(self.module, arr, name=name)
        if ty == PTR:  # addresses of globals (the constant buffers)
            items = values or [ir.Constant(PTR, None)]
        else:
            items = [ir.Constant(ty, v) for v in (values or [0])]
        g.initializer = ir.Constant(arr, items)
        g.global_constant = True
        g.linkage = "internal"
        return g

    @staticmethod
    def _at(b: ir.IRBuilder, base, ety, index):
        """Address of element ``index`` of an array of ``ety`` starting at ``base``."""
        return gep(b, base, [index], inbounds=True, source_etype=ety)

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

    def _kernel(self, i: int, kname: str, body, roots: list, row_epilogues=(), row_cols=None):
        """``void kN.<name>(ptr noalias root..., ptr dims, i32 nthreads)`` computing ``body``
        on storage ``roots`` (in ``kernel_key``'s order); the GEMMs at top-level positions
        ``row_epilogues`` (``epilogue.plan_row_epilogues``) run the loop after them per row
        chunk (a loop over rows of ``row_cols[position]`` elements where that names one)."""
        name = f"k{i}.{_sanitize(kname)}"
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
        f.row_epilogues = frozenset(row_epilogues)
        f.row_cols = dict(row_cols or {})
        self._stmts(f, body, top=True)
        f.b.ret_void()
        f.finish()
        return fn

    # -- statements -------------------------------------------------------------------------
    def _stmts(self, f: _Fn, body, top=False):
        skip = None
        for j, s in enumerate(body):
            f.memo = {}
            if s is skip:  # an epilogue rendered with its GEMM
                continue
            nxt = body[j + 1] if j + 1 < len(body) else None
            if top and j in f.row_epilogues:
                if not (isinstance(s, LibCall) and isinstance(nxt, Loop)):
                    raise CompileError(
                        f"kernel {f.kernel_name}: its row-epilogue plan names statement {j}, "
                        "which is no GEMM followed by a loop (the body changed after "
                        "epilogue.plan_row_epilogues)"
                    )
                self._gemm_with_epilogue(f, s, nxt, f.row_cols.get(j))
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

    # -- library calls ----------------------------------------------------------------------
    def _libcall(self, f: _Fn, s: LibCall):
        emit_libcall(self, f, s)


def render(kp: KernelProgram, fast_math: bool = False) -> tuple[ir.Module, Layout]:
    """LLVM module (entry ``gc_entry``) and buffer layout of a KernelProgram."""
    r = Renderer(kp, fast_math)
    return r.render(), r.layout
