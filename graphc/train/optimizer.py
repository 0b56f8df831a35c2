"""The Optimizer base class: gradients -> update ops, slot variables, global step.

As in TF1, ``minimize`` = ``compute_gradients`` + ``apply_gradients``. Subclasses only say
which slots they need (``_create_slots``), what to precompute once (``_prepare``), the update
of one variable (``_apply_dense``) and what to run after all updates (``_finish``). Every
update is an ordinary graph op (``assign``/``assign_sub``), so training steps compile like any
other graph, and slot variables (momentum, Adam moments) live in the session.
"""

from __future__ import annotations

import numbers

from ..autodiff import gradients
from ..graph.core import Operation, Tensor
from ..ops.constant import fill
from ..ops.control import group, tuple_
from ..ops.elementwise import cast
from ..ops.registry import convert_to_tensor
from ..ops.state import GLOBAL_VARIABLES, TRAINABLE_VARIABLES, Variable, assign_add

TRAIN_OP = "train_op"


def _graph_variables(graph, collection):
    return graph.get_collection(collection)


def as_dtype_of(value, var):
    """``value`` (Python number or tensor) as a tensor of ``var``'s dtype (cast if needed)."""
    if isinstance(value, Tensor) or hasattr(value, "_as_graph_tensor"):
        value = convert_to_tensor(value)
        if value.dtype != var.dtype:
            value = cast(value, var.dtype)
        return value
    return convert_to_tensor(value, dtype=var.dtype, graph=var.graph)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


