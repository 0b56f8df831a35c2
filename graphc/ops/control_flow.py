"""Control flow ops: ``While`` (loops, scans) and ``If`` (cond, case), with their builders.

Bodies are traced once into sub-Programs (``func_graph.py``) held in the op's attributes;
outer tensors a body reads are explicit inputs of the op. The ops are *structured*: graph
passes treat them as one opaque, stateful node (never folded, merged or looked into), and
each backend runs the bodies itself: the reference interpreter recursively, the cpu target
as compiled executables called from a host loop (``graphc/backends/cpu/control.py``). The
shared run-time meaning lives here (``run_control``), given a ``call(attr, feeds)`` that
runs one body; backends only supply ``call``.

``While`` inputs: loop variables (``n_vars``), *sliced* inputs (``n_sliced``: body
iteration i reads row i, or row T-1-i with ``reverse``), captured tensors (``n_caps``).
Its body Program reads ``vars + rows + caps`` (Feed indexes in that order) and returns the
new loop variables, then one row of each *stacked* output; the op's outputs are the final
loop variables, then each stacked output (a leading axis of the trip count). Its ``cond``
Program reads ``vars + caps`` and returns a scalar bool; without ``cond`` the loop runs
once per row of the sliced inputs. ``If`` inputs: the predicate, then captured tensors;
``then``/``else`` read the captured tensors and return the outputs.

Gradients are in ``control_grad.py``; scan, map_fn and foldl in ``functional.py``.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..errors import InvalidArgumentError
from ..graph.core import Tensor, TensorSpec, get_default_graph, user_location
from . import nest
from .elementwise import less, logical_and
from .func_graph import has_effect as _op_has_effect
from .func_graph import program_has_effect, to_program, trace
from .registry import OpDef, ShapeError, apply_op, convert_to_tensor, register
from .shape import stack, unstack

__all__ = ["while_loop", "cond", "case"]

_NO_EXAMPLES = "control flow: its bodies are traced functions; tested in tests/control_flow"


def _where(attrs) -> str:
    loc = attrs.get("location", ("<unknown>", 0))
    return f"{loc[0]}:{loc[1]}"


def _shape_fits(shape, spec_shape) -> bool:
    """Whether a run-time ``shape`` fits a static shape with None dims."""
    if spec_shape is None:
        return True
    return len(shape) == len(spec_shape) and all(
        d is None or d == s for d, s in zip(spec_shape, shape)
    )


def _fmt_shape(shape) -> str:
    return "<unknown>" if shape is None else str(tuple(shape))


class ControlOp(OpDef):
    """Base of ops whose attributes hold sub-Programs that a backend runs via ``call``."""

    stateful = True  # never folded or merged; runs its bodies' effects
    no_examples_reason = _NO_EXAMPLES
    #: attribute names holding sub-Programs (None where absent)
    program_attrs: tuple = ()

    def programs(self, attrs) -> dict:
        return {k: attrs[k] for k in self.program_attrs if attrs.get(k) is not None}

    def has_effect(self, attrs) -> bool:
        """Whether a body writes state or may fail (then it is run even if unused)."""
        return any(program_has_effect(p) for p in self.programs(attrs).values())

    def ref_stateful(self, xs, attrs, ctx):
        raise AssertionError(f"{self.type} runs through run_control, with a body runner")


@register
class While(ControlOp):
    """A loop whose trip count is decided at run time (see the module doc string)."""

    program_attrs = ("cond", "body")

    def infer(self, specs, attrs):
        n, k, m = attrs["n_vars"], attrs["n_sliced"], attrs["n_caps"]
        if len(specs) != n + k + m:
            raise ShapeError(f"While takes {n + k + m} inputs, got {len(specs)}")
        rows = None
        for s in specs[n : n + k]:
            if s.shape is not None and len(s.shape) == 0:
                raise ShapeError("a sliced input must have at least one dimension")
            if attrs["cond"] is None and s.shape is not None and s.shape[0] is not None:
                rows = s.shape[0]
        out = [(tuple(sh) if sh is not None else None, dt) for sh, dt in attrs["var_specs"]]
        for sh, dt in attrs["stacked"]:
            out.append((None if sh is None else (rows,) + tuple(sh), dt))
        return out

    def run_control(self, xs, attrs, ctx, call, needed=None) -> list:
        """The loop; ``call(name, feeds)`` runs the ``cond`` or ``body`` Program.
        ``needed``: output indexes someone reads (None: all); unneeded stacks are not kept."""
        return run_while(attrs, xs, call, needed)


def run_while(attrs, xs, call, needed=None) -> list:
    n, k = attrs["n_vars"], attrs["n_sliced"]
    vars_ = [np.asarray(x) for x in xs[:n]]
    rows = [np.asarray(x) for x in xs[n : n + k]]
    caps = list(xs[n + k :])
    trips = None
    for r in rows:
        if r.ndim == 0:
            raise InvalidArgumentError(f"While at {_where(attrs)}: a sliced input is a scalar")
        if trips is not None and r.shape[0] != trips:
            raise InvalidArgumentError(
                f"scan/map_fn at {_where(attrs)}: the inputs sliced along their first axis "
                f"have different lengths ({trips} and {r.shape[0]})"
            )
        trips = r.shape[0]
    stacked = attrs["stacked"]
    keep = [needed is None or (n + j) in needed for j in range(len(stacked))]
    stacks: list = [[] if kj else None for kj in keep]
    has_cond = attrs["cond"] is not None
    reverse = attrs.get("reverse", False)
    check = [(j, attrs["var_specs"][j][0]) for j in attrs.get("check_vars", ())]
    i = 0
    while True:
        if has_cond:
            c = call("cond", vars_ + caps)[0]
            if np.shape(c) != ():
                raise InvalidArgumentError(
                    f"while_loop at {_where(attrs)}: cond returned shape {np.shape(c)}, "
                    "not a scalar bool"
                )
            if not c:
                break
            if trips is not None and i >= trips:
                raise InvalidArgumentError(
                    f"While at {_where(attrs)}: iteration {i} reads past the {trips} rows "
                    "of its sliced inputs"
                )
        elif i >= trips:
            break
        if k:
            at = trips - 1 - i if reverse else i
            outs = call("body", vars_ + [r[at] for r in rows] + caps)
        else:
            outs = call("body", vars_ + caps)
        vars_ = outs[:n]
        for j, st in enumerate(stacks):
            if st is not None:
                st.append(outs[n + j])
        for j, spec_shape in check:
            if not _shape_fits(np.shape(vars_[j]), spec_shape):
                raise InvalidArgumentError(
                    f"while_loop at {_where(attrs)}: loop variable {j} has shape "
                    f"{np.shape(vars_[j])} after iteration {i}, which does not fit its "
                    f"shape {_fmt_shape(spec_shape)} (pass shape_invariants to let it change)"
                )
        i += 1
    results = list(vars_)
    for j, st in enumerate(stacks):
        row_shape, dtype = stacked[j]
        if st is None or not st:  # unread (a zero-byte stand-in) or no iteration
            shape = (i,) + tuple(0 if d is None else d for d in (row_shape or ()))
            results.append(np.broadcast_to(np.zeros((), _dt.as_dtype(dtype).np), shape))
        else:
            results.append(_stack(st[::-1] if reverse else st, attrs))
    return results


def _stack(rows, attrs) -> np.ndarray:
    first = np.shape(rows[0])
    for r in rows:
        if np.shape(r) != first:
            raise InvalidArgumentError(
                f"loop at {_where(attrs)}: per-iteration values to stack have different shapes "
                f"({first} and {np.shape(r)}): a loop variable whose shape changes across "
                "iterations cannot be stacked (nor differentiated)"
            )
    return np.stack(rows)


@register
class If(ControlOp):
    """Runs ``then`` or ``else`` on the captured inputs, as the scalar bool input says."""

    program_attrs = ("then", "else")

    def infer(self, specs, attrs):
        if len(specs) != 1 + attrs["n_caps"]:
            raise ShapeError(f"If takes {1 + attrs['n_caps']} inputs, got {len(specs)}")
        return [(sh, dt) for sh, dt in attrs["out_specs"]]

    def run_control(self, xs, attrs, ctx, call, needed=None) -> list:
        pred = np.asarray(xs[0])
        if pred.shape != ():
            raise InvalidArgumentError(
                f"cond at {_where(attrs)}: pred has shape {pred.shape}, not a scalar"
            )
        return list(call("then" if bool(pred) else "else", list(xs[1:])))


# -- builders ----------------------------------------------------------------------------------


def _fail(kind, message, location):
    raise kind(f"{message} at {location[0]}:{location[1]}")


def _union(*lists) -> list:
    out: list = []
    seen: set = set()
    for lst in lists:
        for t in lst:
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    return out


def _cap_layout(traced, caps) -> list:
    """Per op capture slot, the traced graph's placeholder for it (or None)."""
    ph = {id(s): p for s, p in zip(traced.graph.captured, traced.graph.capture_placeholders)}
    return [ph.get(id(c)) for c in caps]


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
        return lambda s: list(s)
    return lambda s: [s]


