"""``DistributedOptimizer``: any ``gc.train`` optimizer, with gradients averaged over the job.

As Horovod's: ``compute_gradients`` asks the wrapped optimizer for its gradients, then
averages all of them across the processes with *one* ``DistAllreduce`` op (packed into
buckets of ``bucket_bytes``, one MPI call per bucket); ``apply_gradients`` is the wrapped
optimizer's. So clipping between the two (``gc.clip_by_global_norm``) sees the averaged
gradients, as one process with the whole batch would, and ``global_step`` works as usual.
"""

from __future__ import annotations

from ..train.optimizer import Optimizer
from . import comm
from .ops import _allreduce_op, _bucket, _check_op


class DistributedOptimizer(Optimizer):
    """Wraps ``optimizer`` so that the gradients it applies are averaged (``op="average"``,
    default) or summed (``op="sum"``) over every process of the job."""

    def __init__(self, optimizer, name=None, op: str = "average", bucket_bytes=None,
                 use_locking: bool = False):  # fmt: skip
        comm.require_installed()
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"DistributedOptimizer wraps a gc.train optimizer, got {optimizer!r}")
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("the optimizer is already a DistributedOptimizer")
        super().__init__(use_locking, name or f"Distributed{optimizer.get_name()}")
        self._optimizer = optimizer
        self._op = _check_op(op)
        self._bucket_bytes = _bucket(bucket_bytes)

    @property
    def optimizer(self) -> Optimizer:
        """The wrapped optimizer."""
        return self._optimizer

    def compute_gradients(self, loss, var_list=None, gate_gradients=Optimizer.GATE_OP,
                          aggregation_method=None, colocate_gradients_with_ops=False,
                          grad_loss=None):  # fmt: skip
        """The wrapped optimizer's ``[(gradient, variable)]``, each gradient reduced over
        the processes (None gradients stay None)."""
        pairs = self._optimizer.compute_gradients(
            loss, var_list=var_list, gate_gradients=gate_gradients,
            aggregation_method=aggregation_method,
            colocate_gradients_with_ops=colocate_gradients_with_ops, grad_loss=grad_loss,
        )  # fmt: skip
        present = [(g, v) for g, v in pairs if g is not None]
        if not present:
            return pairs
        graph = present[0][1].graph
        with graph.as_default(), graph.name_scope(self.get_name()):
            reduced = _allreduce_op(
                [g for g, _ in present], self._op, [v.op.name for _, v in present],
                self._bucket_bytes, "allreduce",
            )  # fmt: skip
        it = iter(reduced)
        return [(None if g is None else next(it), v) for g, v in pairs]

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        return self._optimizer.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def get_slot(self, var, name):
        return self._optimizer.get_slot(var, name)

    def get_slot_names(self):
        return self._optimizer.get_slot_names()

    def variables(self):
        return self._optimizer.variables()
