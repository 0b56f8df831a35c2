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
# sees them). What is left: one op gradient that would make two op packages' __init__ files
# import each other (shape/pad.py's vjp), a few backends' and tools' lazy loads; optional
# dependencies (below) may stay lazy. The count may fall, never rise.
MAX_FUNCTION_LEVEL_IMPORTS = 31
OPTIONAL = {
    "onnx", "onnxruntime", "mpi4py", "tensorboard", "tensorflow", "jax", "torch", "pycuda",
    "matplotlib", "tqdm", "sklearn", "scipy_openblas32", "cupy", "psutil", "PIL", "google",
    "threadpoolctl", "importlib",
}  # fmt: skip


def _function_level_imports():
    found = []
    for path in sorted((ROOT / "graphc").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                absolute = isinstance(node, ast.Import) or node.level == 0
                mod = node.names[0].name if isinstance(node, ast.Import) else node.module or ""
                if absolute and mod.split(".")[0] in OPTIONAL:
                    continue
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_imports_inside_functions_do_not_grow():
    found = _function_level_imports()
    assert len(found) <= MAX_FUNCTION_LEVEL_IMPORTS, (
        f"{len(found)} imports inside functions (at most {MAX_FUNCTION_LEVEL_IMPORTS}): move "
        f"new ones to the module top; e.g. {found[-5:]}"
    )
