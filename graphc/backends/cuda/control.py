"""Control-flow ops on the cuda target: host-side loops over kernel launches whose state
stays on the GPU.

A ``While`` or ``If`` node has no lowering. ``build`` splits the program in program order
into native segments (each an ordinary Program compiled like a whole one) and control
steps; ``ControlStep`` compiles every body Program of a node once with ``compile_body``
(the compiler's entry point, passed down: all the stages, nvcc, the disk cache; a body with
control flow of its own comes back here). At run time the loop runs on the host and calls
the body's runner once per iteration through ``run_device`` (``runtime.py``): the loop
variables, captured tensors and sliced inputs are ``DeviceArray``s handed from one
iteration to the next, never copied to the host. What the host reads per iteration is the
one-byte condition of a ``while_loop`` (nothing when the trip count is known: ``scan``,
``map_fn``, ``foldl``, ``dynamic_rnn`` and their gradients), and an ``If`` reads its
predicate once. A sliced input's row is a view into its storage; a stacked output of a loop
with a known trip count is one device array allocated after the first iteration, into
which the body writes each later row itself (``run_device``'s ``into``), else the row is
copied there device to device. Only the fetches of the whole run are copied to the host.

The meaning is that of ``graphc/ops/control_runtime.py`` (``run_while``, ``run_if``),
written again here over device arrays; the tests compare both with the reference.
"""

from __future__ import annotations

import time

import numpy as np
import pycuda.driver as drv

from ... import dtypes as _dt
from ...errors import InvalidArgumentError
from ...executable import KernelInfo
from ...ops.control_runtime import fmt_shape, kept_stacks, sliced_trips, where
from ...ops.registry import get_op_def
from ...passes.symshape import SymbolicShapes
from ...runtime_state import SubContext
from ..cpu.control import is_control
from ..cpu.fallback import refs_needed_after, segment_program
from ..cpu.loop_bodies import body_kernels, prepare
from .runtime import DeviceArray, device, device_empty, to_device


def _on_device(value) -> bool:
    return isinstance(value, DeviceArray)


def read_scalar(value) -> np.ndarray:
    """A scalar's value on the host: one small device->host copy for a DeviceArray."""
    if not _on_device(value):
        return np.asarray(value)
    host = np.empty(value.shape, value.dtype)
    dev = value.device
    if host.nbytes:
        with dev.lock, dev.active():
            dev.stream.synchronize()
            drv.memcpy_dtoh(host, value.ptr)
    return host


def _copy(dest: DeviceArray, src: DeviceArray) -> None:
    """Device-to-device copy of ``src`` into ``dest`` (same size)."""
    if src.nbytes:
        dev = dest.device
        with dev.lock, dev.active():
            drv.memcpy_dtod(dest.ptr, src.ptr, src.nbytes)


class ControlStep:
    """A compiled control-flow node: its bodies' runners and the outputs read later."""

    def __init__(self, node, needed, compile_body, in_dims=None):
        self.node = node
        self.op_def = get_op_def(node.op)
        self.needed = needed
        self.runners: dict = {}
        self.kernels: list = []
        t0 = time.perf_counter()
        # the bodies as the cpu target prepares them (``cpu/loop_bodies.py``); the prologue's
        # device values are read by the body as extra inputs, and a device feed whose size
        # differs from its shared-dims class's is refused by ``run_device``
        bodies = prepare(node, self.op_def, needed, in_dims)
        self.history = bodies.history  # False: the body compiled without its history outputs
        self.prologue = None
        if bodies.prologue is not None:
            exe = compile_body(bodies.prologue)
            self.prologue = exe.runner
            self.kernels.extend(body_kernels(node, "prologue", exe))
        self.shared = bodies.shared
        self._plain = bodies.plain
        self._plain_runners: dict | None = None
        self._compile_body = compile_body
        for attr, program in bodies.programs.items():
            exe = compile_body(program)
            self.runners[attr] = exe.runner
            self.kernels.extend(body_kernels(node, attr, exe))
        self.seconds = time.perf_counter() - t0

    def _runners(self, xs) -> dict:
        """The bodies' runners for this run's inputs: those with shared dims when the
        inputs have one size in each class (or there are none), else the plain ones."""
        if self.shared is None or self.shared.holds(xs):
            return self.runners
        if self._plain_runners is None:
            self._plain_runners = {
                attr: self._compile_body(p).runner for attr, p in self._plain.items()
            }
        return self._plain_runners

    def run(self, xs, ctx) -> list:
        """The node's outputs (DeviceArrays; an unread stacked output is a zero-byte host
        stand-in) from its inputs ``xs`` (DeviceArrays or host arrays)."""
        dev = device()
        if self.op_def.repeats_body:  # (host inputs copied to the device once per run)
            xs = [to_device(dev, x) for x in xs]
        runners = self._runners(xs)
        sub = SubContext(ctx, [])  # one per run, re-pointed at each call's feeds

        invariant: list = []  # the prologue's values, made before the first iteration

        def call(attr, feeds, iteration=None, into=None):
            if attr == "body" and self.prologue is not None:
                if not invariant:
                    invariant.extend(self.prologue.run_device(SubContext(ctx, list(xs))))
                feeds = list(feeds) + invariant
            sub.feeds = feeds
            sub.iteration = iteration
            return runners[attr].run_device(sub, None, into)

        if self.op_def.repeats_body:
            return _run_while(dev, self.node.attrs, xs, call, self.needed, self.history)
        return _run_if(dev, self.node.attrs, xs, call)

    def close(self) -> None:
        extra = [self.prologue] if self.prologue is not None else []
        for r in [*self.runners.values(), *(self._plain_runners or {}).values(), *extra]:
            close = getattr(r, "close", None)
            if close is not None:
                close()


