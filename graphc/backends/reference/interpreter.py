"""Interpret a Program node by node with each OpDef's numpy reference."""

from __future__ import annotations

import time

import numpy as np

from ... import dtypes as _dt
from ...errors import GraphcError, InvalidArgumentError, ResourceExhaustedError
from ...graph.core import TensorSpec
from ...ops.registry import ShapeError, get_op_def
from ...program import Program
from ...runtime_state import RunContext, SubContext


def _too_big(exc) -> bool:
    """numpy's ValueError for an array whose byte size does not fit an int64."""
    text = str(exc)
    return isinstance(exc, ValueError) and (
        "array is too big" in text or "Maximum allowed size exceeded" in text
    )


def _check_contract(node, op_def, xs) -> None:
    """The op's build-time shape rule (``OpDef.infer``) holds for the run's concrete input
    shapes: a size fed for a ``None`` dim that the rule would have refused at build time is
    refused here, as the compiled targets' run-time shape checks refuse it."""
    specs = [TensorSpec(np.shape(x), _dt.as_dtype(np.asarray(x).dtype)) for x in xs]
    try:
        op_def.infer(specs, node.attrs)
    except ShapeError as exc:
        raise InvalidArgumentError(
            f"{node.op} '{node.name}' (built at {node.location[0]}:{node.location[1]}): {exc} "
            f"(input shapes {', '.join(str(tuple(s.shape)) for s in specs)})"
        ) from None


def _check_output(node, k, value):
    spec = node.outs[k]
    if value.dtype != spec.dtype.np:
        raise AssertionError(
            f"{node.op} '{node.name}': reference produced {value.dtype}, declared {spec.dtype.name}"
        )
    if spec.shape is not None:
        if len(spec.shape) != value.ndim or any(
            d is not None and d != s for d, s in zip(spec.shape, value.shape)
        ):
            raise InvalidArgumentError(
                f"{node.op} '{node.name}' (built at {node.location[0]}:{node.location[1]}): "
                f"produced shape {value.shape}, but its static shape is {spec.shape}"
            )


def run_program(program: Program, ctx: RunContext, trace: list | None = None, check=True) -> list:
    """Evaluate ``program``; returns the fetched arrays. Variable writes stay in ``ctx``."""
    values: dict = {}
    last_use: dict = {}
    for n in program.nodes:
        for src, _ in n.inputs:
            last_use[src] = n.id
    keep = {src for src, _ in program.fetches}
    used = None  # refs read by some node or fetched (control ops skip unread outputs)
    for n in program.nodes:
        op_def = get_op_def(n.op)
        xs = [values[src][k] for src, k in n.inputs]
        start = time.perf_counter() if trace is not None else 0.0
        try:
            if check and n.inputs:
                _check_contract(n, op_def, xs)
            if hasattr(op_def, "run_control"):  # control flow: bodies run recursively
                if used is None:
                    used = {r for m in program.nodes for r in m.inputs} | set(program.fetches)
                needed = {k for k in range(len(n.outs)) if (n.id, k) in used}
                out = op_def.run_control(xs, n.attrs, ctx, _body_runner(n, ctx, check), needed)
            elif op_def.stateful:
                out = op_def.ref_stateful(xs, n.attrs, ctx)
            else:
                with np.errstate(all="ignore"):
                    out = op_def.ref(xs, n.attrs)
        except (GraphcError, ArithmeticError, IndexError, ValueError, MemoryError) as exc:
            # numpy's errors (failed broadcast or reshape at run time...) become the op's.
            if isinstance(exc, GraphcError):
                if "(built at " in str(exc):
                    raise
                raise type(exc)(
                    f"{n.op} '{n.name}' (built at {n.location[0]}:{n.location[1]}): {exc}"
                ) from exc
            if isinstance(exc, MemoryError) or _too_big(exc):
                raise ResourceExhaustedError(
                    f"{n.op} '{n.name}' (built at {n.location[0]}:{n.location[1]}): "
                    f"out of memory for its result: {exc}"
                ) from None
            raise InvalidArgumentError(
                f"{n.op} '{n.name}' (built at {n.location[0]}:{n.location[1]}) failed: {exc}"
            ) from exc
        if not isinstance(out, list | tuple):
            out = [out]
        out = [np.asarray(o) for o in out]
        if check:
            for k, o in enumerate(out):
                _check_output(n, k, o)
        values[n.id] = out
        if trace is not None:
            trace.append((n.name or n.op, n.op, start, time.perf_counter()))
        for src, _ in n.inputs:
            if last_use.get(src) == n.id and src not in keep:
                values.pop(src, None)
    return [values[src][k] for src, k in program.fetches]


def _body_runner(node, ctx, check):
    """``call(attr, feeds, iteration=None, into=None)`` for a control op: runs the
    sub-Program ``node.attrs[attr]`` with ``feeds`` in this run's state (``iteration``: the
    loop iteration, for the random streams; ``into``, arrays a backend may write outputs
    into, is not used here)."""

    def call(attr, feeds, iteration=None, into=None):
        sub = SubContext(ctx, list(feeds), iteration)
        return run_program(node.attrs[attr], sub, None, check)

    return call


class ReferenceExecutable:
    """A Program run by the numpy interpreter."""

    target = "reference"

    def __init__(self, program: Program):
        self.program = program

    def run(self, ctx: RunContext, trace: list | None = None) -> list:
        return run_program(self.program, ctx, trace)
