"""Control flow: If, Loop and Scan, on graphc's ``If`` and ``While`` ops.

A body (a subgraph attribute) is imported by ``ctx.run_subgraph`` while graphc traces it
into the control op's sub-program: the values of the enclosing scopes it reads become
captures of the graphc body. A branch whose predicate is known at import time is imported
inline (only it). Loop-carried values may change shape across iterations (as ONNX allows):
a loop is traced with the initial values' shapes and, if the body changes them, again with
the rank only, then with no shape at all.
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ...ops import constant as gconst
from ...ops import elementwise as ew
from ...ops import shape as gshape
from ...ops.control import identity
from ...ops.control_flow import LoopError, build_if, build_loop
from .. import types as _ty
from .base import handler


def _scalar(t):
    return gshape.reshape(t, ())


def _body_outputs(outs):
    """A body's result tensors: a value of an enclosing scope passed through is copied in
    the body (an identity, captured)."""
    return [identity(t) for t, _ in outs]


def _run(fn, what, ctx):
    try:
        return fn()
    except LoopError as exc:
        ctx.fail(f"{what}: {exc}", exc.kind)


@handler("If")
def _if(ctx):
    then_g, else_g = ctx.subgraph("then_branch"), ctx.subgraph("else_branch")
    if ctx.is_static(0):
        taken = then_g if bool(np.asarray(ctx.const(0)).reshape(-1)[0]) else else_g
        return ctx.inline_subgraph(taken)
    pred = _scalar(ctx.input(0))
    types: dict = {}

    def branch(g, key):
        def fn():
            outs = ctx.run_subgraph(g, [], [])
            types[key] = [et for _, et in outs]
            return _body_outputs(outs)

        return fn

    outs, _, _ = _run(lambda: build_if(pred, branch(then_g, "t"), branch(else_g, "f")), "If",
                      ctx)  # fmt: skip
    if types["t"] != types["f"]:
        ctx.fail(f"the branches' outputs have different types {types['t']} and {types['f']}",
                 InvalidArgumentError)  # fmt: skip
    return outs


def _relaxed(shapes, level):
    if level == 0:
        return list(shapes)
    if level == 1:
        return [None if s is None else (None,) * len(s) for s in shapes]
    return [None] * len(shapes)


def _traced_loop(ctx, what, make, var_shapes):
    """``make(shapes)`` builds the loop; retried with less known shapes of the loop-carried
    values (``var_shapes``) while the body changes them."""
    for level in range(3):
        try:
            return make(_relaxed(var_shapes, level))
        except LoopError as exc:
            if level == 2 or exc.kind is not ValueError:
                ctx.fail(f"{what}: {exc}", exc.kind)
    raise AssertionError("unreachable")


@handler("Loop")
def _loop(ctx):
    body_g = ctx.subgraph("body")
    n_carried = ctx.n_inputs - 2
    carried = [ctx.input(2 + k) for k in range(n_carried)]
    carried_types = [ctx.in_type(2 + k) for k in range(n_carried)]
    limit = _scalar(ew.cast(ctx.input(0), "int64")) if ctx.has(0) else None
    start_cond = _scalar(ctx.input(1)) if ctx.has(1) else gconst.constant(np.array(True))
    n_scan = len(body_g.output) - 1 - n_carried
    if n_scan < 0:
        ctx.fail(f"the body has {len(body_g.output)} outputs for {n_carried} loop-carried "
                 "values", InvalidArgumentError)  # fmt: skip
    i64 = _ty.carrier(7)  # int64
    counter0 = gconst.constant(np.array(0, np.int64), dtype=i64)

    def cond_fn(vs):
        if limit is None:
            return [vs[1]]
        return [ew.logical_and(ew.less(vs[0], limit), vs[1])]

    def body_fn(vs, rows):
        outs = ctx.run_subgraph(body_g, list(vs), [7, 9] + carried_types)
        new = _body_outputs(outs)
        cond = _scalar(ew.cast(new[0], "bool"))
        return [vs[0] + 1, cond] + new[1 : 1 + n_carried], new[1 + n_carried :]

    def make(shapes):
        return build_loop(body_fn, [counter0, start_cond] + carried, (), cond_fn,
                          [(), ()] + shapes, back_prop=False, what="Loop")  # fmt: skip

    final, stacked = _traced_loop(ctx, "Loop", make, [t.shape for t in carried])
    return final[2:] + stacked


def _move_axis(t, src, dst):
    """``t`` with its axis ``src`` moved to ``dst`` (both non-negative)."""
    if src == dst:
        return t
    rank = len(t.shape)
    perm = [a for a in range(rank) if a != src]
    perm.insert(dst, src)
    return gshape.transpose(t, perm)


@handler("Scan")
def _scan(ctx):
    if ctx.opset < 9:
        return _scan8(ctx)
    body_g = ctx.subgraph("body")
    m = ctx.attr("num_scan_inputs")
    n_state = ctx.n_inputs - m
    states = [ctx.input(k) for k in range(n_state)]
    state_types = [ctx.in_type(k) for k in range(n_state)]
    in_axes = list(ctx.attr("scan_input_axes", [0] * m))
    in_dirs = list(ctx.attr("scan_input_directions", [0] * m))
    n_out = len(body_g.output) - n_state
    out_axes = list(ctx.attr("scan_output_axes", [0] * n_out))
    out_dirs = list(ctx.attr("scan_output_directions", [0] * n_out))
    sliced, row_types = [], []
    for j in range(m):
        x = ctx.input(n_state + j)
        if x.shape is None:
            ctx.fail(f"scan input {j} has no static rank")
        axis = in_axes[j] + len(x.shape) if in_axes[j] < 0 else in_axes[j]
        x = _move_axis(x, axis, 0)
        if in_dirs[j]:
            x = gshape.reverse(x, [0])
        sliced.append(x)
        row_types.append(ctx.in_type(n_state + j))

    def body_fn(vs, rows):
        new = _body_outputs(ctx.run_subgraph(body_g, list(vs) + list(rows),
                                             state_types + row_types))  # fmt: skip
        return new[:n_state], new[n_state:]

    def make(shapes):
        return build_loop(body_fn, states, sliced, None, shapes, back_prop=False,
                          what="Scan")  # fmt: skip

    final, stacked = _traced_loop(ctx, "Scan", make, [t.shape for t in states])
    outs = list(final)
    for j, y in enumerate(stacked):
        if out_dirs[j]:
            y = gshape.reverse(y, [0])
        if out_axes[j] != 0:
            if y.shape is None:
                ctx.fail(f"scan output {j} has no static rank")
            rank = len(y.shape)
            axis = out_axes[j] + rank if out_axes[j] < 0 else out_axes[j]
            y = _move_axis(y, 0, axis)
        outs.append(y)
    return outs


def _scan8(ctx):
    """Scan of opset 8: inputs and states have a leading batch axis (the body sees one
    batch element), an optional ``sequence_lens`` first (only the full length), and
    ``directions`` for the scan inputs. A loop over the batch around the scan."""
    body_g = ctx.subgraph("body")
    m = ctx.attr("num_scan_inputs")
    n_state = ctx.n_inputs - 1 - m
    xs = [ctx.input(1 + n_state + j) for j in range(m)]
    if ctx.has(0):
        lens = ctx.const_ints(0, "sequence_lens")
        if any(x.shape is None or x.shape[1] is None for x in xs) or any(
            n != xs[0].shape[1] for n in lens
        ):
            ctx.fail("sequence_lens shorter than the sequence are not supported")
    states = [ctx.input(1 + k) for k in range(n_state)]
    state_types = [ctx.in_type(1 + k) for k in range(n_state)]
    row_types = [ctx.in_type(1 + n_state + j) for j in range(m)]
    dirs = list(ctx.attr("directions", [0] * m))

    def inner(vs, rows):
        new = _body_outputs(ctx.run_subgraph(body_g, list(vs) + list(rows),
                                             state_types + row_types))  # fmt: skip
        return new[:n_state], new[n_state:]

    def outer(_, rows):
        seqs = [gshape.reverse(x, [0]) if dirs[j] else x for j, x in enumerate(rows[n_state:])]
        final, stacked = build_loop(inner, list(rows[:n_state]), seqs, None, back_prop=False,
                                    what="Scan")  # fmt: skip
        return [], list(final) + list(stacked)

    _, outs = _run(lambda: build_loop(outer, [], states + xs, None, back_prop=False,
                                      what="Scan"), "Scan", ctx)  # fmt: skip
    return outs
