"""Variables and assignment: state that lives in the Session across runs."""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..errors import FailedPreconditionError, InvalidArgumentError
from ..graph.collections import GraphKeys
from ..graph.core import Operation, Tensor, get_default_graph, session_for, user_location
from .control import group
from .elementwise import cast
from .registry import DTypeError, OpDef, ShapeError, apply_op, convert_to_tensor, register

__all__ = [
    "Variable", "global_variables", "trainable_variables", "global_variables_initializer",
    "variables_initializer", "assign", "assign_add", "assign_sub", "local_variables",
    "is_variable_initialized", "report_uninitialized_variables", "local_variables_initializer",
    "model_variables",
]  # fmt: skip

GLOBAL_VARIABLES = GraphKeys.GLOBAL_VARIABLES
TRAINABLE_VARIABLES = GraphKeys.TRAINABLE_VARIABLES
LOCAL_VARIABLES = GraphKeys.LOCAL_VARIABLES


def _read(ctx, attrs):
    value = ctx.read_variable(attrs["var"])
    if value is None:
        raise FailedPreconditionError(
            f"Attempting to use uninitialized value {attrs['var']}: run its initializer "
            f"(e.g. sess.run(gc.global_variables_initializer())) first"
        )
    return value


@register
class VariableV2(OpDef):
    """Reads the variable's current value (the op a Variable tensor comes from)."""

    kind = "source"
    variable_handle = True
    source = "variable"
    variable = "read"
    static_shape_reason = "a variable's shape is static"
    reads_state_only = True
    replayable = True

    no_examples_reason = "stateful or internal: tested through the Session tests"

    stateful = True
    differentiable = False  # gradients stop here; autodiff treats variables as leaves

    def infer(self, specs, attrs):
        return [(attrs["shape"], attrs["dtype"])]

    def ref_stateful(self, xs, attrs, ctx):
        return _read(ctx, attrs)

    def examples(self):
        return []


@register
class ReadVariable(OpDef):
    """A fresh read of a variable, ordered by its control dependencies (``read_value()``)."""

    kind = "source"
    source = "variable"
    variable = "read"
    static_shape_reason = "a variable's shape is static"
    reads_state_only = True
    replayable = True

    no_examples_reason = "stateful or internal: tested through the Session tests"

    stateful = True
    differentiable = False

    def infer(self, specs, attrs):
        return [(attrs["shape"], attrs["dtype"])]

    def ref_stateful(self, xs, attrs, ctx):
        return _read(ctx, attrs)


class _AssignBase(OpDef):
    kind = "elementwise"
    must_store = True  # a variable's new value: stored even when unread

    no_examples_reason = "stateful or internal: tested through the Session tests"
    stateful = True
    differentiable = False

    def infer(self, specs, attrs):
        value = specs[0]
        if value.dtype != attrs["dtype"]:
            raise DTypeError(
                f"cannot assign {value.dtype.name} to variable {attrs['var']} of "
                f"{attrs['dtype'].name}"
            )
        if value.shape is not None:
            if len(value.shape) != len(attrs["shape"]) or any(
                a is not None and a != b for a, b in zip(value.shape, attrs["shape"])
            ):
                raise ShapeError(
                    f"cannot assign shape {value.shape} to variable {attrs['var']} of shape "
                    f"{attrs['shape']}"
                )
        return [(attrs["shape"], attrs["dtype"])]

    def ref_stateful(self, xs, attrs, ctx):
        value = np.asarray(xs[0], dtype=attrs["dtype"].np)
        if value.shape != tuple(attrs["shape"]):
            raise InvalidArgumentError(
                f"assign to {attrs['var']}: value of shape {value.shape}, expected "
                f"{tuple(attrs['shape'])}"
            )
        new = self.combine(_read(ctx, attrs) if self.variable == "update" else None, value)
        ctx.write_variable(attrs["var"], new)
        return new


