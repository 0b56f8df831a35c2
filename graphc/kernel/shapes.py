"""Symbolic shapes: every tensor's shape as int64 expressions over runtime Dims.

Sizes of ``None`` dims of feeds become ``Dim`` symbols; every other size is derived from
them by per-op rules (broadcast, reshape with -1, reductions...), so a new batch size runs
the same compiled code. Static dims of the Program's specs are trusted (Consts). Rules
also return run-time shape checks (bool expressions over Dims) for what inference could not
prove at build time (two dynamic dims that must broadcast, a reshape's element count).
"""

from __future__ import annotations

from .. import dtypes as _dt
from ..errors import UnimplementedError
from ..expr import Const, Dim, Math, i64
from ..ops.registry import REGISTRY, get_op_def
from ..program import Program
from . import sym

#: op type -> fn(node, in_shapes, checks) -> shape tuple (list of int64 Exprs)
SHAPE_RULES: dict = {}


def located(n) -> str:
    """How an error names node ``n``: its op, name and the user's line that built it (a
    string is taken as the name already made)."""
    if isinstance(n, str):
        return n
    where = getattr(n, "location", None)
    at = f" (built at {where[0]}:{where[1]})" if where and where[1] else ""
    return f"{n.op} '{n.name}'{at}"


def with_location(n, message: str) -> str:
    """``message`` of node ``n`` with the user's line after its leading ``Op 'name'`` (any
    op word: a gradient op may speak for its forward op); unchanged when it has one."""
    head = f" '{n.name}'"
    where = getattr(n, "location", None)
    if not where or not where[1] or "(built at " in message:
        return message
    word = message.split(" ", 1)[0]
    if not message.startswith(word + head):
        return message
    cut = len(word) + len(head)
    return f"{message[:cut]} (built at {where[0]}:{where[1]}){message[cut:]}"


def require(checks: list, n, cond, what: str, *sizes) -> None:
    """Add the run-time shape contract ``cond`` (a bool Expr over Dims) of node ``n``.

    ``what`` says what must hold; its ``{0}``, ``{1}``... fields are filled with the run's
    values of ``sizes`` (int64 Exprs) when the check fails, so the error names the op, the
    user's line and the sizes that disagree. Statically true conditions are dropped; a
    statically false one fails every run (as the reference does).
    """
    if isinstance(cond, Const) and cond.value:
        return
    checks.append((cond, f"{located(n)}: {what}", tuple(sym.as_expr(x) for x in sizes)))


def require_eq(checks: list, n, a, b, what: str) -> None:
    """Contract ``a == b`` (two sizes); ``what`` names them, the sizes are appended."""
    if sym.const_value(a) is not None and sym.const_value(b) is not None and a == b:
        return
    require(checks, n, sym.eq(a, b), what + " ({0} vs {1})", a, b)


def rule(*types):
    def deco(fn):
        for t in types:
            SHAPE_RULES[t] = fn
        return fn

    return deco


