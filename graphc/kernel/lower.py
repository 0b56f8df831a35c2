"""Lower a fused Program (``passes.fusion_plan.FusionPlan``) to a KernelProgram (``ir.py``).

Each fusion group becomes one Kernel:
  * ``loop``: one loop nest over the shape of the group's stored outputs; every member is
    computed inline at the index its consumer asks for (``GroupEmitter.value``), and each
    (tensor, index) is computed once per iteration (a Let). When no member needs the
    multi-dimensional index, the nest is one flat loop (best for vectorisation).
  * ``reduction`` (input fusion + row kernels): outer (parallel) loops over the rows, then
    for each reduction an inner loop accumulating its fused producers, then row-valued
    elementwise members, then an inner loop storing the full-shaped outputs. Softmax and
    layer norm become one such kernel.
  * ``gemm``: a ``gemm`` LibCall followed by a fused elementwise epilogue (bias, activation),
    written in place into the GEMM's output when nothing else needs the raw product.
  * ``opaque``: a kernel body of its own (scans, integer matmul, dynamic reductions).
"""

from __future__ import annotations

import heapq

from .. import dtypes as _dt
from ..errors import UnimplementedError
from ..expr import Cast, Const, Load, Math, Var, i64
from ..program import Program
from . import lower_adjoint, lower_einsum, lower_index, lower_scatter, sym  # noqa: F401  (register)
from . import lowerings as L
from .builder import (
    REDUCE_COMBINE,
    REDUCE_INIT,
    Illegal,
    Ix,
    KernelBuilder,
    is_row_shape,
    reduce_extreme,
)
from .group_emitter import GroupEmitter
from .ir import (
    RNG_BUFFER,
    STATUS_BUFFER,
    Buffer,
    Check,
    Kernel,
    KernelProgram,
    Let,
    LibCall,
    Store,
    exprs_in,
    walk_stmts,
)
from .lower_columns import emit_column_group
from .lower_nn import emit_conv2d
from .printer import expr_text
from .shapes import SymShapes, with_location

# -- the lowering of a whole program -----------------------------------------------------------