def _run_while(dev, attrs, xs, call, needed, history) -> list:
    """``run_while`` (``graphc/ops/control_runtime.py``) over device arrays."""
    n, k = attrs["n_vars"], attrs["n_sliced"]
    vars_ = [to_device(dev, x) for x in xs[:n]]
    rows = [to_device(dev, x) for x in xs[n : n + k]]
    caps = [to_device(dev, x) for x in xs[n + k :]]
    trips = sliced_trips(attrs, rows)
    stacked = attrs["stacked"]
    keep = kept_stacks(attrs, needed, history)
    has_cond = attrs["cond"] is not None
    nh = attrs["n_history"] if history else 0
    # loop variable -> its stacked history (the variables at the start of each iteration)
    hist_of = {v: len(stacked) - nh + v for v in range(n)} if nh >= n else {}
    # known trip count: each kept stacked output is one device array, allocated after the
    # first iteration (its rows' shape is known then) and written row by row in place
    known = not has_cond and trips is not None
    stacks: list = [None if not kj else (None if known else []) for kj in keep]
    first_shape: dict = {}
    reverse = attrs.get("reverse", False)
    check = [(j, attrs["var_specs"][j][0]) for j in attrs.get("check_vars", ())]
    i = 0
    c = call("cond", vars_ + caps, -1)[0] if has_cond else None
    while True:
        if has_cond:
            if tuple(c.shape) != ():
                raise InvalidArgumentError(
                    f"while_loop at {where(attrs)}: cond returned shape {tuple(c.shape)}, "
                    "not a scalar bool"
                )
            if not bool(read_scalar(c)):  # the one device->host copy of an iteration
                break
            if trips is not None and i >= trips:
                raise InvalidArgumentError(
                    f"While at {where(attrs)}: iteration {i} reads past the {trips} rows "
                    "of its sliced inputs"
                )
        elif trips is None or i >= trips:
            break
        at = (trips - 1 - i if reverse else i) if k else i
        feeds = vars_ + [r.row(at) for r in rows] + caps
        into = None
        if known and i:
            into = {n + j: st.row(at) for j, st in enumerate(stacks) if st is not None}
            if i + 1 < trips:
                # a loop variable's new value is the next iteration's history row: written
                # there by the body, it needs no copy when the history stacks it
                nxt = trips - 2 - i if reverse and k else i + 1
                for v, j in hist_of.items():
                    if stacks[j] is not None:
                        into.setdefault(v, stacks[j].row(nxt))
        outs = call("body", feeds, i, into)
        if has_cond:
            c = outs[-1]  # the condition on the new variables (see control_flow.py)
        vars_ = outs[:n]
        for j, kj in enumerate(keep):
            if not kj:
                continue
            row = to_device(dev, outs[n + j])
            if not known:
                stacks[j].append(row)
                continue
            if i == 0:
                first_shape[j] = row.shape
                stacks[j] = device_empty(dev, (trips,) + tuple(row.shape), row.dtype)
            elif row.shape != first_shape[j]:
                raise InvalidArgumentError(_ragged(attrs, first_shape[j], row.shape))
            dest = stacks[j].row(at)
            if row.ptr != dest.ptr:  # the body did not write it in place
                _copy(dest, row)
        for j, spec_shape in check:
            shape = tuple(vars_[j].shape)
            if spec_shape is not None and not (
                len(shape) == len(spec_shape)
                and all(d is None or d == s for d, s in zip(spec_shape, shape))
            ):
                raise InvalidArgumentError(
                    f"while_loop at {where(attrs)}: loop variable {j} has shape {shape} "
                    f"after iteration {i}, which does not fit its shape "
                    f"{fmt_shape(spec_shape)} (pass shape_invariants to let it change)"
                )
        i += 1
    results = list(vars_)
    for j, st in enumerate(stacks):
        row_shape, dtype = stacked[j]
        if isinstance(st, DeviceArray):
            results.append(st)
        elif not st:  # unread (a zero-byte stand-in) or no iteration
            shape = (i,) + tuple(0 if d is None else d for d in (row_shape or ()))
            results.append(np.broadcast_to(np.zeros((), _dt.as_dtype(dtype).np), shape))
        else:
            if reverse:
                st.reverse()
            results.append(_stack(dev, st, attrs))
    return results


