"""``gc.while_loop``, ``gc.scan``, ``gc.map_fn``, ``gc.foldl``: loops with run-time trip
counts, compiled (never unrolled), all on one ``While`` op (``control_flow.py``).

``while_loop`` is TF1's: a ``cond`` and a ``body`` over any nesting of loop variables.
``scan``, ``map_fn`` and ``foldl`` slice their ``elems`` along the first axis: the op
reads row i at iteration i (no per-iteration slicing op in the body) and stacks the
per-iteration results itself, so their trip count is the length of ``elems``.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..graph.core import get_default_graph, user_location
from . import nest
from .control_flow import LoopError, build_loop, compatible
from .control_runtime import fmt_shape
from .elementwise import less, logical_and
from .registry import convert_to_tensor
from .shape import concat, expand_dims

__all__ = ["while_loop", "scan", "map_fn", "foldl"]


def _fail(kind, message, location):
    raise kind(f"{message} at {location[0]}:{location[1]}")


def _as_shape(shape, location):
    if shape is None:
        return None
    if hasattr(shape, "as_list"):
        shape = shape.as_list()
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        _fail(TypeError, f"while_loop: {shape!r} is not a shape", location)


def _args_of(structure):
    """How TF1 passes loop variables to cond and body: a list or tuple (a namedtuple
    included) is unpacked into arguments, anything else is the one argument."""
    if isinstance(structure, list | tuple):
        return list
    return lambda s: [s]


def _body_result(result, loop_vars):
    """TF1: the body of a one-variable list may return the variable bare."""
    if type(loop_vars) in (list, tuple) and len(loop_vars) == 1 and not nest.is_nested(result):
        return type(loop_vars)([result])
    return result


def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations=10,
               back_prop=True, swap_memory=False, maximum_iterations=None, name=None,
               return_same_structure=False):  # fmt: skip
    """Repeat ``body`` while ``cond`` is true (TF1's ``tf.while_loop``).

    ``loop_vars``: any nesting of tensors (tuples, lists, dicts, namedtuples); ``cond`` and
    ``body`` take them as arguments (a list or tuple is unpacked) and ``body`` returns the
    same structure. The trip count is decided at run time. ``shape_invariants`` (same
    structure, one shape with None dims per variable) lets a variable's shape change across
    iterations. ``maximum_iterations`` (an int or int scalar tensor) stops the loop after
    that many iterations. ``back_prop=False`` stores nothing for gradients (and gives
    none). A one-variable list comes back as the tensor unless ``return_same_structure``.
    ``parallel_iterations`` and ``swap_memory`` are accepted and ignored.
    """
    location = user_location()
    if not callable(cond) or not callable(body):
        _fail(TypeError, "while_loop: cond and body must be callable", location)
    if not nest.flatten(loop_vars):
        _fail(ValueError, "while_loop: loop_vars is empty", location)
    flat = [convert_to_tensor(v) for v in nest.flatten(loop_vars)]
    if shape_invariants is None:
        shapes = [t.shape for t in flat]
    else:
        try:
            given = nest.flatten_up_to(loop_vars, shape_invariants)
        except ValueError as exc:
            _fail(ValueError, f"while_loop: shape_invariants: {exc}", location)
        shapes = [_as_shape(s, location) for s in given]
        for i, (t, s) in enumerate(zip(flat, shapes)):
            if t.shape is not None and not compatible(t.shape, s):
                _fail(ValueError, f"while_loop: loop variable {i} has shape "
                      f"{fmt_shape(t.shape)}, which does not fit its shape invariant "
                      f"{fmt_shape(s)}", location)  # fmt: skip
    args = _args_of(loop_vars)
    limit = None
    if maximum_iterations is not None:
        limit = convert_to_tensor(maximum_iterations)
        if not limit.dtype.is_integer or limit.shape not in ((), None):
            _fail(TypeError, "while_loop: maximum_iterations must be an int scalar, got "
                  f"{limit.dtype.name} {fmt_shape(limit.shape)}", location)  # fmt: skip

    def cond_fn(vs):
        if limit is not None:
            counter, vs = vs[0], vs[1:]
        c = cond(*args(nest.pack_sequence_as(loop_vars, vs)))
        if isinstance(c, bool | np.bool_):
            raise LoopError(TypeError, "while_loop: cond returned a Python bool, not a tensor")
        c = convert_to_tensor(c)
        return [c if limit is None else logical_and(less(counter, limit), c)]

    def body_fn(vs, rows):
        if limit is not None:
            counter, vs = vs[0], vs[1:]
        out = _body_result(body(*args(nest.pack_sequence_as(loop_vars, vs))), loop_vars)
        if not nest.same_structure(loop_vars, out):
            raise LoopError(ValueError, "while_loop: body must return the structure of "
                            f"loop_vars: {nest.describe(loop_vars)}, got "
                            f"{nest.describe(out)}")  # fmt: skip
        new = nest.flatten(out)
        if limit is not None:
            new = [counter + 1] + new
        return new, []

    if limit is not None:
        flat = [convert_to_tensor(np.array(0, limit.dtype.np))] + flat
        shapes = [()] + shapes
    graph = get_default_graph()
    with graph.name_scope(name or "while"):
        try:
            final, _ = build_loop(body_fn, flat, (), cond_fn, shapes, back_prop=back_prop,
                                  location=location, what="while_loop")  # fmt: skip
        except LoopError as exc:
            _fail(exc.kind, str(exc), location)
    if limit is not None:
        final = final[1:]
    out = nest.pack_sequence_as(loop_vars, final)
    if not return_same_structure and type(loop_vars) in (list, tuple) and len(loop_vars) == 1:
        return out[0]
    return out


def _elems(elems, what, location) -> list:
    flat = [convert_to_tensor(e) for e in nest.flatten(elems)]
    if not flat:
        _fail(ValueError, f"{what}: elems is empty", location)
    for e in flat:
        if e.shape is not None and len(e.shape) == 0:
            _fail(ValueError, f"{what}: elems must have a first axis to slice, got the scalar "
                  f"{e.name}", location)  # fmt: skip
    lengths = {e.shape[0] for e in flat if e.shape is not None and e.shape[0] is not None}
    if len(lengths) > 1:
        _fail(ValueError, f"{what}: elems have different lengths {sorted(lengths)}", location)
    return flat


def _scan(fn, elems, initializer, reverse, back_prop, what, name, stack_outputs, location):
    """The shared loop of scan and foldl: (final accumulator, stacked accumulators)."""
    flat_elems = _elems(elems, what, location)
    first = None
    if initializer is None:  # the first element (the last with reverse) starts the fold
        at = -1 if reverse else 0
        first = [e[at] for e in flat_elems]
        flat_elems = [e[:-1] if reverse else e[1:] for e in flat_elems]
        initializer = nest.pack_sequence_as(elems, first)
    flat_init = [convert_to_tensor(v) for v in nest.flatten(initializer)]

    def body_fn(acc, rows):
        out = fn(nest.pack_sequence_as(initializer, acc), nest.pack_sequence_as(elems, rows))
        if not nest.same_structure(initializer, out):
            raise LoopError(ValueError, f"{what}: fn must return the structure of the "
                            f"initializer: {nest.describe(initializer)}, got "
                            f"{nest.describe(out)}")  # fmt: skip
        new = nest.flatten(out)
        return new, (list(new) if stack_outputs else [])

    graph = get_default_graph()
    with graph.name_scope(name or what):
        try:
            final, stacked = build_loop(body_fn, flat_init, flat_elems, reverse=reverse,
                                        back_prop=back_prop, location=location,
                                        what=what)  # fmt: skip
        except LoopError as exc:
            _fail(exc.kind, str(exc), location)
        if stack_outputs and first is not None:
            rows = [expand_dims(f, 0) for f in first]
            stacked = [concat([s, r] if reverse else [r, s], axis=0)
                       for s, r in zip(stacked, rows)]  # fmt: skip
    return initializer, final, stacked


def scan(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
         swap_memory=False, infer_shape=True, reverse=False, name=None):  # fmt: skip
    """``fn(acc, x)`` over the rows of ``elems`` (TF1's ``tf.scan``); returns every
    accumulator stacked along a new first axis.

    ``elems``: a tensor or a nesting of tensors of the same length, sliced along their
    first axis (``x`` nests like ``elems``). ``initializer``: the first accumulator (any
    nesting; ``fn`` returns the same); without it the first row of ``elems`` is the first
    accumulator and is the first row of the result. ``reverse``: from the last row.
    """
    location = user_location()
    if not callable(fn):
        _fail(TypeError, "scan: fn must be callable", location)
    init, _, stacked = _scan(fn, elems, initializer, reverse, back_prop, "scan", name, True,
                             location)  # fmt: skip
    return nest.pack_sequence_as(init, stacked)


def foldl(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
          swap_memory=False, name=None):  # fmt: skip
    """``fn(acc, x)`` folded over the rows of ``elems`` from the first (TF1's
    ``tf.foldl``); returns the last accumulator. Without ``initializer`` the first row of
    ``elems`` is the first accumulator."""
    location = user_location()
    if not callable(fn):
        _fail(TypeError, "foldl: fn must be callable", location)
    init, final, _ = _scan(fn, elems, initializer, False, back_prop, "foldl", name, False,
                           location)  # fmt: skip
    return nest.pack_sequence_as(init, final)


def map_fn(fn, elems, dtype=None, parallel_iterations=None, back_prop=True,
           swap_memory=False, infer_shape=True, name=None):  # fmt: skip
    """``fn(x)`` for each row ``x`` of ``elems``, results stacked along a new first axis
    (TF1's ``tf.map_fn``). ``elems``: a tensor or a nesting of tensors of the same length;
    ``fn`` may return any nesting. ``dtype``: the dtypes of what ``fn`` returns (nested
    like it), needed by TF1 when they differ from ``elems``'; checked here."""
    location = user_location()
    if not callable(fn):
        _fail(TypeError, "map_fn: fn must be callable", location)
    flat_elems = _elems(elems, "map_fn", location)
    structure: dict = {}

    def body_fn(_, rows):
        out = fn(nest.pack_sequence_as(elems, rows))
        structure["out"] = out
        flat = [convert_to_tensor(v) for v in nest.flatten(out)]
        if dtype is not None:
            want = [_dt.as_dtype(d) for d in nest.flatten(dtype)]
            got = [t.dtype for t in flat]
            if want != got:
                raise LoopError(TypeError, "map_fn: fn returns dtypes "
                                f"{[d.name for d in got]}, but dtype says "
                                f"{[d.name for d in want]}")  # fmt: skip
        return [], flat

    graph = get_default_graph()
    with graph.name_scope(name or "map"):
        try:
            _, stacked = build_loop(body_fn, [], flat_elems, back_prop=back_prop,
                                    location=location, what="map_fn")  # fmt: skip
        except LoopError as exc:
            _fail(exc.kind, str(exc), location)
    return nest.pack_sequence_as(structure["out"], stacked)
