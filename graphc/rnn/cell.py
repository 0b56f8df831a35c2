"""``gc.nn.rnn_cell``: TF1's recurrent cells (``tf.compat.v1.nn.rnn_cell``).

A cell maps ``(inputs, state)`` to ``(output, new_state)`` for one time step, with the same
math, variable shapes, variable names and default initializers as TF1, so weights carry
over between the two:

==================  ==========================================  ===========================
cell                variables (under the cell's scope)          state
==================  ==========================================  ===========================
BasicRNNCell        ``kernel`` [d+n, n], ``bias`` [n]            h
LSTMCell            ``kernel`` [d+n, 4n], ``bias`` [4n]          ``LSTMStateTuple(c, h)``
BasicLSTMCell       as LSTMCell                                  ``LSTMStateTuple(c, h)``
GRUCell             ``gates/kernel`` [d+n, 2n], ``gates/bias``,  h
                    ``candidate/kernel`` [d+n, n],
                    ``candidate/bias``
MultiRNNCell        ``cell_<i>/<cell scope>/...``                tuple of the cells' states
==================  ==========================================  ===========================

(d: input depth, n: ``num_units``). The LSTM's gate order in its kernel is i, j, f, o
(input gate, candidate, forget gate, output gate). Kernels start glorot-uniform, biases
zero (the GRU's gate bias one), as in TF1.

A cell creates its variables on its first call, under ``<enclosing scope>/<cell name>``
(``rnn/lstm_cell/kernel`` inside ``dynamic_rnn``; a second cell in the same scope gets
``lstm_cell_1``), and reuses them on every later call: call the same cell object to share
weights.
"""

from __future__ import annotations

import collections
import contextlib
import re

import numpy as np

from .. import dtypes as _dt
from ..graph.core import Tensor, get_default_graph, user_location
from ..model.initializers import Constant, Zeros
from ..model.scope import get_variable, variable_scope
from ..ops.constant import zeros, zeros_like
from ..ops.elementwise import sigmoid, tanh
from ..ops.indexing.slicing import runtime_dim_of
from ..ops.linalg import matmul
from ..ops.nn import bias_add
from ..ops.reduce import reduce_sum
from ..ops.registry import convert_to_tensor
from ..ops.shape import concat, expand_dims, split
from . import nest

__all__ = [
    "RNNCell", "BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell", "MultiRNNCell",
    "LSTMStateTuple",
]  # fmt: skip


class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """The state of an LSTM cell: cell state ``c`` and output ``h`` (TF1's tuple)."""

    __slots__ = ()

    @property
    def dtype(self):
        c, h = self
        if c.dtype != h.dtype:
            raise TypeError(f"inconsistent dtypes of c and h: {c.dtype.name} vs {h.dtype.name}")
        return c.dtype


def building_graph(t):
    """The graph that ops on ``t`` go into: the default graph when it is a control-flow body
    enclosing ``t``'s graph (``t`` is then captured into it), else ``t``'s own graph."""
    default = get_default_graph()
    encloses = getattr(default, "encloses", None)
    if encloses is not None and encloses(t.graph):
        return default
    return t.graph


def outermost(graph):
    """The graph variables live in: ``graph`` itself, or for a control-flow body being
    traced (a ``FuncGraph``) the graph that encloses it all."""
    return getattr(graph, "outermost_graph", graph)


def batch_zeros(batch_size, units: int, dtype) -> Tensor:
    """Zeros of shape [batch_size, units]. ``batch_size``: an int, a constant, or a runtime
    dim ``gc.shape(t)[k]`` of another tensor (the TF1 idiom), which keeps the batch ``None``."""
    dtype = _dt.as_dtype(dtype)
    if isinstance(batch_size, Tensor):
        op = batch_size.op
        if op.op_def.source == "const" and np.size(op.attrs["value"]) == 1:
            batch_size = int(np.asarray(op.attrs["value"]).reshape(()))
        elif runtime_dim_of(batch_size) is not None:
            source, axis = runtime_dim_of(batch_size)
            others = [i for i in range(len(source.shape)) if i != axis]
            column = reduce_sum(zeros_like(source, dtype=dtype), axis=others)  # [B] zeros
            return expand_dims(column, 1) + zeros((1, units), dtype)
        else:
            file, line = user_location()
            raise ValueError(
                f"zero_state: batch_size {batch_size.name} is computed at run time; give an "
                f"int or gc.shape(t)[k] of the tensor whose dim it is, at {file}:{line}"
            )
    if isinstance(batch_size, np.integer):
        batch_size = int(batch_size)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 0:
        raise ValueError(f"zero_state: batch_size must be a non-negative int, got {batch_size!r}")
    return zeros((batch_size, units), dtype)


