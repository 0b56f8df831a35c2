"""Inner loops split into the runs over which their indexes are contiguous: a Kernel IR pass
the cpu backend asks for (``KERNEL_PASSES``; ``graphc/pipeline.py`` runs it after buffer
planning).

A transposing copy whose result is reshaped is lowered over the result's shape: W9's
attention stores each head's product ``[b, h, s, d]`` as ``[b * s, h * d]`` with
``for r: for j in [0, 256): dst[r * 256 + j] = src[f(x)]``, ``x = r * 256 + j`` and ``f``
made of ``(x // 64) % 4``, ``x % 64`` and the like. Per element that index is not affine in
``j``, so LLVM vectorises the loop with gathers (2 x 8 elements per 16, with the index
arithmetic: ~0.35 ms for 4 MB on two threads) or not at all.

Within a run of D consecutive ``j`` starting at a multiple of D, where D divides every
divisor ``c`` and the rest ``X`` of every dividend ``X + j``, each quotient ``(X + j) // c``
is ``X // c`` and each remainder ``(X + j) % c`` is ``X % c + j - j0``. So the loop becomes
``for jo in [0, E / D): for ji in [0, D): (the body, j = jo * D + ji)`` with the quotients
and remainders rewritten so; the index is then affine in ``ji`` and the inner loop
vectorises with plain loads. (With D = E the loop keeps its shape and only the rewrite
applies: a bias read at ``(X + j) % 256``.) Exact for any sign: the generated code's integer
``//`` and ``%`` round toward minus infinity, and with ``X = q c + r``, ``0 <= r < c``, both
``r`` and ``c`` are multiples of D, so ``r + ji < c``.

Only non-parallel innermost loops from 0 to a constant, without reductions, are touched
(parallel loops are the ones the renderer splits over threads and runs per GEMM row chunk),
and not the nest after a packed convolution or GEMM (the renderer runs that nest per row of
pixels: ``llvm/epilogue.py``).
"""

from __future__ import annotations

from math import gcd

from .. import dtypes as _dt
from ..expr import Call, Cast, Const, Load, Math, Var
from . import sym
from .analysis import linear_coeff, map_exprs, var_names
from .ir import If, Let, LibCall, Loop, Store, exprs_in, walk_stmts

#: the shortest run worth a loop of its own (one vector of float32)
MIN_RUN = 16
#: library calls whose following loop nest the renderer runs per row of pixels
_ROW_NEST_CALLS = ("conv_packed", "gemm_packed")
_DIVMOD = (Math.FLOORDIV, Math.MOD)
_I64 = _dt.int64


def split_runs(body: tuple) -> tuple:
    """``body`` with each qualifying innermost loop split into contiguous runs (see the
    module docstring); other statements unchanged."""
    out, changed = [], False
    for k, s in enumerate(body):
        after = k and isinstance(body[k - 1], LibCall) and body[k - 1].fn in _ROW_NEST_CALLS
        t = s if after else _visit(s)
        changed = changed or t is not s
        out.append(t)
    return tuple(out) if changed else body


def _visit(s):
    if isinstance(s, Loop):
        if not any(isinstance(x, Loop) for x in walk_stmts(s.body)):
            return _split(s) or s
        body = tuple(_visit(x) for x in s.body)
        if all(a is b for a, b in zip(body, s.body)):
            return s
        return Loop(s.var, s.start, s.stop, body, s.parallel)
    if isinstance(s, If):
        then, orelse = tuple(_visit(x) for x in s.then), tuple(_visit(x) for x in s.orelse)
        if all(a is b for a, b in zip(then + orelse, s.then + s.orelse)):
            return s
        return If(s.cond, then, orelse)
    return s


def divisor(e) -> int:
    """A positive integer dividing every value of the int64 expression ``e`` (0: ``e`` is
    always 0): the gcd of a sum's terms, the product of a product's factors' divisors."""
    if isinstance(e, Const):
        return abs(int(e.value))
    if isinstance(e, Call) and e.fn in (Math.ADD, Math.SUB):
        return gcd(divisor(e.args[0]), divisor(e.args[1]))
    if isinstance(e, Call) and e.fn is Math.MUL:
        return divisor(e.args[0]) * divisor(e.args[1])
    return 1


