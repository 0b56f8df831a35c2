"""``gc.nn.dynamic_rnn``: a cell run over the time axis as one native loop.

The loop is one ``While`` op (``graphc/ops/control_flow.py``, the op under ``gc.while_loop``
and ``gc.scan``), never unrolled in Python: the op slices the time-major inputs itself
(step t reads row t), carries the state (and, with ``sequence_length``, the step number) as
loop variables and stacks each step's output, so the trip count is the run-time length of
the time axis. The cell's variables are created before the loop, so the body only reads
them; the loop's gradient (reverse mode over the saved states) comes with the op.

With ``sequence_length``, as TF1: at a step ``t >= sequence_length[b]`` row b's output is
zero and its state is carried unchanged, so the final state is the state after the row's
last step (the initial state for a length of 0).
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..graph.core import user_location
from ..model.scope import variable_scope
from ..ops.branches import cond
from ..ops.constant import constant, zeros, zeros_like
from ..ops.control_flow import LoopError, build_loop
from ..ops.elementwise import cast, greater, less, where
from ..ops.registry import convert_to_tensor
from ..ops.shape import shape as shape_of
from ..ops.shape import transpose
from . import nest
from .cell import RNNCell, building_graph

__all__ = ["dynamic_rnn"]


def _fail(kind, message, location):
    raise kind(f"dynamic_rnn: {message} at {location[0]}:{location[1]}")


def dynamic_rnn(cell, inputs, sequence_length=None, initial_state=None, dtype=None,
                parallel_iterations=None, swap_memory=False, time_major=False,
                scope=None):  # fmt: skip
    """Run ``cell`` over ``inputs`` (TF1's ``tf.nn.dynamic_rnn``); returns
    ``(outputs, final_state)``.

    ``inputs``: [batch, time, depth] (``time_major=True``: [time, batch, depth]); batch
    and time may be ``None``, the depth must be known. ``sequence_length``: int vector
    [batch]; steps at or past a row's length give zero outputs and keep that row's state.
    ``initial_state``: nests like ``cell.state_size``; without it the state starts at
    zero and ``dtype`` must be given. ``outputs`` is [batch, time, cell.output_size]
    (time-major with ``time_major``). The cell's variables live under ``scope``
    (default ``"rnn"``): ``rnn/lstm_cell/kernel``. ``parallel_iterations`` and
    ``swap_memory`` are accepted for compatibility and ignored.
    """
    location = user_location()
    if not isinstance(cell, RNNCell):
        _fail(TypeError, f"cell must be a gc.nn.rnn_cell cell, got {type(cell).__name__}",
              location)  # fmt: skip
    if nest.is_sequence(inputs):
        _fail(TypeError, "inputs must be one tensor (nested inputs are not supported)", location)
    x = convert_to_tensor(inputs)
    if not x.dtype.is_floating:
        _fail(TypeError, f"inputs must be floating, got {x.dtype.name}", location)
    if x.shape is None or len(x.shape) != 3 or x.shape[2] is None:
        layout = "[time, batch, depth]" if time_major else "[batch, time, depth]"
        _fail(ValueError, f"inputs must be {layout} with a known depth, got shape {x.shape}",
              location)  # fmt: skip
    graph = building_graph(x)
    batch_axis = 1 if time_major else 0
    x_tm = x if time_major else transpose(x, [1, 0, 2])
    batch = x.shape[batch_axis]
    batch_size = batch if batch is not None else shape_of(x)[batch_axis]

    if initial_state is not None:
        nest.assert_same_structure(cell.state_size, initial_state, "dynamic_rnn: initial_state")
        state0 = nest.pack_sequence_as(
            initial_state, [convert_to_tensor(s) for s in nest.flatten(initial_state)]
        )
        state_dtype = nest.flatten(state0)[0].dtype
        if dtype is not None and _dt.as_dtype(dtype) != state_dtype:
            _fail(TypeError, f"dtype {_dt.as_dtype(dtype).name} differs from the initial "
                  f"state's {state_dtype.name}", location)  # fmt: skip
    elif dtype is None:
        _fail(ValueError, "without initial_state, give the state's dtype (dtype=...)", location)
    else:
        state_dtype = _dt.as_dtype(dtype)
        state0 = None
    if state_dtype != x.dtype:
        _fail(TypeError, f"inputs are {x.dtype.name} but the state is {state_dtype.name}",
              location)  # fmt: skip

    lengths = None
    if sequence_length is not None:
        lengths = convert_to_tensor(sequence_length)
        if not lengths.dtype.is_integer or (lengths.shape is not None and len(lengths.shape) != 1):
            _fail(ValueError, f"sequence_length must be an int vector [batch], got "
                  f"{lengths.dtype.name} of shape {lengths.shape}", location)  # fmt: skip
        if lengths.shape is not None and None not in (lengths.shape[0], batch) \
                and lengths.shape[0] != batch:  # fmt: skip
            _fail(ValueError, f"sequence_length has {lengths.shape[0]} entries for a batch of "
                  f"{batch}", location)  # fmt: skip
        lengths = cast(lengths, _dt.int32) if lengths.dtype != _dt.int32 else lengths

    with graph.as_default(), variable_scope(scope or "rnn"):
        cell.build_for(graph, int(x.shape[2]), x.dtype)
        if state0 is None:
            state0 = cell.zero_state(batch_size, state_dtype)
        flat0 = nest.flatten(state0)
        with_time = lengths is not None
        loop_vars = ([constant(0, _dt.int32)] if with_time else []) + flat0

        def body(vars_, rows):
            state = nest.pack_sequence_as(state0, vars_[1:] if with_time else vars_)
            out, new_state = cell(rows[0], state)
            new_flat = [convert_to_tensor(s) for s in nest.flatten(new_state)]
            if not with_time:
                return new_flat, [out]
            t = vars_[0]
            live = less(t, lengths)  # [batch]: rows still inside their sequence
            out = where(live, out, zeros_like(out))
            new_flat = [where(live, n, s) for n, s in zip(new_flat, vars_[1:])]
            return [t + 1] + new_flat, [out]

        try:
            final, (outputs,) = build_loop(body, loop_vars, [x_tm], location=location,
                                           what="dynamic_rnn")  # fmt: skip
        except LoopError as exc:
            _fail(exc.kind, str(exc), location)
        final_state = nest.pack_sequence_as(state0, final[1:] if with_time else final)
        if x_tm.shape[0] is None:
            outputs = _empty_when_no_steps(outputs, x_tm, cell.output_size)
        if not time_major:
            outputs = transpose(outputs, [1, 0, 2])
    return outputs, final_state


def _empty_when_no_steps(outputs, x_tm, units):
    """``outputs`` [time, batch, units], also for zero steps: a loop that never ran cannot
    know its stacked outputs' run-time batch size (it would say 0), so then the result is
    zeros shaped from the inputs [0, batch, units]."""
    steps = shape_of(x_tm)[0]
    return cond(
        greater(steps, 0),
        lambda: outputs,
        lambda: zeros_like(x_tm[:, :, :1]) + zeros((1, 1, units), x_tm.dtype),
        name="outputs",
    )
