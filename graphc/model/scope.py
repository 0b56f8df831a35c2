"""Variable scopes and ``get_variable``: TF1's way of naming and sharing model variables.

``gc.variable_scope("block")`` prefixes the names of the variables ``gc.get_variable`` makes
(and opens a name scope for the ops built inside); with ``reuse=True`` (or ``gc.AUTO_REUSE``)
``get_variable`` returns the variable of that name instead of making a new one. Each graph
has one store of the variables made by ``get_variable`` and of how often each scope name was
opened (unnamed scopes, ``variable_scope(None, default_name="dense")``, become ``dense``,
``dense_1``, ...). The rules, error messages included, are TF1's.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import weakref

import numpy as np

from .. import dtypes as _dt
from ..graph.collections import GraphKeys
from ..graph.core import Graph, Tensor, get_default_graph, user_location
from ..ops.elementwise import cast
from ..ops.state import Variable
from . import initializers as _init

__all__ = [
    "AUTO_REUSE", "VariableScope", "variable_scope", "get_variable", "get_variable_scope",
    "get_local_variable",
]  # fmt: skip


class _ReuseMode(enum.Enum):
    AUTO_REUSE = 1

    def __repr__(self) -> str:
        return "gc.AUTO_REUSE"


#: ``reuse=gc.AUTO_REUSE``: ``get_variable`` creates a variable when missing, else reuses it.
AUTO_REUSE = _ReuseMode.AUTO_REUSE


class VariableScope:
    """A variable scope: the name prefix, reuse mode and defaults (initializer, regularizer,
    dtype) of the variables made by ``get_variable`` inside it.

    ``with gc.variable_scope("a") as scope:`` gives one; passing it to ``variable_scope``
    again re-enters it (same variable names, a fresh name scope for ops).
    """

    def __init__(self, reuse, name="", initializer=None, regularizer=None, dtype=_dt.float32,
                 name_scope="", trainable=None):  # fmt: skip
        self._name = name
        self._reuse = reuse
        self._initializer = initializer
        self._regularizer = regularizer
        self._dtype = _dt.as_dtype(dtype)
        self._name_scope = name_scope
        self._trainable = trainable

    name = property(lambda self: self._name, doc="Full name: prefix of the variables' names.")
    reuse = property(lambda self: self._reuse, doc="False/None, True or gc.AUTO_REUSE.")
    initializer = property(lambda self: self._initializer)
    regularizer = property(lambda self: self._regularizer)
    dtype = property(lambda self: self._dtype)

    @property
    def original_name_scope(self) -> str:
        """The name scope (with its trailing ``/``) opened when this scope was first entered."""
        return self._name_scope

    def reuse_variables(self) -> None:
        """From now on, ``get_variable`` in this scope reuses existing variables."""
        self._reuse = True

    def set_initializer(self, initializer) -> None:
        self._initializer = initializer

    def set_regularizer(self, regularizer) -> None:
        self._regularizer = regularizer

    def set_dtype(self, dtype) -> None:
        self._dtype = _dt.as_dtype(dtype)

    def get_variable(self, name, shape=None, dtype=None, initializer=None, regularizer=None,
                     trainable=None, collections=None, reuse=None):  # fmt: skip
        """``get_variable`` with this scope's prefix and defaults."""
        if reuse is None or reuse is False:
            reuse = self._reuse
        full = f"{self._name}/{name}" if self._name else name
        return _store(get_default_graph()).get_variable(
            full, shape=shape, dtype=dtype if dtype is not None else self._dtype,
            initializer=initializer if initializer is not None else self._initializer,
            regularizer=regularizer if regularizer is not None else self._regularizer,
            trainable=trainable if trainable is not None else self._trainable,
            collections=collections, reuse=reuse,
            explicit_dtype=None if dtype is None else _dt.as_dtype(dtype),
        )  # fmt: skip

    def _copy(self, **changes) -> VariableScope:
        fields = {
            "reuse": self._reuse, "name": self._name, "initializer": self._initializer,
            "regularizer": self._regularizer, "dtype": self._dtype,
            "name_scope": self._name_scope, "trainable": self._trainable,
        }  # fmt: skip
        fields.update(changes)
        return VariableScope(**fields)

    def __repr__(self) -> str:
        return f"<gc.VariableScope '{self._name}' reuse={self._reuse!r}>"