class Lowering:
    """State shared by the kernels of one program: buffers, variables, rng and checks."""

    def __init__(self, program: Program, plan, options=None, reduction_layout="rows"):
        if reduction_layout not in ("rows", "columns"):
            raise ValueError(f"reduction_layout must be 'rows' or 'columns', got "
                             f"{reduction_layout!r}")  # fmt: skip
        self.reduction_layout = reduction_layout
        self.program = program
        self.plan = plan
        self.shapes = SymShapes(program)
        self.buffers: dict = {}
        self.fetches = {tuple(r) for r in program.fetches}
        self.rng: list = []
        self.rng_slots: dict = {}
        self.checks: list = []
        self.check_of: dict = {}
        self.var_reads: dict = {}
        self.var_updates: dict = {}
        self.var_before: dict = {}  # Assign node id -> buffer of the value it updates
        self.source_buffer: dict = {}  # ref of a source node -> buffer
        self._var_buffer: dict = {}
        self._prepare_sources()

    # -- buffers -------------------------------------------------------------------------
    def _add_buffer(self, name, ref_or_spec, kind, value=None, shape=None):
        if name in self.buffers:
            return name
        spec = self.program.spec(ref_or_spec) if isinstance(ref_or_spec, tuple) else None
        dtype = spec.dtype if spec is not None else ref_or_spec
        if shape is None:
            shape = self.shapes[ref_or_spec]
        self.buffers[name] = Buffer(name, dtype, tuple(shape), kind, value)
        return name

    def _var_buffer_for(self, node) -> str:
        var = node.attrs["var"]
        if var not in self._var_buffer:
            name = f"var{len(self._var_buffer)}"
            shape = tuple(i64(d) for d in node.attrs["shape"])
            self.buffers[name] = Buffer(name, node.attrs["dtype"], shape, "var")
            self.var_reads[name] = var
            self._var_buffer[var] = name
        return self._var_buffer[var]

    def _prepare_sources(self):
        """Feeds, constants, variable reads/updates in program order (as the reference)."""
        current: dict = {}  # variable -> buffer holding its value at this point of the program
        for n in self.program.nodes:
            ref = (n.id, 0)
            if n.op == "Feed":
                self.source_buffer[ref] = self._add_buffer(f"in{n.attrs['index']}", ref, "input")
            elif n.op == "Const":
                self.source_buffer[ref] = f"c{n.id}"  # created on first use
            elif n.op in ("VariableV2", "ReadVariable"):
                var = n.attrs["var"]
                self.source_buffer[ref] = current.get(var) or self._var_buffer_for(n)
            elif n.op in ("Assign", "AssignAdd", "AssignSub"):
                var = n.attrs["var"]
                if n.op != "Assign":
                    self.var_before[n.id] = current.get(var) or self._var_buffer_for(n)
                current[var] = f"t{n.id}"
                self.var_updates[var] = f"t{n.id}"

    def buffer_for_read(self, ref) -> str:
        ref = tuple(ref)
        if ref in self.source_buffer:
            name = self.source_buffer[ref]
            node = self.program.node(ref[0])
            if node.op == "Const" and name not in self.buffers:
                v = node.attrs["value"]
                self.buffers[name] = Buffer(
                    name, node.outs[0].dtype, tuple(i64(d) for d in v.shape), "const", v
                )
            return name
        return self.buffer_for_write(ref)

    def buffer_for_write(self, ref) -> str:
        ref = tuple(ref)
        name = f"t{ref[0]}" + (f"_{ref[1]}" if ref[1] else "")
        if name not in self.buffers:
            kind = "output" if ref in self.fetches else "temp"
            self._add_buffer(name, ref, kind)
        return name

    def rng_slot(self, node) -> int:
        if node.id not in self.rng_slots:
            a = node.attrs
            self.rng_slots[node.id] = len(self.rng)
            self.rng.append((a.get("stream", node.name), int(a["seed"]), int(a["seed2"])))
        return self.rng_slots[node.id]

    def plain_check(self, node, message) -> int:
        key = (node.id, "plain")
        if key not in self.check_of:
            self.check_of[key] = len(self.checks)
            message = with_location(node, message)
            self.checks.append(Check(len(self.checks), message, "plain"))
        return self.check_of[key]

    def check_slots(self, node) -> tuple:
        if node.id not in self.check_of:
            k = len(self.checks)
            msg = node.attrs["message"]
            self.checks += [Check(k, msg, "nan"), Check(k + 1, msg, "inf")]
            self.check_of[node.id] = (k, k + 1)
        return self.check_of[node.id]


def lower(program: Program, plan, options=None, reduction_layout="rows") -> KernelProgram:
    """Lower every group of ``plan`` (a FusionPlan) to one Kernel, in dependency order.

    ``reduction_layout``: how a reduction over leading axes that keeps trailing ones (a bias
    gradient: sum over the batch of [N, D]) loops. ``"rows"`` (default; what a GPU wants):
    one accumulator per output element, parallel over the outputs, the reduced axis read
    with a stride. ``"columns"`` (what a SIMD CPU wants): the kept trailing axes innermost,
    unit-stride, accumulating into the output row, parallel over chunks of it.
    """
    lw = Lowering(program, plan, options, reduction_layout)
    kernels = []
    consumers = ref_consumers(program)
    index = GroupIndex(plan)
    for gi in ordered_groups(program, plan, index):
        kernels.append(lower_group(lw, gi, plan, consumers, index))
    # fetched sources (feeds, constants, variables) are outputs too
    outputs = tuple(lw.buffer_for_read(r) for r in program.fetches)
    if lw.rng:
        lw.buffers[RNG_BUFFER] = Buffer(RNG_BUFFER, _dt.int64, (i64(len(lw.rng)),), "rng")
    if lw.checks:
        lw.buffers[STATUS_BUFFER] = Buffer(
            STATUS_BUFFER, _dt.int32, (i64(len(lw.checks)),), "status"
        )
    n_feeds = max([n.attrs["index"] + 1 for n in program.nodes if n.op == "Feed"], default=0)
    inputs = [None] * n_feeds
    for n in program.nodes:
        if n.op == "Feed":
            inputs[n.attrs["index"]] = f"in{n.attrs['index']}"
    return KernelProgram(
        buffers=lw.buffers,
        kernels=kernels,
        dims=dict(lw.shapes.dims),
        inputs=tuple(inputs),
        outputs=outputs,
        var_reads=dict(lw.var_reads),
        var_updates=dict(lw.var_updates),
        rng=tuple(lw.rng),
        checks=tuple(lw.checks),
        dim_checks=tuple(_dedupe(lw.shapes.checks)),
    )


