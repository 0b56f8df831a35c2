"""The module structure: layers (.importlinter, also run by `make test`) and import cycles.

Every import counts, including those inside functions: an import hidden in a function still
ties the two modules together."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
nx = pytest.importorskip("networkx")

ROOT = Path(__file__).resolve().parents[1]


def _import_graph():
    g = grimp.build_graph("graphc", cache_dir=None)
    dg = nx.DiGraph()
    for m in g.modules:
        dg.add_node(m)
        for n in g.find_modules_directly_imported_by(m):
            dg.add_edge(m, n)
    return dg


def test_no_import_cycle_between_modules():
    cycles = [c for c in nx.strongly_connected_components(_import_graph()) if len(c) > 1]
    found = [sorted(c) for c in cycles]
    assert not found, f"modules that import each other (directly or around a loop): {found}"


def test_the_layer_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (it is in the test extra)")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


# Imports inside functions hide a dependency until the function runs (the cycle check above
# sees them): none is left. Optional dependencies (below) may stay lazy, directly or through
# the graphc module that imports one at its top (backends/cuda/runtime.py: pycuda); `import
# graphc` must work without them. The count may fall, never rise.
MAX_FUNCTION_LEVEL_IMPORTS = 0
OPTIONAL = {
    "onnx", "onnxruntime", "mpi4py", "tensorboard", "tensorflow", "jax", "torch", "pycuda",
    "matplotlib", "tqdm", "sklearn", "scipy_openblas32", "cupy", "psutil", "PIL", "google",
    "threadpoolctl",
}  # fmt: skip


def _module_file(name: str) -> Path | None:
    """The source file of graphc module ``name`` (dotted), or None."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _targets(node, path: Path) -> list:
    """Dotted names of the modules import ``node`` in ``path`` loads (a name imported from a
    package counts as its submodule when there is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        package = list(path.relative_to(ROOT).parts[:-1])  # (also for an __init__.py)
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    subs = [f"{base}.{a.name}" for a in node.names]
    return [s for s in subs if _module_file(s)] or [base]


def _imports_optional_at_top(name: str) -> bool:
    """graphc module ``name`` imports an optional dependency when it is loaded (a statement
    at its top level): importing that module lazily is importing the dependency lazily."""
    path = _module_file(name) if name.split(".")[0] == "graphc" else None
    if path is None:
        return False
    tree = ast.parse(path.read_text())
    defs = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    top = [s for stmt in tree.body if not isinstance(stmt, defs) for s in ast.walk(stmt)]
    for node in top:
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            t.split(".")[0] in OPTIONAL for t in _targets(node, path)
        ):
            return True
    return False


def _optional(node, path: Path) -> bool:
    """Import ``node`` loads only optional dependencies, directly or through a graphc module
    that imports one at its top (``backends/cuda/runtime.py`` imports pycuda)."""
    return all(t.split(".")[0] in OPTIONAL or _imports_optional_at_top(t)
               for t in _targets(node, path))  # fmt: skip


def _function_level_imports():
    found = []
    for path in sorted((ROOT / "graphc").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom) and not _optional(node, path):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_imports_inside_functions_do_not_grow():
    found = _function_level_imports()
    assert len(found) <= MAX_FUNCTION_LEVEL_IMPORTS, (
        f"{len(found)} imports inside functions (at most {MAX_FUNCTION_LEVEL_IMPORTS}): move "
        f"new ones to the module top; e.g. {found[-5:]}"
    )
