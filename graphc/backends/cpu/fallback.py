"""Per-op host fallback for Programs the lowering cannot express entirely.

When ``kernel.lower`` raises UnimplementedError for some ops (e.g. a Conv2D before its
lowering lands), the Program is split in program order into *steps*: maximal runs of
lowerable nodes become native segments (each compiled to LLVM like a whole Program and run
with one native call), and every op without a lowering runs on the host with its numpy
reference (``OpDef.ref``), exactly as the reference backend would run it.

This is labelled, never silent: such an Executable lists each host op as a kernel named
``host_fallback:<op name>``, ``exe.stats["host_fallback_ops"]`` names the op types and
``exe.stats["native_calls_per_run"]`` says how many native calls a run makes (1 normally).
Fallback executables are not written to the disk cache.
"""

from __future__ import annotations

import time

import numpy as np

from ...errors import GraphcError, InvalidArgumentError, UnimplementedError
from ...executable import KernelInfo
from ...kernel.lower import lower
from ...ops.registry import get_op_def
from ...passes.fusion import fuse
from ...passes.symshape import SymbolicShapes
from ...program import Node, Program
from .control import ControlStep, is_control


def refs_needed_after(steps, fetches) -> list:
    """For each step (``("native", nodes)`` or ``(kind, node)``), the refs read after it: by
    later steps or as ``fetches``."""
    out = []
    later = {tuple(r) for r in fetches}
    for step in reversed(steps):
        out.append(set(later))
        for n in step[1] if step[0] == "native" else [step[1]]:
            later.update(tuple(r) for r in n.inputs)
    out.reverse()
    return out


def lowerable(program: Program, node: Node, options) -> bool:
    """Whether ``node`` alone (its inputs fed, with their static specs) lowers."""
    if node.op_def.source == "feed":
        return True
    nodes, feeds, ref_map = _feed_nodes(program, node.inputs, start=_max_id(program) + 1)
    inputs = tuple(ref_map[r] for r in node.inputs)
    mini = Node(node.id, node.op, inputs, node.outs, node.attrs, (), node.name, node.location)
    fetches = tuple((node.id, k) for k in range(len(node.outs)))
    p = Program(tuple(nodes) + (mini,), tuple(feeds), fetches, () if fetches else (node.id,))
    try:
        lower(p, fuse(p, options), options)
    except UnimplementedError:
        return False
    return True


def _max_id(program) -> int:
    return max((n.id for n in program.nodes), default=0)


def _feed_nodes(program, refs, start):
    """Feed nodes (ids from ``start``) for the distinct ``refs``; (nodes, feeds, ref -> ref)."""
    nodes, feeds, ref_map = [], [], {}
    for r in refs:
        if r in ref_map:
            continue
        spec = program.spec(r)
        nid = start + len(nodes)
        name = f"seg_in{len(nodes)}"
        attrs = {"index": len(nodes), "shape": spec.shape, "dtype": spec.dtype, "tensor": name}
        nodes.append(Node(nid, "Feed", (), (spec,), attrs, (), name))
        feeds.append((nid, name))
        ref_map[r] = (nid, 0)
    return nodes, feeds, ref_map


class _SubContext:
    """A RunContext view for one native segment: its own feeds, the run's shared state."""

    def __init__(self, ctx, feeds):
        self.feeds = feeds
        self._ctx = ctx

    def read_variable(self, name):
        return self._ctx.read_variable(name)

    def write_variable(self, name, value, owned=False):
        self._ctx.write_variable(name, value, owned)

    def rng_counter(self, op_name):
        return self._ctx.rng_counter(op_name)


class SegmentedRunner:
    """Runs native segments and host ops in program order (several native calls a run)."""

    target = "cpu"
    fresh_outputs = False

    def __init__(self, program: Program, steps: list):
        self.program = program
        # ("native", runner, in_refs, out_refs, name) | ("host", node, ControlStep | None)
        self.steps = steps

    def run(self, ctx, trace: list | None = None) -> list:
        values: dict = {}
        for n in self.program.nodes:
            if n.op_def.source == "feed":
                values[(n.id, 0)] = ctx.feeds[n.attrs["index"]]
        for step in self.steps:
            if step[0] == "native":
                _, runner, in_refs, out_refs, _ = step
                sub = _SubContext(ctx, [values[r] for r in in_refs])
                outs = runner.run(sub, trace)
                values.update(zip(out_refs, outs))
            else:
                node, control = step[1], step[2]
                t0 = time.perf_counter()
                xs = [values[r] for r in node.inputs]
                outs = _run_host(node, xs, ctx) if control is None else control.run(xs, ctx)
                for k, o in enumerate(outs):
                    values[(node.id, k)] = o
                if trace is not None:
                    trace.append((f"host_fallback:{node.name}", (node.name,), t0,
                                  time.perf_counter()))  # fmt: skip
        return [values[r] for r in self.program.fetches]

    def close(self) -> None:
        for step in self.steps:
            if step[0] == "native" and hasattr(step[1], "close"):
                step[1].close()
            elif step[0] == "host" and step[2] is not None:
                step[2].close()