@register
class Assign(_AssignBase):
    variable = "write"

    def combine(self, old, value):
        return np.array(value, copy=True)


@register
class AssignAdd(_AssignBase):
    variable = "update"

    def combine(self, old, value):
        return old + value


@register
class AssignSub(_AssignBase):
    variable = "update"

    def combine(self, old, value):
        return old - value


class Variable(Tensor):
    """A tensor whose value lives in the Session and persists across runs.

    ``Variable(initial_value, trainable=True, name=None, dtype=None)``. Usable wherever a
    tensor is (it reads the current value).
    """

    def __init__(self, initial_value=None, trainable=True, name=None, dtype=None,
                 collections=None, validate_shape=True):  # fmt: skip
        if initial_value is None:
            raise ValueError("Variable needs an initial_value")
        graph = initial_value.graph if isinstance(initial_value, Tensor) else get_default_graph()
        outermost = getattr(graph, "outermost_graph", None)
        if outermost is not None:  # inside a control-flow body: variables live outside it
            if isinstance(initial_value, Tensor):
                file, line = user_location()
                raise ValueError(
                    f"Variable {name or ''}: the initial value is computed inside a "
                    f"control-flow body; pass a value or an initializer function at {file}:{line}"
                )
            with outermost.as_default():
                self.__init__(initial_value, trainable, name, dtype, collections, validate_shape)
            return
        base = name or "Variable"
        with graph.name_scope(base) as scope:
            var_name = scope[:-1]
            # The initial value is built outside any control_dependencies block (as TF1's
            # init_scope): running the initializer must not run the ops of a training step.
            with graph.name_scope("Initializer"), graph.control_dependencies(None):
                if callable(initial_value):
                    initial_value = initial_value()
                if isinstance(initial_value, Tensor):
                    init = initial_value
                    if dtype is not None and init.dtype != _dt.as_dtype(dtype):
                        init = cast(init, dtype)
                else:
                    init = convert_to_tensor(initial_value, dtype=dtype, name="initial_value")
        if init.shape is None or any(d is None for d in init.shape):
            file, line = user_location()
            raise ValueError(
                f"Variable {var_name}: initial value must have a fully known shape, "
                f"got {init.shape} at {file}:{line}"
            )
        attrs = {"var": var_name, "shape": tuple(init.shape), "dtype": init.dtype}
        with graph.control_dependencies(None):
            op = apply_op("VariableV2", [], attrs, name=var_name + "/", graph=graph)
        # apply_op named it uniquely from the scope; make the variable's key its op name.
        op.attrs["var"] = op.name
        super().__init__(op, 0, attrs["shape"], attrs["dtype"])
        op._outputs = (self,)
        self.trainable = bool(trainable)
        self._initial_value = init
        with graph.control_dependencies(None), graph.name_scope(op.name + "/"):
            self._initializer = assign(self, init, name="Assign").op
        for c in collections or [GLOBAL_VARIABLES]:
            graph.add_to_collection(c, self)
        if trainable and TRAINABLE_VARIABLES not in (collections or []):
            graph.add_to_collection(TRAINABLE_VARIABLES, self)

    @property
    def initializer(self) -> Operation:
        """The op that sets the variable to its initial value."""
        return self._initializer

    @property
    def initial_value(self) -> Tensor:
        return self._initial_value

    def value(self) -> Tensor:
        """The variable's value as a tensor (this variable itself)."""
        return self

    def read_value(self) -> Tensor:
        """A fresh read, ordered after the control dependencies in scope."""
        attrs = dict(self.op.attrs)
        return apply_op(
            "ReadVariable", [], attrs, name=self.op.name + "/read", graph=self.graph
        ).outputs[0]

    def assign(self, value, use_locking=False, name=None, read_value=True):
        return assign(self, value, name=name)

    def assign_add(self, delta, use_locking=False, name=None, read_value=True):
        return assign_add(self, delta, name=name)

    def assign_sub(self, delta, use_locking=False, name=None, read_value=True):
        return assign_sub(self, delta, name=name)

    def load(self, value, session=None):
        session_for(session, self.graph).load_variable(self, value)

    def eval(self, session=None):
        return super().eval(session=session)

    def __repr__(self) -> str:
        return f"<gc.Variable '{self.name}' shape={self.shape} dtype={self.dtype.name}>"