class RNNCell:
    """Base class of the cells: ``state_size``, ``output_size``, ``zero_state`` and
    ``__call__(inputs, state, scope=None) -> (output, new_state)``.

    A cell of your own, as in TF1: subclass it, call ``super().__init__(name=None,
    dtype=None)``, define the properties ``state_size`` and ``output_size``, create the
    variables in ``build(inputs_shape)`` with ``self.add_variable(name, shape,
    initializer=None)`` (``inputs_shape`` is ``(None, depth)``) and compute a step in
    ``call(inputs, state) -> (output, new_state)``. Its scope is the class name in
    snake case (``MyCell`` -> ``my_cell``). (The built-in cells implement ``_build`` and
    ``_step`` directly.)"""

    _base_name = ""  # the default scope name; "" : the class name in snake case

    def __init__(self, name=None, dtype=None):
        self._name = name
        self._dtype = None if dtype is None else _dt.as_dtype(dtype)
        self._scope = None  # the VariableScope captured on the first call
        self._graph = None
        self._built_depth: int | None = None
        self._variables: list = []

    @property
    def state_size(self):
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    @property
    def variables(self) -> list:
        """The cell's variables, once it has been called (or built by ``dynamic_rnn``)."""
        return list(self._variables)

    trainable_variables = variables
    weights = variables

    def zero_state(self, batch_size, dtype):
        """Zero-filled state of shape [batch_size, size] for each part of ``state_size``."""
        return nest.map_structure(
            lambda size: batch_zeros(batch_size, size, dtype), self.state_size
        )

    def __call__(self, inputs, state, scope=None):
        """One time step: ``(output, new_state)``; builds the variables on the first call."""
        inputs = convert_to_tensor(inputs)
        self._check_inputs(inputs)
        name = type(self).__name__
        nest.assert_same_structure(self.state_size, state, f"{name}: state vs state_size")
        flat_state = [convert_to_tensor(s) for s in nest.flatten(state)]
        for s, size in zip(flat_state, nest.flatten(self.state_size)):
            if s.shape is not None and (len(s.shape) != 2 or s.shape[-1] not in (None, size)):
                file, line = user_location()
                raise ValueError(
                    f"{name}: state {s.name} has shape {s.shape}, expected [batch, {size}], "
                    f"at {file}:{line}"
                )
        state = nest.pack_sequence_as(state, flat_state)
        graph = building_graph(inputs)
        with self._enter(graph, scope):
            self._maybe_build(graph, int(inputs.shape[-1]), inputs.dtype)
            return self._step(inputs, state)

    # -- scopes and variables ------------------------------------------------------------
    def _enter(self, graph, scope=None) -> contextlib.ExitStack:
        """``graph`` as the default graph and this cell's variable scope entered: on the
        first call ``scope`` (a name or VariableScope), else the cell's name made unique in
        the enclosing scope (``lstm_cell``, ``lstm_cell_1``), as TF1's layers; later calls
        re-enter the scope captured then."""
        outer = outermost(graph)
        if self._graph is not None and outer is not self._graph:
            raise ValueError(f"{type(self).__name__} is used in two graphs")
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(graph.as_default())
            if self._scope is None:
                if scope is not None:
                    vs = stack.enter_context(variable_scope(scope))
                else:
                    base = self._name or self._base_name or _snake(type(self).__name__)
                    vs = stack.enter_context(variable_scope(None, default_name=base))
                self._graph, self._scope = outer, vs
            else:
                stack.enter_context(variable_scope(self._scope))
        except BaseException:
            stack.close()
            raise
        return stack

    def _maybe_build(self, graph, input_depth: int, dtype) -> None:
        if self._built_depth is not None:
            if input_depth != self._built_depth:
                file, line = user_location()
                raise ValueError(
                    f"{type(self).__name__} '{self._scope.name}' was built for inputs of "
                    f"depth {self._built_depth}, called with depth {input_depth}, at "
                    f"{file}:{line}"
                )
            return
        dtype = self._dtype or _dt.as_dtype(dtype)
        if not dtype.is_floating:
            raise TypeError(f"{type(self).__name__}: inputs must be floating, got {dtype.name}")
        self._dtype = dtype
        self._build(graph, input_depth, dtype)
        self._built_depth = input_depth

    def build_for(self, graph, input_depth: int, dtype, scope=None) -> None:
        """Create the variables for inputs of ``input_depth`` now (what the first call would),
        so that a loop body built later only reads them (``dynamic_rnn`` does this)."""
        with self._enter(graph, scope):
            self._maybe_build(graph, input_depth, dtype)

    def _variable(self, graph, name, shape, initializer=None):
        """``gc.get_variable(name)`` in the cell's scope (entered by the caller); default
        initializer: the scope's, else glorot uniform (TF1's)."""
        var = get_variable(name, shape, self._dtype, initializer)
        self._variables.append(var)
        return var

    def _check_inputs(self, inputs: Tensor) -> None:
        if inputs.shape is None or len(inputs.shape) != 2 or inputs.shape[-1] is None:
            file, line = user_location()
            raise ValueError(
                f"{type(self).__name__}: inputs must be [batch, depth] with a known depth, "
                f"got {inputs.shape} at {file}:{line}"
            )

    # -- TF1's interface for cells written by users ----------------------------------
    def build(self, inputs_shape) -> None:
        """Create the cell's variables for inputs of ``inputs_shape`` ``(None, depth)``
        with ``add_variable``; called once, inside the cell's variable scope."""

    def call(self, inputs, state):
        """One step: ``(output, new_state)``."""
        raise NotImplementedError(
            f"{type(self).__name__} must define call(inputs, state) -> (output, new_state)"
        )

    def add_variable(self, name, shape, dtype=None, initializer=None, trainable=None):
        """A variable ``<cell scope>/<name>`` of the cell (``gc.get_variable`` semantics;
        dtype: the inputs'). Only from ``build``."""
        if self._scope is None or self._built_depth is not None:
            raise ValueError(f"{type(self).__name__}.add_variable is only for build()")
        var = get_variable(name, shape, dtype or self._dtype, initializer, trainable=trainable)
        self._variables.append(var)
        return var

    add_weight = add_variable

    def _build(self, graph, input_depth: int, dtype) -> None:
        self.build((None, input_depth))

    def _step(self, inputs, state):
        return self.call(inputs, state)


