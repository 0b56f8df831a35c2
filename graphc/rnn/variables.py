"""Variable scopes for the RNN cells: TF1's variable names without TF1's whole machinery.

TF1 names a cell's weights by *variable scope*: ``dynamic_rnn`` opens ``rnn``, a cell opens
its own name made unique in the enclosing scope (``lstm_cell``, then ``lstm_cell_1``),
``MultiRNNCell`` opens ``multi_rnn_cell/cell_0``..., so an LSTM's kernel is
``rnn/lstm_cell/kernel``. This module keeps that stack of scope paths per graph and creates
``gc.Variable`` s with exactly those names (``get_variable``), refusing a name already taken
as TF1 does. A cell captures its scope on its first call and reuses its variables on every
later call, which is all the reuse the cells need.

It is the cells' private mechanism; the public ``gc.variable_scope`` / ``gc.get_variable``
API lives in the model layer.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref

from .. import dtypes as _dt
from ..graph.core import Graph, user_location
from ..ops.constant import zeros
from ..ops.random import random_uniform
from ..ops.state import Variable

_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class _Scopes(threading.local):
    """One graph's scope stack (per thread) and, per scope path, the default names used."""

    def __init__(self):
        self.stack: list[str] = []


def _state(graph: Graph):
    with _LOCK:
        entry = _STATE.get(graph)
        if entry is None:
            entry = _STATE[graph] = (_Scopes(), {}, {})  # scopes, used names, variables
        return entry


def current_scope(graph: Graph) -> str:
    """The innermost variable-scope path ("" at the top)."""
    stack = _state(graph)[0].stack
    return stack[-1] if stack else ""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def unique_scope(graph: Graph, base: str) -> str:
    """``base`` made unique among the default names used in the current scope, as TF1 does
    for a layer's default name: the full path (``rnn/lstm_cell``, then ``rnn/lstm_cell_1``)."""
    prefix = current_scope(graph)
    used = _state(graph)[1].setdefault(prefix, {})
    count = used.get(base, 0)
    used[base] = count + 1
    return _join(prefix, base if count == 0 else f"{base}_{count}")


@contextlib.contextmanager
def scope(graph: Graph, name: str, absolute: bool = False):
    """Enter variable scope ``name`` (relative to the current one, or an absolute path);
    yields its path."""
    if not name or not all(part for part in name.split("/")):
        raise ValueError(f"invalid variable scope name {name!r}")
    path = name if absolute else _join(current_scope(graph), name)
    scopes, used, _ = _state(graph)
    # As TF1, entering a scope by name restarts the default names inside it: a second new
    # cell in dynamic_rnn's "rnn" scope asks for rnn/lstm_cell again (and is refused).
    for key in [k for k in used if k == path or k.startswith(path + "/")]:
        del used[key]
    stack = scopes.stack
    stack.append(path)
    try:
        yield path
    finally:
        stack.pop()


def glorot_uniform(shape, dtype, seed=None):
    """TF1's default initializer of ``get_variable``: U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""
    fan_in = shape[-2] if len(shape) > 1 else shape[-1]
    fan_out = shape[-1]
    limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
    return random_uniform(shape, -limit, limit, dtype=dtype, seed=seed)


def zeros_initializer(shape, dtype):
    return zeros(shape, dtype)


def get_variable(graph: Graph, name: str, shape, dtype, initializer=None) -> Variable:
    """A new trainable variable ``<current scope>/<name>``; ValueError naming the user's
    line when that variable already exists (a second cell must have its own scope).

    ``initializer(shape, dtype) -> tensor`` (default: glorot uniform), the calling
    convention of ``gc.initializers`` objects."""
    full = _join(current_scope(graph), name)
    variables = _state(graph)[2]
    if full in variables:
        file, line = user_location()
        raise ValueError(
            f"Variable {full} already exists: give this cell another scope (scope=...) or "
            f"call the cell object that owns it, at {file}:{line}"
        )
    shape = tuple(int(d) for d in shape)
    dtype = _dt.as_dtype(dtype)
    init = initializer if initializer is not None else glorot_uniform
    with graph.as_default(), graph.name_scope(None), graph.control_dependencies(None):
        var = Variable(lambda: init(shape, dtype=dtype), name=full, dtype=dtype)
    if var.op.name != full:
        file, line = user_location()
        raise ValueError(
            f"Variable {full}: the graph already has an op of that name (this one became "
            f"{var.op.name}), at {file}:{line}"
        )
    variables[full] = var
    return var