def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations=10,
               back_prop=True, swap_memory=False, maximum_iterations=None, name=None,
               return_same_structure=False):  # fmt: skip
    """Repeat ``body`` while ``cond`` is true (TF1's ``tf.while_loop``).

    ``loop_vars``: any nesting of tensors (tuples, lists, dicts, namedtuples); ``cond`` and
    ``body`` take them as arguments (a list or tuple is unpacked) and ``body`` returns the
    same structure. The trip count is decided at run time. ``shape_invariants`` (same
    structure, shapes with None dims) lets a variable's shape change across iterations.
    ``maximum_iterations`` (int or int tensor) stops the loop after that many iterations.
    ``back_prop=False`` saves nothing for gradients. ``parallel_iterations`` and
    ``swap_memory`` are accepted for compatibility and ignored.
    """
    location = user_location()
    if not callable(cond) or not callable(body):
        _fail(TypeError, "while_loop: cond and body must be callable", location)
    if nest.is_nested(loop_vars) and not nest.flatten(loop_vars):
        _fail(ValueError, "while_loop: loop_vars is empty", location)
    graph = get_default_graph()
    with graph.name_scope(name or "while"):
        if maximum_iterations is not None:
            return _with_max_iterations(
                cond,
                body,
                loop_vars,
                shape_invariants,
                back_prop,
                maximum_iterations,
                return_same_structure,
                location,
            )
        return _while(cond, body, loop_vars, shape_invariants, back_prop,
                      return_same_structure, location)  # fmt: skip


