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


@pytest.mark.parametrize("name", OPS)
def test_op_declares_a_kind_and_the_lowering_it_promises(name):
    op_def = REGISTRY[name]
    kind = op_def.kind
    assert kind in KINDS, f"{name}: OpDef.kind is {kind!r}; declare one of {sorted(KINDS)}"
    registered = L.KINDS.get(name)
    if kind == "source":
        assert op_def.source in ("feed", "const", "variable", "placeholder", "none"), (
            f"{name}: a source op declares where its value comes from (OpDef.source)"
        )
        assert registered is None, f"{name}: a source op has no lowering rule"
    elif kind == "host":
        assert op_def.host_reason, f"{name}: a host op says why it has no lowering"
        assert registered is None and name not in L.VALUE and name not in L.OPAQUE, (
            f"{name} is declared 'host' but has a lowering rule: declare its kind"
        )
    elif kind == "elementwise" and registered is None:
        # OpDef.scalar is the lowering: the body of one element
        assert op_def.elementwise and type(op_def).scalar is not getattr(OpDef, "scalar", None), (
            f"{name}: an elementwise op needs OpDef.scalar or a value rule in graphc/kernel"
        )
    else:
        assert registered == kind, (
            f"{name}: OpDef.kind is {kind!r} but graphc/kernel registers a "
            f"{registered!r} lowering for it"
        )
        table = {"elementwise": L.VALUE, "index": L.VALUE, "reduction": L.REDUCTIONS,
                 "opaque": L.OPAQUE}.get(kind)  # fmt: skip
        assert table is None or name in table, f"{name}: no {kind} lowering registered"
    if kind != "source":
        assert not op_def.source, f"{name}: OpDef.source is for source ops"
    if kind == "gemm":
        assert op_def.gemm_group in ("gemm", "conv")
    if op_def.opaque_lowering:
        assert op_def.opaque_lowering in L.OPAQUE, (
            f"{name}: its opaque_lowering {op_def.opaque_lowering!r} is not registered"
        )
    assert op_def.variable in ("", "read", "write", "update", "initialized")
    if op_def.view or op_def.reads_each_once:
        assert kind == "index", f"{name}: view/reads_each_once describe index ops"
    if op_def.commutative:
        assert kind == "elementwise" and op_def.elementwise, f"{name}: commutative binary ops"


SYMBOLIC_DIMS = {"", "input0", "input1", "reduce", "split", "concat", "transpose",
                 "expand_dims", "squeeze", "matmul", "reshape"}  # fmt: skip


@pytest.mark.parametrize("name", OPS)
def test_op_has_a_symbolic_shape_rule_or_says_why_not(name):
    op_def = REGISTRY[name]
    assert op_def.symbolic_dims in SYMBOLIC_DIMS, f"{name}: unknown symbolic_dims"
    has_rule = name in SHAPE_RULES or op_def.elementwise
    if has_rule:
        assert not op_def.static_shape_reason, (
            f"{name} has a symbolic shape rule: drop its static_shape_reason"
        )
    else:
        assert op_def.static_shape_reason, (
            f"{name}: add a symbolic shape rule (graphc/kernel/shapes.py @rule) or declare "
            "OpDef.static_shape_reason"
        )


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

#: What is left (passes/simplify.py and passes/rewrite.py pattern-match specific ops for their
#: algebraic rules; the rest are listed in docs/adding_an_op.md). Lower it when you remove one.
MAX_OP_NAME_TESTS = 29

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
