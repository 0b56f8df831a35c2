"""Gradient rules of the control-flow ops (``graphc/ops/control_flow.py``).

A loop's gradient is a loop running backwards over the history (the loop variables at the
start of each iteration and the body's stored products, stacked outputs of the forward
``While``): each step replays the body forward from its stored variables, reading the
stored products instead of computing them again (only the cheap elementwise work is
redone), and applies ``gc.gradients`` to it, carrying the gradients of the loop variables
and accumulating those of the captured tensors; the rows of sliced inputs (scan's
``elems``) get their gradients stacked. A weight read once as ``x_t @ w`` gets its gradient
``sum_t x_t^T g_t`` as one large product after the loop over the stacked factors. A
branch's gradient is an ``If`` on the same predicate over the gradients of the two
branches. Both are ordinary control ops again, so second order works where the body's ops
have gradients.

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
from .ops.linalg import matmul
from .ops.reduce import reduce_sum
from .ops.shape import reshape, reshape_like


def _float(t) -> bool:
    return t.dtype.is_floating


def _check_replayable(program, attrs, what):
    """UnimplementedError when re-running ``program`` forward in the gradient would repeat
    a side effect or draw different random numbers."""
    for n in program.nodes:
        # (OpDef.replayable: checks pass or fail again on the same values; a gc.print in
        # the body prints again, in reverse order)
        if n.op_def.stateful and not n.op_def.replayable:
            if isinstance(n.op_def, ControlOp) and not n.op_def.has_effect(n.attrs):
                continue
            raise UnimplementedError(
                f"gradient of the {what} built at {where(attrs)}: its body runs {n.op} "
                f"'{n.name}' (state or randomness), which the gradient would run again"
            )


def _zeros_for(g, like):
    return g if g is not None else zeros_like(like)


def _rank2(*tensors) -> bool:
    return all(t.shape is not None and len(t.shape) == 2 and t.shape[1] is not None
               for t in tensors)  # fmt: skip


def _weight_caps(body, first_cap, candidates) -> set:
    """The captured tensors (indexes among the captures) whose gradient over the loop is
    a sum over steps of one product ``a_t^T @ g_t``: the body reads the tensor once, as
    ``b`` of a rank-2 ``a @ b`` (a weight). The gradient loop stacks the factors ``a_t``
    and ``g_t`` instead of adding a weight-sized product into a loop variable at every
    step, and one large product after the loop sums them all (far faster than many small
    ones, and no weight-sized addition per step)."""
    uses: dict = {}
    feed_of = {}
    for node in body.nodes:
        if node.op_def.source == "feed":
            feed_of[node.id] = node.attrs["index"] - first_cap
        for pos, (src, _) in enumerate(node.inputs):
            uses.setdefault(src, []).append((node, pos))
    for src, _ in body.fetches:
        uses.setdefault(src, []).append((None, -1))
    out = set()
    for fid, j in feed_of.items():
        if j not in candidates or len(uses.get(fid, ())) != 1:
            continue
        node, pos = uses[fid][0]
        if node is None or not node.op_def.matrix_product or pos != 1 or node.attrs["transpose_a"] \
                or node.attrs["transpose_b"]:  # fmt: skip
            continue
        a = body.spec(node.inputs[0])
        w = body.spec(node.inputs[1])
        if all(s.shape is not None and len(s.shape) == 2 and s.shape[1] is not None
               for s in (a, w, node.outs[0])):  # fmt: skip
            out.add(j)
    return out


def _read_stored(recomputed, stored) -> None:
    """Make every op of the gradient body that reads a re-computed residual read the row
    the forward loop stored instead (the same value), so nothing reads the re-computed
    product and it is pruned from the body: the gradient does not run the forward's
    products again. The products' gradient ops read only their operands, so rerouting
    after ``gradients`` leaves every derivative as it was."""
    if not recomputed:
        return
    swap = {id(r): s for r, s in zip(recomputed, stored)}
    graph = recomputed[0].graph
    for o in graph.get_operations():
        if any(id(t) in swap for t in o.inputs):
            o._inputs = tuple(swap.get(id(t), t) for t in o.inputs)


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
    nr = nh - n  # stored residuals after the loop variables' history (0 without any)
    fv = [i for i in range(n) if _float(vars_in[i])]
    fr = [r for r in range(k) if _float(rows[r])]
    fc = [j for j in range(m) if _float(caps[j])]
    fy = [j for j in range(sy) if grads[n + j] is not None and _float(op.outputs[n + j])]
    fh = [i for i in fv if grads[n + sy + i] is not None]
    fres = [j for j in range(nr) if grads[n + sy + n + j] is not None]
    g_final = [_zeros_for(grads[i], op.outputs[i]) for i in fv]
    g_ys = [grads[n + j] for j in fy]
    g_hist = [grads[n + sy + i] for i in fh] + [grads[n + sy + n + j] for j in fres]
    var_shapes = [attrs["var_specs"][i][0] for i in fv]
    hoist = _weight_caps(body, n + k, [j for j in fc if caps[j].shape is not None])
    fa = [j for j in fc if j not in hoist]  # accumulated in a loop variable
    fp = [j for j in fc if j in hoist]  # a product of stacked factors after the loop
    acc0 = [zeros_like(caps[j]) for j in fa]
    how: dict = {}

    def bwd_body(loop, rows_in):
        gv, acc = loop[: len(fv)], loop[len(fv) :]
        h_row, stored = rows_in[:n], rows_in[n:nh]
        x_row = rows_in[nh : nh + k]
        gy_row = rows_in[nh + k : nh + k + len(fy)]
        gh_row = rows_in[nh + k + len(fy) : nh + k + len(fy) + len(fh)]
        gr_row = rows_in[nh + k + len(fy) + len(fh) :]
        capture = enclosing_capture()
        inner_caps = [capture(c) for c in caps]
        outs = import_program(body, list(h_row) + list(x_row) + inner_caps, name="forward")
        recomputed = outs[n + sy + n : n + s_all]
        ys = [outs[i] for i in fv] + [outs[n + j] for j in fy] + [recomputed[j] for j in fres]
        seeds = list(gv) + list(gy_row) + list(gr_row)
        wrt = [h_row[i] for i in fv] + [x_row[r] for r in fr] + [inner_caps[j] for j in fc]
        gs = gradients(ys, wrt, grad_ys=seeds) if ys else [None] * len(wrt)
        _read_stored(recomputed, stored)
        gs = [_zeros_for(g, w) for g, w in zip(gs, wrt)]
        d_vars = gs[: len(fv)]
        for pos, i in enumerate(fh):  # a read of the history at this step adds its gradient
            d_vars[fv.index(i)] = d_vars[fv.index(i)] + gh_row[pos]
        d_rows = gs[len(fv) : len(fv) + len(fr)]
        d_caps = dict(zip(fc, gs[len(fv) + len(fr) :]))
        factors = []
        for j in fp:
            d = d_caps[j]
            if d.op.op_def.matrix_product and d.op.attrs["transpose_a"] and \
                    not d.op.attrs["transpose_b"] and _rank2(*d.op.inputs):  # fmt: skip
                how[j] = "product"
                factors += list(d.op.inputs)
            else:  # not the expected a^T @ g: stack the step's gradient, summed after
                how[j] = "sum"
                factors.append(d)
        new_acc = [a + d_caps[j] for a, j in zip(acc, fa)]
        return list(d_vars) + new_acc, list(d_rows) + factors

    final, stacked = build_loop(
        bwd_body, g_final + acc0, list(history) + list(rows) + g_ys + g_hist,
        var_shapes=var_shapes + [caps[j].shape for j in fa],
        reverse=not attrs["reverse"], back_prop=True, location=attrs["location"],
        what="gradient loop",
    )  # fmt: skip
    out = [None] * len(op.inputs)
    for pos, i in enumerate(fv):
        out[i] = final[pos]
    for pos, r in enumerate(fr):
        # the stacked rows have the sliced input's shape (also for no step, where the
        # loop cannot know it); saying so lets the compiler see that gradient ops after
        # the loop need no run-time broadcast reduction
        out[n + r] = reshape_like(stacked[pos], rows[r])
    for pos, j in enumerate(fa):
        out[n + k + j] = final[len(fv) + pos]
    at = len(fr)
    for j in fp:  # sum over steps t of a_t^T g_t = (rows of every a_t)^T (rows of every g_t)
        if how[j] == "product":
            a, g = stacked[at], stacked[at + 1]
            at += 2
            out[n + k + j] = matmul(reshape(a, (-1, a.shape[-1])), reshape(g, (-1, g.shape[-1])),
                                    transpose_a=True)  # fmt: skip
        else:
            out[n + k + j] = reduce_sum(stacked[at], axis=0)
            at += 1
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