def _divmods(stmts, var):
    """The ``//`` and ``%`` of ``stmts`` whose dividend reads ``var``."""
    for x in exprs_in(stmts):
        if isinstance(x, Call) and x.fn in _DIVMOD and var in var_names(x.args[0]):
            yield x


def _run_length(loop) -> int | None:
    """D for ``loop`` (see the module docstring), or None when it has none worth a split."""
    if loop.parallel or sym.const_value(loop.start) != 0:
        return None
    n = sym.const_value(loop.stop)
    if not isinstance(n, int) or isinstance(n, bool) or n < MIN_RUN:
        return None
    stmts = list(walk_stmts(loop.body))
    if not all(isinstance(s, Let | Store | If) for s in stmts):
        return None
    if any(isinstance(s, Let) and s.reduce for s in stmts):
        return None
    run, found = n, False
    for x in _divmods(loop.body, loop.var):
        c = sym.const_value(x.args[1])
        if not isinstance(c, int) or isinstance(c, bool) or c <= 0:
            return None
        coeff = linear_coeff(x.args[0], loop.var)
        if coeff is None:
            continue  # j under an inner quotient: that one constrains the run
        if coeff != 1:
            return None
        rest = _replace(x.args[0], loop.var, Const(0, _I64))
        run = gcd(run, c, divisor(rest))
        found = True
    if not found or run < MIN_RUN:
        return None
    return run


def _split(loop):
    run = _run_length(loop)
    if run is None:
        return None
    n = sym.const_value(loop.stop)
    j = loop.var
    if run == n:  # one run: the loop keeps its variable, only the rewrite applies
        inner, base = Var(j, _I64), Const(0, _I64)
    else:
        inner, outer = Var(f"{j}.in", _I64), Var(f"{j}.run", _I64)
        base = sym.mul(outer, run)
    at = sym.add(base, inner) if run != n else inner
    body = tuple(map_exprs(s, lambda e: _in_runs(_replace(e, j, at), inner.name, run),
                           loops=False) for s in loop.body)  # fmt: skip
    if run == n:
        return Loop(j, loop.start, loop.stop, body, False)
    innermost = Loop(inner.name, Const(0, _I64), Const(run, _I64), body, False)
    return Loop(outer.name, Const(0, _I64), Const(n // run, _I64), (innermost,), False)


def _in_runs(e, inner, run):
    """``e`` with each ``(X + inner) // c`` and ``(X + inner) % c`` whose ``c`` and ``X`` are
    multiples of ``run`` rewritten as ``X // c`` and ``X % c + inner``."""

    def call(fn, args):
        if fn in _DIVMOD and inner in var_names(args[0]):
            c = sym.const_value(args[1])
            if (isinstance(c, int) and not isinstance(c, bool) and c > 0 and c % run == 0
                    and linear_coeff(args[0], inner) == 1):  # fmt: skip
                rest = _replace(args[0], inner, Const(0, _I64))
                if divisor(rest) % run == 0:
                    if fn is Math.FLOORDIV:
                        return sym.floordiv(rest, args[1])
                    return sym.add(sym.mod(rest, args[1]), Var(inner, _I64))
        return Call(fn, args)

    return _bottom_up(e, lambda x: x, call)


#: Calls ``_replace`` rebuilds with the simplifying constructors
_SIMPLIFIED = {Math.ADD: sym.add, Math.SUB: sym.sub, Math.MUL: sym.mul}


def _replace(e, var, value):
    """``e`` with ``Var(var)`` replaced by ``value``, sums and products re-simplified (so
    that ``x + 0`` is ``x``)."""
    return _bottom_up(
        e,
        lambda x: value if isinstance(x, Var) and x.name == var else x,
        lambda fn, args: _SIMPLIFIED[fn](*args) if fn in _SIMPLIFIED else Call(fn, args),
    )


def _bottom_up(e, leaf, call):
    """``e`` rebuilt from its leaves up: each leaf (not a Call, Cast or Load) as
    ``leaf(x)``, each Call as ``call(fn, rebuilt args)``."""
    if isinstance(e, Cast):
        return Cast(_bottom_up(e.x, leaf, call), e.dtype)
    if isinstance(e, Load):
        return Load(e.buffer, _bottom_up(e.index, leaf, call), e.dtype)
    if isinstance(e, Call):
        return call(e.fn, tuple(_bottom_up(a, leaf, call) for a in e.args))
    return leaf(e)