def _snake(name: str) -> str:
    """``MyLSTMCell`` -> ``my_lstm_cell`` (TF1's default layer names)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _check_units(num_units) -> int:
    if not isinstance(num_units, int) or isinstance(num_units, bool) or num_units <= 0:
        raise ValueError(f"num_units must be a positive int, got {num_units!r}")
    return num_units


class BasicRNNCell(RNNCell):
    """``h' = activation(concat([x, h]) @ kernel + bias)``; output and state are ``h'``."""

    _base_name = "basic_rnn_cell"

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self._num_units = _check_units(num_units)
        self._activation = activation or tanh

    @property
    def state_size(self):
        return self._num_units

    @property
    def output_size(self):
        return self._num_units

    def _build(self, graph, input_depth, dtype):
        n = self._num_units
        self._kernel = self._variable(graph, "kernel", (input_depth + n, n))
        self._bias = self._variable(graph, "bias", (n,), Zeros())

    def _step(self, inputs, state):
        h = self._activation(bias_add(matmul(concat([inputs, state], 1), self._kernel), self._bias))
        return h, h


class LSTMCell(RNNCell):
    """TF1's ``LSTMCell`` (no peepholes, no projection):

    ``i, j, f, o = split(concat([x, h]) @ kernel + bias, 4)``;
    ``c' = sigmoid(f + forget_bias) * c + sigmoid(i) * activation(j)``;
    ``h' = sigmoid(o) * activation(c')``. Output ``h'``, state ``LSTMStateTuple(c', h')``
    (with ``state_is_tuple=False``: ``concat([c', h'], 1)``)."""

    _base_name = "lstm_cell"

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None,
                 initializer=None, reuse=None, name=None, dtype=None):  # fmt: skip
        super().__init__(name, dtype)
        self._num_units = _check_units(num_units)
        self._forget_bias = float(forget_bias)
        self._state_is_tuple = bool(state_is_tuple)
        self._activation = activation or tanh
        self._initializer = initializer

    @property
    def state_size(self):
        n = self._num_units
        return LSTMStateTuple(n, n) if self._state_is_tuple else 2 * n

    @property
    def output_size(self):
        return self._num_units

    def _build(self, graph, input_depth, dtype):
        n = self._num_units
        self._kernel = self._variable(graph, "kernel", (input_depth + n, 4 * n), self._initializer)
        self._bias = self._variable(graph, "bias", (4 * n,), Zeros())

    def _step(self, inputs, state):
        n = self._num_units
        if self._state_is_tuple:
            c, h = state
        else:
            c, h = split(state, [n, n], axis=1)
        gates = bias_add(matmul(concat([inputs, h], 1), self._kernel), self._bias)
        i, j, f, o = split(gates, 4, axis=1)
        act = self._activation
        new_c = sigmoid(f + self._forget_bias) * c + sigmoid(i) * act(j)
        new_h = sigmoid(o) * act(new_c)
        if self._state_is_tuple:
            return new_h, LSTMStateTuple(new_c, new_h)
        return new_h, concat([new_c, new_h], 1)


class BasicLSTMCell(LSTMCell):
    """TF1's ``BasicLSTMCell``: the math and variables of ``LSTMCell``, scope
    ``basic_lstm_cell``."""

    _base_name = "basic_lstm_cell"

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None,
                 reuse=None, name=None, dtype=None):  # fmt: skip
        super().__init__(num_units, forget_bias, state_is_tuple, activation, None, reuse, name,
                         dtype)  # fmt: skip


class GRUCell(RNNCell):
    """TF1's ``GRUCell``: ``r, u = split(sigmoid(concat([x, h]) @ gates/kernel +
    gates/bias), 2)``; ``c = activation(concat([x, r * h]) @ candidate/kernel +
    candidate/bias)``; ``h' = u * h + (1 - u) * c``."""

    _base_name = "gru_cell"

    def __init__(self, num_units, activation=None, reuse=None, kernel_initializer=None,
                 bias_initializer=None, name=None, dtype=None):  # fmt: skip
        super().__init__(name, dtype)
        self._num_units = _check_units(num_units)
        self._activation = activation or tanh
        self._kernel_initializer = kernel_initializer
        self._bias_initializer = bias_initializer

    @property
    def state_size(self):
        return self._num_units

    @property
    def output_size(self):
        return self._num_units

    def _build(self, graph, input_depth, dtype):
        n, d = self._num_units, input_depth
        k_init, b_init = self._kernel_initializer, self._bias_initializer
        self._gate_kernel = self._variable(graph, "gates/kernel", (d + n, 2 * n), k_init)
        self._gate_bias = self._variable(graph, "gates/bias", (2 * n,), b_init or Constant(1.0))
        self._candidate_kernel = self._variable(graph, "candidate/kernel", (d + n, n), k_init)
        self._candidate_bias = self._variable(graph, "candidate/bias", (n,), b_init or Zeros())

    def _step(self, inputs, state):
        gates = bias_add(matmul(concat([inputs, state], 1), self._gate_kernel), self._gate_bias)
        r, u = split(sigmoid(gates), 2, axis=1)
        candidate = bias_add(
            matmul(concat([inputs, r * state], 1), self._candidate_kernel), self._candidate_bias
        )
        c = self._activation(candidate)
        new_h = u * state + (1 - u) * c
        return new_h, new_h


