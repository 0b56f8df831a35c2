"""A strided 2-D transpose copies in tiles: a Kernel IR pass the cpu backend asks for
(``KERNEL_PASSES``; ``graphc/pipeline.py`` runs it after buffer planning).

A ``Transpose`` lowered on its own is the nest ``for i: for j: dst[i * M + j] = src[i + j *
S]``: the stores are contiguous, the loads walk ``src`` with a stride of S elements. For a
large S every load is another cache line, and with S a multiple of 1024 floats the lines
land in one L1 set and evict each other before the next i reuses them. W11's gradient
prologue transposes ``W_h`` (``[256, 1024] -> [1024, 256]``) once per step that way: 0.8 ms
for 1 MB, about 3 ns an element.

Rewritten here as ``for parallel t in [0, N // T): for j: for ii in [0, T): i = t*T + ii;
(the same body)``, then the original nest over the last ``N % T`` rows: the innermost loop
loads T consecutive elements of ``src`` (one cache line for T = 16 floats) and stores them T
rows apart, and the T destination rows of a tile (T * M elements) stay in L1 while j walks
them: 0.75 -> 0.13 ms for ``W_h^T`` on one thread. Only a nest of exactly that shape is
touched: one copy between two buffers (``Let`` of a ``Load``, ``Store`` of it, or the
``Store`` of the ``Load``), the load's index moving by 1 along i and by at least T (or a
run-time size) along j, the store's by 1 along j, both indexes reading no other loop
variable or local. Reordering such a nest keeps its meaning: the outer loop is parallel (no
two i write one element) and within one i the stores move along j.
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..expr import Const, Load, Var
from . import sym
from .analysis import linear_coeff, var_names
from .ir import Let, LibCall, Loop, Store

#: rows of the destination per tile (one 64-byte line of float32 source elements)
TILE = 16


def tile_transposes(body: tuple) -> tuple:
    """``body`` with each top-level transposing copy nest tiled (see the module
    docstring); other statements unchanged. A kernel with a library call (a GEMM and its
    epilogue, run per row chunk: ``llvm/epilogue.py``) is left as it is."""
    if any(isinstance(s, LibCall) for s in body):
        return body
    out = []
    changed = False
    for s in body:
        t = _tiled(s)
        changed = changed or t is not None
        out.extend((s,) if t is None else t)
    return tuple(out) if changed else body


def _zero(e) -> bool:
    return isinstance(e, Const) and e.value == 0


def _copy(body):
    """(load, store index, store buffer) of a one-element copy body, else None."""
    if len(body) == 2 and isinstance(body[0], Let) and isinstance(body[1], Store):
        let, st = body
        if isinstance(let.value, Load) and st.value == Var(let.var, let.dtype):
            return let.value, st
    if len(body) == 1 and isinstance(body[0], Store) and isinstance(body[0].value, Load):
        return body[0].value, body[0]
    return None


def _tiled(loop):
    if not (isinstance(loop, Loop) and loop.parallel and _zero(loop.start)):
        return None
    if len(loop.body) != 1 or not isinstance(loop.body[0], Loop):
        return None
    inner = loop.body[0]
    i, j = loop.var, inner.var
    if inner.parallel or i in var_names(inner.start) | var_names(inner.stop):
        return None
    copy = _copy(inner.body)
    if copy is None:
        return None
    load, store = copy
    if not (var_names(load.index) <= {i, j} and var_names(store.index) <= {i, j}):
        return None
    if load.buffer == store.buffer:
        return None
    # (a run-time stride along j, None here, is a row length: taken as long)
    step_j = linear_coeff(load.index, j)
    if linear_coeff(load.index, i) != 1 or (step_j is not None and abs(step_j) < TILE):
        return None
    # distinct elements per i (the outer loop is parallel: no two i write one element)
    if linear_coeff(store.index, j) != 1 or linear_coeff(store.index, i) in (0, 1):
        return None
    i64 = _dt.int64
    t, ii = Var(f"{i}.tile", i64), Var(f"{i}.in", i64)
    tile = Const(TILE, i64)
    body = (Let(i, i64, sym.add(sym.mul(t, tile), ii)), *inner.body)
    innermost = Loop(ii.name, Const(0, i64), tile, body, False)
    middle = Loop(j, inner.start, inner.stop, (innermost,), False)
    whole = sym.floordiv(loop.stop, tile)
    tiles = Loop(t.name, Const(0, i64), whole, (middle,), True)
    done = sym.mul(whole, tile)
    if done == loop.stop:
        return (tiles,)
    return tiles, Loop(i, done, loop.stop, loop.body, True)  # the last rows