class Optimizer:
    """Base class of the optimizers (``gc.train.*Optimizer``); not used directly."""

    GATE_NONE = 0
    GATE_OP = 1
    GATE_GRAPH = 2

    def __init__(self, use_locking: bool = False, name: str = "Optimizer"):
        if not name:
            raise ValueError("an optimizer needs a non-empty name")
        self._name = name
        self._use_locking = use_locking
        # slot name -> {variable op name -> slot Variable}
        self._slots: dict[str, dict[str, Variable]] = {}
        # (name, graph id) -> Variable: state shared by all variables (Adam's beta powers)
        self._non_slot: dict[tuple, Variable] = {}

    # -- public API ------------------------------------------------------------------------
    def get_name(self) -> str:
        return self._name

    def minimize(self, loss, var_list=None, global_step=None, gate_gradients=GATE_OP,
                 aggregation_method=None, colocate_gradients_with_ops=False, name=None,
                 grad_loss=None):  # fmt: skip
        """Add ops that update ``var_list`` to reduce ``loss``; returns the training op.

        ``var_list`` defaults to the trainable variables of the loss's graph. With
        ``global_step`` (an integer Variable), the op also increments it after the updates.
        TF1's positional order ``minimize(loss, global_step)`` is accepted too.
        """
        if global_step is None and _looks_like_global_step(var_list):
            var_list, global_step = None, var_list
        grads_and_vars = self.compute_gradients(
            loss, var_list=var_list, gate_gradients=gate_gradients, grad_loss=grad_loss
        )
        if not any(g is not None for g, _ in grads_and_vars):
            raise ValueError(
                "No gradients provided for any variable, check your graph for ops that do not "
                f"support gradients, between variables {[v.op.name for _, v in grads_and_vars]} "
                f"and loss {_tensor(loss).name}"
            )
        return self.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def compute_gradients(self, loss, var_list=None, gate_gradients=GATE_OP,
                          aggregation_method=None, colocate_gradients_with_ops=False,
                          grad_loss=None):  # fmt: skip
        """``[(gradient, variable)]`` of ``loss`` for each variable; the gradient may be None."""
        if callable(loss) and not isinstance(loss, Tensor):
            raise TypeError("compute_gradients needs a loss tensor, not a callable (no eager mode)")
        loss = _tensor(loss)
        if not loss.dtype.is_floating:
            raise TypeError(f"the loss {loss.name} must be floating, got {loss.dtype.name}")
        if var_list is None:
            var_list = _graph_variables(loss.graph, TRAINABLE_VARIABLES)
        elif isinstance(var_list, Variable):
            var_list = [var_list]
        else:
            var_list = list(var_list)
        if not var_list:
            raise ValueError(f"No variables to optimize (loss {loss.name})")
        seen = set()
        for v in var_list:
            if not isinstance(v, Variable):
                raise TypeError(f"var_list must hold gc.Variable objects, got {v!r}")
            if v.graph is not loss.graph:
                raise ValueError(f"variable {v.op.name} is not in the graph of loss {loss.name}")
            if v.op.name in seen:
                raise ValueError(f"variable {v.op.name} appears twice in var_list")
            seen.add(v.op.name)
        grads = gradients(loss, var_list, grad_ys=grad_loss)
        if gate_gradients == Optimizer.GATE_GRAPH:
            present = [g for g in grads if g is not None]
            if present:
                gated = iter(tuple_(present))
                grads = [None if g is None else next(gated) for g in grads]
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None) -> Operation:
        """The op applying ``grads_and_vars`` (pairs from compute_gradients) to the variables.

        Pairs whose gradient is None are skipped. With ``global_step``, it is incremented
        once all updates have run.
        """
        pairs = []
        for pair in grads_and_vars:
            try:
                g, v = pair
            except (TypeError, ValueError):
                raise TypeError(
                    f"apply_gradients takes (gradient, variable) pairs, got {pair!r}"
                ) from None
            if not isinstance(v, Variable):
                raise TypeError(f"apply_gradients: {v!r} is not a gc.Variable")
            if g is not None:
                g = _tensor(g)
                if not v.dtype.is_floating:
                    raise TypeError(f"cannot train variable {v.op.name} of {v.dtype.name}")
                if g.shape is not None and len(g.shape) != len(v.shape):
                    raise ValueError(
                        f"gradient {g.name} of shape {g.shape} does not fit variable "
                        f"{v.op.name} of shape {v.shape}"
                    )
                if g.dtype != v.dtype:
                    g = cast(g, v.dtype)
            pairs.append((g, v))
        if not pairs:
            raise ValueError("No variables provided to apply_gradients")
        active = [(g, v) for g, v in pairs if g is not None]
        if not active:
            raise ValueError(
                "No gradients provided for any variable: "
                + ", ".join(f"({g}, {v.op.name})" for g, v in pairs)
            )
        names = [v.op.name for _, v in active]
        if len(set(names)) != len(names):
            raise ValueError(f"a variable appears twice in grads_and_vars: {names}")
        graph = active[0][1].graph
        if global_step is not None and not isinstance(global_step, Variable):
            raise TypeError(f"global_step must be a gc.Variable, got {global_step!r}")
        with graph.as_default():
            with graph.control_dependencies(None):
                self._create_slots([v for _, v in active])
            with graph.name_scope(name or self._name) as scope:
                self._prepare()
                updates = []
                for g, v in active:
                    with graph.name_scope("update_" + v.op.name.replace("/", "_")):
                        updates.append(self._apply_dense(g, v))
                if global_step is None:
                    train_op = self._finish(updates, scope[:-1].split("/")[-1])
                else:
                    with graph.control_dependencies([self._finish(updates, "update")]):
                        train_op = assign_add(global_step, 1, name=name or self._name).op
        graph.add_to_collection(TRAIN_OP, train_op)
        return train_op

    def get_slot(self, var, name: str) -> Variable | None:
        """The slot variable ``name`` (e.g. "m") of ``var``, or None."""
        return self._slots.get(name, {}).get(var.op.name)

    def get_slot_names(self) -> list[str]:
        return sorted(self._slots)

    def variables(self) -> list[Variable]:
        """Every variable this optimizer created (slots and shared state)."""
        out = [v for _, v in sorted(self._non_slot.items(), key=lambda kv: kv[0][0])]
        for slot in self._slots.values():
            out.extend(slot.values())
        return out

    # -- for subclasses --------------------------------------------------------------------
    def _create_slots(self, var_list) -> None:
        pass

    def _prepare(self) -> None:
        pass

    def _apply_dense(self, grad: Tensor, var: Variable):
        raise NotImplementedError

    def _finish(self, update_ops, name_scope: str) -> Operation:
        return group(*update_ops, name=name_scope)

    def _slot(self, var, slot_name: str, op_name: str, init=0.0) -> Variable:
        """Get or create the slot ``slot_name`` of ``var``: a non-trainable Variable named
        ``<var>/<op_name>`` of var's shape and dtype, filled with ``init``."""
        slots = self._slots.setdefault(slot_name, {})
        key = var.op.name
        if key not in slots:
            graph = var.graph
            with (
                graph.as_default(),
                graph.control_dependencies(None),
                graph.name_scope(var.op.name + "/"),
            ):
                slots[key] = Variable(
                    lambda: fill(var.shape, convert_to_tensor(init, dtype=var.dtype)),
                    trainable=False,
                    name=op_name,
                    collections=[GLOBAL_VARIABLES],
                )
        return slots[key]

    def _non_slot_variable(self, name: str, init: float, colocate_with: Variable) -> Variable:
        """Get or create the graph-level variable ``name`` (e.g. Adam's ``beta1_power``)."""
        graph = colocate_with.graph
        key = (name, id(graph))
        if key not in self._non_slot:
            with graph.as_default(), graph.control_dependencies(None), graph.name_scope(None):
                self._non_slot[key] = Variable(
                    init, trainable=False, name=name, dtype=colocate_with.dtype,
                    collections=[GLOBAL_VARIABLES],
                )  # fmt: skip
        return self._non_slot[key]

    def _get_non_slot(self, name: str, graph) -> Variable:
        return self._non_slot[(name, id(graph))]

    def _hyper(self, value, var):
        """A hyper-parameter (float or tensor) as a tensor of ``var``'s dtype."""
        if callable(value) and not isinstance(value, Tensor) and not _is_number(value):
            value = value()
        return as_dtype_of(value, var)


def _tensor(x) -> Tensor:
    if hasattr(x, "_as_graph_tensor"):
        x = x._as_graph_tensor()
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a gc.Tensor, got {x!r}")
    return x


def _looks_like_global_step(x) -> bool:
    return isinstance(x, Variable) and x.dtype.is_integer and x.shape == ()