def _with_max_iterations(cond, body, loop_vars, invariants, back_prop, max_iters,
                         same_structure, location):  # fmt: skip
    """A counter as an extra loop variable, as TF1 builds it."""
    limit = convert_to_tensor(max_iters)
    if not limit.dtype.is_integer or limit.shape not in ((), None):
        _fail(TypeError, f"while_loop: maximum_iterations must be an int scalar, got "
              f"{limit.dtype.name} {_fmt_shape(limit.shape)}", location)  # fmt: skip
    args = _args_of(loop_vars)
    counter = convert_to_tensor(np.array(0, limit.dtype.np))
    inner = (counter, loop_vars)
    inv = None if invariants is None else ((), invariants)

    def c(i, v):
        return logical_and(less(i, limit), cond(*args(v)))

    def b(i, v):
        return (i + 1, _body_result(body(*args(v)), loop_vars))

    out = _while(c, b, inner, inv, back_prop, True, location)[1]
    return _unwrap(out, loop_vars, same_structure)


def _body_result(result, loop_vars):
    """TF1: a body of one loop variable may return it bare."""
    if isinstance(loop_vars, list | tuple) and len(loop_vars) == 1 and not nest.is_nested(result):
        return type(loop_vars)([result]) if not hasattr(loop_vars, "_fields") else result
    return result


def _unwrap(out, loop_vars, same_structure):
    if not same_structure and isinstance(loop_vars, list | tuple) and len(loop_vars) == 1 \
            and not hasattr(loop_vars, "_fields"):  # fmt: skip
        return out[0]
    return out


