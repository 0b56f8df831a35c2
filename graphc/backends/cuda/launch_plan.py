"""The cuda backend's Kernel IR pass: how every Kernel runs on the GPU, decided once on the
Kernel IR (``plan_launches``, the backend's ``KERNEL_PASSES``), so that the renderer
(``render.py``, ``mappings.py``) only translates the decisions into CUDA C and ``Launch``
records.

How a ``Kernel`` body becomes launches (each unit one ``Launch``, in order):

* The body is cut into units: each top-level parallel ``Loop``, each ``LibCall``, and each
  maximal run of other statements. Top-level ``Let``s are scalars: they are re-evaluated at
  the start of every later launch that reads them (only when that is provably the same
  value; otherwise the whole kernel is one unit, which is always right, with a note
  "serial: ...").
* ``LibCall("gemm")``, alone or inside loops whose bounds depend on sizes and outer loop
  variables only, is a ``GemmUnit`` (one library call per iteration of the loops).
* A parallel loop is a ``ThreadsUnit``: perfect nests of parallel loops are collapsed into
  one index space, and so are inner sequential loops that are plain element-wise maps; one
  thread per iteration of that space, other inner loops stay sequential. ``vector`` says
  which loads and stores move as 128-bit vectors (``vectorize.plan_vectors``). When the
  remaining body has the row-reduction shape (inner sequential loops whose iterations only
  accumulate ``reduce=True`` lets or store to distinct elements), ``rows`` also plans one
  block per iteration (``RowsPlan``), and the runtime picks rows or threads from the sizes
  it sees.
* A unit with no parallel loop is a ``RowsUnit`` (one row) when it has that shape (e.g. a
  full reduction), else a ``SerialUnit`` (one thread).

The plan of a kernel is a ``KernelLaunches`` in ``kernel.meta["cuda_launches"]``; its notes
(why a kernel got a slower mapping) become ``exe.stats["mapping_notes"]``. The pass reads the
buffer plan (which buffers share storage decides which accesses may move as vectors), so the
pipeline runs it after buffer planning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...expr import Call, Expr, Load, Math, Var, sub_exprs
from ...kernel.analysis import (
    buffers_read,
    buffers_written,
    extent,
    libcall_nest,
    linear_coeff,
    locals_assigned,
    reads_before_write,
    reduction_of,
    var_names,
)
from ...kernel.ir import (
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
from .vectorize import VectorPlan, plan_vectors

#: the key of ``Kernel.meta`` that holds a kernel's ``KernelLaunches``
META_KEY = "cuda_launches"


@dataclass(frozen=True)
class RowsPlan:
    """One thread block per row: ``body`` runs once per row; the loops at the positions
    ``coop`` of ``body`` are strided over the block's threads and their accumulators
    combined; the other statements run on every thread (stores on thread 0).

    inner: the longest cooperative trip count (the runtime sizes the block by it);
    contiguous: some cooperative loop loads consecutive elements on consecutive iterations.
    """

    body: tuple
    coop: frozenset
    inner: Expr
    contiguous: bool


@dataclass(frozen=True)
class GemmUnit:
    """A library GEMM, once or once per iteration of ``loops`` ((var, start, stop),
    outermost first)."""

    call: LibCall
    loops: tuple = ()


@dataclass(frozen=True)
class ThreadsUnit:
    """A parallel loop: one thread per iteration of the flattened ``nest`` ((var, start,
    stop), row-major) running ``body``; ``vector``: the accesses that move as vectors (None:
    none); ``rows``: the block-per-row alternative over the same nest (None: threads only).
    ``prefix``: top-level Lets re-evaluated first."""

    prefix: tuple
    nest: tuple
    body: tuple
    vector: VectorPlan | None
    rows: RowsPlan | None


@dataclass(frozen=True)
class RowsUnit:
    """Statements without a parallel loop that have the row shape: one block, one row."""

    prefix: tuple
    rows: RowsPlan


@dataclass(frozen=True)
class SerialUnit:
    """Statements run by one thread."""

    prefix: tuple
    stmts: tuple


@dataclass(frozen=True)
class KernelLaunches:
    """The launches of one kernel, in order, and why any got a slower mapping. ``body`` is
    the kernel body they were planned for (the renderer refuses a plan of another body)."""

    body: tuple
    units: tuple
    notes: tuple = ()


def plan_launches(kp: KernelProgram) -> KernelProgram:
    """``kp`` with a ``KernelLaunches`` in every kernel's ``meta["cuda_launches"]``."""
    planner = _Planner(kp)
    kernels = [replace(k, meta={**k.meta, META_KEY: planner.kernel(k)}) for k in kp.kernels]
    return replace(kp, kernels=kernels)


def launches_of(kernel: Kernel) -> KernelLaunches | None:
    """The plan ``plan_launches`` recorded for ``kernel`` if it is still the plan of its
    body, else None."""
    plan = kernel.meta.get(META_KEY)
    if not isinstance(plan, KernelLaunches):
        return None
    if plan.body is not kernel.body and plan.body != kernel.body:
        return None
    return plan


