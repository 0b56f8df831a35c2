"""Collective graph ops: ``DistAllreduce`` and ``DistBroadcast`` (OpDefs) and their builders.

Each op takes any number of tensors and returns as many, so that one op moves a whole set
of gradients (or variables) and packs them into buckets of at most ``bucket_bytes``: one
MPI call per bucket, like Horovod's tensor fusion. They have no Kernel-IR lowering: the cpu
target runs them on the host between native segments (``graphc/backends/cpu/fallback.py``;
``exe.stats["host_fallback_ops"]`` names them), the reference target through ``ref``.

Both are ``stateful`` (they talk to other processes: never folded, merged or duplicated).
Gradients: allreduce-sum's is allreduce-sum, allreduce-average's is allreduce-average (of
the upstream gradients: the total loss is the sum of every rank's loss); a broadcast's is
the sum of every rank's gradient, kept on the root (zeros elsewhere), and that op's gradient
is a broadcast again.
"""

from __future__ import annotations

from .. import config
from ..graph.core import Tensor, get_default_graph
from ..ops.control import group
from ..ops.registry import DTypeError, OpDef, apply_op, convert_to_tensor, register
from ..ops.state import GLOBAL_VARIABLES, Variable, assign
from . import comm

OPS = ("average", "sum")
NO_EXAMPLES = (
    "collective: runs MPI between processes; tests/distribute runs it in real 2- and "
    "3-process jobs against one process"
)


def _labels(attrs, n) -> tuple:
    labels = attrs.get("labels") or ()
    return tuple(labels) if len(labels) == n else tuple(f"input {i}" for i in range(n))


@register
class DistAllreduce(OpDef):
    """Sum or mean of each input over the processes of the job (one output per input)."""

    stateful = True
    no_examples_reason = NO_EXAMPLES
    kind = "host"
    host_reason = "a collective over MPI on numpy buffers, between native segments"
    static_shape_reason = "a host op (kind 'host'): never lowered"

    def infer(self, specs, attrs):
        if attrs["op"] not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {attrs['op']!r}")
        for s in specs:
            if s.dtype.is_bool or not (s.dtype.is_floating or s.dtype.is_integer):
                raise DTypeError(f"cannot reduce a tensor of {s.dtype.name}")
            if attrs["op"] == "average" and not s.dtype.is_floating:
                raise DTypeError(f"op='average' needs floating tensors, got {s.dtype.name}")
        return [(s.shape, s.dtype) for s in specs]

    def ref_stateful(self, xs, attrs, ctx):
        return comm.allreduce_arrays(
            xs, attrs["op"], attrs.get("name", "allreduce"), _labels(attrs, len(xs)),
            attrs["bucket_bytes"], attrs.get("keep_on"),
        )  # fmt: skip

    def vjp(self, op, grads):
        attrs = op.attrs
        pairs = [(i, g) for i, g in enumerate(grads) if g is not None]
        out: list = [None] * len(grads)
        if not pairs:
            return out
        labels = _labels(attrs, len(grads))
        tensors = [g for _, g in pairs]
        names = [f"d({labels[i]})" for i, _ in pairs]
        keep_on = attrs.get("keep_on")
        if keep_on is None:
            res = _allreduce_op(tensors, attrs["op"], names, attrs["bucket_bytes"], None)
        else:  # y = sum over ranks on keep_on, 0 elsewhere: dx = keep_on's dy everywhere
            res = _broadcast_op(tensors, keep_on, names, attrs["bucket_bytes"], None)
        for (i, _), r in zip(pairs, res):
            out[i] = r
        return out


@register
class DistBroadcast(OpDef):
    """Each input's value on process ``root``, on every process."""

    stateful = True
    no_examples_reason = NO_EXAMPLES
    kind = "host"
    host_reason = "a collective over MPI on numpy buffers, between native segments"
    static_shape_reason = "a host op (kind 'host'): never lowered"

    def infer(self, specs, attrs):
        root = attrs["root"]
        if not isinstance(root, int) or root < 0:
            raise ValueError(f"root_rank must be an int >= 0, got {root!r}")
        return [(s.shape, s.dtype) for s in specs]

    def ref_stateful(self, xs, attrs, ctx):
        return comm.broadcast_arrays(
            xs, attrs["root"], attrs.get("name", "broadcast"), _labels(attrs, len(xs)),
            attrs["bucket_bytes"],
        )  # fmt: skip

    def vjp(self, op, grads):
        attrs = op.attrs
        pairs = [(i, g) for i, g in enumerate(grads) if g is not None]
        out: list = [None] * len(grads)
        if not pairs:
            return out
        labels = _labels(attrs, len(grads))
        floating = [(i, g) for i, g in pairs if g.dtype.is_floating]
        res = _allreduce_op(
            [g for _, g in floating], "sum", [f"d({labels[i]})" for i, _ in floating],
            attrs["bucket_bytes"], None, keep_on=attrs["root"],
        )  # fmt: skip
        for (i, _), r in zip(floating, res):
            out[i] = r
        return out


