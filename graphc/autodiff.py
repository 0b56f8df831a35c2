"""Reverse-mode automatic differentiation as a graph transformation.

``gradients(ys, xs)`` walks the ops between ``xs`` and ``ys`` in reverse topological order
and asks each op's ``OpDef.vjp`` for the gradients of its inputs, adding ordinary ops to the
same graph. The result can be differentiated again, optimised and compiled like any graph.
"""

from __future__ import annotations

from .graph.core import Tensor
from .ops.constant import ones_like, zeros, zeros_like
from .ops.elementwise import add, cast
from .ops.registry import convert_to_tensor
from .ops.shape import reshape, stack

__all__ = ["gradients", "hessians", "jacobian"]


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, list | tuple) else [x]


def _tensor(x) -> Tensor:
    if hasattr(x, "_as_graph_tensor"):
        x = x._as_graph_tensor()
    if not isinstance(x, Tensor):
        raise TypeError(f"gradients needs tensors or variables, got {x!r}")
    return x


def _differentiable_dtype(t: Tensor) -> bool:
    return t.dtype.is_floating


def _reads_x(op, read_of: dict) -> bool:
    """``op`` is a fresh read of a variable whose handle is among the xs."""
    d = op.op_def
    return d.variable == "read" and not d.variable_handle and op.attrs.get("var") in read_of


def _compatible(a, b) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _sum(grads):
    total = grads[0]
    for g in grads[1:]:
        total = add(total, g)
    return total


def gradients(ys, xs, grad_ys=None, stop_gradients=None, name="gradients",
              unconnected_gradients="none"):  # fmt: skip
    """Symbolic gradients of ``sum(ys)`` with respect to each of ``xs``.

    Returns one tensor per x, or None where x does not reach ys. ``grad_ys`` seeds the
    backward pass (default ones); ``stop_gradients`` are tensors treated as constants.
    """
    ys = [_tensor(y) for y in _as_list(ys)]
    xs = [_tensor(x) for x in _as_list(xs)]
    if not ys:
        raise ValueError("gradients needs at least one y")
    graph = ys[0].graph
    for t in ys + xs:
        if t.graph is not graph:
            raise ValueError(f"{t.name} belongs to another graph than {ys[0].name}")
    grad_ys = _as_list(grad_ys) if grad_ys is not None else [None] * len(ys)
    if len(grad_ys) != len(ys):
        raise ValueError(f"grad_ys has {len(grad_ys)} entries for {len(ys)} ys")
    stops = {_tensor(t) for t in _as_list(stop_gradients)}
    stop_ops = {t.op for t in stops}

    # Ops on a path from xs (forward reachability; graph order is a topological order).
    reached: set = set(xs)
    fwd_ops: set = set()
    # A fresh read of a variable x (``var.read_value()``, a ReadVariable op without inputs)
    # is x too, as in TF: its gradient goes to the variable.
    read_of = {x.op.attrs["var"]: x for x in xs if x.op.op_def.variable_handle}
    x_ops_min = min((x.op._id for x in xs), default=0)
    for op in graph._ops[x_ops_min:]:
        if op in stop_ops:
            continue
        if any(t in reached for t in op.inputs) or _reads_x(op, read_of):
            fwd_ops.add(op)
            reached.update(op.outputs)
    # ... that also lead to ys (backward reachability).
    between: set = set()
    stack = [y.op for y in ys]
    while stack:
        op = stack.pop()
        if op in between or op not in fwd_ops:
            continue
        between.add(op)
        stack.extend(t.op for t in op.inputs if t.op in fwd_ops)

    pending: dict = {}  # tensor -> list of gradient contributions
    with graph.as_default(), graph.name_scope(name), graph.control_dependencies(None):
        for y, gy in zip(ys, grad_ys):
            if y not in reached:
                continue  # y does not depend on any x: seeding it would be dead work
            if gy is None:
                if not _differentiable_dtype(y):
                    continue
                gy = ones_like(y)
            else:
                gy = convert_to_tensor(gy, dtype=y.dtype)
                if not _compatible(gy.shape, y.shape):
                    raise ValueError(
                        f"grad_ys entry {gy.name} of shape {gy.shape} does not match the shape "
                        f"{y.shape} of {y.name}"
                    )
            pending.setdefault(y, []).append(gy)

        for op in sorted(between, key=lambda o: o._id, reverse=True):
            out_grads = []
            for t in op.outputs:
                contributions = pending.get(t)
                out_grads.append(_sum(contributions) if contributions else None)
                if contributions and len(contributions) > 1:
                    pending[t] = [out_grads[-1]]
            if all(g is None for g in out_grads) or op in stop_ops:
                continue
            if _reads_x(op, read_of):
                pending.setdefault(read_of[op.attrs["var"]], []).append(out_grads[0])
                continue
            if not op.op_def.differentiable:
                continue
            with graph.name_scope(op.name.replace("/", "_") + "_grad"):
                in_grads = op.op_def.vjp(op, out_grads)
            if len(in_grads) != len(op.inputs):
                raise AssertionError(
                    f"gradient rule of {op.type} returned {len(in_grads)} values for "
                    f"{len(op.inputs)} inputs"
                )
            for t, g in zip(op.inputs, in_grads):
                if g is None or t not in reached or not _differentiable_dtype(t):
                    continue
                g = convert_to_tensor(g)
                if not _compatible(g.shape, t.shape):
                    raise AssertionError(
                        f"gradient rule of {op.type} '{op.name}' returned shape {g.shape} for "
                        f"input {t.name} of shape {t.shape}"
                    )
                if g.dtype != t.dtype:
                    g = cast(g, t.dtype)
                pending.setdefault(t, []).append(g)

        result = []
        for x in xs:
            contributions = pending.get(x)
            if not contributions:
                if unconnected_gradients == "zero":
                    result.append(zeros_like(x))
                else:
                    result.append(None)
            else:
                result.append(_sum(contributions))
    return result


def _num(shape, what):
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"{what} needs a fully known static shape, got {shape}")
    n = 1
    for d in shape:
        n *= d
    return n


def jacobian(y, x, name="jacobian"):
    """Dense Jacobian d y / d x of shape y.shape + x.shape (small sizes: one gradient per y)."""
    y, x = _tensor(y), _tensor(x)
    ny = _num(y.shape, "jacobian of y")
    _num(x.shape, "jacobian w.r.t. x")
    flat = reshape(y, (-1,))
    rows = []
    for i in range(ny):
        (g,) = gradients(flat[i], [x], name=name)
        rows.append(g if g is not None else zeros(x.shape, x.dtype))
    return reshape(stack(rows), tuple(y.shape) + tuple(x.shape))


def hessians(ys, xs, name="hessians"):
    """For each x: the Hessian of sum(ys) w.r.t. x, shaped x.shape + x.shape."""
    xs_list = [_tensor(x) for x in _as_list(xs)]
    out = []
    for x in xs_list:
        (g,) = gradients(ys, [x], name=name)
        if g is None:
            n = tuple(x.shape) + tuple(x.shape)
            out.append(zeros(n, x.dtype))
        else:
            out.append(jacobian(g, x, name=name))
    return out
