"""Kernel IR -> CUDA C: one module per KernelProgram, one or more launches per Kernel.

How a ``Kernel`` body becomes launches (each a ``Launch``, in order):

* The body is cut into units: each top-level parallel ``Loop``, each ``LibCall``, and each
  maximal run of other statements. Top-level ``Let``s are scalars: they are re-evaluated at
  the start of every later launch that reads them (only when that is provably the same
  value; otherwise the whole kernel runs as one ``serial`` launch, which is always right).
* A parallel loop (perfect nests of parallel loops are collapsed into one index space, and
  so are inner sequential loops that are plain element-wise maps) becomes a grid-stride
  loop over ``blockIdx``/``threadIdx``: ``threads``, one thread per iteration, other inner
  loops stay sequential C loops. Where its loads and stores are contiguous and aligned,
  each thread takes 4 (or 2) iterations a step and moves them as one 128-bit
  ``float4``/``double2`` access, with a scalar loop for the tail and for misaligned
  pointers (``vectorize.py`` decides which accesses may move).
* When its body has the row-reduction shape (inner sequential loops whose iterations only
  accumulate ``reduce=True`` lets or store to distinct elements), a second function maps
  one *block* per iteration (``rows``): each inner loop is strided over the block's
  threads, accumulators combine with warp shuffles and shared memory (``reduce.cuh``),
  and the runtime picks rows or threads from the sizes it sees (``launch.py``). This is
  what turns softmax / layer norm / reduce_* into one pass per row block.
* Bodies with no parallel loop run as ``rows`` with one row when they have that shape
  (e.g. a full reduction), else on one thread (``serial``).
* ``LibCall("gemm")`` is a ``gemm`` launch: the runtime calls cuBLAS when it finds it, else
  the tiled kernel of ``kernels/cuda/gemm.cuh`` (always compiled into the module).

Runtime sizes (``Dim``) are ``long long`` kernel arguments; nothing is specialised on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ... import dtypes as _dt
from ...errors import CompileError, UnimplementedError
from ...expr import Call, Cast, Const, Dim, Expr, Load, Math, Var, expr_dtype, sub_exprs
from ...kernel.ir import (
    LIBCALLS,
    STATUS_BUFFER,
    If,
    Kernel,
    KernelProgram,
    Let,
    LibCall,
    Loop,
    Store,
    exprs_in,
    stmt_exprs,
    walk_stmts,
)
from .mathtable import (
    STORAGE_TYPE,
    VALUE_TYPE,
    render_call,
    render_cast,
    render_const,
    render_wrapping,
)
from .vectorize import LANES, VectorPlan, plan_vectors, vector_type

#: Hand-written CUDA templates pasted into every module, in this order.
TEMPLATES = ("prelude.cuh", "reduce.cuh", "gemm.cuh")


def kernels_dir() -> Path:
    """The folder holding the hand-written CUDA templates: ``kernels/cuda`` of the checkout,
    or ``graphc/_cuda_kernels`` where setup.py put them in an installed wheel."""
    return find_kernels_dir(Path(__file__).resolve().parents[2])


def find_kernels_dir(package: Path) -> Path:
    """``kernels/cuda`` beside the ``graphc`` package folder ``package``, else the copy
    inside it (``_cuda_kernels``); FileNotFoundError naming both places if neither exists."""
    for candidate in (package.parent / "kernels" / "cuda", package / "_cuda_kernels"):
        if (candidate / "prelude.cuh").is_file():
            return candidate
    raise FileNotFoundError(
        f"the CUDA templates (prelude.cuh...) are missing: looked in {package.parent}/kernels/cuda "
        f"and {package}/_cuda_kernels; reinstall graphc"
    )


def template_source() -> str:
    parts = []
    for name in TEMPLATES:
        path = kernels_dir() / name
        parts.append(f"// ---- {name} ----\n{path.read_text()}")
    return "\n".join(parts)


# -- what the runtime needs to launch a module --------------------------------------------------


@dataclass
class Launch:
    """One launch of a generated kernel.

    kind: ``threads`` (grid-stride over ``count`` iterations, ``vector`` per thread a step),
    ``rows`` (one block per row of ``count`` rows, inner cooperative loops of length
    ``inner``; ``alt`` names the one-thread-per-row function of the same loop), ``serial``
    (one thread), ``gemm``.
    params: ``("buffer", name)`` / ``("dim", name)`` in argument order.
    """

    kind: str
    function: str = ""
    params: tuple = ()
    count: Expr | None = None
    inner: Expr | None = None
    alt: str | None = None
    contiguous: bool = True
    args: tuple = ()  # gemm: the LibCall arguments (see graphc.kernel.ir.LIBCALLS)
    alt_params: tuple = ()  # parameters of ``alt``
    loops: tuple = ()  # gemm: (var, start, stop) of enclosing loops, outermost first
    vector: int = 1  # threads: iterations per thread per step (vectorised loads/stores)


@dataclass
class RenderedKernel:
    name: str
    ops: tuple
    op_types: tuple
    launches: list
    notes: list = field(default_factory=list)  # why a kernel got a slower mapping


@dataclass
class CudaModule:
    """The CUDA C of one KernelProgram and how to launch each of its kernels."""

    source: str  # complete translation unit: templates + generated functions
    kernels: list  # list[RenderedKernel]
    functions: list  # the generated __global__ function names
    body: str = ""  # the generated functions alone (tests batch several modules)


# -- names ----------------------------------------------------------------------------------


class _Namer:
    """Maps IR names to distinct C identifiers with a fixed prefix."""

    def __init__(self):
        self.names: dict = {}
        self.used: set = set()

    def __call__(self, prefix: str, name: str) -> str:
        key = (prefix, name)
        if key not in self.names:
            base = prefix + re.sub(r"\W", "_", name)[:48]
            ident, n = base, 1
            while ident in self.used:
                ident, n = f"{base}_{n}", n + 1
            self.used.add(ident)
            self.names[key] = ident
        return self.names[key]


# -- small analyses over statements and expressions -----------------------------------------


def _var_names(e: Expr) -> set:
    return {x.name for x in sub_exprs(e) if isinstance(x, Var)}


def _reads(stmts) -> set:
    """Buffers loaded by ``stmts`` (LibCall operands count as reads too)."""
    out = {x.buffer for x in exprs_in(stmts) if isinstance(x, Load)}
    for s in walk_stmts(stmts):
        if isinstance(s, LibCall) and s.fn == "gemm":
            out.update(s.args[:3])
    return out


def _writes(stmts) -> set:
    out = set()
    for s in walk_stmts(stmts):
        if isinstance(s, Store):
            out.add(s.buffer)
        elif isinstance(s, LibCall) and s.fn == "gemm":
            out.add(s.args[2])
    return out


def _assigned(stmts) -> set:
    return {s.var for s in walk_stmts(stmts) if isinstance(s, Let)}


def _reads_before_write(stmts, var: str) -> bool:
    """Whether ``var`` may be read by ``stmts`` before they assign it (conservative)."""
    for s in stmts:
        if isinstance(s, Let):
            if var in _var_names(s.value):
                return True
            if s.var == var:
                return False
        elif isinstance(s, Loop):
            if var in _var_names(s.start) | _var_names(s.stop):
                return True
            if _reads_before_write(s.body, var):
                return True  # a write inside a loop may not happen (zero trips)
            if s.var == var:
                return False
        elif isinstance(s, If):
            if var in _var_names(s.cond):
                return True
            if _reads_before_write(s.then, var) or _reads_before_write(s.orelse, var):
                return True
        else:
            if any(var in _var_names(e) for e in stmt_exprs(s)):
                return True
    return False


def _linear_coeff(e: Expr, var: str):
    """c when ``e`` is ``c*var + (terms free of var)`` with int c, None when unknown."""
    if var not in _var_names(e):
        return 0
    if isinstance(e, Var):
        return 1
    if isinstance(e, Call) and e.fn in (Math.ADD, Math.SUB):
        a, b = (_linear_coeff(x, var) for x in e.args)
        if a is None or b is None:
            return None
        return a + b if e.fn is Math.ADD else a - b
    if isinstance(e, Call) and e.fn is Math.MUL:
        x, y = e.args
        if isinstance(y, Const) and not isinstance(x, Const):
            x, y = y, x
        if isinstance(x, Const) and isinstance(x.value, int | bool):
            c = _linear_coeff(y, var)
            return None if c is None else c * int(x.value)
    if isinstance(e, Cast) and e.dtype == _dt.int64:
        return _linear_coeff(e.x, var)
    return None


def _subst(e: Expr, names: dict) -> Expr:
    """``e`` with Var(name) replaced by Var(names[name])."""
    if isinstance(e, Var):
        return Var(names[e.name], e.dtype) if e.name in names else e
    if isinstance(e, Call):
        return Call(e.fn, tuple(_subst(a, names) for a in e.args))
    if isinstance(e, Cast):
        return Cast(_subst(e.x, names), e.dtype)
    if isinstance(e, Load):
        return Load(e.buffer, _subst(e.index, names), e.dtype)
    return e


_REDUCERS = {Math.ADD: "GcAdd", Math.MUL: "GcMul", Math.MAX: "GcMax", Math.MIN: "GcMin",
             Math.AND: "GcAnd", Math.OR: "GcOr"}  # fmt: skip


def _identity(fn: Math, dtype: _dt.DType) -> Const:
    if fn is Math.ADD:
        return Const(0, dtype) if not dtype.is_floating else Const(0.0, dtype)
    if fn is Math.MUL:
        return Const(1, dtype) if not dtype.is_floating else Const(1.0, dtype)
    if fn is Math.AND:
        return Const(True, dtype)
    if fn is Math.OR:
        return Const(False, dtype)
    if dtype.is_floating:
        return Const(float("-inf") if fn is Math.MAX else float("inf"), dtype)
    info = _dt.int32 if dtype == _dt.int32 else _dt.int64
    bits = 31 if info == _dt.int32 else 63
    return Const(-(2**bits) if fn is Math.MAX else 2**bits - 1, dtype)


def _reduction_of(s: Let):
    """(fn, other operand) when ``s`` is ``acc = fn(acc, other)`` with a known reducer."""
    if not (s.reduce and isinstance(s.value, Call) and s.value.fn in _REDUCERS):
        return None
    if s.dtype.is_bool != (s.value.fn in (Math.AND, Math.OR)):
        return None  # logical reducers on bools only, arithmetic ones on numbers only
    a, b = s.value.args
    me = Var(s.var, s.dtype)
    if a == me and s.var not in _var_names(b):
        return s.value.fn, b
    if b == me and s.var not in _var_names(a):
        return s.value.fn, a
    return None


# -- the renderer ---------------------------------------------------------------------------


class _Function:
    """Builds one __global__ function: declarations, body lines, parameters used."""

    def __init__(self, module: _ModuleRenderer, name: str):
        self.module = module
        self.name = name
        self.decls: dict = {}  # C name -> C type
        self.lines: list = []
        self.buffers: set = set()
        self.written: set = set()
        self.dims: set = set()
        self.nonneg: set = set()  # loop variables known to be >= 0
        self.uses_smem = False
        self._tmp = 0

    # names
    def var(self, name: str, dtype: _dt.DType) -> str:
        ident = self.module.names("v_", name)
        ctype = VALUE_TYPE[dtype.name]
        prev = self.decls.get(ident)
        if prev is not None and prev != ctype:
            raise CompileError(f"cuda renderer: scalar '{name}' is used as {prev} and {ctype}")
        self.decls[ident] = ctype
        return ident

    def vec(self, name: str, ctype: str) -> str:
        """Declare a local of a CUDA vector type (``float4``...)."""
        ident = self.module.names("v_", name)
        self.decls[ident] = ctype
        return ident

    def tmp(self, dtype: _dt.DType) -> Var:
        self._tmp += 1
        name = f"__t{self._tmp}"
        self.var(name, dtype)
        return Var(name, dtype)

    def buf(self, name: str) -> str:
        if name not in self.module.program.buffers:
            raise CompileError(f"cuda renderer: kernel uses unknown buffer '{name}'")
        self.buffers.add(name)
        return self.module.names("b_", name)

    # expressions
    def expr(self, e: Expr) -> str:
        if isinstance(e, Const):
            return render_const(e.value, e.dtype)
        if isinstance(e, Var):
            return self.var(e.name, e.dtype)
        if isinstance(e, Dim):
            self.dims.add(e.name)
            return self.module.names("d_", e.name)
        if isinstance(e, Load):
            b = self.buf(e.buffer)
            idx = self.expr(e.index)
            if self.module.program.buffers[e.buffer].dtype == _dt.float16:
                return f"__half2float({b}[{idx}])"
            return f"{b}[{idx}]"
        if isinstance(e, Cast):
            return render_cast(self.expr(e.x), expr_dtype(e.x), e.dtype)
        if isinstance(e, Call):
            args = [self.expr(a) for a in e.args]
            operand = expr_dtype(e.args[1] if e.fn is Math.SELECT else e.args[0])
            if e.fn in (Math.FLOORDIV, Math.MOD, Math.DIV) and operand.is_integer:
                fast = self._index_division(e, args)
                if fast:
                    return fast
            if e.fn in (Math.ADD, Math.SUB, Math.MUL) and operand in (_dt.int32, _dt.int64):
                if not (e.fn is not Math.SUB and self._small_index(e)):
                    return render_wrapping(e.fn, args, operand)
            return render_call(e.fn, args, operand, expr_dtype(e))
        raise CompileError(f"cuda renderer: cannot render expression {e!r}")

    def _index_division(self, e: Call, args: list) -> str | None:
        """Plain ``/`` and ``%`` for index arithmetic on values known to be >= 0."""
        a, b = e.args
        if self._nonneg(a) and self._positive(b):
            return f"({args[0]} {'%' if e.fn is Math.MOD else '/'} {args[1]})"
        return None

    def _small_index(self, e: Call) -> bool:
        """Index arithmetic: operands >= 0 and constants small, so plain C cannot overflow
        (sizes fit in int64 by construction) and the compiler keeps its loop optimisations."""
        return all(
            self._nonneg(a) and not (isinstance(a, Const) and abs(int(a.value)) >= 2**31)
            for a in e.args
        )

    def _nonneg(self, e: Expr) -> bool:
        if isinstance(e, Const):
            return isinstance(e.value, int | bool) and e.value >= 0
        if isinstance(e, Dim):
            return True
        if isinstance(e, Var):
            return e.name in self.nonneg
        if isinstance(e, Call) and e.fn in (Math.ADD, Math.MUL, Math.FLOORDIV, Math.MOD,
                                            Math.MAX, Math.MIN, Math.DIV):  # fmt: skip
            return all(self._nonneg(a) for a in e.args)
        if isinstance(e, Call) and e.fn is Math.SELECT:  # broadcast indices: c ? 0 : i
            return self._nonneg(e.args[1]) and self._nonneg(e.args[2])
        return False

    def _positive(self, e: Expr) -> bool:
        # A Dim may be 0, but then every loop over it is empty and no division runs.
        if isinstance(e, Const):
            return isinstance(e.value, int) and e.value > 0
        if isinstance(e, Dim):
            return True
        if isinstance(e, Call) and e.fn is Math.MUL:
            return all(self._positive(a) for a in e.args)
        return False

    # statements (sequential meaning, one thread)
    def emit(self, line: str, depth: int):
        self.lines.append("  " * depth + line)

    def store(self, s: Store, depth: int, guard: str = ""):
        b = self.buf(s.buffer)
        self.written.add(s.buffer)
        value = self.expr(s.value)
        if self.module.program.buffers[s.buffer].dtype == _dt.float16:
            value = f"__float2half_rn({value})"
        self.emit(f"{guard}{b}[{self.expr(s.index)}] = {value};", depth)

    def loop_header(self, s: Loop, depth: int, start: str | None = None, step: str = "++{v}"):
        v = self.var(s.var, _dt.int64)
        if self._nonneg(s.start):
            self.nonneg.add(s.var)
        end = self.tmp(_dt.int64)
        first = start if start is not None else self.expr(s.start)
        self.emit(f"{self.var(end.name, _dt.int64)} = {self.expr(s.stop)};", depth)
        self.emit(f"for ({v} = {first}; {v} < {self.expr(end)}; {step.format(v=v)}) {{", depth)

    def stmts(self, stmts, depth: int):
        for s in stmts:
            if isinstance(s, Let):
                self.emit(f"{self.var(s.var, s.dtype)} = {self.expr(s.value)};", depth)
            elif isinstance(s, Store):
                self.store(s, depth)
            elif isinstance(s, Loop):
                self.loop_header(s, depth)
                self.stmts(s.body, depth + 1)
                self.emit("}", depth)
            elif isinstance(s, If):
                self.if_(s, depth)
            elif isinstance(s, LibCall):
                raise UnimplementedError(
                    f"cuda renderer: LibCall '{s.fn}' inside a loop or sequence is not supported"
                )
            else:
                raise CompileError(f"cuda renderer: unknown statement {s!r}")

    def if_(self, s: If, depth: int, stores_guard: str = ""):
        self.emit(f"if ({self.expr(s.cond)}) {{", depth)
        self._branch(s.then, depth + 1, stores_guard)
        if s.orelse:
            self.emit("} else {", depth)
            self._branch(s.orelse, depth + 1, stores_guard)
        self.emit("}", depth)

    def _branch(self, stmts, depth, stores_guard):
        if not stores_guard:
            self.stmts(stmts, depth)
            return
        for s in stmts:  # rows mode, row level: Lets on every thread, Stores on thread 0
            if isinstance(s, Store):
                self.store(s, depth, guard=stores_guard)
            elif isinstance(s, If):
                self.if_(s, depth, stores_guard)
            else:
                self.stmts([s], depth)

    def source(self) -> str:
        roots = [self.module.root(b) for b in self.buffers]
        params = [
            self.module.param_decl(b, b in self.written, roots.count(self.module.root(b)) == 1)
            for b in self.module.ordered(self.buffers)
        ]
        params += [f"gc_i64 {self.module.names('d_', d)}" for d in sorted(self.dims)]
        head = f'extern "C" __global__ void {self.name}({", ".join(params) or "void"}) {{'
        body = [f"  {t} {n};" for n, t in sorted(self.decls.items())]
        if self.uses_smem:
            body.append("  __shared__ __align__(16) unsigned char gc_smem[32 * 8];")
        return "\n".join([head, *body, *self.lines, "}"])

    def params(self) -> tuple:
        return tuple(("buffer", b) for b in self.module.ordered(self.buffers)) + tuple(
            ("dim", d) for d in sorted(self.dims)
        )


class _ModuleRenderer:
    def __init__(self, program: KernelProgram, prefix: str = "gc_"):
        self.program = program
        self.prefix = prefix
        self.names = _Namer()
        self.functions: list = []
        self._order = {name: i for i, name in enumerate(program.buffers)}

    def ordered(self, buffers) -> list:
        return sorted(buffers, key=lambda b: self._order[b])

    def root(self, buffer: str) -> str:
        """The buffer whose storage ``buffer`` shares (itself when it owns its storage)."""
        while self.program.buffers[buffer].alias_of is not None:
            buffer = self.program.buffers[buffer].alias_of
        return buffer

    def param_decl(self, buffer: str, written: bool, alone: bool) -> str:
        """A pointer parameter; ``__restrict__`` when no other parameter of the function can
        share its storage (distinct buffers live in distinct allocations unless planned
        to alias), which lets loads go through the read-only cache."""
        ident = self.names("b_", buffer)
        ctype = STORAGE_TYPE[self.program.buffers[buffer].dtype.name]
        if alone:
            ident = f"__restrict__ {ident}"
        return f"{'' if written else 'const '}{ctype}* {ident}"

    # -- kernels ----------------------------------------------------------------------------
    def kernel(self, index: int, k: Kernel) -> RenderedKernel:
        base = f"{self.prefix}k{index}_{re.sub(r'[^0-9A-Za-z_]', '_', k.name)[:40]}"
        rk = RenderedKernel(k.name, tuple(k.ops), tuple(k.op_types), [])
        units = self._units(k.body)
        plans = self._split(units, rk)
        for n, (prefix, unit) in enumerate(plans):
            name = base if len(plans) == 1 else f"{base}_{n}"
            rk.launches.append(self._launch(name, prefix, unit, rk))
        return rk

    @staticmethod
    def _units(body) -> list:
        units, run = [], []
        for s in body:
            if (isinstance(s, Loop) and s.parallel) or isinstance(s, LibCall):
                if run:
                    units.append(run)
                    run = []
                units.append([s])
            else:
                run.append(s)
        if run:
            units.append(run)
        return units

    def _split(self, units, rk) -> list:
        """[(prefix lets, unit statements)] per launch; one serial unit when unsafe to cut."""
        if len(units) <= 1:
            return [((), units[0])] if units else []
        body = [s for u in units for s in u]
        written = _writes(body)
        in_loops = _assigned([s for s in body if isinstance(s, Loop)])
        plans, prefix = [], []
        for unit in units:
            if all(isinstance(s, Let) for s in unit):
                prefix.extend(unit)
                continue
            needed = {v for v in _assigned(body) if _reads_before_write(unit, v)}
            if needed & in_loops or any(
                let.var in needed and _reads([let]) & written for let in prefix
            ):
                rk.notes.append(f"serial: scalars {sorted(needed)} cross launches")
                return [((), body)]
            if any(isinstance(s, LibCall) for s in unit) and needed:
                rk.notes.append("serial: a library call reads a scalar local")
                return [((), body)]
            plans.append((tuple(prefix), unit))
            # Lets inside a unit that later units read would need carrying: refuse.
            prefix.extend(s for s in unit if isinstance(s, Let))
        return plans

    def _launch(self, name: str, prefix: tuple, unit: list, rk) -> Launch:
        if len(unit) == 1 and isinstance(unit[0], LibCall):
            return self._libcall(unit[0])
        nest = _libcall_nest(unit)
        if nest is not None:  # batched GEMM by loops: one library call per iteration
            loops, call = nest
            launch = self._libcall(call, {v for v, _, _ in loops})
            launch.loops = tuple(loops)
            return launch
        if len(unit) == 1 and isinstance(unit[0], Loop) and unit[0].parallel:
            return self._parallel(name, list(prefix), unit[0], rk)
        rows = self._rows_function(name, list(prefix), unit, None, rk)
        if rows is not None:
            fn, inner, contiguous = rows
            return Launch("rows", fn.name, fn.params(), Const(1, _dt.int64), inner, None,
                          contiguous)  # fmt: skip
        fn = _Function(self, name)
        fn.emit("if (blockIdx.x != 0 || threadIdx.x != 0) return;", 1)
        fn.stmts([*prefix, *unit], 1)
        self._add(fn)
        return Launch("serial", fn.name, fn.params())

    def _libcall(self, s: LibCall, loop_vars=frozenset()) -> Launch:
        if s.fn not in LIBCALLS:
            raise UnimplementedError(f"cuda renderer: unknown library call '{s.fn}'")
        if len(s.args) != len(LIBCALLS[s.fn]):
            raise CompileError(
                f"cuda renderer: {s.fn} takes {len(LIBCALLS[s.fn])} arguments, got {len(s.args)}"
            )
        for name, a in zip(LIBCALLS[s.fn], s.args):
            if name in ("A", "B", "C"):
                if a not in self.program.buffers:
                    raise CompileError(f"cuda renderer: gemm operand {name}={a!r} is no buffer")
            elif any(
                isinstance(x, Load) or (isinstance(x, Var) and x.name not in loop_vars)
                for x in sub_exprs(a)
            ):
                raise UnimplementedError(
                    f"cuda renderer: gemm argument {name} must depend on sizes and enclosing "
                    f"loop variables only, got {a!r}"
                )
        dtypes = {self.program.buffers[b].dtype for b in s.args[:3]}
        if len(dtypes) != 1 or next(iter(dtypes)) not in (_dt.float16, _dt.float32, _dt.float64):
            raise UnimplementedError(f"cuda renderer: gemm on {sorted(d.name for d in dtypes)}")
        return Launch("gemm", "", tuple(("buffer", b) for b in s.args[:3]), args=tuple(s.args))

    # -- parallel loops ---------------------------------------------------------------------
    @staticmethod
    def _collapse(loop: Loop):
        """Perfect nest of parallel loops with independent bounds -> [(var, start, stop)], body."""
        nest, body = [(loop.var, loop.start, loop.stop)], loop.body
        while len(body) == 1 and isinstance(body[0], Loop) and body[0].parallel:
            inner = body[0]
            outer_vars = {v for v, _, _ in nest}
            if (_var_names(inner.start) | _var_names(inner.stop)) & outer_vars:
                break
            nest.append((inner.var, inner.start, inner.stop))
            body = inner.body
        return nest, list(body)

    def _index_space(self, fn: _Function, nest, depth: int, flat: str) -> None:
        """Assign the nest's loop variables from the flat index ``flat`` (row-major)."""
        extents = [_extent(start, stop) for _, start, stop in nest]
        rest = flat
        for i, (var, start, _) in enumerate(nest):
            v = fn.var(var, _dt.int64)
            if fn._nonneg(start):
                fn.nonneg.add(var)
            if i == len(nest) - 1:
                fn.emit(f"{v} = {fn.expr(start)} + {rest};", depth)
            else:
                inner = fn.expr(_product(extents[i + 1 :]))
                fn.emit(f"{v} = {fn.expr(start)} + {rest} / ({inner});", depth)
                rest = f"({rest} % ({inner}))"

    def _parallel(self, name: str, prefix: list, loop: Loop, rk) -> Launch:
        nest, body = self._collapse(loop)
        nest, body = self._flatten_maps(nest, body)
        count = _product([_extent(start, stop) for _, start, stop in nest])
        threads = _Function(self, name)
        threads.stmts(prefix, 1)
        n = threads.tmp(_dt.int64)
        threads.emit(f"{threads.expr(n)} = {threads.expr(count)};", 1)
        vec = plan_vectors(nest, body, self.program.buffers, self.root)
        first = "(gc_i64)blockIdx.x * blockDim.x + threadIdx.x"
        if vec is not None:
            done = self._vector_loop(threads, nest, body, vec, threads.expr(n))
            first = f"{done} + {first}"  # the scalar loop finishes what quads left
        gi = threads.tmp(_dt.int64)
        g = threads.expr(gi)
        threads.emit(
            f"for ({g} = {first}; {g} < {threads.expr(n)}; "
            f"{g} += (gc_i64)gridDim.x * blockDim.x) {{",
            1,
        )
        self._index_space(threads, nest, 2, g)
        threads.stmts(body, 2)
        threads.emit("}", 1)
        self._add(threads)
        rows = self._rows_function(name + "_rows", prefix, body, nest, rk)
        if rows is None:
            launch = Launch("threads", threads.name, threads.params(), count)
            launch.vector = vec.width if vec is not None else 1
            return launch
        fn, inner, contiguous = rows
        launch = Launch("rows", fn.name, fn.params(), count, inner, threads.name, contiguous)
        launch.alt_params = threads.params()
        return launch

    def _flatten_maps(self, nest, body):
        """Absorb inner sequential loops whose iterations are independent element-wise maps
        (no accumulator, distinct stores: what a block-per-row mapping would also accept)
        into the parallel index space: one thread per element, not per row."""
        nest = list(nest)
        while len(body) == 1 and isinstance(body[0], Loop) and not body[0].parallel:
            inner = body[0]
            bounds = [x for e in (inner.start, inner.stop) for x in sub_exprs(e)]
            if any(isinstance(x, Var | Load) for x in bounds):
                break  # the launch size must be computable from the run's dims alone
            if any(isinstance(s, Let) and s.reduce for s in inner.body):
                break
            if self._coop_refusal(inner, []) is not None:
                break
            nest.append((inner.var, inner.start, inner.stop))
            body = list(inner.body)
        return nest, body

    def _vector_loop(self, fn: _Function, nest, body, vec: VectorPlan, n: str) -> str:
        """Emit the quad loop of ``vec`` (each thread: ``width`` iterations, vector loads at
        the start, vector stores at the end); returns the C expression of how many flat
        iterations it covered (0 when a pointer is not aligned for the vectors)."""
        w = vec.width
        buffers = self.program.buffers
        moved = list(dict.fromkeys([b for b, _ in vec.loads] + list(vec.stores)))
        aligned = " | ".join(f"(unsigned long long){fn.buf(b)}" for b in moved)
        mask = w * max(buffers[b].dtype.itemsize for b in moved) - 1
        nq, q, base = fn.tmp(_dt.int64), fn.tmp(_dt.int64), fn.tmp(_dt.int64)
        fn.emit(f"{fn.expr(nq)} = (({aligned}) & {mask}ULL) == 0 ? {n} / {w} : 0;", 1)
        fn.emit(
            f"for ({fn.expr(q)} = (gc_i64)blockIdx.x * blockDim.x + threadIdx.x; "
            f"{fn.expr(q)} < {fn.expr(nq)}; {fn.expr(q)} += (gc_i64)gridDim.x * blockDim.x) {{",
            1,
        )
        self._index_space(fn, nest, 2, f"({fn.expr(q)} * {w})")
        inner = fn.var(nest[-1][0], _dt.int64)
        fn.emit(f"{fn.expr(base)} = {inner};", 2)
        loaded = {}
        for k, (b, index) in enumerate(vec.loads):
            vt = vector_type(buffers[b].dtype, w)
            v = fn.vec(f"__vl{k}", vt)
            fn.emit(f"{v} = *reinterpret_cast<const {vt}*>({fn.buf(b)} + ({fn.expr(index)}));", 2)
            loaded[(b, index)] = (v, buffers[b].dtype)
        stored = {b: [] for b in vec.stores}
        for j in range(w):
            if j:
                fn.emit(f"{inner} = {fn.expr(base)} + {j};", 2)
            names = {}
            for key, (v, dtype) in loaded.items():
                lane = fn.tmp(dtype)
                fn.emit(f"{fn.expr(lane)} = {v}.{LANES[j]};", 2)
                names[key] = lane
            copy = []
            for s in body:
                s = _replace_loads(s, names)
                if isinstance(s, Store) and s.buffer in stored:
                    lane = fn.tmp(buffers[s.buffer].dtype)
                    stored[s.buffer].append(lane)
                    copy.append(Let(lane.name, lane.dtype, s.value))
                else:
                    copy.append(s)
            fn.stmts(copy, 2)
        fn.emit(f"{inner} = {fn.expr(base)};", 2)
        indices = {s.buffer: s.index for s in body if isinstance(s, Store)}
        for k, (b, lanes) in enumerate(stored.items()):
            vt = vector_type(buffers[b].dtype, w)
            v = fn.vec(f"__vs{k}", vt)
            for j, lane in enumerate(lanes):
                fn.emit(f"{v}.{LANES[j]} = {fn.expr(lane)};", 2)
            fn.written.add(b)
            fn.emit(f"*reinterpret_cast<{vt}*>({fn.buf(b)} + ({fn.expr(indices[b])})) = {v};", 2)
        fn.emit("}", 1)
        return f"{fn.expr(nq)} * {w}"

    # -- one block per row --------------------------------------------------------------------
    def _rows_function(self, name, prefix, body, nest, rk):
        """A block-per-row function for ``body``, or None when it lacks the row shape.

        Returns (function, inner length expression, whether inner loads are contiguous).
        """
        checked = self._check_rows(body, rk)
        if checked is None:
            return None
        coop, inner = checked
        fn = _Function(self, name)
        fn.stmts(prefix, 1)
        depth = 1
        if nest is not None:
            count = _product([_extent(start, stop) for _, start, stop in nest])
            n, row = fn.tmp(_dt.int64), fn.tmp(_dt.int64)
            fn.emit(f"{fn.expr(n)} = {fn.expr(count)};", 1)
            r = fn.expr(row)
            fn.emit(f"for ({r} = blockIdx.x; {r} < {fn.expr(n)}; {r} += gridDim.x) {{", 1)
            self._index_space(fn, nest, 2, r)
            depth = 2
        else:
            fn.emit("if (blockIdx.x != 0) return;", 1)
        written, read = set(), set()
        for s in body:
            s_reads, s_writes = _reads([s]), _writes([s])
            if (s_reads & written) or (s_writes & (written | read)):
                fn.emit("__syncthreads();", depth)
                written, read = set(), set()
            written |= s_writes
            read |= s_reads
            if isinstance(s, Let):
                fn.stmts([s], depth)
            elif isinstance(s, Store):
                fn.store(s, depth, guard="if (threadIdx.x == 0) ")
            elif isinstance(s, If):
                fn.if_(s, depth, stores_guard="if (threadIdx.x == 0) ")
            elif id(s) in coop:
                self._coop_loop(fn, s, depth)
            else:  # store-free sequential loop: every thread computes the same scalars
                fn.stmts([s], depth)
        if nest is not None:
            fn.emit("}", 1)
        self._add(fn)
        contiguous = any(
            _linear_coeff(x.index, s.var) == 1
            for s in body
            if id(s) in coop
            for x in exprs_in(s.body)
            if isinstance(x, Load)
        )
        return fn, inner, contiguous

    def _check_rows(self, body, rk):
        """(ids of cooperative loops, their longest trip count) if ``body`` has the row shape."""
        coop, trips = set(), []
        for i, s in enumerate(body):
            if isinstance(s, LibCall):
                return None
            if isinstance(s, If) and any(isinstance(x, Loop) for x in walk_stmts([s])):
                return None
            if not isinstance(s, Loop):
                continue
            if s.parallel:
                return None
            reason = self._coop_refusal(s, body[i + 1 :])
            if reason is None:
                coop.add(id(s))
                trips.append(_extent(s.start, s.stop))
            elif _writes([s]):
                rk.notes.append(f"threads only: loop {s.var}: {reason}")
                return None
        if not coop:
            return None
        inner = trips[0]
        for t in trips[1:]:
            inner = Call(Math.MAX, (inner, t))
        return coop, inner

    @staticmethod
    def _coop_refusal(loop: Loop, after) -> str | None:
        """Why the iterations of ``loop`` cannot be spread over a block (None: they can)."""
        accs, stores, local = {}, {}, set()
        for s in loop.body:
            if isinstance(s, Loop | LibCall):
                return "nested loop"
            if isinstance(s, If):
                # status flags: every racing thread stores the same value to one slot
                if not all(isinstance(x, If) or (isinstance(x, Store) and x.buffer == STATUS_BUFFER)
                           for x in walk_stmts([s])):  # fmt: skip
                    return "conditional other than a status flag"
                continue
            if isinstance(s, Let) and s.reduce:
                red = _reduction_of(s)
                if red is None or s.var in accs:
                    return f"'{s.var}' is not a plain sum/product/max/min/all/any accumulator"
                accs[s.var] = red
            elif isinstance(s, Let):
                local.add(s.var)
            else:
                stores.setdefault(s.buffer, set()).add(s.index)
        if accs.keys() & local:
            return "an accumulator is also assigned directly"
        for s in loop.body:
            others = [e for e in stmt_exprs(s)]
            if isinstance(s, Let) and s.var in accs:
                others = [accs[s.var][1]]
            if any(_var_names(e) & accs.keys() for e in others):
                return "an accumulator is read inside its loop"
        for v in local:
            if _reads_before_write(loop.body, v) or _reads_before_write(after, v):
                return f"scalar '{v}' carries a value between iterations"
        for b, indices in stores.items():
            if len(indices) != 1:
                return f"several stores to '{b}'"
            (index,) = indices
            c = _linear_coeff(index, loop.var)
            if not c:
                return f"store index of '{b}' is not injective in {loop.var}"
            loads = {x.index for x in exprs_in(loop.body) if isinstance(x, Load) and x.buffer == b}
            if loads - {index}:
                return f"'{b}' is read and written at different indices"
        if any(loop.var in _var_names(e) for s in after for e in stmt_exprs(s)):
            return "loop variable used after the loop"
        return None

    def _coop_loop(self, fn: _Function, loop: Loop, depth: int) -> None:
        partial, combine = {}, []
        for s in loop.body:
            if isinstance(s, Let) and s.reduce:
                red_fn, _ = _reduction_of(s)
                p = fn.tmp(s.dtype)
                partial[s.var] = p.name
                fn.emit(f"{fn.expr(p)} = {fn.expr(_identity(red_fn, s.dtype))};", depth)
                combine.append((s, red_fn, p))
        fn.loop_header(loop, depth, start=f"{fn.expr(loop.start)} + threadIdx.x",
                       step="{v} += blockDim.x")  # fmt: skip
        body = []
        for s in loop.body:
            if isinstance(s, Let) and s.var in partial:
                body.append(Let(partial[s.var], s.dtype, _subst(s.value, partial), True))
            else:
                body.append(s)
        fn.stmts(body, depth + 1)
        fn.emit("}", depth)
        for s, red_fn, p in combine:
            fn.uses_smem = True
            total = fn.tmp(s.dtype)
            op = _REDUCERS[red_fn]
            if s.dtype.is_bool:
                fn.emit(f"{fn.expr(total)} = gc_block_reduce<int>((int){fn.expr(p)}, {op}(), "
                        f"(int*)gc_smem) != 0;", depth)  # fmt: skip
            else:
                ctype = VALUE_TYPE[s.dtype.name]
                fn.emit(f"{fn.expr(total)} = gc_block_reduce<{ctype}>({fn.expr(p)}, {op}(), "
                        f"({ctype}*)gc_smem);", depth)  # fmt: skip
            acc = Var(s.var, s.dtype)
            fn.stmts([Let(s.var, s.dtype, Call(red_fn, (acc, total)), True)], depth)

    def _add(self, fn: _Function) -> None:
        self.functions.append(fn)

    # -- module -----------------------------------------------------------------------------
    def render(self) -> CudaModule:
        kernels = [self.kernel(i, k) for i, k in enumerate(self.program.kernels)]
        body = "\n\n".join(fn.source() for fn in self.functions) + "\n"
        source = "\n\n".join(
            ["// generated by graphc (cuda backend)", template_source(),
             "// ---- generated kernels ----", body]
        )  # fmt: skip
        return CudaModule(source, kernels, [fn.name for fn in self.functions], body)


