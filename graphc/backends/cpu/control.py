"""Control-flow ops on the cpu target: the loop or branch runs on the host, each body is its
own compiled native executable.

A ``While`` or ``If`` node has no lowering, so ``fallback.py`` runs it on the host between
native segments. ``ControlStep`` compiles every body Program of the node once with
``compile_body``, the compiler's entry point passed down to this layer: all the stages
(passes, fusion, lowering, LLVM; a body with control flow of its own comes back here).
Then it runs the op's shared meaning (``graphc/ops/control_flow.py`` ``run_control``) with a
``call`` that invokes the body's native runner: one native call per body evaluation, no
compilation per iteration, the trip count decided at run time. A body's executable is cached
on disk like any program (keyed by the body's own Program hash).
"""

from __future__ import annotations

import time

from ...ops.registry import get_op_def
from ...runtime_state import SubContext
from ..llvm.runtime import reused_array
from .loop_bodies import body_kernels, prepare
from .native_loop import drive


def is_control(node) -> bool:
    """Whether ``node`` is a control-flow op (its attributes hold bodies)."""
    return hasattr(get_op_def(node.op), "run_control")


class _Outputs:
    """How a body's outputs are made from what its compiled form returns: an output from
    position ``first_stacked`` on (a loop's stacked rows, a branch's results) that is one
    of the body's inputs (a loop variable's history row, a branch passing a value through)
    is the input array itself, and one that repeats an earlier output (a loop variable also
    stacked) is that same array; so is a dead loop variable in ``passthrough`` (one nothing
    reads, ``While.body_for_needed``), which keeps its input. So the compiled body returns each
    value once, as its own output buffer (which the runner may write into the caller's
    arrays, ``SubContext.into``), and copies no input."""

    def __init__(self, program, first_stacked: int, passthrough=()):
        keep, src, first = [], [], {}
        for pos, ref in enumerate(program.fetches):
            ref = tuple(ref)
            node = program.node(ref[0])
            shared = pos >= first_stacked or pos in passthrough
            if shared and node.op_def.source == "feed":
                src.append(-1 - node.attrs["index"])
            elif pos >= first_stacked and ref in first:
                src.append(first[ref])
            else:
                first.setdefault(ref, len(keep))
                src.append(len(keep))
                keep.append(ref)
        self.fetches = tuple(keep)
        self.src = None if src == list(range(len(keep))) else src
        self.program = self.with_fetches(program)

    def with_fetches(self, program):
        """``program`` (this body, or a variant with the same fetches) returning each
        value once."""
        if self.src is None:
            return program
        return program.with_nodes(program.nodes, fetches=self.fetches)

    def compiled_into(self, into: dict) -> dict:
        """``into`` of the body's outputs as ``into`` of the compiled outputs."""
        out = {}
        for pos, a in into.items():
            k = self.src[pos]
            if k >= 0 and k not in out:
                out[k] = a
        return out

    def expand(self, outs: list, feeds: list) -> list:
        return [outs[k] if k >= 0 else feeds[-1 - k] for k in self.src]


def _first_shared(node, attr, program) -> int:
    """The first output of body ``attr`` that may be an input array or another output's
    array (see ``_Outputs``): a loop body's stacked rows, every output of a branch (the
    Session copies what it fetches, nothing downstream writes into its inputs); a loop's
    variables and condition stay the body's own arrays."""
    if node.op_def.repeats_body:
        return node.attrs["n_vars"] if attr == "body" else len(program.fetches)
    return 0


class ControlStep:
    """A compiled control-flow node: its bodies' runners and the outputs read later."""

    def __init__(self, node, options, needed, compile_body, in_dims=None):
        self.node = node
        self.op_def = get_op_def(node.op)
        self.needed = needed
        self.runners: dict = {}
        self.kernels: list = []
        self.seconds = 0.0
        self._stacks: dict = {}  # stacked output index -> arrays of earlier runs
        t0 = time.perf_counter()
        bodies = prepare(node, self.op_def, needed, in_dims)
        self.history = bodies.history  # False: the body compiled without its history outputs
        self.prologue = None  # the loop-invariant work, once per run
        if bodies.prologue is not None:
            exe = compile_body(bodies.prologue)
            self.prologue = exe.runner
            self.kernels.extend(body_kernels(node, "prologue", exe))
        self.shared = bodies.shared
        self._plain = bodies.plain
        self._plain_runners: dict | None = None
        self._compile_body = compile_body
        self.outputs = {
            attr: _Outputs(p, _first_shared(node, attr, p), bodies.dead if attr == "body" else ())
            for attr, p in bodies.programs.items()
        }
        for attr in bodies.programs:
            exe = compile_body(self.outputs[attr].program)
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
                attr: self._compile_body(self.outputs[attr].with_fetches(p)).runner
                for attr, p in self._plain.items()
            }
        return self._plain_runners

    def run(self, xs, ctx) -> list:
        body_runners = self._runners(xs)
        runners = {attr: r.run for attr, r in body_runners.items()}
        outputs = self.outputs
        sub = SubContext(ctx, [])  # one per run, re-pointed at each call's feeds

        invariant: list = []  # the prologue's values, made before the first iteration

        def call(attr, feeds, iteration=None, into=None):
            if attr == "body" and self.prologue is not None:
                if not invariant:
                    invariant.extend(self.prologue.run(SubContext(ctx, list(xs))))
                feeds = list(feeds) + invariant
            sub.feeds = feeds
            sub.iteration = iteration
            out = outputs[attr]
            if out.src is None:
                sub.into = into
                return runners[attr](sub)
            sub.into = out.compiled_into(into) if into else None
            return out.expand(runners[attr](sub), feeds)

        if not self.node.op_def.repeats_body:
            return self.op_def.run_control(xs, self.node.attrs, ctx, call, self.needed)
        a = self.node.attrs

        def rest(vars_, rows, caps, stacks, trips, reverse):
            # iterations 1.. in one native call (native_loop.py), or None: on in Python
            return drive(body_runners["body"], outputs["body"], a["n_vars"], a["n_sliced"],
                         invariant, vars_, rows, caps, stacks, trips, reverse)  # fmt: skip

        return self.op_def.run_control(xs, a, ctx, call, self.needed, self.history,
                                       alloc=self._stack_array, rest=rest)  # fmt: skip

    def _stack_array(self, j, shape, dtype):
        """The array stacked output ``j`` is written into: one of the last REUSE_DEPTH of
        this op that nothing holds any more (its pages are mapped: a loop's history is
        megabytes, new memory costs page faults on every run), else a new one."""
        return reused_array(self._stacks.setdefault(j, []), shape, dtype)

    def close(self) -> None:
        extra = [self.prologue] if self.prologue is not None else []
        for r in [*self.runners.values(), *(self._plain_runners or {}).values(), *extra]:
            close = getattr(r, "close", None)
            if close is not None:
                close()
