"""Control ops: identity, no_op, group, stop_gradient, check_numerics."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..graph.core import Operation, Tensor, get_default_graph
from .registry import DTypeError, Example, OpDef, apply1, apply_op, convert_to_tensor, register

__all__ = ["identity", "no_op", "group", "stop_gradient", "check_numerics", "tuple_"]


@register
class Identity(OpDef):
    """Returns its input (a named alias; ordered by control dependencies)."""

    kind = "elementwise"
    copies_input0 = True
    symbolic_dims = "input0"

    def infer(self, specs, attrs):
        return [specs[0]]

    def ref(self, xs, attrs):
        return xs[0]

    def vjp(self, op, grads):
        return [grads[0]]

    def examples(self):
        return [Example(lambda x: identity(x), [np.arange(6.0).reshape(2, 3)])]


@register
class NoOp(OpDef):
    """Does nothing; a target that carries control dependencies."""

    kind = "source"
    source = "none"
    static_shape_reason = "no outputs"

    no_examples_reason = "stateful or internal: tested through the Session tests"

    differentiable = False

    def infer(self, specs, attrs):
        return []

    def ref(self, xs, attrs):
        return []


@register
class StopGradient(OpDef):
    """Identity in the forward pass; blocks gradients."""

    kind = "elementwise"
    copies_input0 = True
    symbolic_dims = "input0"

    differentiable = False

    def infer(self, specs, attrs):
        return [specs[0]]

    def ref(self, xs, attrs):
        return xs[0]

    def examples(self):
        return [Example(lambda x: stop_gradient(x), [np.ones((2, 2))], grad=False)]


@register
class CheckNumerics(OpDef):
    """Identity that raises InvalidArgumentError(message) when its input has NaN or Inf."""

    kind = "elementwise"
    must_store = True  # its values are checked: computed even when unread
    symbolic_dims = "input0"
    replayable = True

    stateful = True  # has an observable effect: never removed while its output is used

    def infer(self, specs, attrs):
        if not specs[0].dtype.is_floating:
            raise DTypeError("check_numerics needs a floating tensor")
        return [specs[0]]

    def ref_stateful(self, xs, attrs, ctx):
        x = xs[0]
        if not np.all(np.isfinite(x)):
            what = "NaN" if np.isnan(x).any() else "Inf"
            raise InvalidArgumentError(f"{attrs['message']} : Tensor had {what} values")
        return x

    def vjp(self, op, grads):
        return [grads[0]]

    def examples(self):
        return [Example(lambda x: check_numerics(x, "bad"), [np.ones((2, 2))])]


def identity(input, name=None) -> Tensor:  # noqa: A002 - TF name
    """Returns a tensor with the same value as ``input``."""
    return apply1("Identity", [convert_to_tensor(input)], None, name)


def no_op(name=None) -> Operation:
    """An op that does nothing (useful with control dependencies)."""
    return apply_op("NoOp", [], None, name, graph=get_default_graph())


def group(*inputs, name=None) -> Operation:
    """An op that runs all ``inputs`` (ops or tensors) and has no output."""
    if len(inputs) == 1 and isinstance(inputs[0], list | tuple):
        inputs = tuple(inputs[0])
    graph = next((x.graph for x in inputs if hasattr(x, "graph")), get_default_graph())
    with graph.as_default(), graph.control_dependencies(list(inputs)):
        return apply_op("NoOp", [], None, name or "group_deps", graph=graph)


def tuple_(tensors, name=None):
    """Tensors equal to ``tensors`` that are only available after all of them are computed."""
    tensors = [convert_to_tensor(t) for t in tensors]
    gate = group(*tensors)
    with tensors[0].graph.control_dependencies([gate]):
        return [identity(t) for t in tensors]


def stop_gradient(input, name=None) -> Tensor:  # noqa: A002 - TF name
    """Identity that gradients do not flow through."""
    return apply1("StopGradient", [convert_to_tensor(input)], None, name)


def check_numerics(tensor, message, name=None) -> Tensor:
    """Identity that fails the run with InvalidArgumentError(message) on NaN or Inf."""
    return apply1("CheckNumerics", [convert_to_tensor(tensor)], {"message": str(message)}, name)