def _while(cond, body, loop_vars, invariants, back_prop, same_structure, location):
    graph = get_default_graph()
    flat = [convert_to_tensor(v) for v in nest.flatten(loop_vars)]
    n = len(flat)
    if invariants is None:
        var_shapes = [t.shape for t in flat]
    else:
        try:
            given = nest.flatten_up_to(loop_vars, invariants)
        except ValueError as exc:
            _fail(ValueError, f"while_loop: shape_invariants: {exc}", location)
        var_shapes = [_as_shape(s, location) for s in given]
        for i, (t, s) in enumerate(zip(flat, var_shapes)):
            if t.shape is not None and not _compatible(t.shape, s):
                _fail(ValueError, f"while_loop: loop variable {i} has shape "
                      f"{_fmt_shape(t.shape)}, which does not fit its shape invariant "
                      f"{_fmt_shape(s)}", location)  # fmt: skip
    specs = [TensorSpec(s, t.dtype) for s, t in zip(var_shapes, flat)]
    args = _args_of(loop_vars)

    def pack(phs):
        return args(nest.pack_sequence_as(loop_vars, phs))

    ct = trace(cond, specs, pack, graph, "cond")
    if len(ct.outputs) != 1:
        _fail(TypeError, "while_loop: cond must return one scalar bool tensor", location)
    c = ct.outputs[0]
    if c.dtype != _dt.bool_ or c.shape not in ((), None):
        _fail(TypeError, f"while_loop: cond must return a scalar bool tensor, got "
              f"{c.dtype.name} of shape {_fmt_shape(c.shape)}", location)  # fmt: skip
    bt = trace(lambda *a: _body_result(body(*a), loop_vars), specs, pack, graph, "body",
               out_dtypes=[t.dtype for t in flat])  # fmt: skip
    if not nest.same_structure(loop_vars, bt.structure):
        _fail(ValueError, "while_loop: body must return the structure of loop_vars: "
              f"{nest.describe(loop_vars)}, got {nest.describe(bt.structure)}",
              location)  # fmt: skip
    check = []
    for i, (out, s) in enumerate(zip(bt.outputs, specs)):
        if out.dtype != s.dtype:
            _fail(TypeError, f"while_loop: loop variable {i} is {s.dtype.name} before the "
                  f"loop but the body returns {out.dtype.name}", location)  # fmt: skip
        if not _compatible(out.shape, s.shape) or (s.shape is not None and out.shape is None):
            if out.shape is not None:
                _fail(ValueError, f"while_loop: loop variable {i} has shape "
                      f"{_fmt_shape(s.shape)} before the loop but shape {_fmt_shape(out.shape)} "
                      "after one iteration; pass shape_invariants to let it change",
                      location)  # fmt: skip
        if s.shape is not None and (
            out.shape is None or any(a is not None and b is None for a, b in zip(s.shape,
                                                                                out.shape))
        ):  # fmt: skip
            check.append(i)
    caps = _union(ct.captured, bt.captured)
    cond_prog = to_program(ct.graph, ct.outputs, ct.args + _cap_layout(ct, caps))
    history = bt.args if back_prop else []
    body_prog = to_program(bt.graph, bt.outputs + history, bt.args + _cap_layout(bt, caps))
    attrs = {
        "cond": cond_prog,
        "body": body_prog,
        "n_vars": n,
        "n_sliced": 0,
        "n_caps": len(caps),
        "var_specs": tuple((s.shape, s.dtype) for s in specs),
        "stacked": tuple((s.shape, s.dtype) for s in specs) if back_prop else (),
        "n_history": n if back_prop else 0,
        "check_vars": tuple(check),
        "reverse": False,
        "back_prop": bool(back_prop),
        "location": location,
    }
    op = apply_op("While", flat + caps, attrs, name="While")
    out = nest.pack_sequence_as(loop_vars, list(op.outputs[:n]))
    return _unwrap(out, loop_vars, same_structure)


