"""Readable text of a KernelProgram (``KernelProgram.text()``, ``exe.dump_ir("kernel")``)."""

from __future__ import annotations

from ..expr import Arg, Call, Cast, Const, Dim, Load, Math, Var
from .ir import If, KernelProgram, Let, LibCall, Loop, Store

_INFIX = {
    Math.ADD: "+", Math.SUB: "-", Math.MUL: "*", Math.DIV: "/", Math.FLOORDIV: "//",
    Math.MOD: "%", Math.EQ: "==", Math.NE: "!=", Math.LT: "<", Math.LE: "<=", Math.GT: ">",
    Math.GE: ">=", Math.AND: "&&", Math.OR: "||", Math.BITXOR: "^", Math.SHR: ">>>",
}  # fmt: skip


def expr_text(e) -> str:
    """One expression as text (infix for arithmetic, ``fn(...)`` for the rest).

    Operands are printed before the expressions using them with an explicit stack (an
    expression as deep as a program must not need recursion as deep), each shared
    sub-expression object once (by identity: hashing a deep expression recurses too).
    """
    done: dict = {}  # id -> text
    stack = [e]
    while stack:
        x = stack[-1]
        if id(x) in done:
            stack.pop()
            continue
        kids = _operands(x)
        pending = [k for k in kids if id(k) not in done]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        done[id(x)] = _text(x, [done[id(k)] for k in kids])
    return done[id(e)]


def _operands(e) -> tuple:
    if isinstance(e, Load):
        return (e.index,)
    if isinstance(e, Cast):
        return (e.x,)
    if isinstance(e, Call):
        return tuple(e.args)
    return ()


def _text(e, ops: list) -> str:
    """``e`` as text, given the texts of its operands (``_operands``)."""
    if isinstance(e, Const):
        v = e.value
        if e.dtype.is_floating:
            return repr(float(v)) + ("f" if e.dtype.name == "float32" else "")
        return str(v).lower() if isinstance(v, bool) else str(v)
    if isinstance(e, Var | Dim):
        return e.name
    if isinstance(e, Load):
        return f"{e.buffer}[{ops[0]}]"
    if isinstance(e, Cast):
        return f"{e.dtype.name}({ops[0]})"
    if isinstance(e, Arg):
        return f"arg{e.index}"
    if isinstance(e, Call):
        if e.fn in _INFIX:
            a, b = ops
            return f"({a} {_INFIX[e.fn]} {b})"
        return f"{e.fn.name.lower()}({', '.join(ops)})"
    return repr(e)


def _stmts(body, indent, out):
    pad = "  " * indent
    for s in body:
        if isinstance(s, Loop):
            par = " parallel" if s.parallel else ""
            out.append(f"{pad}for{par} {s.var} in {expr_text(s.start)}..{expr_text(s.stop)}:")
            _stmts(s.body, indent + 1, out)
        elif isinstance(s, Let):
            op = " reduce" if s.reduce else ""
            out.append(f"{pad}let{op} {s.var}: {s.dtype.name} = {expr_text(s.value)}")
        elif isinstance(s, Store):
            out.append(f"{pad}{s.buffer}[{expr_text(s.index)}] = {expr_text(s.value)}")
        elif isinstance(s, If):
            out.append(f"{pad}if {expr_text(s.cond)}:")
            _stmts(s.then, indent + 1, out)
            if s.orelse:
                out.append(f"{pad}else:")
                _stmts(s.orelse, indent + 1, out)
        elif isinstance(s, LibCall):
            args = ", ".join(a if isinstance(a, str) else expr_text(a) for a in s.args)
            out.append(f"{pad}call {s.fn}({args})")
        else:
            out.append(f"{pad}{s!r}")


def print_program(kp: KernelProgram) -> str:
    """Buffers, dims, checks and every kernel's loop nest."""
    out = []
    for name, (k, axis) in kp.dims.items():
        out.append(f"dim {name} = feeds[{k}].shape[{axis}]")
    for check in kp.dim_checks:
        cond, msg = check[0], check[1]
        sizes = ", ".join(expr_text(a) for a in (check[2] if len(check) > 2 else ()))
        out.append(f"check {expr_text(cond)}  # {msg}" + (f" [{sizes}]" if sizes else ""))
    for name, b in kp.buffers.items():
        shape = ", ".join(expr_text(d) for d in b.shape)
        alias = f" alias_of={b.alias_of}" if b.alias_of else ""
        out.append(f"buffer {name}: {b.kind} {b.dtype.name}[{shape}]{alias}")
    for j, (op, seed, seed2) in enumerate(kp.rng):
        out.append(f"rng[{j}] = key({seed}, {seed2}, counter('{op}'))")
    for c in kp.checks:
        out.append(f"status[{c.slot}]: {c.kind} {c.message!r}")
    out.append("inputs: " + ", ".join(str(i) for i in kp.inputs))
    out.append("outputs: " + ", ".join(kp.outputs))
    for var, buf in kp.var_updates.items():
        out.append(f"update {var} <- {buf}")
    for k in kp.kernels:
        ops = ", ".join(k.op_types)
        out.append("")
        out.append(f"kernel {k.name}  # {ops}")
        _stmts(k.body, 1, out)
    return "\n".join(out)
