"""Lower a fused Program (``passes.fusion_plan.FusionPlan``) to a KernelProgram (``ir.py``).

Each fusion group becomes one Kernel:
  * ``loop``: one loop nest over the shape of the group's stored outputs; every member is
    computed inline at the index its consumer asks for (``GroupEmitter.value``), and each
    (tensor, index) is computed once per iteration (a Let). When no member needs the
    multi-dimensional index, the nest is one flat loop (best for vectorisation).
  * ``reduction`` (input fusion + row kernels): outer (parallel) loops over the rows, then
    for each reduction an inner loop accumulating its fused producers, then row-valued
    elementwise members, then an inner loop storing the full-shaped outputs. Softmax and
    layer norm become one such kernel. (Both: ``lower_rows.py``; in the cpu's column layout
    a reduction over leading axes: ``lower_columns.py``.)
  * ``gemm``: a ``gemm`` LibCall followed by a fused elementwise epilogue (bias, activation),
    written in place into the GEMM's output when nothing else needs the raw product
    (``lower_gemm.py``).
  * ``opaque``: a kernel body of its own (scans, integer matmul, dynamic reductions).

This module is the driver: buffers, variables, rng and checks shared by the kernels
(``Lowering``), the order of the groups, which outputs each one stores, and the choice of
emitter per group (``emit_group``, also the fusion pass's legality probe).
"""

from __future__ import annotations

import heapq

from .. import dtypes as _dt
from ..errors import UnimplementedError
from ..expr import i64
from ..program import Program
from . import lower_adjoint, lower_einsum, lower_index, lower_pool, lower_scatter  # noqa: F401  (register)
from . import lowerings as L
from .analysis import buffers_read, buffers_written
from .builder import Illegal, KernelBuilder
from .ir import (
    RNG_BUFFER,
    STATUS_BUFFER,
    Buffer,
    Check,
    Kernel,
    KernelProgram,
    LibCall,
    walk_stmts,
)
from .lower_columns import emit_column_group
from .lower_gemm import emit_gemm_group
from .lower_rows import emit_loop_group, emit_row_group, row_cache_plan
from .shapes import SymShapes, with_location

# -- the lowering of a whole program -----------------------------------------------------------


class Lowering:
    """State shared by the kernels of one program: buffers, variables, rng and checks."""

    def __init__(self, program: Program, plan, options=None, reduction_layout="rows",
                 shapes=None):  # fmt: skip
        """``shapes``: the program's SymShapes when the caller has them (the pipeline builds
        them once for fusion and lowering)."""
        if reduction_layout not in ("rows", "columns"):
            raise ValueError(f"reduction_layout must be 'rows' or 'columns', got "
                             f"{reduction_layout!r}")  # fmt: skip
        self.reduction_layout = reduction_layout
        #: CompileOptions.winograd (``lower_winograd``)
        self.winograd = getattr(options, "winograd", True)
        self.program = program
        self.plan = plan
        self.shapes = SymShapes(program) if shapes is None else shapes
        self.buffers: dict = {}
        self.fetches = {tuple(r) for r in program.fetches}
        self.rng: list = []
        self.rng_slots: dict = {}
        self.checks: list = []
        self.check_of: dict = {}
        self.var_reads: dict = {}
        self.var_updates: dict = {}
        self.var_before: dict = {}  # Assign node id -> buffer of the value it updates
        # the final lowering (``lower``), not a fusion probe: each ref's consumer nodes, and
        # the nodes of the groups lowered so far (what a kernel's epilogue reads for the last
        # time: ``lower_gemm._last_read_operand``)
        self.consumers: dict | None = None
        self.lowered: set = set()
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
            op_def = n.op_def
            if op_def.source == "feed":
                self.source_buffer[ref] = self._add_buffer(f"in{n.attrs['index']}", ref, "input")
            elif op_def.source == "const":
                self.source_buffer[ref] = f"c{n.id}"  # created on first use
            elif op_def.variable == "read":
                var = n.attrs["var"]
                self.source_buffer[ref] = current.get(var) or self._var_buffer_for(n)
            elif op_def.variable in ("write", "update"):
                var = n.attrs["var"]
                if op_def.variable == "update":
                    self.var_before[n.id] = current.get(var) or self._var_buffer_for(n)
                current[var] = f"t{n.id}"
                self.var_updates[var] = f"t{n.id}"

    def buffer_for_read(self, ref) -> str:
        ref = tuple(ref)
        if ref in self.source_buffer:
            name = self.source_buffer[ref]
            node = self.program.node(ref[0])
            if node.op_def.source == "const" and name not in self.buffers:
                v = node.attrs["value"]
                self.buffers[name] = Buffer(
                    name, node.outs[0].dtype, tuple(i64(d) for d in v.shape), "const", v
                )
            return name
        return self.buffer_for_write(ref)

    def scratch_buffer(self, name, dtype, size) -> str:
        """A temporary of ``size`` elements that one kernel writes and then reads itself
        (partial results), named ``name``."""
        return self._add_buffer(name, dtype, "temp", shape=(size,))

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