def _compatible(a, b) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _merge_shapes(a, b):
    if a is None or b is None or len(a) != len(b):
        return None
    return tuple(x if x == y else None for x, y in zip(a, b))


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
              f"shape {_fmt_shape(pred.shape)}", location)  # fmt: skip
    graph = get_default_graph()
    with graph.name_scope(name or "cond"):
        tt = trace(true_fn, [], lambda phs: [], graph, "true")
        ft = trace(false_fn, [], lambda phs: [], graph, "false")
        if not nest.same_structure(tt.structure, ft.structure):
            _fail(ValueError, "cond: true_fn and false_fn must return the same structure: "
                  f"{nest.describe(tt.structure)} vs {nest.describe(ft.structure)}",
                  location)  # fmt: skip
        specs = []
        for i, (a, b) in enumerate(zip(tt.outputs, ft.outputs)):
            if a.dtype != b.dtype:
                _fail(TypeError, f"cond: output {i} is {a.dtype.name} in true_fn but "
                      f"{b.dtype.name} in false_fn", location)  # fmt: skip
            if a.shape is not None and b.shape is not None and len(a.shape) != len(b.shape):
                _fail(ValueError, f"cond: output {i} has shape {_fmt_shape(a.shape)} in "
                      f"true_fn but {_fmt_shape(b.shape)} in false_fn", location)  # fmt: skip
            specs.append((_merge_shapes(a.shape, b.shape), a.dtype))
        caps = _union(tt.captured, ft.captured)
        attrs = {
            "then": to_program(tt.graph, tt.outputs, _cap_layout(tt, caps)),
            "else": to_program(ft.graph, ft.outputs, _cap_layout(ft, caps)),
            "n_caps": len(caps),
            "out_specs": tuple(specs),
            "location": location,
        }
        op = apply_op("If", [pred] + caps, attrs, name="If")
    out = nest.pack_sequence_as(tt.structure, list(op.outputs))
    if not strict and isinstance(out, list | tuple) and len(out) == 1 \
            and not hasattr(out, "_fields"):  # fmt: skip
        return out[0]
    return out


def case(pred_fn_pairs, default=None, exclusive=False, strict=False, name="case"):
    """The function of the first true predicate, else ``default`` (TF1's ``tf.case``).

    ``pred_fn_pairs``: a list of ``(pred, fn)`` (or a dict). Without ``default`` the last
    pair's function is the default. ``exclusive=True`` fails the run with
    InvalidArgumentError when more than one predicate is true.
    """
    location = user_location()
    pairs = list(pred_fn_pairs.items()) if isinstance(pred_fn_pairs, dict) else list(pred_fn_pairs)
    if not pairs:
        _fail(ValueError, "case: pred_fn_pairs is empty", location)
    for p in pairs:
        if not isinstance(p, tuple | list) or len(p) != 2 or not callable(p[1]):
            _fail(TypeError, f"case: each entry must be a (pred, fn) pair, got {p!r}", location)
    if default is None:
        default = pairs.pop()[1]
    if not pairs:
        return _call_strict(default, strict)
    preds = [convert_to_tensor(p) for p, _ in pairs]
    graph = get_default_graph()
    with graph.name_scope(name):
        if exclusive and len(preds) > 1:
            preds = _exclusive(preds, location)

        def chain(i):
            if i == len(pairs):
                return default()
            return cond(preds[i], pairs[i][1], lambda: chain(i + 1), strict=True)

        out = chain(0)
    if not strict and isinstance(out, list | tuple) and len(out) == 1 \
            and not hasattr(out, "_fields"):  # fmt: skip
        return out[0]
    return out


def _call_strict(fn, strict):
    out = fn()
    if not strict and isinstance(out, list | tuple) and len(out) == 1:
        return out[0]
    return out


@register
class CaseExclusive(OpDef):
    """Identity on a vector of predicates that fails the run (InvalidArgumentError) when
    more than one of them is true: ``case(..., exclusive=True)``."""

    stateful = True  # a check: never removed while its output is used
    differentiable = False
    no_examples_reason = _NO_EXAMPLES

    def infer(self, specs, attrs):
        return [specs[0]]

    def ref_stateful(self, xs, attrs, ctx):
        preds = np.asarray(xs[0])
        if int(np.count_nonzero(preds)) > 1:
            raise InvalidArgumentError(
                f"case at {_where(attrs)}: {int(np.count_nonzero(preds))} predicates are true "
                "with exclusive=True (at most one may be)"
            )
        return preds


def _exclusive(preds, location):
    """The predicates, read through a run-time check that at most one of them is true."""
    checked = apply_op("CaseExclusive", [stack(preds)], {"location": location}).outputs[0]
    return unstack(checked)


_ = (Tensor, _op_has_effect)