def _replace_expr_loads(e: Expr, names: dict) -> Expr:
    """``e`` with every ``Load`` whose (buffer, index) is in ``names`` replaced by that Var."""
    if isinstance(e, Load):
        hit = names.get((e.buffer, e.index))
        if hit is not None:
            return hit
        return Load(e.buffer, _replace_expr_loads(e.index, names), e.dtype)
    if isinstance(e, Call):
        return Call(e.fn, tuple(_replace_expr_loads(a, names) for a in e.args))
    if isinstance(e, Cast):
        return Cast(_replace_expr_loads(e.x, names), e.dtype)
    return e


def _replace_loads(s, names: dict):
    """Statement ``s`` (loop-free) with the loads of ``names`` replaced (see above)."""
    if not names:
        return s
    if isinstance(s, Let):
        return Let(s.var, s.dtype, _replace_expr_loads(s.value, names), s.reduce)
    if isinstance(s, Store):
        return Store(s.buffer, _replace_expr_loads(s.index, names),
                     _replace_expr_loads(s.value, names))  # fmt: skip
    if isinstance(s, If):
        return If(_replace_expr_loads(s.cond, names),
                  tuple(_replace_loads(x, names) for x in s.then),
                  tuple(_replace_loads(x, names) for x in s.orelse))  # fmt: skip
    raise CompileError(f"cuda renderer: cannot vectorise statement {s!r}")


def _product(exprs: list) -> Expr:
    out = exprs[0]
    for e in exprs[1:]:
        out = Call(Math.MUL, (out, e))
    return out


def _libcall_nest(unit):
    """([(var, start, stop)...], LibCall) when ``unit`` is loops around a single LibCall."""
    loops = []
    body = unit
    while len(body) == 1 and isinstance(body[0], Loop):
        loop = body[0]
        loops.append((loop.var, loop.start, loop.stop))
        body = loop.body
    if loops and len(body) == 1 and isinstance(body[0], LibCall):
        bound_vars = set()
        for var, start, stop in loops:
            if (_var_names(start) | _var_names(stop)) - bound_vars:
                return None
            bound_vars.add(var)
        return loops, body[0]
    return None


def _extent(start: Expr, stop: Expr) -> Expr:
    if isinstance(start, Const) and start.value == 0:
        return stop
    return Call(Math.SUB, (stop, start))


def render_program(program: KernelProgram, prefix: str = "gc_") -> CudaModule:
    """CUDA C for every kernel of ``program``, with the launches the runtime makes.

    ``prefix`` starts every generated function name (distinct prefixes let several modules
    share one translation unit).
    """
    return _ModuleRenderer(program, prefix).render()
