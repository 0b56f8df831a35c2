"""Training-graph clean-ups: documented rewrite rules for what ``gradients()`` leaves behind.

Gradient graphs reduce and broadcast to the *runtime* shape of forward tensors
(``SumToShape``, ``BroadcastLike``, ``ReshapeLike``, ``ones_like``). Once shapes are static
these become plain reductions, reshapes and fills (or nothing), and the forward tensors they
only read the shape of are no longer needed (DCE drops them).
"""

from __future__ import annotations

import numpy as np

from ..program import Program
from .rewrite import Replace, RuleTable, fully_known

RULES = RuleTable("cleanup")


def cleanup(program: Program) -> Program:
    """One sweep of the training-graph clean-up rules over ``program``."""
    return RULES.apply(program)


@RULES.rule("SumToShape", "BroadcastLike")
def to_same_shape(n, rw):
    """sum_to_shape(g, like) -> g;  broadcast_like(x, like) -> x  when g/x already has the
    shape of ``like``."""
    x, like = n.inputs
    return x if rw.same_runtime_shape(x, like) else None


@RULES.rule("SumToShape")
def sum_to_static_shape(n, rw):
    """sum_to_shape(g, like) -> reshape(reduce_sum(g, axes, keepdims=True), shape(like))
    when ``like`` has a static shape: the broadcast axes are known at compile time."""
    g, like = n.inputs
    target, shape = rw.shape(like), rw.shape(g)
    if not fully_known(target) or shape is None or len(shape) < len(target):
        return None
    lead = len(shape) - len(target)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(target) if d == 1 and shape[i + lead] != 1
    )
    if not axes:
        return Replace("Reshape", (g,), {"shape": tuple(target)})
    summed = rw.add("Sum", (g,), {"axes": axes, "keepdims": True}, "sum")
    return Replace("Reshape", (summed,), {"shape": tuple(target)})


@RULES.rule("ReshapeLike")
def reshape_like_static(n, rw):
    """reshape_like(x, like) -> reshape(x, shape(like))  when that shape has at most one
    unknown dim (it becomes -1)."""
    target = n.outs[0].shape
    if target is None or sum(d is None for d in target) > 1:
        return None
    return Replace(
        "Reshape", (n.inputs[0],), {"shape": tuple(-1 if d is None else d for d in target)}
    )


@RULES.rule("BroadcastLike")
def broadcast_like_static(n, rw):
    """broadcast_like(x, like) -> broadcast_to(x, shape(like))  when that shape is static."""
    target = n.outs[0].shape
    if not fully_known(target):
        return None
    return Replace("BroadcastTo", (n.inputs[0],), {"shape": tuple(target)})


@RULES.rule("ZerosLike")
def zeros_like_static(n, rw):
    """zeros_like(x) -> fill(shape(x), 0);  ones_like(x) -> fill(shape(x), 1)  for a static
    shape (the value no longer waits for x)."""
    shape = n.outs[0].shape
    if not fully_known(shape):
        return None
    value = np.asarray(n.attrs["value"]).astype(n.outs[0].dtype.np)
    scalar = rw.const_node(value, "value")
    return Replace("Fill", (scalar,), {"shape": tuple(shape)})


def _is_elementwise(node) -> bool:
    return getattr(node.op_def, "elementwise", False) and len(node.inputs) >= 2


@RULES.rule(match=_is_elementwise)
def implicit_broadcast(n, rw):
    """f(..., broadcast(s), ...) -> f(..., s, ...)  for an elementwise f whose result keeps
    its shape without the explicit broadcast (broadcast_like/broadcast_to/fill of s)."""
    out = n.outs[0].shape
    for i, ref in enumerate(n.inputs):
        p = rw.producer(ref)
        if not p.op_def.broadcasts or rw.shape(p.inputs[0]) is None:
            continue
        s = p.inputs[0]
        others = [r for j, r in enumerate(n.inputs) if j != i]
        if p.op_def.symbolic_dims == "input1" and any(
            rw.resolve(p.inputs[1]) == rw.resolve(o) for o in others
        ):
            keeps = True  # another operand has the very shape broadcast to
        elif any(rw.same_runtime_shape(ref, o) for o in others):
            keeps = True
        else:
            shapes = [rw.shape(s)] + [rw.shape(o) for o in others]
            keeps = fully_known(out) and all(fully_known(x) for x in shapes)
            if keeps:
                try:
                    keeps = np.broadcast_shapes(*[tuple(x) for x in shapes]) == tuple(out)
                except ValueError:
                    keeps = False
        if keeps:
            inputs = list(n.inputs)
            inputs[i] = s
            return Replace(n.op, tuple(inputs), dict(n.attrs))
    return None
