"""``gc.cond`` and ``gc.case``: branches chosen at run time (TF1 semantics).

Each branch is traced once into a sub-Program of an ``If`` op (``control_flow.py``); only
the taken branch runs, its assignments and checks included.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..errors import InvalidArgumentError
from ..graph.core import get_default_graph, user_location
from . import nest
from .control import identity
from .control_flow import LoopError, build_if
from .control_runtime import fmt_shape, where
from .registry import OpDef, apply_op, convert_to_tensor, register
from .shape import stack, unstack

__all__ = ["cond", "case"]


def _fail(kind, message, location):
    raise kind(f"{message} at {location[0]}:{location[1]}")


def _unwrap(out, strict):
    """TF1: without ``strict``, a one-element list or tuple result is its element."""
    if not strict and type(out) in (list, tuple) and len(out) == 1:
        return out[0]
    return out


def cond(pred, true_fn=None, false_fn=None, strict=False, name=None):
    """``true_fn()`` if the scalar bool ``pred`` is true at run time, else ``false_fn()``
    (TF1's ``tf.cond``). Only the taken branch runs, its assignments included. Both
    functions return the same structure of tensors with the same dtypes. Without
    ``strict``, a one-element list or tuple result is returned as its element."""
    location = user_location()
    if not callable(true_fn) or not callable(false_fn):
        _fail(TypeError, "cond: true_fn and false_fn must be callable", location)
    if isinstance(pred, bool | np.bool_):
        _fail(TypeError, "cond: pred must be a bool tensor, not a Python bool", location)
    pred = convert_to_tensor(pred)
    if pred.dtype != _dt.bool_ or pred.shape not in ((), None):
        _fail(TypeError, f"cond: pred must be a scalar bool tensor, got {pred.dtype.name} of "
              f"shape {fmt_shape(pred.shape)}", location)  # fmt: skip
    results: dict = {}

    def flat_fn(fn, key):
        def traced():
            results[key] = fn()
            return nest.flatten(results[key])

        return traced

    graph = get_default_graph()
    with graph.name_scope(name or "cond"):
        try:
            outs, _, _ = build_if(pred, flat_fn(true_fn, "t"), flat_fn(false_fn, "f"), location)
        except LoopError as exc:
            if (
                "t" in results
                and "f" in results
                and not nest.same_structure(results["t"], results["f"])
            ):
                _fail(ValueError, "cond: true_fn and false_fn must return the same structure: "
                      f"{nest.describe(results['t'])} vs {nest.describe(results['f'])}",
                      location)  # fmt: skip
            _fail(exc.kind, str(exc), location)
        if not nest.same_structure(results["t"], results["f"]):
            _fail(ValueError, "cond: true_fn and false_fn must return the same structure: "
                  f"{nest.describe(results['t'])} vs {nest.describe(results['f'])}",
                  location)  # fmt: skip
    return _unwrap(nest.pack_sequence_as(results["t"], outs), strict)


@register
class CaseCheck(OpDef):
    """Identity on a vector of ``case`` predicates that fails the run
    (InvalidArgumentError): with ``mode="exclusive"`` when more than one is true
    (``exclusive=True``), with ``mode="any"`` when none is (no ``default``: TF1 runs the
    last pair's function only if its predicate holds)."""

    kind = "host"
    host_reason = "a check of the case predicates that fails the run: evaluated on the host"
    static_shape_reason = "a host op (kind 'host'): never lowered"

    stateful = True  # a check: never removed while its output is used
    differentiable = False
    no_examples_reason = "control flow: tested in tests/control_flow"

    def infer(self, specs, attrs):
        return [specs[0]]

    def ref_stateful(self, xs, attrs, ctx):
        preds = np.asarray(xs[0])
        count = int(np.count_nonzero(preds))
        if attrs["mode"] == "exclusive" and count > 1:
            raise InvalidArgumentError(
                f"case at {where(attrs)}: {count} predicates are true with exclusive=True "
                "(at most one may be)"
            )
        if attrs["mode"] == "any" and count == 0:
            raise InvalidArgumentError(
                f"case at {where(attrs)}: none of the predicates is true and there is no default"
            )
        return preds


def case(pred_fn_pairs, default=None, exclusive=False, strict=False, name="case"):
    """The result of the function of the first true predicate, else of ``default`` (TF1's
    ``tf.case``), as nested ``cond``s: only that function runs.

    ``pred_fn_pairs``: a list of ``(pred, fn)`` (or a dict). Without ``default`` the last
    pair is the default, run only if its predicate holds (as TF1: the run fails with
    InvalidArgumentError when no predicate is true). ``exclusive=True`` fails the run with
    InvalidArgumentError when more than one predicate is true.
    """
    location = user_location()
    if isinstance(pred_fn_pairs, dict):
        pairs = list(pred_fn_pairs.items())
    else:
        pairs = list(pred_fn_pairs)
    if not pairs:
        _fail(ValueError, "case: pred_fn_pairs is empty", location)
    for p in pairs:
        if not isinstance(p, tuple | list) or len(p) != 2 or not callable(p[1]):
            _fail(TypeError, f"case: each entry must be a (pred, fn) pair, got {p!r}", location)
    preds = [convert_to_tensor(p) for p, _ in pairs]
    graph = get_default_graph()
    with graph.name_scope(name):
        if exclusive and len(preds) > 1:
            checked = apply_op("CaseCheck", [stack(preds)], {"mode": "exclusive",
                                                              "location": location})  # fmt: skip
            preds = unstack(checked.outputs[0])
        if default is None:
            last_fn = pairs.pop()[1]
            every = list(preds)

            def default():
                check = apply_op("CaseCheck", [stack(every)], {"mode": "any",
                                                               "location": location})  # fmt: skip
                with get_default_graph().control_dependencies([check]):
                    return nest.map_structure(identity, last_fn())

        def chain(i):
            if i == len(pairs):
                return default()
            return cond(preds[i], pairs[i][1], lambda: chain(i + 1), strict=True)

        out = chain(0)
    return _unwrap(out, strict)
