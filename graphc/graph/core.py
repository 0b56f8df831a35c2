"""Graph, Operation and Tensor.

A Graph is append-only: operations are added, never changed. Each Operation records the
file and line of the user code that built it, so that errors can point there.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from .. import dtypes as _dt
from ..errors import NotFoundError

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
_VALID_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")


class TensorSpec(NamedTuple):
    """Static shape (tuple, None for unknown dims) and dtype of a value."""

    shape: tuple | None
    dtype: _dt.DType


def user_location() -> tuple[str, int]:
    """File and line of the innermost frame outside the graphc package."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR) and "contextlib" not in filename:
            return filename, frame.f_lineno
        frame = frame.f_back
    return "<unknown>", 0


class Operation:
    """A node of the graph: an op type applied to input tensors, with attributes."""

    def __init__(self, graph, name, op_def, inputs, attrs, specs, control_inputs, location):
        self.graph: Graph = graph
        self.name: str = name
        self.op_def = op_def
        self.attrs: dict = attrs
        self._inputs: tuple[Tensor, ...] = tuple(inputs)
        self.control_inputs: tuple[Operation, ...] = tuple(control_inputs)
        self.location: tuple[str, int] = location
        self._id = len(graph._ops)
        self._outputs = tuple(Tensor(self, i, s.shape, s.dtype) for i, s in enumerate(specs))

    @property
    def type(self) -> str:
        """The op type, e.g. ``"MatMul"``."""
        return self.op_def.type

    @property
    def inputs(self) -> tuple[Tensor, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[Tensor, ...]:
        return self._outputs

    @property
    def device(self) -> str:
        return ""

    def get_attr(self, name: str):
        return self.attrs[name]

    def run(self, feed_dict=None, session=None):
        """Run this operation in ``session`` (default: the innermost active session)."""
        session_for(session, self.graph).run(self, feed_dict)

    def where(self) -> str:
        """``file:line`` of the user code that built this op."""
        return f"{self.location[0]}:{self.location[1]}"

    def __repr__(self) -> str:
        return f"<gc.Operation '{self.name}' type={self.type}>"


class Tensor:
    """A symbolic value: output ``value_index`` of operation ``op``.

    Supports the arithmetic and comparison operators, ``@`` and numpy-style indexing.
    ``==`` stays identity (use ``gc.equal``) so tensors can be dict keys.
    """

    __array_priority__ = 100  # make ndarray + Tensor call Tensor.__radd__

    def __init__(self, op: Operation, value_index: int, shape, dtype):
        self._op = op
        self.value_index = value_index
        self._shape = None if shape is None else tuple(shape)
        self._dtype = dtype

    op = property(lambda self: self._op, doc="The Operation that produces this tensor.")
    dtype = property(lambda self: self._dtype, doc="Element type (a gc.DType).")
    shape = property(lambda self: self._shape, doc="Static shape: tuple, None for unknown dims.")
    graph = property(lambda self: self._op.graph)
    name = property(lambda self: f"{self._op.name}:{self.value_index}")
    ndim = property(lambda self: None if self._shape is None else len(self._shape))

    def get_shape(self):
        return self._shape

    def consumers(self) -> list[Operation]:
        return [op for op in self.graph._ops if any(t is self for t in op.inputs)]

    def eval(self, feed_dict=None, session=None):
        """Evaluate in ``session`` (default: the innermost active session)."""
        return session_for(session, self.graph).run(self, feed_dict)

    def __repr__(self) -> str:
        return f"<gc.Tensor '{self.name}' shape={self._shape} dtype={self._dtype.name}>"

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __bool__(self):
        raise TypeError(
            "a symbolic gc.Tensor has no truth value: use gc.where or gc.logical_* instead"
        )

    def __len__(self):
        if self._shape is None or not self._shape or self._shape[0] is None:
            raise TypeError(f"len() of tensor {self.name} with unknown first dimension")
        return self._shape[0]

    def __iter__(self):
        raise TypeError("a gc.Tensor is not iterable; use gc.unstack")

    # Operators and indexing are installed by the ops layer (install_operators).


def install_operators(binary_fns: dict, unary_fns: dict, getitem) -> None:
    """Give Tensor its Python operators. The ops layer calls this when it loads (the graph
    layer sits below the ops and imports none of them).

    ``binary_fns``: operator name ("add", "lt"...) -> fn(x, y); arithmetic ones also get
    their reflected form (``__radd__``). ``unary_fns``: "neg", "abs", "invert" -> fn(x).
    """
    reflected = {"add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and",
                 "or", "xor"}  # fmt: skip

    def binary(fn, reverse=False):
        if reverse:
            return lambda self, other: fn(other, self)
        return lambda self, other: fn(self, other)

    for op, fn in binary_fns.items():
        setattr(Tensor, f"__{op}__", binary(fn))
        if op in reflected:
            setattr(Tensor, f"__r{op}__", binary(fn, reverse=True))
    for op, fn in unary_fns.items():
        setattr(Tensor, f"__{op}__", fn)
    Tensor.__pos__ = lambda self: self
    Tensor.__getitem__ = lambda self, key: getitem(self, key)


# -- the default session (TF1's `with sess:`) ---------------------------------------------------
# Kept here, below the session module, so that Tensor.eval and Operation.run need no import
# of it: a Session pushes itself on entering its `with` block.

_default_sessions = threading.local()


def session_stack() -> list:
    """This thread's stack of sessions made default by ``with sess:``."""
    if not hasattr(_default_sessions, "stack"):
        _default_sessions.stack = []
    return _default_sessions.stack


def get_default_session():
    """The innermost session of ``with sess:`` / ``sess.as_default()`` in this thread."""
    stack = session_stack()
    return stack[-1] if stack else None


def session_for(session, graph):
    """``session``, else the default session; ValueError when none or of another graph."""
    if session is None:
        session = get_default_session()
    if session is None:
        raise ValueError("no default session: pass session= or use `with gc.Session() as sess:`")
    if session.graph is not graph:
        raise ValueError("the session's graph is not the graph of this tensor")
    return session


class Graph:
    """A TF1-style computation graph: an append-only list of named operations."""

    def __init__(self):
        self._ops: list[Operation] = []
        self._by_name: dict[str, Operation] = {}
        self._used_names: dict[str, int] = {}
        self._lock = threading.RLock()
        self._local = threading.local()
        self._collections: dict[str, list] = {}
        self.seed: int | None = None
        self._finalized = False

    # -- thread-local builder state ------------------------------------------------------
    def _state(self):
        local = self._local
        if not hasattr(local, "scope"):
            local.scope = ""
            local.control = []
        return local

    # -- naming --------------------------------------------------------------------------
    def unique_name(self, name: str, mark_as_used: bool = True) -> str:
        """``scope/name`` made unique in this graph by a ``_N`` suffix, as TF does."""
        scope = self._state().scope
        full = f"{scope}/{name}" if scope else name
        with self._lock:
            key = full.lower()
            count = self._used_names.get(key, 0)
            candidate = full
            if count:
                while True:
                    candidate = f"{full}_{count}"
                    if candidate.lower() not in self._used_names:
                        break
                    count += 1
            if mark_as_used:
                self._used_names[key] = count + 1
                self._used_names.setdefault(candidate.lower(), 1)
            return candidate

    @contextlib.contextmanager
    def name_scope(self, name: str | None):
        """Prefix the names of ops built inside with ``name/`` (made unique)."""
        state = self._state()
        old = state.scope
        if name is None or name == "":
            state.scope = ""
        elif name.endswith("/"):
            state.scope = name[:-1]
        else:
            if not _VALID_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid scope name")
            state.scope = self.unique_name(name)
        try:
            yield state.scope + "/" if state.scope else ""
        finally:
            state.scope = old

    def get_name_scope(self) -> str:
        return self._state().scope

    @contextlib.contextmanager
    def control_dependencies(self, control_inputs):
        """Ops built inside run only after every op (or tensor's op) in ``control_inputs``."""
        state = self._state()
        if control_inputs is None:
            old = state.control
            state.control = []
            try:
                yield
            finally:
                state.control = old
            return
        ops = []
        for c in control_inputs:
            op = c if isinstance(c, Operation) else getattr(c, "op", None)
            if not isinstance(op, Operation):
                raise TypeError(f"control_dependencies takes ops or tensors, got {c!r}")
            if op.graph is not self:
                raise ValueError(f"control input {op.name} belongs to another graph")
            ops.append(op)
        state.control.append(ops)
        try:
            yield
        finally:
            state.control.pop()

    def _current_control_inputs(self) -> list[Operation]:
        out: list[Operation] = []
        for group in self._state().control:
            for op in group:
                if op not in out:
                    out.append(op)
        return out

    # -- building ------------------------------------------------------------------------
    def _create_op(self, op_def, inputs, attrs, specs, name, location) -> Operation:
        if self._finalized:
            raise RuntimeError("graph is finalized and cannot be modified")
        with self._lock:
            if name is None:
                name = self.unique_name(op_def.type)
            elif name.endswith("/"):
                # An exact name, as TF: a scope name already made unique by name_scope().
                name = name[:-1]
                if name in self._by_name:
                    name = self.unique_name(name)
                self._used_names.setdefault(name.lower(), 1)
            else:
                if not _VALID_NAME.match(name.split("/")[-1] or "x"):
                    raise ValueError(f"'{name}' is not a valid op name")
                name = self.unique_name(name)
            controls = [
                c for c in self._current_control_inputs() if all(c is not t.op for t in inputs)
            ]
            op = Operation(self, name, op_def, inputs, attrs, specs, controls, location)
            self._ops.append(op)
            self._by_name[name] = op
        return op

    def finalize(self):
        self._finalized = True

    @property
    def finalized(self) -> bool:
        return self._finalized

    # -- lookup --------------------------------------------------------------------------
    def get_operations(self) -> list[Operation]:
        return list(self._ops)

    def get_operation_by_name(self, name: str) -> Operation:
        if not isinstance(name, str):
            raise TypeError(f"operation name must be a str, got {type(name).__name__}")
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFoundError(f"the graph has no operation named '{name}'") from None

    def get_tensor_by_name(self, name: str) -> Tensor:
        if not isinstance(name, str) or ":" not in name:
            raise ValueError(f"tensor names look like 'op_name:0', got {name!r}")
        op_name, _, index = name.rpartition(":")
        if not index.isdigit():
            raise ValueError(f"tensor names look like 'op_name:0', got {name!r}")
        op = self.get_operation_by_name(op_name)
        if int(index) >= len(op.outputs):
            raise NotFoundError(
                f"operation '{op_name}' has {len(op.outputs)} output(s); '{name}' does not exist"
            )
        return op.outputs[int(index)]

    def as_graph_element(self, obj):
        """Resolve a name, Tensor or Operation of this graph."""
        if isinstance(obj, str):
            return self.get_tensor_by_name(obj) if ":" in obj else self.get_operation_by_name(obj)
        if isinstance(obj, Tensor | Operation):
            if obj.graph is not self:
                raise ValueError(f"{obj.name} belongs to another graph")
            return obj
        tensor = getattr(obj, "_as_graph_tensor", None)
        if tensor is not None:
            return tensor()
        raise TypeError(f"cannot interpret {obj!r} as a tensor or operation of this graph")

    # -- collections ---------------------------------------------------------------------
    def add_to_collection(self, name: str, value) -> None:
        with self._lock:
            self._collections.setdefault(name, []).append(value)

    def add_to_collections(self, names, value) -> None:
        """Add ``value`` to each collection of ``names`` (a name or a list of names)."""
        for name in [names] if isinstance(names, str) else dict.fromkeys(names):
            self.add_to_collection(name, value)

    def get_collection(self, name: str, scope: str | None = None) -> list:
        """A copy of collection ``name``; with ``scope``, only the items whose ``name``
        matches it at the start (``re.match``, as TF1), items without a name left out."""
        items = list(self._collections.get(name, []))
        if scope is None:
            return items
        pattern = re.compile(scope)
        return [v for v in items if isinstance(getattr(v, "name", None), str)
                and pattern.match(v.name)]  # fmt: skip

    def get_collection_ref(self, name: str) -> list:
        """The collection list itself (created empty if missing): changes to it stay."""
        with self._lock:
            return self._collections.setdefault(name, [])

    def get_all_collection_keys(self) -> list[str]:
        return list(self._collections)

    def clear_collection(self, name: str) -> None:
        with self._lock:
            self._collections.pop(name, None)

    # -- default graph -------------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self):
        """Make this the default graph inside the ``with`` block (per thread)."""
        stack = _default_stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    @property
    def version(self) -> int:
        return len(self._ops)

    def __repr__(self) -> str:
        return f"<gc.Graph with {len(self._ops)} ops>"


_thread_local = threading.local()
_global_default: list[Graph] = [Graph()]


def _default_stack() -> list[Graph]:
    if not hasattr(_thread_local, "stack"):
        _thread_local.stack = []
    return _thread_local.stack


def get_default_graph() -> Graph:
    """The innermost graph of ``as_default()`` in this thread, else the module default."""
    stack = _default_stack()
    return stack[-1] if stack else _global_default[0]


def reset_default_graph() -> None:
    """Replace the module default graph with a new, empty one."""
    if _default_stack():
        raise AssertionError("reset_default_graph() called inside a graph.as_default() block")
    _global_default[0] = Graph()


def name_scope(name: str | None, default_name: str | None = None, values=None):
    """``with gc.name_scope("block"):`` prefixes op names built inside with ``block/``."""
    return get_default_graph().name_scope(name if name is not None else default_name)


def control_dependencies(control_inputs: Iterable | None):
    """``with gc.control_dependencies([a, b]):`` ops built inside run after a and b."""
    if control_inputs is not None:
        control_inputs = list(control_inputs)
        graphs = {getattr(c, "graph", None) for c in control_inputs}
        graphs.discard(None)
        if len(graphs) == 1:
            return next(iter(graphs)).control_dependencies(control_inputs)
    return get_default_graph().control_dependencies(control_inputs)