class MultiRNNCell(RNNCell):
    """Cells stacked in depth: cell i reads cell i-1's output; the state is the tuple of the
    cells' states; cell i's variables live under ``multi_rnn_cell/cell_<i>/``."""

    _base_name = "multi_rnn_cell"

    def __init__(self, cells, state_is_tuple=True):
        super().__init__()
        cells = list(cells)
        if not cells:
            raise ValueError("MultiRNNCell needs at least one cell")
        for c in cells:
            if not isinstance(c, RNNCell):
                raise TypeError(f"MultiRNNCell takes RNN cells, got {type(c).__name__}")
        if len({id(c) for c in cells}) != len(cells):
            raise ValueError(
                "MultiRNNCell: the same cell object appears twice (it would share its "
                "weights across layers); create one cell per layer"
            )
        if not state_is_tuple:
            raise ValueError("MultiRNNCell supports state_is_tuple=True only")
        self._cells = cells

    @property
    def state_size(self):
        return tuple(c.state_size for c in self._cells)

    @property
    def output_size(self):
        return self._cells[-1].output_size

    @property
    def variables(self):
        return [v for c in self._cells for v in c.variables]

    trainable_variables = variables
    weights = variables

    def zero_state(self, batch_size, dtype):
        return tuple(c.zero_state(batch_size, dtype) for c in self._cells)

    def _maybe_build(self, graph, input_depth, dtype):
        if self._built_depth is not None and input_depth != self._built_depth:
            super()._maybe_build(graph, input_depth, dtype)  # raises
        depth = input_depth
        for i, c in enumerate(self._cells):
            with variable_scope(f"cell_{i}"):
                c.build_for(graph, depth, dtype)
            depth = c.output_size
        self._built_depth = input_depth

    def _step(self, inputs, state):
        out, new_states = inputs, []
        for i, (c, s) in enumerate(zip(self._cells, state)):
            with variable_scope(f"cell_{i}"):
                out, s = c(out, s)
            new_states.append(s)
        return out, tuple(new_states)