def lower(
    program: Program, plan, options=None, reduction_layout="rows", shapes=None
) -> KernelProgram:
    """Lower every group of ``plan`` (a FusionPlan) to one Kernel, in dependency order.

    ``reduction_layout``: how a reduction over leading axes that keeps trailing ones (a bias
    gradient: sum over the batch of [N, D]) loops. ``"rows"`` (default; what a GPU wants):
    one accumulator per output element, parallel over the outputs, the reduced axis read
    with a stride. ``"columns"`` (what a SIMD CPU wants): the kept trailing axes innermost,
    unit-stride, accumulating into the output row, parallel over chunks of it. ``shapes``:
    the program's SymShapes, if already built.
    """
    lw = Lowering(program, plan, options, reduction_layout, shapes)
    kernels = []
    consumers = ref_consumers(program)
    lw.consumers = consumers
    index = GroupIndex(plan)
    for gi in ordered_groups(program, plan, index):
        kernels.append(lower_group(lw, gi, plan, consumers, index))
        lw.lowered.update(plan.groups[gi].nodes)
    # fetched sources (feeds, constants, variables) are outputs too
    outputs = tuple(lw.buffer_for_read(r) for r in program.fetches)
    if lw.rng:
        lw.buffers[RNG_BUFFER] = Buffer(RNG_BUFFER, _dt.int64, (i64(len(lw.rng)),), "rng")
    if lw.checks:
        lw.buffers[STATUS_BUFFER] = Buffer(
            STATUS_BUFFER, _dt.int32, (i64(len(lw.checks)),), "status"
        )
    kernels = drop_unread(kernels, lw.buffers, {*outputs, *lw.var_updates.values()})
    feeds = [n for n in program.nodes if n.op_def.source == "feed"]
    inputs = [None] * max([n.attrs["index"] + 1 for n in feeds], default=0)
    for n in feeds:
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


def drop_unread(kernels: list, buffers: dict, keep: set) -> list:
    """``kernels`` without those whose every result is a temporary that no kernel reads and
    that is not in ``keep`` (fetched, or a variable's new value); their temporaries leave
    ``buffers``. A lowering may read past a group's output: the packed convolution reads an
    NCHW feed itself instead of its NHWC transpose (``lower_nn._packed_input``), and the
    transpose's kernel then computes what nothing reads. Only plain loop nests go (no library
    call, nothing but temporaries written: a run-time check writes the status buffer)."""
    read = set()
    for k in kernels:
        read |= set(k.reads) | buffers_read(k.body)
    out, gone = [], set()
    for k in kernels:
        written = set(k.writes) | buffers_written(k.body)
        if (
            written
            and not (written & (read | keep))
            and all(buffers[b].kind == "temp" for b in written)
            and not any(isinstance(s, LibCall) for s in walk_stmts(k.body))
        ):
            gone |= written
        else:
            out.append(k)
    for k in out:
        gone -= set(k.writes) | buffers_written(k.body)
    for b in gone:
        del buffers[b]
    return out


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
        access = n.op_def.variable
        var = n.attrs.get("var") if access in ("read", "write", "update") else None
        if var is None:
            continue
        if var in last_assign and access != "write":
            deps[n.id].add(last_assign[var])
        if access in ("write", "update"):
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
            need = ref in fetches or node.op_def.must_store
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
        return emit_gemm_group(lw, name, nodes, stored, gemms[0])
    if reductions:
        if kind is not None and lw.reduction_layout == "columns":
            done = emit_column_group(lw, name, nodes, stored, reductions)
            if done is not None:
                return done
        kb, body = emit_row_group(lw, name, nodes, stored, reductions)
        if kind is not None:  # the final lowering (not a fusion probe): avoid recomputation
            cache = row_cache_plan(lw, kb, stored)
            if cache:
                kb, body = emit_row_group(lw, name, nodes, stored, reductions, cache)
        return kb, body
    return emit_loop_group(lw, name, nodes, stored)