def _assign_op(type_name, var, value, name):
    if not isinstance(var, Variable):
        raise TypeError(f"{type_name} needs a gc.Variable, got {var!r}")
    if isinstance(value, Tensor):
        if value.dtype != var.dtype:
            if value.dtype.is_floating and var.dtype.is_floating:
                value = cast(value, var.dtype)
    else:
        value = convert_to_tensor(value, dtype=var.dtype, graph=var.graph)
    attrs = dict(var.op.attrs)
    return apply_op(type_name, [value], attrs, name=name, graph=var.graph).outputs[0]


def assign(ref, value, validate_shape=None, use_locking=None, name=None):
    """Set variable ``ref`` to ``value``; the result is the new value."""
    return _assign_op("Assign", ref, value, name)


def assign_add(ref, value, use_locking=None, name=None):
    """Add ``value`` to variable ``ref``; the result is the new value."""
    return _assign_op("AssignAdd", ref, value, name)


def assign_sub(ref, value, use_locking=None, name=None):
    """Subtract ``value`` from variable ``ref``; the result is the new value."""
    return _assign_op("AssignSub", ref, value, name)


def global_variables(scope=None) -> list:
    """Every Variable of the default graph (optionally whose name starts with ``scope``)."""
    vs = get_default_graph().get_collection(GLOBAL_VARIABLES)
    return [v for v in vs if scope is None or v.op.name.startswith(scope)]


def local_variables(scope=None) -> list:
    """The Variables of the LOCAL_VARIABLES collection (metric counters, ...)."""
    vs = get_default_graph().get_collection(LOCAL_VARIABLES)
    return [v for v in vs if scope is None or v.op.name.startswith(scope)]


def model_variables(scope=None) -> list:
    """The Variables of the MODEL_VARIABLES collection."""
    vs = get_default_graph().get_collection(GraphKeys.MODEL_VARIABLES)
    return [v for v in vs if scope is None or v.op.name.startswith(scope)]


def trainable_variables(scope=None) -> list:
    """The trainable Variables of the default graph."""
    vs = get_default_graph().get_collection(TRAINABLE_VARIABLES)
    return [v for v in vs if scope is None or v.op.name.startswith(scope)]


def variables_initializer(var_list, name="init"):
    """One op that runs the initializers of ``var_list``."""
    return group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer():
    """One op that initialises every global variable of the default graph."""
    return variables_initializer(global_variables())


def local_variables_initializer():
    """One op that initialises every local variable of the default graph."""
    return variables_initializer(local_variables())


@register
class IsVariableInitialized(OpDef):
    kind = "host"
    host_reason = "asks the session whether the variable has a value: host state"
    variable = "initialized"
    static_shape_reason = "a host op (kind 'host'): never lowered"
    reads_state_only = True
    replayable = True

    no_examples_reason = "stateful or internal: tested through the Session tests"
    stateful = True
    differentiable = False

    def infer(self, specs, attrs):
        return [((), _dt.bool_)]

    def ref_stateful(self, xs, attrs, ctx):
        return np.array(ctx.read_variable(attrs["var"]) is not None)

    def examples(self):
        return []


def is_variable_initialized(variable):
    """A bool scalar: whether ``variable`` holds a value in the session."""
    return apply_op(
        "IsVariableInitialized", [], dict(variable.op.attrs), graph=variable.graph
    ).outputs[0]


def report_uninitialized_variables(var_list=None):
    """Names of the uninitialised variables, as a Python-side helper op list."""
    var_list = global_variables() if var_list is None else var_list
    return [is_variable_initialized(v) for v in var_list]
