"""Gradient rules of the control-flow ops (``graphc/ops/control_flow.py``).

A loop's gradient is a loop running backwards over the history (the loop variables at the
start of each iteration, a stacked output of the forward ``While``): each step re-runs the
body forward from its stored variables, so only the loop variables are stored and not every
intermediate, and applies ``gc.gradients`` to it, carrying the gradients of the loop
variables and accumulating those of the captured tensors; the rows of sliced inputs (scan's
``elems``) get their gradients stacked. A branch's gradient is an ``If`` on the same
predicate over the gradients of the two branches. Both are ordinary control ops again, so
second order works where the body's ops have gradients.

Bodies with side effects or random draws are refused (UnimplementedError): re-running them
in the backward pass would repeat the effect or draw other numbers.

This module sits above ``graphc/autodiff.py`` (it builds with ``gradients``) and installs
its rules into the ops when ``graphc`` is imported.
"""

from __future__ import annotations

from .autodiff import gradients
from .errors import UnimplementedError
from .ops.constant import zeros_like
from .ops.control_flow import ControlOp, build_if, build_loop, install_gradients
from .ops.control_runtime import where
from .ops.func_graph import enclosing_capture, import_program

#: stateful ops a gradient may run again while re-running a body forward (checks pass or
#: fail again on the same values; a gc.print in the body prints again, in reverse order)
_REPLAYABLE = frozenset({"Feed", "VariableV2", "ReadVariable", "IsVariableInitialized",
                         "CheckNumerics", "Assert", "Print"})  # fmt: skip


def _float(t) -> bool:
    return t.dtype.is_floating


def _check_replayable(program, attrs, what):
    """UnimplementedError when re-running ``program`` forward in the gradient would repeat
    a side effect or draw different random numbers."""
    for n in program.nodes:
        if n.op_def.stateful and n.op not in _REPLAYABLE:
            if isinstance(n.op_def, ControlOp) and not n.op_def.has_effect(n.attrs):
                continue
            raise UnimplementedError(
                f"gradient of the {what} built at {where(attrs)}: its body runs {n.op} "
                f"'{n.name}' (state or randomness), which the gradient would run again"
            )


def _zeros_for(g, like):
    return g if g is not None else zeros_like(like)


def _while_vjp(op, grads):
    """Reverse loop over the history (see the module doc string)."""
    attrs = op.attrs
    n, k, m = attrs["n_vars"], attrs["n_sliced"], attrs["n_caps"]
    if not attrs["back_prop"]:
        return [None] * len(op.inputs)
    body = attrs["body"]
    _check_replayable(body, attrs, "loop")
    nh = attrs["n_history"]
    s_all = len(attrs["stacked"])
    sy = s_all - nh
    vars_in, rows, caps = op.inputs[:n], op.inputs[n : n + k], op.inputs[n + k :]
    history = op.outputs[n + sy : n + s_all]
    fv = [i for i in range(n) if _float(vars_in[i])]
    fr = [r for r in range(k) if _float(rows[r])]
    fc = [j for j in range(m) if _float(caps[j])]
    fy = [j for j in range(sy) if grads[n + j] is not None and _float(op.outputs[n + j])]
    fh = [i for i in fv if grads[n + sy + i] is not None]
    g_final = [_zeros_for(grads[i], op.outputs[i]) for i in fv]
    g_ys = [grads[n + j] for j in fy]
    g_hist = [grads[n + sy + i] for i in fh]
    var_shapes = [attrs["var_specs"][i][0] for i in fv]
    acc0 = [zeros_like(caps[j]) for j in fc]

    def bwd_body(loop, rows_in):
        gv, acc = loop[: len(fv)], loop[len(fv) :]
        h_row, x_row = rows_in[:n], rows_in[n : n + k]
        gy_row = rows_in[n + k : n + k + len(fy)]
        gh_row = rows_in[n + k + len(fy) :]
        capture = enclosing_capture()
        inner_caps = [capture(c) for c in caps]
        outs = import_program(body, list(h_row) + list(x_row) + inner_caps, name="forward")
        ys = [outs[i] for i in fv] + [outs[n + j] for j in fy]
        seeds = list(gv) + list(gy_row)
        wrt = [h_row[i] for i in fv] + [x_row[r] for r in fr] + [inner_caps[j] for j in fc]
        gs = gradients(ys, wrt, grad_ys=seeds) if ys else [None] * len(wrt)
        gs = [_zeros_for(g, w) for g, w in zip(gs, wrt)]
        d_vars = gs[: len(fv)]
        for pos, i in enumerate(fh):  # a read of the history at this step adds its gradient
            d_vars[fv.index(i)] = d_vars[fv.index(i)] + gh_row[pos]
        d_rows = gs[len(fv) : len(fv) + len(fr)]
        d_caps = gs[len(fv) + len(fr) :]
        return list(d_vars) + [a + d for a, d in zip(acc, d_caps)], list(d_rows)

    final, stacked = build_loop(
        bwd_body, g_final + acc0, list(history) + list(rows) + g_ys + g_hist,
        var_shapes=var_shapes + [c.shape for c in (caps[j] for j in fc)],
        reverse=not attrs["reverse"], back_prop=True, location=attrs["location"],
        what="gradient loop",
    )  # fmt: skip
    out = [None] * len(op.inputs)
    for pos, i in enumerate(fv):
        out[i] = final[pos]
    for pos, r in enumerate(fr):
        out[n + r] = stacked[pos]
    for pos, j in enumerate(fc):
        out[n + k + j] = final[len(fv) + pos]
    return out


def _if_vjp(op, grads):
    """An ``If`` on the same predicate over the gradients of the two branches."""
    attrs = op.attrs
    caps = op.inputs[1:]
    fc = [j for j, c in enumerate(caps) if _float(c)]
    fo = [i for i, g in enumerate(grads) if g is not None and _float(op.outputs[i])]
    if not fc or not fo:
        return [None] * len(op.inputs)

    def branch_grad(program):
        def fn():
            capture = enclosing_capture()
            inner = [capture(c) for c in caps]
            outs = import_program(program, inner, name="forward")
            wrt = [inner[j] for j in fc]
            gs = gradients([outs[i] for i in fo], wrt, grad_ys=[grads[i] for i in fo])
            return [_zeros_for(g, w) for g, w in zip(gs, wrt)]

        return fn

    for key in ("then", "else"):
        _check_replayable(attrs[key], attrs, "cond")
    outs, _, _ = build_if(op.inputs[0], branch_grad(attrs["then"]), branch_grad(attrs["else"]),
                          attrs["location"])  # fmt: skip
    result = [None] * len(op.inputs)
    for pos, j in enumerate(fc):
        result[1 + j] = outs[pos]
    return result


install_gradients({"While": _while_vjp, "If": _if_vjp})
