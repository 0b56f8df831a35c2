"""Readable text of scalar expressions (``expr_text``), used by ``KernelProgram.text()``
(``exe.dump_ir("kernel")``), error messages and the C library writer."""

from __future__ import annotations

from ..expr import Arg, Call, Cast, Const, Dim, Load, Math, Var

_INFIX = {
    Math.ADD: "+", Math.SUB: "-", Math.MUL: "*", Math.DIV: "/", Math.FLOORDIV: "//",
    Math.MOD: "%", Math.EQ: "==", Math.NE: "!=", Math.LT: "<", Math.LE: "<=", Math.GT: ">",
    Math.GE: ">=", Math.AND: "&&", Math.OR: "||", Math.BITXOR: "^", Math.SHR: ">>>",
    Math.BITAND: "&", Math.BITOR: "|", Math.SHL: "<<",
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
