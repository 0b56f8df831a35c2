"""One op, one place: every registered op declares on its OpDef what the compiler needs, and
the compiler reads those facts instead of testing op names.

* each op has a kind (``OpDef.kind``) and the kernel side has what that kind promises: a
  value rule, a row reduction, a GEMM lowering, a whole-kernel lowering, or, for a
  ``"host"`` op, a reason why it has none;
* each op has a symbolic shape rule (``graphc/kernel/shapes.py``), is elementwise (its
  shape broadcasts), or says why it needs none (``static_shape_reason``);
* the lowering's own records (``KINDS``) agree with what the ops declare;
* op-name string comparisons outside the ops' own files can only become fewer (a ratchet).

Adding an op therefore fails here until its OpDef declares these facts (see
docs/adding_an_op.md).
"""

import ast
import inspect
from pathlib import Path

import pytest

import graphc  # noqa: F401  (registers every op)
import graphc.distribute.ops  # noqa: F401  (registers the collective host ops)
import graphc.kernel.lower  # noqa: F401  (registers every lowering rule)
from graphc.kernel import lowerings as L
from graphc.kernel.shapes import SHAPE_RULES
from graphc.ops.registry import REGISTRY, OpDef

ROOT = Path(__file__).resolve().parents[1]
OPS = sorted(REGISTRY)
KINDS = {"source", "elementwise", "index", "reduction", "gemm", "opaque", "host"}
SOURCES = {"feed", "const", "variable", "placeholder", "none"}
SYMBOLIC_DIMS = {"", "input0", "input1", "reduce", "split", "concat", "transpose",
                 "expand_dims", "squeeze", "matmul", "reshape"}  # fmt: skip


def lowering_problems(name, op_def) -> list:
    """What op ``name`` (its OpDef ``op_def``) lacks: its kind, or the lowering its kind
    promises (or, for a host op, the reason it has none); consistency of its other facts."""
    kind = op_def.kind
    if kind not in KINDS:
        return [f"{name}: OpDef.kind is {kind!r}; declare one of {sorted(KINDS)}"]
    out = []
    registered = L.KINDS.get(name)
    if kind == "source":
        if op_def.source not in SOURCES:
            out.append(f"{name}: a source op declares where its value comes from (OpDef.source)")
        if registered is not None:
            out.append(f"{name}: a source op has no lowering rule")
    elif kind == "host":
        if not op_def.host_reason:
            out.append(f"{name}: a host op says why it has no lowering (OpDef.host_reason)")
        if registered is not None or name in L.VALUE or name in L.OPAQUE:
            out.append(f"{name} is declared 'host' but has a lowering rule: declare its kind")
    elif kind == "elementwise" and registered is None:
        # OpDef.scalar is the lowering: the body of one element
        if not (op_def.elementwise and callable(getattr(op_def, "scalar", None))):
            out.append(f"{name}: an elementwise op needs OpDef.scalar or a value rule")
    elif registered != kind:
        out.append(f"{name}: OpDef.kind is {kind!r} but graphc/kernel registers a "
                   f"{registered!r} lowering for it")  # fmt: skip
    else:
        table = {"elementwise": L.VALUE, "index": L.VALUE, "reduction": L.REDUCTIONS,
                 "opaque": L.OPAQUE}.get(kind)  # fmt: skip
        if table is not None and name not in table:
            out.append(f"{name}: no {kind} lowering registered")
    if kind != "source" and op_def.source:
        out.append(f"{name}: OpDef.source is for source ops")
    if kind == "gemm" and op_def.gemm_group not in ("gemm", "conv"):
        out.append(f"{name}: gemm_group is 'gemm' or 'conv'")
    if op_def.opaque_lowering and op_def.opaque_lowering not in L.OPAQUE:
        out.append(f"{name}: its opaque_lowering {op_def.opaque_lowering!r} is not registered")
    if op_def.variable not in ("", "read", "write", "update", "initialized"):
        out.append(f"{name}: unknown OpDef.variable {op_def.variable!r}")
    if (op_def.view or op_def.reads_each_once) and kind != "index":
        out.append(f"{name}: view/reads_each_once describe index ops")
    if op_def.commutative and not op_def.elementwise:
        out.append(f"{name}: commutative describes elementwise binary ops")
    return out


