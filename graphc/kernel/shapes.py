"""Symbolic shapes: every tensor's shape as int64 expressions over runtime Dims.

Sizes of ``None`` dims of feeds become ``Dim`` symbols; every other size is derived from
them by per-op rules (broadcast, reshape with -1, reductions...), so a new batch size runs
the same compiled code. Static dims of the Program's specs are trusted (Consts). Rules
also return run-time shape checks (bool expressions over Dims) for what inference could not
prove at build time (two dynamic dims that must broadcast, a reshape's element count).
"""

from __future__ import annotations

from ..errors import UnimplementedError
from ..program import Program
from . import sym
from .expr import Dim, i64

#: op type -> fn(node, in_shapes, checks) -> shape tuple (list of int64 Exprs)
SHAPE_RULES: dict = {}


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
        self.checks: list = []  # (bool Expr, message)
        for n in program.nodes:
            self._node(n)

    def __getitem__(self, ref) -> tuple:
        return self.shapes[tuple(ref)]

    def _node(self, n):
        if n.op == "Feed":
            shape = []
            for axis, d in enumerate(n.attrs["shape"] or ()):
                if d is None:
                    name = f"d{n.attrs['index']}_{axis}"
                    self.dims[name] = (n.attrs["index"], axis)
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
                fn(n, ins, self.checks)  # only for its run-time checks
            return
        fn = SHAPE_RULES.get(n.op)
        if fn is None:
            from ..ops.registry import get_op_def

            if getattr(get_op_def(n.op), "elementwise", False):
                fn = _broadcast
            else:
                raise UnimplementedError(
                    f"{n.op} '{n.name}': no symbolic shape rule for unknown dims {static}"
                )
        out = fn(n, ins, self.checks)
        outs = out if isinstance(out, list) else [out]
        for k, s in enumerate(outs):
            spec = static[k]
            if spec is not None:
                s = tuple(s[i] if d is None else i64(d) for i, d in enumerate(spec))
            self.shapes[(n.id, k)] = tuple(s)


def _is_elementwise(n) -> bool:
    from ..ops.registry import REGISTRY

    return getattr(REGISTRY.get(n.op), "elementwise", False)


def broadcast(shapes, checks, what="") -> tuple:
    """numpy broadcast of symbolic shapes; adds run-time checks where dims are dynamic."""
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
                checks.append((ok, f"{what}: dimensions are not broadcastable at run time"))
            d = sym.broadcast_dim(d, e)
        out.append(d)
    return tuple(out)


def _broadcast(n, ins, checks):
    return broadcast(ins, checks, f"{n.op} '{n.name}'")


rule("Identity", "StopGradient", "CheckNumerics", "Cumsum", "Assign", "AssignAdd",
     "AssignSub", "PlaceholderWithDefault")(lambda n, ins, c: ins[0])  # fmt: skip
rule("ZerosLike")(lambda n, ins, c: ins[0])
rule("BroadcastLike")(lambda n, ins, c: broadcast(ins, c, f"{n.op} '{n.name}'") and ins[1])
rule("ReshapeLike")(lambda n, ins, c: ins[1])


@rule("SumToShape")
def _sum_to_shape(n, ins, checks):
    g, like = ins
    lead = len(g) - len(like)
    for k, d in enumerate(like):
        gd = g[lead + k]
        if gd != d and sym.const_value(d) != 1:
            # like's dim is the sum's: g's must equal it (or like's be 1, summed)
            ok = sym.logical_or(sym.eq(gd, d), sym.eq(d, 1))
            checks.append((ok, f"SumToShape '{n.name}': cannot sum a dimension of size "
                               "1 to a larger one"))  # fmt: skip
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
    return tuple(d for i, d in enumerate(ins[0]) if i != axis)


@rule("Reshape")
def _reshape(n, ins, checks):
    target = n.attrs["shape"]
    numel = sym.product(ins[0])
    known = sym.product([d for d in target if d != -1])
    if -1 in target:
        checks.append(
            (sym.eq(sym.mod(numel, known), 0), f"Reshape '{n.name}': cannot reshape to {target}")
        )
        return tuple(sym.floordiv(numel, known) if d == -1 else i64(d) for d in target)
    checks.append((sym.eq(numel, known), f"Reshape '{n.name}': cannot reshape to {target}"))
    return tuple(i64(d) for d in target)


@rule("ExpandDims")
def _expand(n, ins, checks):
    s = list(ins[0])
    s.insert(n.attrs["axis"], sym.ONE)
    return tuple(s)


@rule("Squeeze")
def _squeeze(n, ins, checks):
    return tuple(d for i, d in enumerate(ins[0]) if i not in n.attrs["axes"])


@rule("MatMul")
def _matmul(n, ins, checks):
    a, b = ins
    m, ka = (a[-1], a[-2]) if n.attrs["transpose_a"] else (a[-2], a[-1])
    kb, nn = (b[-1], b[-2]) if n.attrs["transpose_b"] else (b[-2], b[-1])
    if ka != kb:
        checks.append((sym.eq(ka, kb), f"MatMul '{n.name}': inner dimensions do not match"))
    batch = broadcast([a[:-2], b[:-2]], checks, f"MatMul '{n.name}'")
    return (*batch, m, nn)


@rule("Transpose")
def _transpose(n, ins, checks):
    return tuple(ins[0][p] for p in n.attrs["perm"])
