"""gc.data iterators: a dataset's elements as graph tensors that the Session feeds.

``get_next()`` returns Placeholder tensors (one per component, nested like the element)
marked as the outputs of this iterator (graphc/feed_sources.py has the protocol). Each
``sess.run`` whose fetches need them takes the next element once, validates it against the
dataset's element spec and feeds it: no ``feed_dict``. At the end a run raises
``gc.errors.OutOfRangeError`` (and keeps raising it until the iterator is initialised again).

Differences from TF1, on purpose:

- A run that fails after taking an element (an op raised, a shape check refused the
  element's sizes) gives the element back, so the next run reads it again; TF consumes it.
  An element that does not fit the declared dtypes/shapes raises InvalidArgumentError
  and is consumed (reading it again would fail again).
- ``get_next()`` called twice returns the same tensors: one element per run per iterator.

As in TF, the position is per session: two sessions on one graph each read the whole
dataset; closing a session stops the iterator's threads there.
"""

from __future__ import annotations

import threading
import weakref

from ..errors import FailedPreconditionError, OutOfRangeError
from ..feed_sources import COMPONENT, RESTART, SOURCE
from ..graph.core import get_default_graph, user_location
from ..ops.registry import apply_op
from . import structure as st
from .structure import Failed
from .threads import close_iterator


class Iterator:
    """Reads a dataset into a graph; made by ``ds.make_one_shot_iterator()`` or
    ``ds.make_initializable_iterator()``."""

    def __init__(self, dataset, initializable: bool):
        self._dataset = dataset
        self._graph = get_default_graph()
        self._spec = dataset.element_spec
        self._specs = st.flatten(self._spec)
        problem = st.graph_dtype_problem(self._specs)
        if problem is not None:
            raise TypeError(f"cannot make a graph iterator of this dataset: {problem}")
        file, line = user_location()
        self._where = f"iterator made at {file}:{line}"
        self._lock = threading.Lock()
        # the position lives in each session, as in TF: session -> _Pass (weak: a session
        # that is dropped without close() frees its pass, and the pass its threads)
        self._passes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._initializable = initializable  # a one-shot iterator starts at its first take
        self._outputs = None
        self._initializer = None
        if initializable:
            self._initializer = apply_op(
                "NoOp", [], {RESTART: self}, "MakeIterator", graph=self._graph
            )

    @property
    def element_spec(self):
        return self._spec

    @property
    def output_types(self):
        return st.map_structure(lambda s: s.dtype, self._spec)

    @property
    def output_shapes(self):
        return st.map_structure(lambda s: s.shape, self._spec)

    @property
    def initializer(self):
        """The op that (re)starts the iterator at the dataset's first element."""
        if self._initializer is None:
            raise ValueError(
                "a one-shot iterator has no initializer; use make_initializable_iterator()"
            )
        return self._initializer

    def get_next(self, name=None):
        """The next element as tensors, nested like the dataset's elements. Every run that
        needs any of them reads one new element."""
        if self._outputs is None:
            with self._graph.as_default():
                leaves = [
                    apply_op(
                        "Placeholder",
                        [],
                        {"dtype": s.dtype, "shape": s.shape, SOURCE: self, COMPONENT: i},
                        name or "IteratorGetNext",
                        graph=self._graph,
                    ).outputs[0]
                    for i, s in enumerate(self._specs)
                ]
            self._outputs = st.pack(self._spec, leaves)
        return self._outputs

    # -- the feed_sources protocol (called by the Session) -----------------------------------
    def _pass(self, owner) -> _Pass:
        """The state of this iterator in session ``owner`` (made on first use)."""
        with self._lock:
            state = self._passes.get(owner)
            if state is None:
                state = self._passes[owner] = _Pass(started=not self._initializable)
            return state

    def restart(self, owner) -> None:
        state = self._pass(owner)
        with state.lock:
            state.close()
            state.started = True
            state.ended = False

    def take(self, owner) -> list:
        state = self._pass(owner)
        with state.lock:
            if state.pushback:
                return state.pushback.pop()
            if not state.started:
                raise FailedPreconditionError(
                    f"GetNext() failed because the iterator has not been initialized "
                    f"({self._where}): run its initializer first"
                )
            if state.ended:
                raise OutOfRangeError(f"End of sequence ({self._where})")
            if state.source is None:
                state.source = iter(self._dataset._iterate())
            try:
                element = next(state.source)
            except StopIteration:
                state.close()
                state.ended = True
                raise OutOfRangeError(f"End of sequence ({self._where})") from None
        if type(element) is Failed:
            raise element.exc
        return st.element_components(element, self._spec, f"element of the {self._where}")

    def give_back(self, owner, values: list) -> None:
        state = self._pass(owner)
        with state.lock:
            state.pushback.append(values)

    def release(self, owner) -> None:
        """``owner`` (a session) is closing: stop this iterator's threads there."""
        with self._lock:
            state = self._passes.pop(owner, None)
        if state is not None:
            with state.lock:
                state.close()


class _Pass:
    """An iterator's position in one session: the Python iterator of the current pass over
    the dataset, elements given back by failed runs, whether it started or ended."""

    def __init__(self, started: bool):
        self.lock = threading.Lock()
        self.source = None
        self.pushback: list = []
        self.started = started
        self.ended = False

    def close(self) -> None:
        source, self.source = self.source, None
        self.pushback.clear()
        if source is not None:
            close_iterator(source)

    def __del__(self):
        source = getattr(self, "source", None)
        if source is not None:
            close_iterator(source)
