"""Control-flow ops ``While`` (loops, scans) and ``If`` (branches): definitions, the
low-level builders every public builder uses, and their gradients.

Bodies are traced once into sub-Programs (``func_graph.py``) held in the op's attributes;
outer tensors a body reads are explicit inputs of the op. The ops are *structured*: graph
passes treat each as one opaque, stateful node (never folded, merged or looked into), and
each backend runs the bodies itself through ``run_control`` (``control_runtime.py``) with
a ``call(attr, feeds)`` that runs one body: the reference interpreter recursively, the cpu
target a compiled executable (``graphc/backends/cpu/control.py``).

``While`` inputs: loop variables (``n_vars``), *sliced* inputs (``n_sliced``: iteration i
reads row i, or row T-1-i with ``reverse``), captured tensors (``n_caps``). Its ``body``
Program reads ``vars + rows + caps`` (Feed indexes in that order) and returns the new loop
variables, then one row of each *stacked* output. The op's outputs: the final loop
variables, then each stacked output with a leading axis of the trip count. The last
``n_history`` stacked outputs are the *history*: the loop variables at the start of each
iteration, then the body's *residuals* (products the gradient would otherwise re-compute,
``_residuals``), which the gradient needs (only with ``back_prop``; computed only when
read).
``cond`` reads ``vars + caps`` and returns a scalar bool; with a ``cond`` the body also
returns, last, the condition evaluated on its new variables, so an iteration is one body
call (``cond`` alone runs once, before the first). Without ``cond`` the loop runs once per
row of the sliced inputs.

``If`` inputs: the scalar bool predicate, then captured tensors; ``then``/``else`` read the
captured tensors and return the outputs.

Gradients: see ``graphc/control_grad.py`` (a reverse loop over the history; an ``If``
over the branches' gradients).
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..graph.core import TensorSpec, get_default_graph
from .control_runtime import fmt_shape, run_if, run_while
from .func_graph import import_program, program_has_effect, to_program, trace
from .registry import OpDef, ShapeError, apply_op, register

_NO_EXAMPLES = "control flow: its bodies are traced functions; tested in tests/control_flow"


#: gradient rules, installed by graphc/control_grad.py (it builds with gc.gradients, which
#: sits above the ops layer: the same pattern as Tensor's operators, installed by ops)
_GRADIENTS: dict = {}


def install_gradients(rules: dict) -> None:
    """Set the gradient rule of each control op type (``{"While": fn, "If": fn}``)."""
    _GRADIENTS.update(rules)


class ControlOp(OpDef):
    """Base of ops whose attributes hold sub-Programs that a backend runs via ``call``."""

    kind = "host"
    host_reason = (
        "control flow: the cpu target calls its compiled bodies from a host loop "
        "(backends/cpu/control.py)"
    )
    static_shape_reason = "a host op (kind 'host'): never lowered"

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

    repeats_body = True

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
        var_specs = [TensorSpec(sh, dt) for sh, dt in attrs["var_specs"]]
        stacked = [TensorSpec(sh, dt) for sh, dt in attrs["stacked"]]
        row_specs = [TensorSpec(None if s.shape is None else s.shape[1:], s.dtype)
                     for s in specs[n : n + k]]  # fmt: skip
        caps = list(specs[n + k :])
        cond = attrs["cond"]
        if cond is not None:
            check_io(cond, var_specs + caps, [TensorSpec((), _dt.bool_)], "cond")
        fused = [TensorSpec((), _dt.bool_)] if cond is not None else []
        check_io(attrs["body"], var_specs + row_specs + caps, var_specs + stacked + fused, "body")
        out = [(s.shape, s.dtype) for s in var_specs]
        for s in stacked:
            out.append((None if s.shape is None else (rows,) + tuple(s.shape), s.dtype))
        return out

    def run_control(
        self, xs, attrs, ctx, call, needed=None, history=True, alloc=None, rest=None
    ) -> list:
        """Run the loop; ``call(attr, feeds)`` runs the ``cond`` or ``body`` Program
        (``history=False``: the body of ``body_without_history``; ``alloc`` and ``rest``:
        see ``run_while``)."""
        return run_while(attrs, xs, call, needed, history, alloc, rest)

    def body_without_history(self, attrs, needed):
        """The body Program without its history outputs when ``needed`` (the op's output
        indexes someone reads) reads none of them, else None: a loop whose gradient is not
        computed then copies no loop variable per iteration."""
        nh = attrs["n_history"]
        n, total = attrs["n_vars"], len(attrs["stacked"])
        if not nh or any(n + j in needed for j in range(total - nh, total)):
            return None
        body = attrs["body"]
        keep = list(body.fetches[: n + total - nh])
        if attrs["cond"] is not None:
            keep.append(body.fetches[-1])
        return body.with_nodes(body.nodes, fetches=keep)

    def body_for_needed(self, attrs, body, needed):
        """``(body, dead)``: ``body`` (the op's body or a variant with the same leading
        fetches, as ``body_without_history`` gives) computing only what ``needed`` (the op's
        output indexes someone reads; None: all) uses, and the loop variables ``dead`` that
        now pass their input through. A stacked output nobody reads returns one of the
        body's inputs instead (no work: the runtime does not keep it). A loop variable is
        live when it is read after the loop, or when the body's computation of a live
        output (a live variable, a read stacked output, the condition) reads it, to a fixed
        point; a dead one returns its own input, so nothing computes it. DCE then drops
        what only unread outputs used: a loop gradient whose input's gradient nobody asked
        for does not compute it at every step (as TF's while_v2 prunes gradient outputs)."""
        if needed is None:
            return body, frozenset()
        n = attrs["n_vars"]
        fetches = list(body.fetches)
        end = len(fetches) - (1 if attrs["cond"] is not None else 0)
        feeds = {nd.attrs["index"]: (nd.id, 0) for nd in body.nodes
                 if nd.op_def.source == "feed"}  # fmt: skip
        if not feeds:
            return body, frozenset()
        stand_in = next(iter(feeds.values()))
        for pos in range(n, end):
            if pos not in needed:
                fetches[pos] = stand_in
        inputs = {nd.id: [src for src, _ in nd.inputs] for nd in body.nodes}
        feed_index = {ref[0]: i for i, ref in feeds.items()}
        live = {i for i in range(n) if i in needed}
        seen: set = set()
        stack = [tuple(r)[0] for r in fetches[n:]] + [tuple(fetches[i])[0] for i in live]
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            i = feed_index.get(nid)
            if i is not None and i < n and i not in live:
                live.add(i)
                stack.append(tuple(fetches[i])[0])
            stack.extend(inputs.get(nid, ()))
        dead = frozenset(i for i in range(n) if i not in live and i in feeds)
        for i in dead:
            fetches[i] = feeds[i]
        if fetches == list(body.fetches):
            return body, frozenset()
        return body.with_nodes(body.nodes, fetches=fetches), dead

    def vjp(self, op, grads):
        return _GRADIENTS["While"](op, grads)


@register
class If(ControlOp):
    """Runs ``then`` or ``else`` on the captured inputs, as the scalar bool input says."""

    program_attrs = ("then", "else")

    def infer(self, specs, attrs):
        if len(specs) != 1 + attrs["n_caps"]:
            raise ShapeError(f"If takes {1 + attrs['n_caps']} inputs, got {len(specs)}")
        outs = [TensorSpec(sh, dt) for sh, dt in attrs["out_specs"]]
        for key in ("then", "else"):
            check_io(attrs[key], list(specs[1:]), outs, key)
        return [(s.shape, s.dtype) for s in outs]

    def run_control(self, xs, attrs, ctx, call, needed=None, alloc=None) -> list:
        return run_if(attrs, xs, call)

    def vjp(self, op, grads):
        return _GRADIENTS["If"](op, grads)


def check_io(program, in_specs, out_specs, what) -> None:
    """ShapeError unless ``program`` reads inputs of ``in_specs`` (Feed indexes in range,
    same dtypes, compatible shapes) and returns ``out_specs`` (same count and dtypes, shapes
    compatible): a body and its op agree (checked again when an artifact is loaded)."""
    for node in program.nodes:
        if node.op != "Feed":
            continue
        i = node.attrs.get("index")
        if type(i) is not int or not 0 <= i < len(in_specs):
            raise ShapeError(f"the {what} program reads input {i!r} of {len(in_specs)}")
        s = node.outs[0]
        if s.dtype != in_specs[i].dtype or not compatible(s.shape, in_specs[i].shape):
            raise ShapeError(f"the {what} program reads input {i} as {s.dtype.name} "
                             f"{fmt_shape(s.shape)}, given {in_specs[i].dtype.name} "
                             f"{fmt_shape(in_specs[i].shape)}")  # fmt: skip
    if len(program.fetches) != len(out_specs):
        raise ShapeError(f"the {what} program returns {len(program.fetches)} values, "
                         f"expected {len(out_specs)}")  # fmt: skip
    for j, (ref, want) in enumerate(zip(program.fetches, out_specs)):
        got = program.spec(ref)
        if got.dtype != want.dtype or not compatible(got.shape, want.shape):
            raise ShapeError(f"the {what} program returns {got.dtype.name} "
                             f"{fmt_shape(got.shape)} as value {j}, expected "
                             f"{want.dtype.name} {fmt_shape(want.shape)}")  # fmt: skip


# -- low-level builders ------------------------------------------------------------------------


class LoopError(Exception):
    """A loop the builder refuses; the public builder re-raises it as ``kind`` with the
    user's line."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def compatible(a, b) -> bool:
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


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


def build_loop(body_fn, loop_vars, sliced=(), cond_fn=None, var_shapes=None, reverse=False,
               back_prop=True, location=("<unknown>", 0), what="loop"):  # fmt: skip
    """A ``While`` op; returns (final loop variables, stacked outputs), flat lists.

    ``body_fn(vars, rows) -> (new vars, per-iteration outputs to stack)`` and
    ``cond_fn(vars) -> scalar bool`` take and return flat lists of tensors. ``loop_vars``
    and ``sliced`` are tensors; ``var_shapes`` (one per loop variable) are the shape
    invariants. Raises LoopError for a body that does not keep its variables' dtypes and
    shapes. ``what`` names the loop in errors ("while_loop", "scan"...).
    """
    graph = get_default_graph()
    n = len(loop_vars)
    shapes = [t.shape for t in loop_vars] if var_shapes is None else list(var_shapes)
    specs = [TensorSpec(s, t.dtype) for s, t in zip(shapes, loop_vars)]
    row_specs = [TensorSpec(None if t.shape is None else t.shape[1:], t.dtype) for t in sliced]
    ct = None
    if cond_fn is not None:
        ct = trace(lambda *a: cond_fn(list(a)), specs, list, graph, "cond")
        c = ct.outputs[0] if len(ct.outputs) == 1 else None
        if c is None or c.dtype != _dt.bool_ or c.shape not in ((), None):
            got = "several values" if c is None else f"{c.dtype.name} of shape {fmt_shape(c.shape)}"
            raise LoopError(TypeError, f"{what}: cond must return a scalar bool tensor, got {got}")
    holder: dict = {}

    def body(*args):
        new, stacked = body_fn(list(args[:n]), list(args[n:]))
        holder["n_stacked"] = len(stacked)
        return list(new) + list(stacked)

    dtypes = [t.dtype for t in loop_vars]
    bt = trace(body, specs + row_specs, list, graph, "body", out_dtypes=dtypes)
    check = _check_body(bt.outputs[:n], specs, what)
    history = (list(bt.args[:n]) + _residuals(bt)) if back_prop else []
    stacked_outs = bt.outputs[n:]
    fetches = bt.outputs + history
    cond_prog = None
    if ct is not None:
        # The body also evaluates the condition on its new variables (its last output):
        # one body call per iteration, the cond Program alone only before the first.
        for c in ct.captured:
            bt.graph.capture(c)
        caps = _union(ct.captured, bt.captured)
        cond_prog = to_program(ct.graph, ct.outputs, ct.args + _cap_layout(ct, caps))
        with bt.graph.as_default(), bt.graph.control_dependencies(None):
            fetches += import_program(cond_prog, bt.outputs[:n] + _cap_layout(bt, caps),
                                      name="body/next_cond")  # fmt: skip
    caps = _union(ct.captured if ct else [], bt.captured)
    attrs = {
        "cond": cond_prog,
        "body": to_program(bt.graph, fetches, bt.args + _cap_layout(bt, caps)),
        "n_vars": n,
        "n_sliced": len(sliced),
        "n_caps": len(caps),
        "var_specs": tuple((s.shape, s.dtype) for s in specs),
        "stacked": tuple((t.shape, t.dtype) for t in stacked_outs + history),
        "n_history": len(history),
        "check_vars": tuple(check),
        "reverse": bool(reverse),
        "back_prop": bool(back_prop),
        "location": tuple(location),
    }  # fmt: skip
    op = apply_op("While", list(loop_vars) + list(sliced) + caps, attrs, name="While")
    s = holder["n_stacked"]
    return list(op.outputs[:n]), list(op.outputs[n : n + s])


def _residuals(traced) -> list:
    """The products a gradient would re-compute that the forward loop stores instead: the
    outputs of the body's ``MatMul`` ops that the body's results need and whose one operand
    varies per iteration (reads a loop variable or a row) while the other does not (a
    weight). Stacking one activation-sized row per iteration is cheap next to the product
    it saves; the gradient loop reads the stored row instead of running it again (see
    ``graphc/control_grad.py``). Products of two per-iteration operands are not stored (an
    outer product can be far larger than both)."""
    ops = traced.graph.get_operations()
    varying = {id(a.op) for a in traced.args}
    for op in ops:
        if id(op) not in varying and any(id(t.op) in varying for t in op.inputs):
            varying.add(id(op))
    needed: set = set()
    stack = [t.op for t in traced.outputs]
    while stack:
        op = stack.pop()
        if id(op) in needed:
            continue
        needed.add(id(op))
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    out = []
    for op in ops:
        if op.type != "MatMul" or id(op) not in needed or not op.outputs[0].dtype.is_floating:
            continue
        a, b = (id(t.op) in varying for t in op.inputs)
        if a != b:
            out.append(op.outputs[0])
    return out


def _check_body(outs, specs, what) -> list:
    """LoopError when the body changes a variable's dtype or static shape; the indexes of
    variables whose shape must be checked at run time (the body's is less known)."""
    check = []
    for i, (out, s) in enumerate(zip(outs, specs)):
        if out.dtype != s.dtype:
            raise LoopError(TypeError, f"{what}: loop variable {i} is {s.dtype.name} before "
                            f"the loop but the body returns {out.dtype.name}")  # fmt: skip
        if out.shape is not None and not compatible(out.shape, s.shape):
            raise LoopError(ValueError, f"{what}: loop variable {i} has shape "
                            f"{fmt_shape(s.shape)} before the loop but shape "
                            f"{fmt_shape(out.shape)} after one iteration; pass "
                            "shape_invariants to let it change")  # fmt: skip
        if s.shape is not None and (
            out.shape is None or any(a is not None and b is None for a, b in zip(s.shape,
                                                                                out.shape))
        ):  # fmt: skip
            check.append(i)
    return check


def build_if(pred, true_fn, false_fn, location=("<unknown>", 0)):
    """An ``If`` op over two functions of no argument returning flat lists of tensors with
    the same dtypes; returns (outputs, the true branch's traced result)."""
    graph = get_default_graph()
    tt = trace(true_fn, [], lambda phs: [], graph, "true")
    ft = trace(false_fn, [], lambda phs: [], graph, "false")
    specs = []
    for i, (a, b) in enumerate(zip(tt.outputs, ft.outputs)):
        if a.dtype != b.dtype:
            raise LoopError(TypeError, f"cond: output {i} is {a.dtype.name} in true_fn but "
                            f"{b.dtype.name} in false_fn")  # fmt: skip
        if a.shape is not None and b.shape is not None and len(a.shape) != len(b.shape):
            raise LoopError(ValueError, f"cond: output {i} has shape {fmt_shape(a.shape)} in "
                            f"true_fn but {fmt_shape(b.shape)} in false_fn")  # fmt: skip
        merged = None if a.shape is None or b.shape is None else tuple(
            x if x == y else None for x, y in zip(a.shape, b.shape))  # fmt: skip
        specs.append((merged, a.dtype))
    if len(tt.outputs) != len(ft.outputs):
        raise LoopError(ValueError, f"cond: true_fn returns {len(tt.outputs)} tensors but "
                        f"false_fn {len(ft.outputs)}")  # fmt: skip
    caps = _union(tt.captured, ft.captured)
    attrs = {
        "then": to_program(tt.graph, tt.outputs, _cap_layout(tt, caps)),
        "else": to_program(ft.graph, ft.outputs, _cap_layout(ft, caps)),
        "n_caps": len(caps),
        "out_specs": tuple(specs),
        "location": tuple(location),
    }
    op = apply_op("If", [pred] + caps, attrs, name="If")
    return list(op.outputs), tt, ft
