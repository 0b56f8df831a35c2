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


def sliced_trips(attrs, rows):
    """The trip count the sliced inputs ``rows`` (arrays of any backend) give: their common
    first dim, or None without one; InvalidArgumentError for a scalar or ragged lengths."""
    trips = None
    for r in rows:
        if len(r.shape) == 0:
            raise InvalidArgumentError(f"While at {where(attrs)}: a sliced input is a scalar")
        if trips is not None and r.shape[0] != trips:
            raise InvalidArgumentError(
                f"scan/map_fn at {where(attrs)}: the inputs sliced along their first axis "
                f"have different lengths ({trips} and {r.shape[0]})"
            )
        trips = r.shape[0]
    return trips


def kept_stacks(attrs, needed, history=True) -> list:
    """Which stacked outputs a loop keeps: those ``needed`` (None: all), and its history
    rows only with ``history``."""
    n, stacked = attrs["n_vars"], attrs["stacked"]
    keep = [needed is None or (n + j) in needed for j in range(len(stacked))]
    if not history:
        keep[len(stacked) - attrs["n_history"] :] = [False] * attrs["n_history"]
    return keep


def run_while(attrs, xs, call, needed=None, history=True, alloc=None, rest=None) -> list:
    """The ``While`` op (see ``control_flow.py``): outputs are the final loop variables,
    then each stacked output. ``needed``: the output indexes someone reads (None: all);
    a stacked output nobody reads is not kept (a zero-byte stand-in is returned).
    ``history=False``: ``call("body", ...)`` runs a body without the history outputs
    (``body_without_history``), which nobody reads. ``alloc(j, shape, dtype)``: the array
    stacked output j is written into (default: a new one); a backend may hand back an
    array of an earlier run that nobody holds any more, whose pages are already mapped.
    ``call(attr, feeds, iteration[, into])``: ``into`` ({output index: array}) is where a
    backend may write those outputs of the body (rows of the stacked outputs) and return
    those very arrays; anything else it returns is copied there.
    ``rest(vars_, rows, caps, stacks, trips, reverse)``: a backend's way to run iterations
    1 .. trips - 1 of a loop whose trip count is known, after the first one ran here (the
    stacked arrays exist then): it fills the rows of ``stacks`` (arrays, or None where not
    kept) as the body would and returns the final loop variables, or returns None to let
    this loop go on (cpu: ``backends/cpu/native_loop.py``)."""
    n, k = attrs["n_vars"], attrs["n_sliced"]
    vars_ = [np.asarray(x) for x in xs[:n]]
    rows = [np.asarray(x) for x in xs[n : n + k]]
    caps = list(xs[n + k :])
    trips = sliced_trips(attrs, rows)
    stacked = attrs["stacked"]
    keep = kept_stacks(attrs, needed, history)
    stacks: list = [[] if kj else None for kj in keep]
    has_cond = attrs["cond"] is not None
    # the trip count is known (no cond): after the first iteration each stacked output gets
    # its array, and every later row goes straight into it (``call``'s ``into``: a backend
    # may write the output there; else it is copied while still in cache)
    rows_at = _RowsAt(trips, stacked, attrs, alloc) if not has_cond and trips else None
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
            feeds = vars_ + [r[at] for r in rows] + caps
        else:
            at, feeds = i, vars_ + caps
        if rows_at is not None and i:
            outs = call("body", feeds, i, rows_at.into(stacks, n, at))
        else:
            outs = call("body", feeds, i)
        if has_cond:
            c = outs[-1]  # the condition on the new variables (see control_flow.py)
        vars_ = outs[:n]
        if rows_at is not None:
            rows_at.put(stacks, outs, n, at, i)
        else:
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
        if i == 1 and rest is not None and rows_at is not None and trips > 1:
            done = rest(vars_, rows, caps, stacks, trips, reverse)
            if done is not None:
                vars_, i = list(done), trips
    results = list(vars_)
    for j, st in enumerate(stacks):
        row_shape, dtype = stacked[j]
        if isinstance(st, np.ndarray):  # filled row by row (_RowsAt)
            results.append(st)
        elif st is None or not st:  # unread (a zero-byte stand-in) or no iteration
            shape = (i,) + tuple(0 if d is None else d for d in (row_shape or ()))
            results.append(np.broadcast_to(np.zeros((), _dt.as_dtype(dtype).np), shape))
        else:
            if reverse:
                st.reverse()
            results.append(_stack(st, attrs, alloc, j))
    return results


class _RowsAt:
    """Stacked outputs of a loop whose trip count is known, filled as the rows come: the
    first iteration's rows give each array its shape (``alloc(j, shape, dtype)``, as
    ``_stack``); each later row is written into its place by the body (``into``) or copied
    there at once."""

    def __init__(self, trips, stacked, attrs, alloc):
        self.trips, self.attrs, self.alloc = trips, attrs, alloc
        self.first: dict = {}  # stacked index -> shape of the first row
        self.rows: dict = {}  # the last ``into``

    def into(self, stacks, n, at) -> dict:
        """{body output index: the row of the stacked array it may be written into}."""
        self.rows = {n + j: st[at] for j, st in enumerate(stacks) if isinstance(st, np.ndarray)}
        return self.rows

    def put(self, stacks, outs, n, at, i) -> None:
        for j, st in enumerate(stacks):
            if st is None:
                continue
            row = outs[n + j]
            if i == 0:
                row = np.asarray(row)
                self.first[j] = row.shape
                shape = (self.trips,) + row.shape
                a = (
                    np.empty(shape, row.dtype)
                    if self.alloc is None
                    else self.alloc(j, shape, row.dtype)
                )
                a[at] = row
                stacks[j] = a
                continue
            if np.shape(row) != self.first[j]:
                raise InvalidArgumentError(
                    f"loop at {where(self.attrs)}: per-iteration values to stack have "
                    f"different shapes ({self.first[j]} and {np.shape(row)}): a loop variable "
                    "whose shape changes across iterations cannot be stacked (nor "
                    "differentiated)"
                )
            dest = self.rows.get(n + j)
            if row is not dest:  # the body did not write it in place
                st[at] = row


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
