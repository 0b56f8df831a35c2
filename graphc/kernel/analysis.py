"""Analyses and small rewrites over Kernel IR statements and expressions, shared by the
renderers (which only translate): which buffers a statement reads or writes, which locals it
assigns, linear index coefficients, reductions and their identities, load replacement for
vectorised bodies, loop nests around a library call."""

from __future__ import annotations

from .. import dtypes as _dt
from ..errors import CompileError
from ..expr import Call, Cast, Const, Expr, Load, Math, Var, sub_exprs
from .ir import LIBCALLS, If, Let, LibCall, Loop, Store, exprs_in, stmt_exprs, walk_stmts


def var_names(e: Expr) -> set:
    return {x.name for x in sub_exprs(e) if isinstance(x, Var)}


def buffers_read(stmts) -> set:
    """Buffers loaded by ``stmts`` (LibCall operands count as reads too)."""
    out = {x.buffer for x in exprs_in(stmts) if isinstance(x, Load)}
    for s in walk_stmts(stmts):
        if isinstance(s, LibCall) and s.fn in LIBCALLS:  # (A, B, C) or (X, W, C) first
            out.update(s.args[:3])
    return out


def buffers_written(stmts) -> set:
    out = set()
    for s in walk_stmts(stmts):
        if isinstance(s, Store):
            out.add(s.buffer)
        elif isinstance(s, LibCall) and s.fn in LIBCALLS:
            out.add(s.args[2])
    return out


def locals_assigned(stmts) -> set:
    return {s.var for s in walk_stmts(stmts) if isinstance(s, Let)}


def reads_before_write(stmts, var: str) -> bool:
    """Whether ``var`` may be read by ``stmts`` before they assign it (conservative)."""
    for s in stmts:
        if isinstance(s, Let):
            if var in var_names(s.value):
                return True
            if s.var == var:
                return False
        elif isinstance(s, Loop):
            if var in var_names(s.start) | var_names(s.stop):
                return True
            if reads_before_write(s.body, var):
                return True  # a write inside a loop may not happen (zero trips)
            if s.var == var:
                return False
        elif isinstance(s, If):
            if var in var_names(s.cond):
                return True
            if reads_before_write(s.then, var) or reads_before_write(s.orelse, var):
                return True
        else:
            if any(var in var_names(e) for e in stmt_exprs(s)):
                return True
    return False


def linear_coeff(e: Expr, var: str):
    """c when ``e`` is ``c*var + (terms free of var)`` with int c, None when unknown."""
    if var not in var_names(e):
        return 0
    if isinstance(e, Var):
        return 1
    if isinstance(e, Call) and e.fn in (Math.ADD, Math.SUB):
        a, b = (linear_coeff(x, var) for x in e.args)
        if a is None or b is None:
            return None
        return a + b if e.fn is Math.ADD else a - b
    if isinstance(e, Call) and e.fn is Math.MUL:
        x, y = e.args
        if isinstance(y, Const) and not isinstance(x, Const):
            x, y = y, x
        if isinstance(x, Const) and isinstance(x.value, int | bool):
            c = linear_coeff(y, var)
            return None if c is None else c * int(x.value)
    if isinstance(e, Cast) and e.dtype == _dt.int64:
        return linear_coeff(e.x, var)
    return None


def substitute(e: Expr, names: dict) -> Expr:
    """``e`` with Var(name) replaced by Var(names[name])."""
    if isinstance(e, Var):
        return Var(names[e.name], e.dtype) if e.name in names else e
    if isinstance(e, Call):
        return Call(e.fn, tuple(substitute(a, names) for a in e.args))
    if isinstance(e, Cast):
        return Cast(substitute(e.x, names), e.dtype)
    if isinstance(e, Load):
        return Load(e.buffer, substitute(e.index, names), e.dtype)
    return e


REDUCERS = {Math.ADD: "GcAdd", Math.MUL: "GcMul", Math.MAX: "GcMax", Math.MIN: "GcMin",
             Math.AND: "GcAnd", Math.OR: "GcOr"}  # fmt: skip


def reduction_identity(fn: Math, dtype: _dt.DType) -> Const:
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