class _VariableStore:
    """Per graph: the variables ``get_variable`` made (by full name), how often each scope
    name was opened, and each thread's current scope."""

    def __init__(self):
        self.vars: dict[str, Variable] = {}
        self.scope_counts: dict[str, int] = {}
        self.local = threading.local()
        self.lock = threading.RLock()

    @property
    def current(self) -> VariableScope:
        if not hasattr(self.local, "scope"):
            self.local.scope = VariableScope(False)
        return self.local.scope

    @current.setter
    def current(self, scope: VariableScope) -> None:
        self.local.scope = scope

    def open_scope(self, name: str) -> None:
        self.scope_counts[name] = self.scope_counts.get(name, 0) + 1

    def close_subscopes(self, name: str) -> None:
        # leaving scope "a" forgets how often "a/..." was opened, so entering "a" again
        # (e.g. with reuse=True) names its unnamed sub-scopes as the first time
        prefix = name + "/"
        for k in self.scope_counts:
            if k.startswith(prefix):
                self.scope_counts[k] = 0

    def unique_scope_name(self, prefix: str) -> str:
        base = self.current.name
        full = f"{base}/{prefix}" if base else prefix
        if not self.scope_counts.get(full):
            return prefix
        i = 1
        while self.scope_counts.get(f"{full}_{i}"):
            i += 1
        return f"{prefix}_{i}"

    def get_variable(self, name, shape, dtype, initializer, regularizer, trainable,
                     collections, reuse, explicit_dtype=None) -> Variable:  # fmt: skip
        dtype = _dt.as_dtype(dtype if dtype is not None else _dt.float32)
        if isinstance(initializer, type):  # TF1 accepts the class: initializer=gc.zeros_initializer
            initializer = initializer()
        from_value = initializer is not None and not callable(initializer)
        if shape is not None and from_value:
            raise ValueError("If initializer is a constant, do not specify shape.")
        if shape is not None:
            shape = _static_shape(shape, name)
        with self.lock:
            if name in self.vars:
                return self._existing(name, shape, dtype, reuse)
            if reuse is True:
                raise ValueError(
                    f"Variable {name} does not exist, or was not created with "
                    "gc.get_variable(). Did you mean to set reuse=gc.AUTO_REUSE in VarScope?"
                )
            var = self._create(name, shape, dtype, initializer, from_value, trainable,
                               collections, explicit_dtype)  # fmt: skip
            self.vars[name] = var
        if regularizer is not None:
            graph = var.graph
            with (
                graph.as_default(),
                graph.control_dependencies(None),
                graph.name_scope(var.op.name + "/Regularizer/"),
            ):
                loss = regularizer(var)
            if loss is not None:
                graph.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)
        return var

    def _existing(self, name, shape, dtype, reuse) -> Variable:
        var = self.vars[name]
        if not reuse:
            file, line = user_location()
            raise ValueError(
                f"Variable {name} already exists, disallowed. Did you mean to set reuse=True or "
                f"reuse=gc.AUTO_REUSE in VarScope? (asked for again at {file}:{line})"
            )
        if shape is not None and (
            len(shape) != len(var.shape) or any(a != b for a, b in zip(shape, var.shape))
        ):
            raise ValueError(
                f"Trying to share variable {name}, but specified shape {shape} and found shape "
                f"{tuple(var.shape)}."
            )
        if dtype != var.dtype:
            raise ValueError(
                f"Trying to share variable {name}, but specified dtype {dtype.name} and found "
                f"dtype {var.dtype.name}."
            )
        return var

    def _create(self, name, shape, dtype, initializer, from_value, trainable, collections,
                explicit_dtype):  # fmt: skip
        graph = _outermost(get_default_graph())
        if from_value:
            # A value keeps its own dtype, as TF1 (a Python list of floats is float32, a numpy
            # array keeps its dtype) unless get_variable was given one.
            init_value = initializer
            if explicit_dtype is not None:
                init_value = _as_dtype_value(initializer, explicit_dtype)
        else:
            if shape is None:
                raise ValueError(
                    f"Variable {name} did not get an initializer, so its `shape` argument must "
                    "be specified."
                    if initializer is None
                    else f"Shape of a new variable ({name}) must be fully defined, but "
                    "instead was None."
                )
            if initializer is None:
                if dtype.is_floating:
                    initializer = _init.GlorotUniform()
                elif dtype.is_integer or dtype.is_bool:
                    initializer = _init.Zeros()
                else:
                    raise ValueError(f"An initializer for variable {name} of {dtype.name} is "
                                     "required")  # fmt: skip

            def init_value():
                value = initializer(shape, dtype=dtype)
                if isinstance(value, Tensor) and value.dtype != dtype:
                    value = cast(value, dtype)
                return value

        trainable = True if trainable is None else bool(trainable)
        with graph.as_default(), graph.name_scope(None), graph.control_dependencies(None):
            return Variable(init_value, trainable=trainable, name=name,
                            dtype=None if from_value else dtype,
                            collections=collections)  # fmt: skip