def shape_problems(name, op_def) -> list:
    """What op ``name`` lacks: a symbolic shape rule, elementwise broadcasting, or the
    declared reason it needs none."""
    out = []
    if op_def.symbolic_dims not in SYMBOLIC_DIMS:
        out.append(f"{name}: unknown OpDef.symbolic_dims {op_def.symbolic_dims!r}")
    has_rule = name in SHAPE_RULES or op_def.elementwise
    if has_rule and op_def.static_shape_reason:
        out.append(f"{name} has a symbolic shape rule: drop its static_shape_reason")
    if not has_rule and not op_def.static_shape_reason:
        out.append(f"{name}: add a symbolic shape rule (graphc/kernel/shapes.py @rule) or "
                   "declare OpDef.static_shape_reason")  # fmt: skip
    return out


@pytest.mark.parametrize("name", OPS)
def test_op_declares_a_kind_and_the_lowering_it_promises(name):
    assert lowering_problems(name, REGISTRY[name]) == []


@pytest.mark.parametrize("name", OPS)
def test_op_has_a_symbolic_shape_rule_or_says_why_not(name):
    assert shape_problems(name, REGISTRY[name]) == []


def test_an_op_that_declares_nothing_is_refused():
    """The checks above fail for a new op until its OpDef declares its facts."""

    class Undeclared(OpDef):  # not registered: the registry stays as it is
        type = "Undeclared"

    class NoReason(OpDef):
        type = "NoReason"
        kind = "host"

    class WrongKind(OpDef):
        type = "Transpose"  # registered as an index op by graphc/kernel
        kind = "opaque"
        static_shape_reason = "stale"

    assert lowering_problems("Undeclared", Undeclared())
    assert shape_problems("Undeclared", Undeclared())
    assert lowering_problems("NoReason", NoReason())
    assert lowering_problems("Transpose", WrongKind())
    assert shape_problems("Transpose", WrongKind())
    assert lowering_problems("Abs", REGISTRY["Abs"]) == []  # elementwise: declared by default


def test_lowering_records_name_registered_ops():
    """Every rule the kernel registers is for a registered op of that kind, or is the
    opaque_lowering some op names."""
    aliases = {d.opaque_lowering for d in REGISTRY.values() if d.opaque_lowering}
    for table in (L.KINDS, L.VALUE, L.REDUCTIONS, L.OPAQUE, SHAPE_RULES):
        stray = set(table) - set(REGISTRY) - aliases
        assert not stray, f"lowering rules for unknown op types: {sorted(stray)}"
    for name, kind in L.KINDS.items():
        if name in REGISTRY:
            assert REGISTRY[name].kind == kind, f"{name}: KINDS says {kind!r}"


# -- the ratchet: op-name string comparisons outside the ops' own files ------------------------

#: None is left (docs/adding_an_op.md says what to do instead). It may only stay at 0.
MAX_OP_NAME_TESTS = 0

#: where op names are the subject: the op families, and the ONNX importer, whose names are
#: ONNX's op types
EXEMPT = ("graphc/ops/", "graphc/onnx/handlers/", "graphc/onnx/importer.py",
          "graphc/onnx/functions.py", "graphc/bench/onnx_models.py")  # fmt: skip


def _names_in(node, names) -> set:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & names
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(set(), *(_names_in(e, names) for e in node.elts))
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("frozenset", "set", "tuple"):
        return _names_in(node.args[0], names) if node.args else set()
    return set()


def _onnx_side(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "op_type"


def op_name_tests() -> list:
    """``file:line: names`` of each comparison with a registered op type's name (``n.op ==
    "MatMul"``, ``op in ("Sum", "Mean")``) and each collection of op names bound to a name
    (``MUST_STORE = (...)``), outside the op's own file."""
    names = set(REGISTRY)
    own: dict = {}
    for t, d in REGISTRY.items():
        path = Path(inspect.getsourcefile(type(d))).resolve().relative_to(ROOT)
        own.setdefault(str(path), set()).add(t)
    found = []
    for path in sorted((ROOT / "graphc").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith(EXEMPT):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            hits: set = set()
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if not any(_onnx_side(x) for x in operands):
                    hits = set().union(*(_names_in(x, names) for x in operands))
            elif isinstance(node, ast.Assign) and not any(
                getattr(t, "id", "") == "__all__" for t in node.targets
            ):
                hits = _names_in(node.value, names)
            hits -= own.get(rel, set())
            if hits:
                found.append(f"{rel}:{node.lineno}: {', '.join(sorted(hits))}")
    return found


def test_op_name_tests_do_not_grow():
    found = op_name_tests()
    assert len(found) <= MAX_OP_NAME_TESTS, (
        f"{len(found)} op-name tests outside the ops' files (at most {MAX_OP_NAME_TESTS}): "
        "declare a fact on the OpDef (graphc/ops/registry.py) and read it instead; "
        + "; ".join(found)
    )
