"""One generated CUDA ``__global__`` function: distinct C identifiers for IR names
(``_Namer``), scalars, vectors and buffers, expressions and statements rendered as C, and the
function's source and parameter list."""

from __future__ import annotations

import re

from ... import dtypes as _dt
from ...errors import CompileError, UnimplementedError
from ...expr import Call, Cast, Const, Dim, Expr, Load, Math, Var, expr_dtype
from ...kernel.ir import If, Let, LibCall, Loop, Store
from .mathtable import VALUE_TYPE, render_call, render_cast, render_const, render_wrapping


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


class _Function:
    """Builds one __global__ function: declarations, body lines, parameters used. ``module``
    is the module renderer it belongs to (its program, names and parameter declarations)."""

    def __init__(self, module, name: str):
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
