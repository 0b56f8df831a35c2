"""Smart constructors for int64 index arithmetic: fold constants and identities as they build.

Lowering builds every size, stride and index with these, so static programs get constant
sizes and simple index expressions, and dynamic ones stay readable (``d0_0 * 784 + i1``).
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Call, Const, Dim, Expr, Math, i64

ZERO = i64(0)
ONE = i64(1)


def const_value(e: Expr):
    """The Python value of a Const expression, else None."""
    return e.value if isinstance(e, Const) else None


def as_expr(x) -> Expr:
    """An int64 expression for an int or an Expr."""
    return x if isinstance(x, Expr) else i64(int(x))


def add(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return i64(ca + cb)
    if ca == 0:
        return b
    if cb == 0:
        return a
    # keep constants on the right and merge (x + c1) + c2
    if ca is not None:
        a, b, ca, cb = b, a, cb, ca
    if cb is not None and isinstance(a, Call) and a.fn is Math.ADD:
        inner = const_value(a.args[1])
        if inner is not None:
            return add(a.args[0], inner + cb)
    return Math.ADD(a, b)


def sub(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return i64(ca - cb)
    if cb == 0:
        return a
    if a == b:
        return ZERO
    if cb is not None:
        return add(a, -cb)
    return Math.SUB(a, b)


def mul(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return i64(ca * cb)
    if ca == 0 or cb == 0:
        return ZERO
    if ca == 1:
        return b
    if cb == 1:
        return a
    if ca is not None:
        a, b, ca, cb = b, a, cb, ca
    if cb is not None and isinstance(a, Call) and a.fn is Math.MUL:
        inner = const_value(a.args[1])
        if inner is not None:
            return mul(a.args[0], inner * cb)
    return Math.MUL(a, b)


def floordiv(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return i64(ca // cb if cb else 0)
    if cb == 1:
        return a
    if ca == 0:
        return ZERO
    if cb is not None and cb > 0 and isinstance(a, Call):
        inner = const_value(a.args[1]) if len(a.args) == 2 else None
        # exact: (x * c1) // c2 = x * (c1 / c2) when c2 divides c1, and (x // c1) // c2 =
        # x // (c1 * c2) for positive c1, c2 (a reshape's size arithmetic, e.g. ((d * 32768)
        # // 256 * 256) // 32768 = d, so that equal sizes compare equal)
        if a.fn is Math.MUL and inner is not None and inner % cb == 0:
            return mul(a.args[0], inner // cb)
        if a.fn is Math.FLOORDIV and inner is not None and inner > 0:
            return floordiv(a.args[0], inner * cb)
    return Math.FLOORDIV(a, b)


def mod(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return i64(ca % cb if cb else 0)
    if cb == 1 or ca == 0:
        return ZERO
    return Math.MOD(a, b)


def minimum(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return i64(min(ca, cb))
    if a == b:
        return a
    return Math.MIN(a, b)


def maximum(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return i64(max(ca, cb))
    if a == b:
        return a
    # max(size, 0) of a size (a slice of a whole dynamic dim: max(d - 0, 0)) is the size
    if ca == 0 and nonnegative(b):
        return b
    if cb == 0 and nonnegative(a):
        return a
    return Math.MAX(a, b)


_NONNEG_FNS = (Math.ADD, Math.MUL, Math.FLOORDIV, Math.MAX, Math.MIN)


def nonnegative(e, depth: int = 4) -> bool:
    """``e`` is provably >= 0: a runtime Dim (a size), a constant >= 0, or sums, products,
    floor quotients, max/min and selects of such (looked at ``depth`` levels deep)."""
    if isinstance(e, Dim):
        return True
    c = const_value(e)
    if c is not None:
        return not isinstance(c, bool) and c >= 0
    if depth <= 0 or not isinstance(e, Call):
        return False
    if e.fn in _NONNEG_FNS:
        return all(nonnegative(x, depth - 1) for x in e.args)
    if e.fn is Math.SELECT:
        return nonnegative(e.args[1], depth - 1) and nonnegative(e.args[2], depth - 1)
    return False


def eq(a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    ca, cb = const_value(a), const_value(b)
    if ca is not None and cb is not None:
        return Const(ca == cb, _dt.bool_)
    if a == b:
        return Const(True, _dt.bool_)
    return Math.EQ(a, b)


def select(c, a, b) -> Expr:
    a, b = as_expr(a), as_expr(b)
    if isinstance(c, Const):
        return a if c.value else b
    if a == b:
        return a
    return Math.SELECT(c, a, b)


def logical_and(a, b) -> Expr:
    if isinstance(a, Const):
        return b if a.value else a
    if isinstance(b, Const):
        return a if b.value else b
    return Math.AND(a, b)


def logical_or(a, b) -> Expr:
    if isinstance(a, Const):
        return a if a.value else b
    if isinstance(b, Const):
        return b if b.value else a
    return Math.OR(a, b)


def product(xs) -> Expr:
    out = ONE
    for x in xs:
        out = mul(out, x)
    return out


def strides(shape) -> tuple:
    """Row-major strides (in elements) of a shape of int64 expressions."""
    out = []
    s = ONE
    for d in reversed(shape):
        out.append(s)
        s = mul(s, d)
    return tuple(reversed(out))


def flat_index(idx, shape) -> Expr:
    """Flat row-major index of the multi-index ``idx`` in ``shape``."""
    out = ZERO
    for i, st in zip(idx, strides(shape)):
        out = add(out, mul(i, st))
    return out


def unflatten(flat, shape) -> tuple:
    """Multi-index of a flat row-major index (div/mod: avoided where possible)."""
    out = []
    for k, st in enumerate(strides(shape)):
        q = floordiv(flat, st)
        if k > 0:
            q = mod(q, shape[k])
        out.append(q)
    return tuple(out)


def broadcast_dim(a, b) -> Expr:
    """numpy broadcast of two int64 sizes (valid broadcasts only: one is 1 or they agree).

    Two dynamic sizes give ``select(a == 1, b, a)``. A broadcast against sizes already in
    it gives it back: ``bcast(bcast(p, q), q) == bcast(p, q)`` for any sizes (a broadcast is
    1 only when all its members are), and ``bcast(q, bcast(p, q)) == bcast(p, q)`` for sizes
    that broadcast (``shapes.broadcast`` adds the run-time check of every pair it joins, and
    the runtime refuses failing checks before any size is used). So a value broadcast against
    the same batch size at every step of a deep graph keeps one small size expression
    instead of one nested a level deeper per op.
    """
    a, b = as_expr(a), as_expr(b)
    if a == b:
        return a
    ca, cb = const_value(a), const_value(b)
    if ca == 1:
        return b
    if cb == 1:
        return a
    if ca is not None and cb is not None:
        return a  # static shapes were checked at build time
    if ca is not None:
        return a  # b is dynamic: it must be 1 or equal to a (checked at run time)
    if cb is not None:
        return b
    ma, mb = _broadcast_members(a), _broadcast_members(b)
    if mb <= ma:
        return a
    if ma <= mb:
        return b
    return select(eq(a, 1), b, a)


def _broadcast_members(e) -> set:
    """The sizes a broadcast expression ``select(p == 1, q, p)`` was built from (``{e}`` for
    any other expression), found with an explicit stack."""
    out, stack = set(), [e]
    while stack:
        x = stack.pop()
        if (
            isinstance(x, Call)
            and x.fn is Math.SELECT
            and isinstance(x.args[0], Call)
            and x.args[0].fn is Math.EQ
            and x.args[0].args[0] == x.args[2]
            and const_value(x.args[0].args[1]) == 1
        ):
            stack += (x.args[2], x.args[1])
        else:
            out.add(x)
    return out