def _dedupe(checks):
    seen = set()
    out = []
    for c in checks:
        if c[0] not in seen:
            seen.add(c[0])
            out.append(c)
    return out


class GroupIndex:
    """Who computes what in a FusionPlan, computed once: ``groups_of`` (node id -> group
    indices) and ``members`` (group index -> set of node ids)."""

    def __init__(self, plan):
        self.groups_of = plan.groups_of()
        self.members = [set(g.nodes) for g in plan.groups]


def ordered_groups(program, plan, index=None) -> list:
    """Group indices in an order that respects data and variable dependencies (stable): of
    the groups whose predecessors are all placed, the one whose first node comes first in
    the program (Kahn's algorithm, the ready groups in a heap)."""
    index = index or GroupIndex(plan)
    pos = {n.id: i for i, n in enumerate(program.nodes)}
    deps = node_deps(program)
    preds: dict = {gi: set() for gi in range(len(plan.groups))}
    groups_of = index.groups_of
    for gi, g in enumerate(plan.groups):
        members = index.members[gi]
        for nid in g.nodes:
            for src in deps[nid]:
                if src not in members:
                    preds[gi].update(gj for gj in groups_of.get(src, ()) if gj != gi)
    succs: dict = {gi: [] for gi in preds}
    for gi, ps in preds.items():
        for gj in ps:
            succs[gj].append(gi)
    waiting = {gi: len(ps) for gi, ps in preds.items()}
    key = {gi: (min(pos[n] for n in g.nodes), gi) for gi, g in enumerate(plan.groups)}
    ready = [key[gi] for gi, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, gi = heapq.heappop(ready)
        order.append(gi)
        for gj in succs[gi]:
            waiting[gj] -= 1
            if waiting[gj] == 0:
                heapq.heappush(ready, key[gj])
    if len(order) != len(plan.groups):
        raise AssertionError("fusion groups form a cycle")
    return order


def node_deps(program) -> dict:
    """node id -> ids it depends on: data inputs, plus the Assign whose value a read sees."""
    deps = {n.id: {src for src, _ in n.inputs} for n in program.nodes}
    last_assign: dict = {}
    for n in program.nodes:
        var = n.attrs.get("var") if n.op in _VAR_OPS else None
        if var is None:
            continue
        if var in last_assign and n.op != "Assign":
            deps[n.id].add(last_assign[var])
        if n.op in ("Assign", "AssignAdd", "AssignSub"):
            if var in last_assign:
                deps[n.id].add(last_assign[var])  # keep assignments in program order
            last_assign[var] = n.id
    # a source (variable read, feed, constant) is not a kernel: depend on what it depends on
    sources = {n.id for n in program.nodes if L.op_kind(n) == "source"}
    for n in program.nodes:
        d = deps[n.id]
        while d & sources:
            d = (d - sources) | set().union(*(deps[s] for s in d & sources))
        deps[n.id] = d
    return deps


_VAR_OPS = ("VariableV2", "ReadVariable", "Assign", "AssignAdd", "AssignSub")

MUST_STORE = ("Assign", "AssignAdd", "AssignSub", "CheckNumerics")


def stored_refs(program, plan, gi, consumers=None, index=None) -> list:
    """Outputs of group ``gi`` that another kernel, a fetch or the runtime needs in memory.

    A node duplicated into several groups is stored by the first of them only. ``index``:
    the plan's GroupIndex, when the caller asks for every group.
    """
    consumers = consumers if consumers is not None else ref_consumers(program)
    fetches = {tuple(r) for r in program.fetches}
    index = index or GroupIndex(plan)
    groups_of, members = index.groups_of, index.members
    out = []
    for nid in plan.groups[gi].nodes:
        node = program.node(nid)
        if L.op_kind(node) == "source" or min(groups_of[nid]) != gi:
            continue
        for k in range(len(node.outs)):
            ref = (nid, k)
            need = ref in fetches or node.op in MUST_STORE
            for c in consumers.get(ref, ()):
                if any(nid not in members[gj] for gj in groups_of.get(c, ())):
                    need = True
            if need:
                out.append(ref)
    return out


def ref_consumers(program) -> dict:
    out: dict = {}
    for n in program.nodes:
        for src, k in n.inputs:
            out.setdefault((src, k), []).append(n.id)
    return out


# -- one group ---------------------------------------------------------------------------------


def lower_group(lw: Lowering, gi: int, plan, consumers=None, index=None) -> Kernel:
    program = lw.program
    group = plan.groups[gi]
    nodes = [program.node(n) for n in group.nodes]
    stored = stored_refs(program, plan, gi, consumers, index)
    kind = group.kind
    if kind == "opaque":
        (node,) = nodes
        kb = KernelBuilder(lw, group.name)
        fn = L.opaque_fn(node)
        if fn is None:
            raise UnimplementedError(f"no lowering for op type {node.op} ('{node.name}')")
        fn(kb, node)
        body = kb.body()
    else:
        kb, body = emit_group(lw, group.name, nodes, stored, kind)
    return Kernel(
        name=group.name,
        body=body,
        ops=tuple(n.name for n in nodes),
        op_types=tuple(n.op for n in nodes),
        reads=tuple(sorted(kb.reads)),
        writes=tuple(sorted(kb.writes)),
        meta={"kind": kind, "nodes": tuple(group.nodes)},
    )


def emit_group(lw, name, nodes, stored, kind):
    """Emit a loop / reduction / gemm group; raises Illegal when it is not one kernel."""
    for n in nodes:
        k = L.op_kind(n)
        if k is None:
            raise UnimplementedError(f"no lowering for op type {n.op} ('{n.name}')")
        if k == "opaque":
            raise Illegal(f"{n.op} '{n.name}' needs a kernel of its own")
    gemms = [n for n in nodes if L.op_kind(n) == "gemm"]
    reductions = [n for n in nodes if L.op_kind(n) == "reduction"]
    if gemms:
        if len(gemms) > 1 or reductions:
            raise Illegal("a GEMM kernel takes one matmul and an elementwise epilogue")
        return _emit_gemm_group(lw, name, nodes, stored, gemms[0])
    if reductions:
        if kind is not None and lw.reduction_layout == "columns":
            done = emit_column_group(lw, name, nodes, stored, reductions)
            if done is not None:
                return done
        kb, body = _emit_row_group(lw, name, nodes, stored, reductions)
        if kind is not None:  # the final lowering (not a fusion probe): avoid recomputation
            cache = _row_cache_plan(lw, kb, stored)
            if cache:
                kb, body = _emit_row_group(lw, name, nodes, stored, reductions, cache)
        return kb, body
    return _emit_loop_group(lw, name, nodes, stored)


def _stored_space(lw, stored):
    shapes = {lw.shapes[r] for r in stored}
    if len(shapes) != 1:
        raise Illegal("the group's outputs have different shapes: "
                      + " vs ".join(_fmt_shape(s) for s in shapes))  # fmt: skip
    return shapes.pop()


def _fmt_shape(s):
    return "(" + ", ".join(expr_text(d) for d in s) + ")"


def _emit_loop_group(lw, name, nodes, stored, flat_first=True):
    if not stored:
        kb = GroupEmitter(lw, name, [n.id for n in nodes])
        return kb, ()
    shapes = list(dict.fromkeys(lw.shapes[r] for r in stored))
    if len(shapes) > 1 and len({r[0] for r in stored}) == 1:
        # one multi-output op (split, unstack): one loop nest per output shape
        kb = GroupEmitter(lw, name, [n.id for n in nodes])
        for shape in shapes:
            with kb.nest(shape) as idx:
                _store_all(kb, [r for r in stored if lw.shapes[r] == shape],
                           kb.ix(shape, dims=idx))  # fmt: skip
        return kb, kb.body()
    space = _stored_space(lw, stored)
    for flat in [True, False] if flat_first else [False]:
        kb = GroupEmitter(lw, name, [n.id for n in nodes])
        if flat:
            with kb.loop(sym.product(space), parallel=True) as i:
                ix = kb.ix(space, flat=i)
                _store_all(kb, stored, ix)
        else:
            with kb.nest(space) as idx:
                ix = kb.ix(space, dims=idx)
                _store_all(kb, stored, ix)
        if not kb.divmod_used or len(space) <= 1:
            break
    return kb, kb.body()


def _store_all(kb, stored, ix):
    for ref in stored:
        node = kb.lw.program.node(ref[0])
        v = kb.value(ref, ix)
        buf = kb.out_buffer(node, ref[1])
        kb.emit(Store(buf, ix.flat(), v))


def _row_cache_plan(lw, kb, stored) -> dict:
    """ref -> (output buffer, storing pass, passes) for the expensive members a row kernel
    computes in several passes: the first pass stores them into a full-shaped output of the
    same dtype (which the last pass overwrites element by element after reading it)."""
    free = [
        r for r in kb.full_stored if lw.program.node(r[0]).op not in MUST_STORE
    ]  # fmt: skip
    plan = {}
    for ref, passes in sorted(kb.expensive_seen.items(), key=lambda kv: min(kv[1])):
        if len(passes) < 2:
            continue
        dt = lw.program.spec(ref).dtype
        out = next((r for r in free if lw.program.spec(r).dtype == dt), None)
        if out is None:
            continue
        free.remove(out)
        plan[ref] = (lw.buffer_for_write(out), min(passes), frozenset(passes))
    return plan


def _emit_row_group(lw, name, nodes, stored, reductions, cache=None):
    specs = {}
    for r in reductions:
        spec = L.REDUCTIONS[r.op](r, lw.shapes)
        if spec is None:
            raise Illegal(f"{r.op} '{r.name}': which dims it reduces is only known at run time")
        specs[r.id] = spec
    first = specs[reductions[0].id]
    space = lw.shapes[first.ref]
    axes = first.axes
    for r in reductions:
        s = specs[r.id]
        if lw.shapes[s.ref] != space or s.axes != axes:
            raise Illegal("reductions over different shapes or axes")
    outer_axes = [d for d in range(len(space)) if d not in axes]
    row_shape = tuple(space[d] for d in outer_axes)
    kb = GroupEmitter(lw, name, [n.id for n in nodes])
    kb.row_cache = dict(cache or {})
    full_stored, row_stored = [], []
    for ref in stored:
        s = lw.shapes[ref]
        if s == space and ref[0] not in specs:
            full_stored.append(ref)
        elif sym.product(s) == sym.product(row_shape) and is_row_shape(s, space, axes):
            row_stored.append(ref)
        else:
            raise Illegal(f"output shape {_fmt_shape(s)} is neither the row nor the full shape")
    with kb.nest([space[d] for d in outer_axes]) as ovars:
        kb.row_flat = sym.flat_index(ovars, row_shape)
        row_dims = dict(zip(outer_axes, ovars))

        def full_ix(avars):
            dims = [
                row_dims[d]
                if d in row_dims
                else (sym.ZERO if sym.const_value(space[d]) == 1 else avars[axes.index(d)])
                for d in range(len(space))
            ]
            return kb.ix(space, dims=dims)

        for n in nodes:
            if n.id in specs:
                _emit_reduction(kb, n, specs[n.id], space, axes, full_ix)
            elif L.op_kind(n) != "source":
                s = lw.shapes[(n.id, 0)]
                if s != space and is_row_shape(s, space, axes) and _reads_rows(lw, n, kb):
                    kb.value((n.id, 0), kb.ix(s, flat=kb.row_flat))
        for ref in row_stored:
            node = lw.program.node(ref[0])
            v = kb.value(ref, kb.ix(lw.shapes[ref], flat=kb.row_flat))
            kb.emit(Store(kb.out_buffer(node, ref[1]), kb.row_flat, v))
        if full_stored:
            kb.pass_no += 1
            with kb.nest([space[d] for d in axes], parallel=False) as avars:
                ix = full_ix(avars)
                kb.full_flat = ix.flat()
                # read cached values before any store to the output rows holding them
                for ref, (_, _, passes) in kb.row_cache.items():
                    if kb.pass_no in passes:
                        kb.value(ref, ix)
                _store_all(kb, full_stored, ix)
                kb.full_flat = None
    kb.full_stored = full_stored
    return kb, kb.body()


def _reads_rows(lw, node, kb) -> bool:
    """True when ``node`` depends (inside the group) on a reduction of this row."""
    stack = [src for src, _ in node.inputs]
    seen = set()
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in kb.members:
            continue
        seen.add(nid)
        if nid in kb.row_values:
            return True
        stack.extend(src for src, _ in lw.program.node(nid).inputs)
    return False


def _emit_reduction(kb, node, spec, space, axes, full_ix):
    lw = kb.lw
    dt = lw.program.spec(spec.ref).dtype
    acc = kb.new_var("acc")
    extents = [space[d] for d in axes]
    if spec.op in ("argmax", "argmin"):
        best = acc
        idx = kb.new_var("arg")
        kb.emit(Let(best, dt, reduce_extreme(dt, spec.op == "argmin")))
        kb.emit(Let(idx, _dt.int64, sym.ZERO))
        with kb.nest(extents, parallel=False) as avars:
            v = kb.value(spec.ref, full_ix(avars))
            b = Var(best, dt)
            better = (Math.GT if spec.op == "argmax" else Math.LT)(v, b)
            if dt.is_floating:
                better = Math.OR(better, Math.AND(Math.ISNAN(v), Math.NOT(Math.ISNAN(b))))
            better = kb.bind(better, _dt.bool_)
            kb.emit(Let(idx, _dt.int64, Math.SELECT(better, avars[0], Var(idx, _dt.int64))))
            kb.emit(Let(best, dt, Math.SELECT(better, v, b)))
        final = Cast(Var(idx, _dt.int64), node.outs[0].dtype)
    else:
        if spec.op in ("max", "min"):
            init = reduce_extreme(dt, spec.op == "min")
        else:
            init = Const(dt.np.type(REDUCE_INIT[spec.op]).item(), dt)
        kb.emit(Let(acc, dt, init))
        kb.pass_no += 1
        with kb.nest(extents, parallel=False) as avars:
            ix = full_ix(avars)
            kb.full_flat = ix.flat()
            v = kb.value(spec.ref, ix)
            kb.emit(Let(acc, dt, REDUCE_COMBINE[spec.op](Var(acc, dt), v), reduce=True))
        kb.full_flat = None
        final = Var(acc, dt)
        if spec.op == "mean":
            final = Math.DIV(final, Cast(sym.product(extents), dt))
    kb.row_values[node.id] = kb.bind(final, node.outs[0].dtype)
    if isinstance(kb.row_values[node.id], Var) and kb.row_values[node.id].name == acc:
        # keep the accumulator name private: later reductions may not re-assign it
        kb.row_values[node.id] = Var(acc, dt)


def _emit_gemm_group(lw, name, nodes, stored, mm):
    """``gemm`` LibCall for ``mm`` then the epilogue members as a loop over their outputs.

    The GEMM writes straight into the epilogue's output (in place) when that is the only
    stored value, of C's shape and dtype, and the epilogue reads each element of C only at
    the index it then overwrites (not so for a transpose of a square C, say)."""
    prog = lw.program
    mm_ref = (mm.id, 0)
    for src, _ in mm.inputs:
        if src in {n.id for n in nodes}:
            raise Illegal("GEMM operands are read from memory by the BLAS library")
    epilogue = [r for r in stored if r != mm_ref]
    c_shape = lw.shapes[mm_ref]
    dt = mm.outs[0].dtype
    in_place = (
        mm_ref not in stored
        and len(epilogue) == 1
        and lw.shapes[epilogue[0]] == c_shape
        and prog.spec(epilogue[0]).dtype == dt
    )
    if in_place:
        kb = _gemm_group_emitter(lw, name, nodes, stored, mm, epilogue, in_place=True)
        if _reads_only_overwritten(kb.body(), kb.overrides[mm_ref]):
            return kb, kb.body()
    kb = _gemm_group_emitter(lw, name, nodes, stored, mm, epilogue, in_place=False)
    return kb, kb.body()


def _gemm_group_emitter(lw, name, nodes, stored, mm, epilogue, in_place):
    prog = lw.program
    mm_ref = (mm.id, 0)
    kb = GroupEmitter(lw, name, [n.id for n in nodes if n.id != mm.id])
    if in_place:
        c_buf = kb.out_buffer(prog.node(epilogue[0][0]), epilogue[0][1])
    elif mm_ref in stored:
        c_buf = kb.out_buffer(mm)
    else:
        c_buf = f"t{mm.id}"
        lw.buffers[c_buf] = Buffer(c_buf, mm.outs[0].dtype, lw.shapes[mm_ref], "temp")
        kb.writes.add(c_buf)
    if mm.op == "Conv2D":
        emit_conv2d(kb, mm, c_buf)
    else:
        _emit_gemm(kb, mm, c_buf)
    kb.overrides[mm_ref] = c_buf
    if epilogue:
        kb.reads.add(c_buf)
        space = _stored_space(lw, epilogue)
        saved = list(kb.blocks[0])
        for flat in (True, False):
            kb.blocks[0] = list(saved)
            kb.divmod_used = False
            if flat:
                with kb.loop(sym.product(space), parallel=True) as i:
                    _store_all(kb, epilogue, kb.ix(space, flat=i))
            else:
                with kb.nest(space) as idx:
                    _store_all(kb, epilogue, kb.ix(space, dims=idx))
            # the flat loop unless it needs a divmod (multi-index) and a nest can do without;
            # the nest is kept even when it needs one too
            if not kb.divmod_used or len(space) <= 1:
                break
    return kb


def _reads_only_overwritten(body, buf) -> bool:
    """Every Load of ``buf`` in ``body`` is at the index of the one Store to ``buf``."""
    stores = {s.index for s in walk_stmts(body) if isinstance(s, Store) and s.buffer == buf}
    if len(stores) != 1:
        return False
    return all(e.index in stores for e in exprs_in(body) if isinstance(e, Load) and e.buffer == buf)


def _emit_gemm(kb, mm, c_buf):
    lw = kb.lw
    a_ref, b_ref = (tuple(r) for r in mm.inputs)
    a_s, b_s = lw.shapes[a_ref], lw.shapes[b_ref]
    c_s = lw.shapes[(mm.id, 0)]
    ta, tb = mm.attrs["transpose_a"], mm.attrs["transpose_b"]
    m, n = c_s[-2], c_s[-1]
    k = a_s[-2] if ta else a_s[-1]
    a_buf, b_buf = lw.buffer_for_read(a_ref), lw.buffer_for_read(b_ref)
    kb.reads.update((a_buf, b_buf))
    batch = c_s[:-2]
    mk, kn, mn = sym.mul(m, k), sym.mul(k, n), sym.mul(m, n)
    dt = mm.outs[0].dtype
    one, zero = Const(1.0, dt), Const(0.0, dt)

    def stride(op_batch, size):
        if tuple(op_batch) == tuple(batch):
            return size
        if all(sym.const_value(d) == 1 for d in op_batch):
            return sym.ZERO
        return None

    sa, sb = stride(a_s[:-2], mk), stride(b_s[:-2], kn)
    flags = (i64(int(ta)), i64(int(tb)))
    if sa is not None and sb is not None:
        kb.emit(LibCall("gemm", (a_buf, b_buf, c_buf, *flags, m, n, k, sym.product(batch),
                                 sa, sb, mn, one, zero, sym.ZERO, sym.ZERO, sym.ZERO)))  # fmt: skip
        return
    # mixed batch broadcasting: one GEMM per output batch index
    with kb.nest(batch, parallel=False) as bidx:
        bix = Ix(kb, batch, dims=bidx)
        offs = []
        for op_batch, size in ((a_s[:-2], mk), (b_s[:-2], kn)):
            r, t = len(batch), len(op_batch)
            dims = []
            for j in range(t):
                d = op_batch[j]
                dims.append(sym.ZERO if sym.const_value(d) == 1 else
                            sym.select(sym.eq(d, 1), 0, bix.dims()[r - t + j]))  # fmt: skip
            offs.append(sym.mul(sym.flat_index(dims, op_batch), size))
        oc = sym.mul(bix.flat(), mn)
        kb.emit(LibCall("gemm", (a_buf, b_buf, c_buf, *flags, m, n, k, sym.ONE, sym.ZERO,
                                 sym.ZERO, sym.ZERO, one, zero, offs[0], offs[1], oc)))  # fmt: skip