class SymShapes:
    """Symbolic shapes of a Program's tensors, its Dims and the shape checks they need."""

    def __init__(self, program: Program):
        self.program = program
        self.shapes: dict = {}  # (node id, k) -> tuple[Expr]
        self.dims: dict = {}  # dim name -> (feed index, axis)
        self.checks: list = []  # (bool Expr, message[, sizes the message names])
        for n in program.nodes:
            self._node(n)

    def __getitem__(self, ref) -> tuple:
        return self.shapes[tuple(ref)]

    def _node(self, n):
        if n.op_def.source == "feed":
            shape = []
            # a loop body's inputs may name shared dims (graphc/backends/cpu/body_dims.py):
            # one Dim, read from the first feed that has it; the runtime checks every other
            # feed against the sizes it implies
            shared = n.attrs.get("dim_names") or ()
            for axis, d in enumerate(n.attrs["shape"] or ()):
                if d is None:
                    name = shared[axis] if axis < len(shared) and shared[axis] else None
                    name = name or f"d{n.attrs['index']}_{axis}"
                    self.dims.setdefault(name, (n.attrs["index"], axis))
                    shape.append(Dim(name))
                else:
                    shape.append(i64(d))
            if n.outs[0].shape is None:
                raise UnimplementedError(
                    f"feed {n.attrs.get('tensor', n.name)} has unknown rank: compiled targets "
                    "need the rank of every fed tensor"
                )
            self.shapes[(n.id, 0)] = tuple(shape)
            return
        static = [s.shape for s in n.outs]
        ins = [self.shapes[tuple(r)] for r in n.inputs]
        if all(s is not None and None not in s for s in static):
            for k, s in enumerate(static):
                self.shapes[(n.id, k)] = tuple(i64(d) for d in s)
            dynamic_in = any(sym.const_value(d) is None for s in ins for d in s)
            fn = SHAPE_RULES.get(n.op) or (_broadcast if _is_elementwise(n) else None)
            if dynamic_in and fn is not None:
                # its run-time checks, and that the sizes it derives are the static ones
                mark = len(self.checks)
                out = fn(n, ins, self.checks)
                self._locate(n, mark)
                self._agree(n, out if isinstance(out, list) else [out], static)
            return
        fn = SHAPE_RULES.get(n.op)
        if fn is None:
            if getattr(get_op_def(n.op), "elementwise", False):
                fn = _broadcast
            else:
                raise UnimplementedError(
                    f"{n.op} '{n.name}': no symbolic shape rule for unknown dims {static}"
                )
        mark = len(self.checks)
        out = fn(n, ins, self.checks)
        self._locate(n, mark)
        outs = out if isinstance(out, list) else [out]
        self._agree(n, outs, static)
        for k, s in enumerate(outs):
            spec = static[k]
            if spec is not None:
                s = tuple(s[i] if d is None else i64(d) for i, d in enumerate(spec))
            self.shapes[(n.id, k)] = tuple(s)

    def _locate(self, n, mark: int) -> None:
        """Checks a rule added as plain ``"Op 'name': ..."`` also name the user's line."""
        for j in range(mark, len(self.checks)):
            c = self.checks[j]
            self.checks[j] = (c[0], with_location(n, c[1]), *c[2:])

    def _agree(self, n, derived, static):
        """Contract: a size the rule derives from run-time dims equals the static size that
        build-time inference gave the output (the graph promised it; later ops rely on it)."""
        for k, (got, spec) in enumerate(zip(derived, static)):
            if spec is None or got is None or len(got) != len(spec):
                continue
            for axis, (g, d) in enumerate(zip(got, spec)):
                if d is not None and sym.const_value(g) is None:
                    require_eq(
                        self.checks, n, g, i64(d),
                        f"output {k} dimension {axis} differs from its static size",
                    )  # fmt: skip


def _is_elementwise(n) -> bool:
    return getattr(REGISTRY.get(n.op), "elementwise", False)