def _bucket(bucket_bytes) -> int:
    if bucket_bytes is None:
        return config.dist_bucket_bytes()
    if not isinstance(bucket_bytes, int) or isinstance(bucket_bytes, bool) or bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be a positive int, got {bucket_bytes!r}")
    return bucket_bytes


def _allreduce_op(tensors, op, labels, bucket_bytes, name, keep_on=None) -> list:
    if not tensors:
        return []
    attrs = {"op": op, "labels": tuple(labels), "bucket_bytes": _bucket(bucket_bytes),
             "keep_on": keep_on}  # fmt: skip
    node = apply_op("DistAllreduce", tensors, attrs, name=name or "allreduce")
    node.attrs["name"] = node.name
    return list(node.outputs)


def _broadcast_op(tensors, root, labels, bucket_bytes, name) -> list:
    if not tensors:
        return []
    attrs = {"root": root, "labels": tuple(labels), "bucket_bytes": _bucket(bucket_bytes)}
    node = apply_op("DistBroadcast", tensors, attrs, name=name or "broadcast")
    node.attrs["name"] = node.name
    return list(node.outputs)


def _tensors(values, what) -> list:
    if isinstance(values, Tensor | Variable) or not hasattr(values, "__iter__"):
        raise TypeError(f"{what} takes a list of tensors, got {values!r}")
    out = [convert_to_tensor(v) for v in values]
    if out and any(t.graph is not out[0].graph for t in out):
        raise ValueError(f"{what}: the tensors belong to different graphs")
    return out


def _check_op(op) -> str:
    if op not in OPS:
        raise ValueError(f"allreduce: op must be 'average' or 'sum', got {op!r}")
    return op


def allreduce(tensor, op: str = "average", name=None, bucket_bytes=None) -> Tensor:
    """An op: ``tensor`` summed (``op="sum"``) or averaged (``"average"``) over every
    process of the job. Every process must run it, with the same shape."""
    comm.require_installed()
    t = convert_to_tensor(tensor)
    return _allreduce_op([t], _check_op(op), [t.name], bucket_bytes, name)[0]


def grouped_allreduce(tensors, op: str = "average", name=None, bucket_bytes=None) -> list:
    """``allreduce`` of several tensors as one op: they are packed into buckets of at most
    ``bucket_bytes`` (default GRAPHC_DIST_BUCKET_BYTES, 4 MiB), one MPI call per bucket."""
    comm.require_installed()
    ts = _tensors(tensors, "grouped_allreduce")
    return _allreduce_op(ts, _check_op(op), [t.name for t in ts], bucket_bytes, name)


def broadcast(tensor, root_rank: int = 0, name=None) -> Tensor:
    """An op: ``tensor``'s value on process ``root_rank``, on every process."""
    comm.require_installed()
    t = convert_to_tensor(tensor)
    return _broadcast_op([t], _root(root_rank), [t.name], None, name)[0]


def _root(root_rank) -> int:
    if not isinstance(root_rank, int) or isinstance(root_rank, bool) or root_rank < 0:
        raise ValueError(f"root_rank must be an int >= 0, got {root_rank!r}")
    return root_rank


def broadcast_variables(variables, root_rank: int = 0, name=None):
    """An op that sets each variable to its value on process ``root_rank`` (one broadcast
    op for all of them, bucketed)."""
    comm.require_installed()
    variables = list(variables)
    for v in variables:
        if not isinstance(v, Variable):
            raise TypeError(f"broadcast_variables takes gc.Variable objects, got {v!r}")
    if not variables:
        raise ValueError("broadcast_variables: no variables to broadcast")
    graph = variables[0].graph
    with graph.as_default(), graph.name_scope(name or "broadcast_variables"):
        values = _broadcast_op(
            [convert_to_tensor(v) for v in variables], _root(root_rank),
            [v.op.name for v in variables], None, "broadcast",
        )  # fmt: skip
        return group(*[assign(v, x) for v, x in zip(variables, values)], name="assign")


def broadcast_global_variables(root_rank: int = 0, graph=None):
    """An op that sets every global variable (of ``graph``, default the default graph) to
    its value on process ``root_rank``: run it once after the initializer so that every
    process starts from the same values."""
    graph = graph or get_default_graph()
    variables = graph.get_collection(GLOBAL_VARIABLES)
    if not variables:
        raise ValueError("broadcast_global_variables: the graph has no global variables")
    return broadcast_variables(variables, root_rank, name="broadcast_global_variables")