def _as_dtype_value(value, dtype):
    if isinstance(value, Tensor):
        return value if value.dtype == dtype else cast(value, dtype)
    return np.asarray(value).astype(dtype.np)


def _static_shape(shape, name) -> tuple:
    if isinstance(shape, int | np.integer):
        shape = (int(shape),)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"get_variable {name}: shape must be a tuple of ints, got {shape!r}"
                        ) from None  # fmt: skip
    if any(d is None or int(d) < 0 for d in dims):
        raise ValueError(f"Shape of a new variable ({name}) must be fully defined, but instead "
                         f"was {dims}.")  # fmt: skip
    return tuple(int(d) for d in dims)


_stores: weakref.WeakKeyDictionary[Graph, _VariableStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def _outermost(graph: Graph) -> Graph:
    """Where variables live: the graph itself, or for a control-flow body being traced (a
    function graph inside ``gc.while_loop``/``gc.cond``) the graph that encloses it all, so
    that a layer called in a loop body shares the scopes and variables of the outer graph."""
    return getattr(graph, "outermost_graph", graph)


def _store(graph: Graph) -> _VariableStore:
    graph = _outermost(graph)
    with _stores_lock:
        store = _stores.get(graph)
        if store is None:
            store = _stores[graph] = _VariableStore()
        return store


def get_variable_scope() -> VariableScope:
    """The current variable scope of the default graph (in this thread)."""
    return _store(get_default_graph()).current


@contextlib.contextmanager
def variable_scope(name_or_scope, default_name=None, values=None, initializer=None,
                   regularizer=None, reuse=None, dtype=None, auxiliary_name_scope=True,
                   **unsupported):  # fmt: skip
    """``with gc.variable_scope("block"):`` names the variables of ``get_variable`` inside
    ``block/...`` and opens the name scope ``block`` for ops.

    * ``reuse=True``: ``get_variable`` returns existing variables (ValueError when one is
      missing); ``gc.AUTO_REUSE``: creates when missing, else reuses. ``None``/``False``
      inherit the enclosing scope's mode (reuse cannot be switched off inside a reusing scope).
    * ``initializer``, ``regularizer``, ``dtype``: defaults for the variables made inside
      (inherited by sub-scopes).
    * ``name_or_scope=None, default_name="dense"``: a fresh scope ``dense``, ``dense_1``, ...
    * a ``VariableScope`` object re-enters that scope (its own reuse mode unless ``reuse``
      is given).
    """
    for key in ("partitioner", "custom_getter", "caching_device", "constraint"):
        if unsupported.get(key) is not None:
            raise NotImplementedError(f"variable_scope: {key} is not supported")
    unknown = set(unsupported) - {"partitioner", "custom_getter", "caching_device",
                                  "constraint", "use_resource"}  # fmt: skip
    if unknown:
        raise TypeError(f"variable_scope got unexpected arguments {sorted(unknown)}")
    if name_or_scope is None and default_name is None:
        raise TypeError("If default_name is None then name_or_scope is required")
    if not isinstance(name_or_scope, VariableScope | str | None):
        raise TypeError(f"VariableScope: name_or_scope must be a string or VariableScope, got "
                        f"{name_or_scope!r}")  # fmt: skip
    if name_or_scope is None and reuse is True:
        raise ValueError("reuse=True cannot be used without a name_or_scope")
    if reuse not in (None, False, True, AUTO_REUSE):
        raise ValueError(f"reuse must be None, False, True or gc.AUTO_REUSE, got {reuse!r}")
    graph = get_default_graph()
    store = _store(graph)
    old = store.current
    if isinstance(name_or_scope, VariableScope):
        ns_name = name_or_scope.name.split("/")[-1]
    else:
        ns_name = name_or_scope if name_or_scope is not None else default_name
    with contextlib.ExitStack() as stack:
        if auxiliary_name_scope:
            ns = stack.enter_context(graph.name_scope(ns_name)) if ns_name else ""
        else:
            ns = graph.get_name_scope() + "/" if graph.get_name_scope() else ""
        with store.lock:
            if isinstance(name_or_scope, VariableScope):
                new = name_or_scope._copy(reuse=reuse if reuse else name_or_scope.reuse)
                store.open_scope(new.name)
                saved_counts = dict(store.scope_counts)
            else:
                leaf = name_or_scope
                if leaf is None:
                    leaf = store.unique_scope_name(default_name)
                full = f"{old.name}/{leaf}" if old.name else leaf
                new = old._copy(reuse=reuse or old.reuse, name=full, name_scope=ns)
                store.open_scope(full)
                saved_counts = None
        if initializer is not None:
            new.set_initializer(initializer)
        if regularizer is not None:
            new.set_regularizer(regularizer)
        if dtype is not None:
            new.set_dtype(dtype)
        store.current = new
        try:
            yield new
        finally:
            store.current = old
            with store.lock:
                if saved_counts is not None:
                    store.scope_counts = saved_counts
                else:
                    store.close_subscopes(new.name)


def get_variable(name, shape=None, dtype=None, initializer=None, regularizer=None,
                 trainable=None, collections=None, **unsupported) -> Variable:  # fmt: skip
    """The variable ``scope/name``: created when missing, returned when the scope reuses.

    ``shape``: a tuple of ints (not needed when ``initializer`` is a value: a tensor, array or
    list, whose shape and dtype the variable takes). ``dtype``: the scope's, float32 by
    default. ``initializer``: an initializer object or class (``gc.initializers.*``), any
    callable ``(shape, dtype=...)``, or a value; default: the scope's, else glorot_uniform
    for floats and zeros for integers and bools. ``regularizer(var)``: a loss added to
    ``GraphKeys.REGULARIZATION_LOSSES``. ``trainable`` (default True) adds it to
    ``TRAINABLE_VARIABLES``. ``collections`` (default ``[GLOBAL_VARIABLES]``).

    Errors, as TF1: a variable that exists in a scope that does not reuse, a missing one in a
    ``reuse=True`` scope, and sharing with another shape or dtype raise ValueError naming it.
    """
    for key in ("partitioner", "custom_getter", "caching_device", "constraint"):
        if unsupported.get(key) is not None:
            raise NotImplementedError(f"get_variable: {key} is not supported")
    unknown = set(unsupported) - {"partitioner", "custom_getter", "caching_device",
                                  "constraint", "use_resource", "validate_shape",
                                  "synchronization", "aggregation"}  # fmt: skip
    if unknown:
        raise TypeError(f"get_variable got unexpected arguments {sorted(unknown)}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_variable needs a non-empty name, got {name!r}")
    return get_variable_scope().get_variable(
        name, shape=shape, dtype=dtype, initializer=initializer, regularizer=regularizer,
        trainable=trainable, collections=collections,
    )  # fmt: skip


def get_local_variable(name, shape=None, dtype=None, initializer=None, collections=None,
                       **kwargs) -> Variable:  # fmt: skip
    """``get_variable`` into ``LOCAL_VARIABLES`` (not trained, not saved by default)."""
    collections = list(collections or []) + [GraphKeys.LOCAL_VARIABLES]
    return get_variable(name, shape=shape, dtype=dtype, initializer=initializer,
                        trainable=False, collections=collections, **kwargs)  # fmt: skip