def broadcast(shapes, checks, n, what="the inputs") -> tuple:
    """numpy broadcast of symbolic shapes; adds run-time checks (of node ``n``) where dims
    are dynamic."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        d = dims[0]
        for e in dims[1:]:
            if (
                d != e
                and sym.const_value(d) != 1
                and sym.const_value(e) != 1
                and not (sym.const_value(d) is not None and sym.const_value(e) is not None)
            ):
                ok = sym.logical_or(sym.eq(d, e), sym.logical_or(sym.eq(d, 1), sym.eq(e, 1)))
                require(checks, n, ok, f"{what} do not broadcast: sizes {{0}} and {{1}} "
                        f"(dimension {i - rank} from the last)", d, e)  # fmt: skip
            d = sym.broadcast_dim(d, e)
        out.append(d)
    return tuple(out)


def _broadcast(n, ins, checks):
    return broadcast(ins, checks, n)


def fits(checks, n, x, like, what) -> None:
    """Contract: ``x`` broadcasts to ``like`` without changing it (each dim 1 or equal)."""
    lead = len(like) - len(x)
    if lead < 0:
        return
    for k, d in enumerate(x):
        t = like[lead + k]
        if d == t or sym.const_value(d) == 1:
            continue
        ok = sym.logical_or(sym.eq(d, t), sym.eq(d, 1))
        require(checks, n, ok, f"{what}: size {{0}} of dimension {k} cannot broadcast to {{1}}",
                d, t)  # fmt: skip


rule("Identity", "StopGradient", "CheckNumerics", "Cumsum", "Assign", "AssignAdd",
     "AssignSub", "PlaceholderWithDefault")(lambda n, ins, c: ins[0])  # fmt: skip
rule("ZerosLike")(lambda n, ins, c: ins[0])


@rule("BroadcastLike")
def _broadcast_like(n, ins, checks):
    fits(checks, n, ins[0], ins[1], "the input does not broadcast to the target shape")
    return ins[1]


@rule("BroadcastTo")
def _broadcast_to(n, ins, checks):
    target = tuple(i64(d) for d in n.attrs["shape"])
    fits(checks, n, ins[0], target, "the input does not broadcast to the target shape")
    return target


@rule("ReshapeLike")
def _reshape_like(n, ins, checks):
    require_eq(checks, n, sym.product(ins[0]), sym.product(ins[1]),
               "cannot reshape: the element counts differ")  # fmt: skip
    return ins[1]


@rule("SumToShape")
def _sum_to_shape(n, ins, checks):
    g, like = ins
    lead = len(g) - len(like)
    for k, d in enumerate(like):
        gd = g[lead + k] if lead + k >= 0 else sym.ONE
        if gd != d and sym.const_value(d) != 1:
            # like's dim is the sum's: g's must equal it (or like's be 1, summed)
            ok = sym.logical_or(sym.eq(gd, d), sym.eq(d, 1))
            require(checks, n, ok, f"cannot sum dimension {k} of size {{0}} to size {{1}}",
                    gd, d)  # fmt: skip
    return like


rule("RandomUniform", "RandomStandardNormal", "TruncatedNormal")(lambda n, ins, c: ins[0])
rule("Size")(lambda n, ins, c: ())
rule("Shape")(lambda n, ins, c: (i64(len(ins[0])),))


@rule("Sum", "Mean", "Max", "Min", "Prod", "Any", "All")
def _reduce(n, ins, checks):
    x = ins[0]
    axes = n.attrs["axes"]
    axes = range(len(x)) if axes is None else axes
    if n.attrs["keepdims"]:
        return tuple(sym.ONE if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


@rule("ArgMax", "ArgMin")
def _arg(n, ins, checks):
    axis = n.attrs["axis"] % len(ins[0])
    require(checks, n, Math.GT(ins[0][axis], sym.ZERO),
            f"reduction axis {axis} is empty (size {{0}})", ins[0][axis])  # fmt: skip
    return tuple(d for i, d in enumerate(ins[0]) if i != axis)


@rule("Reshape")
def _reshape(n, ins, checks):
    target = n.attrs["shape"]
    numel = sym.product(ins[0])
    known = sym.product([d for d in target if d != -1])
    if -1 in target:
        if sym.const_value(known) == 0:
            require(checks, n, Const(False, _dt.bool_), f"cannot infer the -1 of shape "
                    f"{list(target)} when another size is 0 ({{0}} elements)", numel)  # fmt: skip
        require(checks, n, sym.eq(sym.mod(numel, known), 0),
                f"cannot reshape {{0}} elements to {list(target)}", numel)  # fmt: skip
        return tuple(sym.floordiv(numel, known) if d == -1 else i64(d) for d in target)
    require_eq(checks, n, numel, known, f"cannot reshape to {list(target)}: element counts")
    return tuple(i64(d) for d in target)


@rule("ExpandDims")
def _expand(n, ins, checks):
    s = list(ins[0])
    s.insert(n.attrs["axis"], sym.ONE)
    return tuple(s)


@rule("Squeeze")
def _squeeze(n, ins, checks):
    for i in n.attrs["axes"]:
        require_eq(checks, n, ins[0][i], sym.ONE, f"cannot squeeze dimension {i}: its size")
    return tuple(d for i, d in enumerate(ins[0]) if i not in n.attrs["axes"])


@rule("MatMul")
def _matmul(n, ins, checks):
    a, b = ins
    m, ka = (a[-1], a[-2]) if n.attrs["transpose_a"] else (a[-2], a[-1])
    kb, nn = (b[-1], b[-2]) if n.attrs["transpose_b"] else (b[-2], b[-1])
    if ka != kb:
        require_eq(checks, n, ka, kb, "inner dimensions do not match")
    batch = broadcast([a[:-2], b[:-2]], checks, n, "the batch dimensions")
    return (*batch, m, nn)


@rule("Transpose")
def _transpose(n, ins, checks):
    return tuple(ins[0][p] for p in n.attrs["perm"])