def reduction_of(s: Let):
    """(fn, other operand) when ``s`` is ``acc = fn(acc, other)`` with a known reducer."""
    if not (s.reduce and isinstance(s.value, Call) and s.value.fn in REDUCERS):
        return None
    if s.dtype.is_bool != (s.value.fn in (Math.AND, Math.OR)):
        return None  # logical reducers on bools only, arithmetic ones on numbers only
    a, b = s.value.args
    me = Var(s.var, s.dtype)
    if a == me and s.var not in var_names(b):
        return s.value.fn, b
    if b == me and s.var not in var_names(a):
        return s.value.fn, a
    return None


def replace_expr_loads(e: Expr, names: dict) -> Expr:
    """``e`` with every ``Load`` whose (buffer, index) is in ``names`` replaced by that Var."""
    if isinstance(e, Load):
        hit = names.get((e.buffer, e.index))
        if hit is not None:
            return hit
        return Load(e.buffer, replace_expr_loads(e.index, names), e.dtype)
    if isinstance(e, Call):
        return Call(e.fn, tuple(replace_expr_loads(a, names) for a in e.args))
    if isinstance(e, Cast):
        return Cast(replace_expr_loads(e.x, names), e.dtype)
    return e


def map_exprs(s, fn, loops: bool = True, operand=None):
    """Statement ``s`` with ``fn`` applied to each expression it holds, nested bodies
    included; with ``loops`` also Loops and LibCalls (whose buffer operands at positions
    other than 2, C, become ``operand(name)``), else they are refused (a vectorised body)."""
    if isinstance(s, Let):
        return Let(s.var, s.dtype, fn(s.value), s.reduce)
    if isinstance(s, Store):
        return Store(s.buffer, fn(s.index), fn(s.value))
    if isinstance(s, If):
        return If(fn(s.cond), tuple(map_exprs(x, fn, loops, operand) for x in s.then),
                  tuple(map_exprs(x, fn, loops, operand) for x in s.orelse))  # fmt: skip
    if loops and isinstance(s, Loop):
        body = tuple(map_exprs(x, fn, loops, operand) for x in s.body)
        return Loop(s.var, fn(s.start), fn(s.stop), body, s.parallel)
    if loops and isinstance(s, LibCall):
        return LibCall(s.fn, tuple(
            fn(a) if isinstance(a, Expr) else
            operand(a) if operand is not None and isinstance(a, str) and j != 2 else a
            for j, a in enumerate(s.args)
        ))  # fmt: skip
    raise CompileError(f"cannot rewrite the expressions of statement {s!r}")


def replace_loads(s, names: dict):
    """Statement ``s`` (loop-free) with the loads of ``names`` replaced (see above)."""
    if not names:
        return s
    return map_exprs(s, lambda e: replace_expr_loads(e, names), loops=False)


def rename_loads(s, renames: dict):
    """Statement ``s`` (nested bodies included) reading buffer ``renames[b]`` wherever it
    read ``b``: its loads, and a LibCall's operands other than its output C (position 2)."""
    return map_exprs(s, lambda e: rename_expr_loads(e, renames),
                     operand=lambda b: renames.get(b, b))  # fmt: skip


def rename_expr_loads(e: Expr, renames: dict) -> Expr:
    """``e`` loading ``renames[b]`` wherever it loaded buffer ``b``."""
    if isinstance(e, Load):
        return Load(renames.get(e.buffer, e.buffer), rename_expr_loads(e.index, renames), e.dtype)
    if isinstance(e, Call):
        return Call(e.fn, tuple(rename_expr_loads(a, renames) for a in e.args))
    if isinstance(e, Cast):
        return Cast(rename_expr_loads(e.x, renames), e.dtype)
    return e


def product_of(exprs: list) -> Expr:
    out = exprs[0]
    for e in exprs[1:]:
        out = Call(Math.MUL, (out, e))
    return out


def libcall_nest(unit):
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
            if (var_names(start) | var_names(stop)) - bound_vars:
                return None
            bound_vars.add(var)
        return loops, body[0]
    return None


def extent(start: Expr, stop: Expr) -> Expr:
    if isinstance(start, Const) and start.value == 0:
        return stop
    return Call(Math.SUB, (stop, start))