class _Planner:
    """Plans the kernels of one program (its buffers say which share storage)."""

    def __init__(self, kp: KernelProgram):
        self.buffers = kp.buffers

    def root(self, buffer: str) -> str:
        """The buffer whose storage ``buffer`` shares (itself when it owns its storage)."""
        while self.buffers[buffer].alias_of is not None:
            buffer = self.buffers[buffer].alias_of
        return buffer

    def kernel(self, k: Kernel) -> KernelLaunches:
        notes: list = []
        cut = _split(_units(k.body), notes)
        units = tuple(self._unit(tuple(prefix), unit, notes) for prefix, unit in cut)
        return KernelLaunches(k.body, units, tuple(notes))

    def _unit(self, prefix: tuple, unit: list, notes: list):
        if len(unit) == 1 and isinstance(unit[0], LibCall):
            return GemmUnit(unit[0])
        nest = libcall_nest(unit)
        if nest is not None:  # batched GEMM by loops: one library call per iteration
            loops, call = nest
            return GemmUnit(call, tuple(loops))
        if len(unit) == 1 and isinstance(unit[0], Loop) and unit[0].parallel:
            return self._threads(prefix, unit[0], notes)
        rows = _rows_plan(unit, notes)
        if rows is not None:
            return RowsUnit(prefix, rows)
        return SerialUnit(prefix, tuple(unit))

    def _threads(self, prefix: tuple, loop: Loop, notes: list) -> ThreadsUnit:
        nest, body = _collapse(loop)
        nest, body = _flatten_maps(nest, body)
        vec = plan_vectors(nest, body, self.buffers, self.root)
        rows = _rows_plan(body, notes)
        return ThreadsUnit(prefix, tuple(nest), tuple(body), vec, rows)


# -- cutting a kernel into units ------------------------------------------------------------
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


def _split(units, notes: list) -> list:
    """[(prefix lets, unit statements)] per launch; one unit when unsafe to cut."""
    if len(units) <= 1:
        return [((), units[0])] if units else []
    body = [s for u in units for s in u]
    written = buffers_written(body)
    in_loops = locals_assigned([s for s in body if isinstance(s, Loop)])
    plans, prefix = [], []
    for unit in units:
        if all(isinstance(s, Let) for s in unit):
            prefix.extend(unit)
            continue
        needed = {v for v in locals_assigned(body) if reads_before_write(unit, v)}
        if needed & in_loops or any(
            let.var in needed and buffers_read([let]) & written for let in prefix
        ):
            notes.append(f"serial: scalars {sorted(needed)} cross launches")
            return [((), body)]
        if any(isinstance(s, LibCall) for s in unit) and needed:
            notes.append("serial: a library call reads a scalar local")
            return [((), body)]
        plans.append((tuple(prefix), unit))
        # Lets inside a unit that later units read would need carrying: refuse.
        prefix.extend(s for s in unit if isinstance(s, Let))
    return plans


# -- one thread per iteration ---------------------------------------------------------------
def _collapse(loop: Loop):
    """Perfect nest of parallel loops with independent bounds -> [(var, start, stop)], body."""
    nest, body = [(loop.var, loop.start, loop.stop)], loop.body
    while len(body) == 1 and isinstance(body[0], Loop) and body[0].parallel:
        inner = body[0]
        outer_vars = {v for v, _, _ in nest}
        if (var_names(inner.start) | var_names(inner.stop)) & outer_vars:
            break
        nest.append((inner.var, inner.start, inner.stop))
        body = inner.body
    return nest, list(body)


def _flatten_maps(nest, body):
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
        if _coop_refusal(inner, []) is not None:
            break
        nest.append((inner.var, inner.start, inner.stop))
        body = list(inner.body)
    return nest, body


# -- one block per row ----------------------------------------------------------------------
def _rows_plan(body, notes: list) -> RowsPlan | None:
    """The block-per-row plan of ``body``, or None when it lacks the row shape (with a note
    when a loop that writes memory is what keeps it from it)."""
    coop_ids, trips = set(), []
    for i, s in enumerate(body):
        if isinstance(s, LibCall):
            return None
        if isinstance(s, If) and any(isinstance(x, Loop) for x in walk_stmts([s])):
            return None
        if not isinstance(s, Loop):
            continue
        if s.parallel:
            return None
        reason = _coop_refusal(s, body[i + 1 :])
        if reason is None:
            coop_ids.add(id(s))
            trips.append(extent(s.start, s.stop))
        elif buffers_written([s]):
            notes.append(f"threads only: loop {s.var}: {reason}")
            return None
    if not coop_ids:
        return None
    inner = trips[0]
    for t in trips[1:]:
        inner = Call(Math.MAX, (inner, t))
    # a loop object that occurs twice in the body is cooperative at both places
    coop = frozenset(i for i, s in enumerate(body) if id(s) in coop_ids)
    contiguous = any(
        linear_coeff(x.index, body[i].var) == 1
        for i in sorted(coop)
        for x in exprs_in(body[i].body)
        if isinstance(x, Load)
    )
    return RowsPlan(tuple(body), coop, inner, contiguous)


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
            red = reduction_of(s)
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
        if any(var_names(e) & accs.keys() for e in others):
            return "an accumulator is read inside its loop"
    for v in local:
        if reads_before_write(loop.body, v) or reads_before_write(after, v):
            return f"scalar '{v}' carries a value between iterations"
    for b, indices in stores.items():
        if len(indices) != 1:
            return f"several stores to '{b}'"
        (index,) = indices
        c = linear_coeff(index, loop.var)
        if not c:
            return f"store index of '{b}' is not injective in {loop.var}"
        loads = {x.index for x in exprs_in(loop.body) if isinstance(x, Load) and x.buffer == b}
        if loads - {index}:
            return f"'{b}' is read and written at different indices"
    if any(loop.var in var_names(e) for s in after for e in stmt_exprs(s)):
        return "loop variable used after the loop"
    return None
