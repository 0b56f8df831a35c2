"""The run-time meaning of the control-flow ops, shared by every backend.

Given the op's input arrays and ``call(attr, feeds)``, which runs one body Program (the
reference interpreter recursively, the cpu target a compiled executable), these functions
run the loop or the branch in numpy. Nothing here compiles: a backend binds ``call`` once
and the loop only calls it, so the trip count is decided at run time with no compilation
per iteration. The stacked outputs keep the per-iteration rows in a list (no copy: each
row is the body's fresh output) and stack them once at the end.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..errors import InvalidArgumentError


def where(attrs) -> str:
    """``file:line`` of the user code that built the op."""
    loc = attrs.get("location", ("<unknown>", 0))
    return f"{loc[0]}:{loc[1]}"


def fmt_shape(shape) -> str:
    return "<unknown>" if shape is None else str(tuple(shape))


def _shape_fits(shape, spec_shape) -> bool:
    """Whether a run-time ``shape`` fits a static shape with None dims."""
    if spec_shape is None:
        return True
    return len(shape) == len(spec_shape) and all(
        d is None or d == s for d, s in zip(spec_shape, shape)
    )


def run_while(attrs, xs, call, needed=None, history=True, alloc=None) -> list:
    """The ``While`` op (see ``control_flow.py``): outputs are the final loop variables,
    then each stacked output. ``needed``: the output indexes someone reads (None: all);
    a stacked output nobody reads is not kept (a zero-byte stand-in is returned).
    ``history=False``: ``call("body", ...)`` runs a body without the history outputs
    (``body_without_history``), which nobody reads. ``alloc(j, shape, dtype)``: the array
    stacked output j is written into (default: a new one); a backend may hand back an
    array of an earlier run that nobody holds any more, whose pages are already mapped."""
    n, k = attrs["n_vars"], attrs["n_sliced"]
    vars_ = [np.asarray(x) for x in xs[:n]]
    rows = [np.asarray(x) for x in xs[n : n + k]]
    caps = list(xs[n + k :])
    trips = None
    for r in rows:
        if r.ndim == 0:
            raise InvalidArgumentError(f"While at {where(attrs)}: a sliced input is a scalar")
        if trips is not None and r.shape[0] != trips:
            raise InvalidArgumentError(
                f"scan/map_fn at {where(attrs)}: the inputs sliced along their first axis "
                f"have different lengths ({trips} and {r.shape[0]})"
            )
        trips = r.shape[0]
    stacked = attrs["stacked"]
    keep = [needed is None or (n + j) in needed for j in range(len(stacked))]
    if not history:
        keep[len(stacked) - attrs["n_history"] :] = [False] * attrs["n_history"]
    stacks: list = [[] if kj else None for kj in keep]
    has_cond = attrs["cond"] is not None
    reverse = attrs.get("reverse", False)
    check = [(j, attrs["var_specs"][j][0]) for j in attrs.get("check_vars", ())]
    i = 0
    # the first condition draws its random numbers (if any) as "iteration -1": the later
    # ones are evaluated inside the body of the iteration before them
    c = call("cond", vars_ + caps, -1)[0] if has_cond else None
    while True:
        if has_cond:
            if np.shape(c) != ():
                raise InvalidArgumentError(
                    f"while_loop at {where(attrs)}: cond returned shape {np.shape(c)}, "
                    "not a scalar bool"
                )
            if not c:
                break
            if trips is not None and i >= trips:
                raise InvalidArgumentError(
                    f"While at {where(attrs)}: iteration {i} reads past the {trips} rows "
                    "of its sliced inputs"
                )
        elif i >= trips:
            break
        if k:
            at = trips - 1 - i if reverse else i
            outs = call("body", vars_ + [r[at] for r in rows] + caps, i)
        else:
            outs = call("body", vars_ + caps, i)
        if has_cond:
            c = outs[-1]  # the condition on the new variables (see control_flow.py)
        vars_ = outs[:n]
        for j, st in enumerate(stacks):
            if st is not None:
                st.append(outs[n + j])
        for j, spec_shape in check:
            if not _shape_fits(np.shape(vars_[j]), spec_shape):
                raise InvalidArgumentError(
                    f"while_loop at {where(attrs)}: loop variable {j} has shape "
                    f"{np.shape(vars_[j])} after iteration {i}, which does not fit its "
                    f"shape {fmt_shape(spec_shape)} (pass shape_invariants to let it change)"
                )
        i += 1
    results = list(vars_)
    for j, st in enumerate(stacks):
        row_shape, dtype = stacked[j]
        if st is None or not st:  # unread (a zero-byte stand-in) or no iteration
            shape = (i,) + tuple(0 if d is None else d for d in (row_shape or ()))
            results.append(np.broadcast_to(np.zeros((), _dt.as_dtype(dtype).np), shape))
        else:
            if reverse:
                st.reverse()
            results.append(_stack(st, attrs, alloc, j))
    return results


def _stack(rows, attrs, alloc=None, j=0) -> np.ndarray:
    """The rows stacked along a new first axis. Each row is released as soon as it is
    copied, so the pages of the result replace those of the rows as it fills (about one
    copy of the history resident at a time, not two)."""
    first = np.shape(rows[0])
    dtype = np.asarray(rows[0]).dtype
    for r in rows:
        if np.shape(r) != first:
            raise InvalidArgumentError(
                f"loop at {where(attrs)}: per-iteration values to stack have different shapes "
                f"({first} and {np.shape(r)}): a loop variable whose shape changes across "
                "iterations cannot be stacked (nor differentiated)"
            )
    shape = (len(rows),) + first
    out = np.empty(shape, dtype) if alloc is None else alloc(j, shape, dtype)
    for i in range(len(rows)):
        out[i] = rows[i]
        rows[i] = None
    return out


def run_if(attrs, xs, call) -> list:
    """The ``If`` op: ``then`` or ``else`` on the captured inputs."""
    pred = np.asarray(xs[0])
    if pred.shape != ():
        raise InvalidArgumentError(
            f"cond at {where(attrs)}: pred has shape {pred.shape}, not a scalar"
        )
    return list(call("then" if bool(pred) else "else", list(xs[1:])))