def _run_host(node, xs, ctx) -> list:
    op_def = get_op_def(node.op)
    try:
        if op_def.stateful:
            out = op_def.ref_stateful(xs, node.attrs, ctx)
        else:
            with np.errstate(all="ignore"):
                out = op_def.ref(xs, node.attrs)
    except GraphcError as exc:
        if "(built at " in str(exc):
            raise  # the op's own run-time error (a failed assert) already names it
        raise type(exc)(
            f"{node.op} '{node.name}' (built at {node.location[0]}:{node.location[1]}): {exc}"
        ) from exc
    except (ArithmeticError, IndexError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{node.op} '{node.name}' (built at {node.location[0]}:{node.location[1]}) "
            f"failed: {exc}"
        ) from exc
    if not isinstance(out, list | tuple):
        out = [out]
    return [np.asarray(o) for o in out]


def split(program: Program, options):
    """Steps of ``program``: [("native", [nodes]) | ("host", node)] in program order."""
    steps: list = []
    run: list = []
    for n in program.nodes:
        if n.op_def.source == "feed":
            continue
        if lowerable(program, n, options):
            run.append(n)
            continue
        if run:
            steps.append(("native", run))
            run = []
        steps.append(("host", n))
    if run:
        steps.append(("native", run))
    return steps


def segment_program(program: Program, nodes: list, later_refs: set):
    """Sub-Program of ``nodes`` (inputs from outside become Feeds); (program, in, out refs)."""
    ids = {n.id for n in nodes}
    outside = []
    for n in nodes:
        for r in n.inputs:
            if r[0] not in ids and r not in outside:
                outside.append(r)
    feed_nodes, feeds, ref_map = _feed_nodes(program, outside, start=_max_id(program) + 1)
    body = []
    for n in nodes:
        inputs = tuple(ref_map.get(r, r) for r in n.inputs)
        control = tuple(c for c in n.control if c in ids)
        body.append(Node(n.id, n.op, inputs, n.outs, n.attrs, control, n.name, n.location))
    out_refs = [(n.id, k) for n in nodes for k in range(len(n.outs)) if (n.id, k) in later_refs]
    targets = tuple(n.id for n in nodes if n.op_def.stateful and n.op_def.source != "feed")
    sub = Program(tuple(feed_nodes) + tuple(body), tuple(feeds), tuple(out_refs), targets)
    return sub, outside, out_refs


def build(source, program: Program, options, compile_segment, compile_body):
    """A SegmentedRunner for ``program`` plus its KernelInfos and labels.

    ``compile_segment(sub_program) -> (runner, kernel infos)`` compiles one native segment;
    ``compile_body(program) -> Executable`` compiles a control-flow body (all stages).
    """
    steps = split(program, options)
    needed_after = refs_needed_after(steps, program.fetches)
    out_steps, kernels, host_ops, native_calls = [], [], [], 0
    dims = None  # symbolic dims of the program's values (for the loops' shared dims)
    for step, later_refs in zip(steps, needed_after):
        if step[0] == "host":
            node = step[1]
            control = None
            if is_control(node):  # a loop or branch: its bodies are compiled (control.py)
                needed = {k for k in range(len(node.outs)) if (node.id, k) in later_refs}
                if dims is None:
                    dims = SymbolicShapes(program.node)
                in_dims = [dims.dims(r) for r in node.inputs]
                control = ControlStep(node, options, needed, compile_body, in_dims)
            out_steps.append(("host", node, control))
            kernels.append(KernelInfo(f"host_fallback:{node.name}", (node.name,), (node.op,)))
            if control is not None:
                kernels.extend(control.kernels)
            host_ops.append(node.op)
            continue
        sub, in_refs, out_refs = segment_program(program, step[1], later_refs)
        if not out_refs and not sub.targets:
            continue
        runner, infos = compile_segment(sub)
        out_steps.append(("native", runner, in_refs, out_refs, f"segment{native_calls}"))
        kernels.extend(infos)
        native_calls += 1
    runner = SegmentedRunner(program, out_steps)
    stats = {
        "host_fallback_ops": sorted(set(host_ops)),
        "native_calls_per_run": native_calls,
    }
    return runner, kernels, stats
