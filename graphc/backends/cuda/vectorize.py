"""Which loads and stores of an element-wise parallel loop can move as 128-bit vectors.

A ``threads`` launch walks a flat index ``g`` over a nest of parallel loops. When some of
its loads/stores touch ``W`` consecutive elements for ``W`` consecutive values of ``g``, at
an address that is a multiple of ``W`` elements, the renderer gives each thread ``W``
iterations ("a quad") and moves those elements with one ``float4``/``double2``/... access
instead of ``W`` scalar ones (fewer memory instructions per byte; the loop still
grid-strides, coalesced across threads). This module only decides (the kernel pass
``launch_plan.py`` asks it and records the ``VectorPlan``); ``mappings.py`` emits.

An access ``buf[idx]`` qualifies when

* ``buf`` holds 4- or 8-byte elements (float32/int32/float64/int64),
* ``idx`` is affine in the nest's loop variables with integer constants, coefficient 1 on
  the innermost variable, every other coefficient and the constant part making the quad's
  first index a multiple of ``W`` (so the vector is aligned when the buffer is; the kernel
  checks the pointers at run time and falls back to scalar code otherwise),
* a load is evaluated on every iteration (not only in the branches of an ``If``, a select
  arm or the right side of ``and``/``or``: a guard may be what keeps the index in bounds), and no
  store to the same storage comes before it in the body (it is read at the quad's start);
* a store is unconditional, the only store to its storage, and nothing reads that storage
  after it in the body (it is written at the quad's end).

The innermost loop's trip count must be a constant multiple of ``W`` when the nest has
more than one loop (quads never straddle rows); a one-loop nest may have any trip count
(a scalar tail loop finishes the last ``< W`` iterations).
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import dtypes as _dt
from ...expr import Call, Cast, Const, Expr, Load, Math, Var, sub_exprs
from ...kernel.ir import If, Let, Loop, Store, stmt_exprs, walk_stmts

#: CUDA vector type of ``width`` elements of a scalar type, by (dtype name, width).
VECTOR_TYPE = {
    ("float32", 4): "float4",
    ("float32", 2): "float2",
    ("int32", 4): "int4",
    ("int32", 2): "int2",
    ("float64", 2): "double2",
    ("int64", 2): "longlong2",
}

#: Components of a CUDA vector type, in memory order.
LANES = ("x", "y", "z", "w")

#: Math calls whose later operands C evaluates only sometimes (``?:``, ``&&``, ``||``).
_LAZY = {Math.SELECT: 1, Math.AND: 1, Math.OR: 1}  # index of the first lazy operand

_VECTOR_DTYPES = {"float32", "int32", "float64", "int64"}


@dataclass(frozen=True)
class VectorPlan:
    """How one element-wise loop moves memory as vectors.

    width: elements per thread per step (W); loads: the (buffer, index) pairs read as one
    vector at the quad's start; stores: the buffers whose single unconditional store is
    written as one vector at the quad's end (index as in the body).
    """

    width: int
    loads: tuple  # ((buffer, index Expr), ...)
    stores: tuple  # (buffer, ...)


def affine(e: Expr, names: set):
    """(coefficients {var: int}, constant int) when ``e`` is an integer affine combination
    of the loop variables ``names``; None when it is anything else (a Dim, a load, a
    division, another variable...)."""
    if isinstance(e, Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return {}, int(e.value)
    if isinstance(e, Var) and e.name in names:
        return {e.name: 1}, 0
    if isinstance(e, Cast) and e.dtype in (_dt.int64, _dt.int32):
        return affine(e.x, names)
    if isinstance(e, Call) and e.fn in (Math.ADD, Math.SUB):
        a, b = (affine(x, names) for x in e.args)
        if a is None or b is None:
            return None
        sign = 1 if e.fn is Math.ADD else -1
        coeffs = dict(a[0])
        for v, c in b[0].items():
            coeffs[v] = coeffs.get(v, 0) + sign * c
        return coeffs, a[1] + sign * b[1]
    if isinstance(e, Call) and e.fn is Math.MUL:
        a, b = (affine(x, names) for x in e.args)
        if a is None or b is None:
            return None
        if not a[0]:
            a, b = b, a
        if b[0]:
            return None  # product of two variables
        k = b[1]
        return {v: c * k for v, c in a[0].items()}, a[1] * k
    return None


def _aligned_index(index: Expr, nest, width: int) -> bool:
    """Whether ``index`` moves by 1 with the innermost variable and starts each quad on a
    multiple of ``width`` (see the module docstring)."""
    names = {v for v, _, _ in nest}
    form = affine(index, names)
    if form is None:
        return False
    coeffs, const = form
    inner, start, _ = nest[-1]
    if coeffs.get(inner, 0) != 1 or not isinstance(start, Const):
        return False
    if any(c % width for v, c in coeffs.items() if v != inner):
        return False
    return (const + int(start.value)) % width == 0


def _eager_loads(e: Expr, out: list) -> None:
    """Loads of ``e`` that C evaluates whenever ``e`` is evaluated, in order."""
    if isinstance(e, Load):
        out.append(e)
        _eager_loads(e.index, out)
    elif isinstance(e, Cast):
        _eager_loads(e.x, out)
    elif isinstance(e, Call):
        for a in e.args[: _LAZY.get(e.fn, len(e.args))]:
            _eager_loads(a, out)


def _all_loads(stmts):
    """(statement, its own Loads) for every statement of ``stmts``, in body order."""
    for s in walk_stmts(stmts):
        yield s, [x for e in stmt_exprs(s) for x in sub_exprs(e) if isinstance(x, Load)]


def plan_vectors(nest, body, buffers, root) -> VectorPlan | None:
    """A VectorPlan for the flattened parallel ``nest`` ([(var, start, stop)], row-major)
    with loop-free ``body``, or None when no access would move as a vector.

    buffers: the program's buffers (name -> Buffer); root(name): the buffer whose storage
    ``name`` shares.
    """
    if any(isinstance(s, Loop) for s in walk_stmts(body)):
        return None
    used = {x.buffer for _, loads in _all_loads(body) for x in loads}
    used |= {s.buffer for s in walk_stmts(body) if isinstance(s, Store)}
    if used - buffers.keys():
        return None  # the renderer names the unknown buffer
    # storage read after a store to it (in body order): neither its loads nor its stores move
    stored, read_late = set(), set()
    for s, loads in _all_loads(body):
        read_late |= {root(x.buffer) for x in loads} & stored
        if isinstance(s, Store):
            stored.add(root(s.buffer))
    store_count: dict = {}
    for s in walk_stmts(body):
        if isinstance(s, Store):
            store_count[root(s.buffer)] = store_count.get(root(s.buffer), 0) + 1
    eager, top_stores = [], []
    for s in body:
        if isinstance(s, Let):
            _eager_loads(s.value, eager)
        elif isinstance(s, Store):
            _eager_loads(s.index, eager)
            _eager_loads(s.value, eager)
            top_stores.append(s)
        elif isinstance(s, If):
            _eager_loads(s.cond, eager)  # the condition is always evaluated, not its branches
    movable = [b for b in [x.buffer for x in eager] + [s.buffer for s in top_stores]
               if buffers[b].dtype.name in _VECTOR_DTYPES]  # fmt: skip
    if not movable:
        return None
    width = 16 // max(buffers[b].dtype.itemsize for b in movable)
    _, inner_start, inner_stop = nest[-1]
    if len(nest) > 1 and not (
        isinstance(inner_start, Const)
        and isinstance(inner_stop, Const)
        and (int(inner_stop.value) - int(inner_start.value)) % width == 0
    ):
        return None  # a quad could straddle two rows

    def fits(buffer: str, index: Expr) -> bool:
        return (
            (buffers[buffer].dtype.name, width) in VECTOR_TYPE
            and root(buffer) not in read_late
            and _aligned_index(index, nest, width)
        )

    loads = []
    for x in eager:
        key = (x.buffer, x.index)
        if key not in loads and fits(x.buffer, x.index):
            loads.append(key)
    stores = [
        s.buffer for s in top_stores if store_count[root(s.buffer)] == 1 and fits(s.buffer, s.index)
    ]
    if not loads and not stores:
        return None
    return VectorPlan(width, tuple(loads), tuple(stores))


def vector_type(dtype: _dt.DType, width: int) -> str:
    return VECTOR_TYPE[(dtype.name, width)]
