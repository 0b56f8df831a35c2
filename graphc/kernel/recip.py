"""Division by a loop-invariant value becomes a multiply by its reciprocal: a Kernel IR pass
the cpu backend asks for (``KERNEL_PASSES``; ``graphc/pipeline.py`` runs it after buffer
planning).

A row kernel ends with ``y[i, j] = e[i, j] / s[i]`` (softmax, normalisations): one vector
division per 16 floats, about 10 cycles each on the host measured here, where a multiply takes
one. Computing ``r = 1 / s[i]`` once per row and multiplying is what every hand-written
softmax does (W2 on one thread: 1.63 ms with divisions, 1.41 ms with the reciprocal).

``x * (1 / d)`` rounds twice, so it may differ from ``x / d`` by one more unit in the last
place (relative error below 2.4e-7 in float32): well within the float tolerances every
backend is held to against the reference. It is only exact enough where ``1 / d`` is a
normal number: for ``|d|`` below 2**-126 (float32) the reciprocal overflows to inf, above
2**126 it loses bits as a subnormal. So the rewritten loop runs under a guard, once per entry
to the loop: ``if all 2**-emin <= |d| <= 2**emax (NaN fails): loop with multiplies, else: the
original loop``. Only divisors that read a local (a reduction result, a row statistic) are
rewritten: a division by a constant is left to LLVM (which already turns powers of two into
multiplies; other constants keep their correctly rounded division).
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Call, Cast, Const, Dim, Load, Math, Var, expr_dtype, sub_exprs
from .ir import If, Let, LibCall, Loop, Store

#: smallest and largest |d| (as powers of two) whose reciprocal is a normal number
_RANGE = {_dt.float32: (-126, 126), _dt.float64: (-1022, 1022)}


def hoist_divisors(body: tuple) -> tuple:
    """``body`` with every innermost loop that divides by a loop-invariant local rewritten as
    described in the module docstring (the statements are otherwise unchanged)."""
    counter = [0]
    return _stmts(body, counter)


def _stmts(body, counter) -> tuple:
    out = []
    for s in body:
        if isinstance(s, Loop):
            if _innermost(s.body) and not s.parallel:  # (an If would hide a parallel loop)
                out.extend(_rewrite_loop(s, counter))
            else:
                out.append(Loop(s.var, s.start, s.stop, _stmts(s.body, counter), s.parallel))
        elif isinstance(s, If):
            out.append(If(s.cond, _stmts(s.then, counter), _stmts(s.orelse, counter)))
        else:
            out.append(s)
    return tuple(out)


def _innermost(body) -> bool:
    return not any(isinstance(s, (Loop, If, LibCall)) for s in body)


def _rewrite_loop(loop: Loop, counter) -> list:
    assigned = {loop.var} | {s.var for s in loop.body if isinstance(s, Let)}
    divisors: dict = {}  # divisor expression -> reciprocal local
    for s in loop.body:
        _find(getattr(s, "value", None), assigned, divisors)
        if isinstance(s, Store):
            _find(s.index, assigned, divisors)
    if not divisors:
        return [loop]
    pre, guard = [], None
    for d in divisors:
        dt = expr_dtype(d)
        name = f"recip.{counter[0]}"  # (lowering names its locals v7, acc3, i2...)
        counter[0] += 1
        divisors[d] = Var(name, dt)
        pre.append(Let(name, dt, Math.DIV(Const(1.0, dt), d)))
        lo, hi = _RANGE[dt]
        a = Math.ABS(d)
        ok = Math.AND(Math.GE(a, Const(2.0**lo, dt)), Math.LE(a, Const(2.0**hi, dt)))
        guard = ok if guard is None else Math.AND(guard, ok)
    fast = Loop(loop.var, loop.start, loop.stop, _replace_body(loop.body, divisors), loop.parallel)
    return [*pre, If(guard, (fast,), (loop,))]


def _find(e, assigned, found) -> None:
    """Collect the divisors in ``e`` that qualify (see the module docstring)."""
    if isinstance(e, Call):
        if e.fn is Math.DIV and _qualifies(e.args[1], assigned):
            found.setdefault(e.args[1], None)
        for a in e.args:
            _find(a, assigned, found)
    elif isinstance(e, Cast):
        _find(e.x, assigned, found)
    elif isinstance(e, Load):
        _find(e.index, assigned, found)


def _qualifies(d, assigned) -> bool:
    if expr_dtype(d) not in _RANGE:
        return False
    names = _vars(d)
    return names is not None and bool(names) and not (names & assigned)


def _vars(e):
    """Names of the locals ``e`` reads, or None when it loads memory (not invariant for sure)."""
    out = set()
    for x in sub_exprs(e):
        if isinstance(x, Var):
            out.add(x.name)
        elif not isinstance(x, (Const, Dim, Cast, Call)):
            return None
    return out


def _replace_body(body, recips) -> tuple:
    out = []
    for s in body:
        if isinstance(s, Let):
            out.append(Let(s.var, s.dtype, _replace(s.value, recips), s.reduce))
        elif isinstance(s, Store):
            out.append(Store(s.buffer, _replace(s.index, recips), _replace(s.value, recips)))
        else:
            out.append(s)
    return tuple(out)


def _replace(e, recips):
    if isinstance(e, Call):
        args = tuple(_replace(a, recips) for a in e.args)
        if e.fn is Math.DIV and e.args[1] in recips:
            return Math.MUL(args[0], recips[e.args[1]])
        return Call(e.fn, args)
    if isinstance(e, Cast):
        return Cast(_replace(e.x, recips), e.dtype)
    if isinstance(e, Load):
        return Load(e.buffer, _replace(e.index, recips), e.dtype)
    return e