def _ragged(attrs, first, shape) -> str:
    return (
        f"loop at {where(attrs)}: per-iteration values to stack have different shapes "
        f"({tuple(first)} and {tuple(shape)}): a loop variable whose shape changes across "
        "iterations cannot be stacked (nor differentiated)"
    )


def _stack(dev, rows: list, attrs) -> DeviceArray:
    """The device rows stacked along a new first axis (device-to-device copies), each row
    released once copied."""
    first = tuple(rows[0].shape)
    for r in rows:
        if tuple(r.shape) != first:
            raise InvalidArgumentError(_ragged(attrs, first, r.shape))
    out = device_empty(dev, (len(rows),) + first, rows[0].dtype)
    for i in range(len(rows)):
        _copy(out.row(i), rows[i])
        rows[i] = None
    return out


def _run_if(dev, attrs, xs, call) -> list:
    """``run_if`` over device arrays: the predicate is read once, only the taken branch's
    kernels run."""
    pred = xs[0]
    if tuple(np.shape(pred)) != ():
        raise InvalidArgumentError(
            f"cond at {where(attrs)}: pred has shape {tuple(np.shape(pred))}, not a scalar"
        )
    taken = "then" if bool(read_scalar(pred)) else "else"
    return list(call(taken, [to_device(dev, x) for x in xs[1:]]))


class SegmentedRunner:
    """Runs native segments and control steps in program order; every value between them
    stays on the device, only the fetches are copied to the host (``run``)."""

    target = "cuda"
    fresh_outputs = False

    def __init__(self, program, steps: list):
        self.program = program
        # ("native", runner, in_refs, out_refs) | ("control", node, ControlStep)
        self.steps = steps

    def run(self, ctx, trace: list | None = None) -> list:
        return [np.asarray(v) for v in self.run_device(ctx, trace)]

    def run_device(self, ctx, trace: list | None = None, into: dict | None = None) -> list:
        """The fetches as DeviceArrays (or host arrays: a feed fetched as it is, an unread
        stand-in). ``into`` is not used: the caller copies what is not written in place."""
        values: dict = {}
        for n in self.program.nodes:
            if n.op_def.source == "feed":
                values[(n.id, 0)] = ctx.feeds[n.attrs["index"]]
        for step in self.steps:
            if step[0] == "native":
                _, runner, in_refs, out_refs = step
                outs = runner.run_device(SubContext(ctx, [values[r] for r in in_refs]), trace)
                values.update(zip(out_refs, outs))
                continue
            node, control = step[1], step[2]
            t0 = time.perf_counter()
            outs = control.run([values[r] for r in node.inputs], ctx)
            for j, o in enumerate(outs):
                values[(node.id, j)] = o
            if trace is not None:
                trace.append((f"host_fallback:{node.name}", (node.name,), t0,
                              time.perf_counter()))  # fmt: skip
        return [values[tuple(r)] for r in self.program.fetches]

    def close(self) -> None:
        for step in self.steps:
            if step[0] == "native" and hasattr(step[1], "close"):
                step[1].close()
            elif step[0] == "control":
                step[2].close()


def build(program, compile_segment, compile_body):
    """A SegmentedRunner for ``program`` plus its KernelInfos and stats.

    ``compile_segment(sub_program) -> Executable`` compiles one native segment (no control
    flow); ``compile_body(program) -> Executable`` compiles a control-flow body (all stages).
    """
    steps: list = []
    run: list = []
    for n in program.nodes:
        if n.op_def.source == "feed":
            continue
        if is_control(n):
            if run:
                steps.append(("native", run))
                run = []
            steps.append(("control", n))
        else:
            run.append(n)
    if run:
        steps.append(("native", run))
    needed_after = refs_needed_after(steps, program.fetches)
    out_steps, kernels, control_ops, native = [], [], [], 0
    dims = None  # symbolic dims of the program's values (for the loops' shared dims)
    for step, later_refs in zip(steps, needed_after):
        if step[0] == "control":
            node = step[1]
            needed = {k for k in range(len(node.outs)) if (node.id, k) in later_refs}
            if dims is None:
                dims = SymbolicShapes(program.node)
            in_dims = [dims.dims(r) for r in node.inputs]
            control = ControlStep(node, needed, compile_body, in_dims)
            out_steps.append(("control", node, control))
            kernels.append(KernelInfo(f"host_fallback:{node.name}", (node.name,), (node.op,)))
            kernels.extend(control.kernels)
            control_ops.append(node.op)
            continue
        sub, in_refs, out_refs = segment_program(program, step[1], later_refs)
        if not out_refs and not sub.targets:
            continue
        exe = compile_segment(sub)
        out_steps.append(("native", exe.runner, in_refs, out_refs))
        kernels.extend(exe.kernels)
        native += 1
    stats = {"host_fallback_ops": sorted(set(control_ops)), "native_calls_per_run": native}
    return SegmentedRunner(program, out_steps), kernels, stats
