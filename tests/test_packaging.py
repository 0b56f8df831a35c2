"""What a user installing graphc relies on: the files setup.py names exist, the extras the
docs name are declared, and the docs stand alone (no pointers into files outside the repo)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_kwargs() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    )
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            pass  # computed values (version, packages, long_description)
    return out


def test_package_data_files_exist():
    kwargs = _setup_kwargs()
    dirs = {"graphc": ROOT / "graphc", **{k: ROOT / v for k, v in kwargs["package_dir"].items()}}
    for package, patterns in kwargs["package_data"].items():
        for pattern in patterns:
            assert list(dirs[package].glob(pattern)), f"setup.py lists {package}/{pattern}"


def test_extras_the_docs_name():
    extras = _setup_kwargs()["extras_require"]
    names = lambda key: {re.split(r"[<>=!~\[ ]", r)[0] for r in extras[key]}  # noqa: E731
    assert {"scikit-learn", "tqdm"} <= names("examples")
    assert "tensorboard" in names("tensorboard") and "tensorboard" in names("test")
    readme = (ROOT / "README.md").read_text()
    for extra in ("examples", "tensorboard"):
        assert f"`{extra}`" in readme, f"README does not name the [{extra}] extra"


def test_docs_stand_alone():
    files = [ROOT / "README.md", ROOT / "graphc" / "__init__.py", *(ROOT / "docs").glob("*.md")]
    files += list((ROOT / "graphc" / "bench").glob("*.py"))
    for path in files:
        text = path.read_text()
        for bad in ("shared/API.md", "shared/BENCH.md", "shared/DESIGN.md", "../shared"):
            assert bad not in text, f"{path.relative_to(ROOT)} points to {bad}"


def test_examples_and_docs_use_the_artifact_suffix_of_gc_export():
    paths = [*(ROOT / "examples").glob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    for path in paths:
        assert not re.search(r"\.gca\b", path.read_text()), f"{path.name} writes .gca, not .gcx"
    assert "digits_mlp.gcx" in (ROOT / "examples" / "export_and_load.py").read_text()


def test_no_web_addresses_in_the_repository_files():
    """Files name packages, never package-index hosts or web addresses."""
    files = [ROOT / "README.md", ROOT / "setup.py", ROOT / "Makefile"]
    for folder, pattern in (("docs", "*.md"), ("graphc", "*.py"), ("examples", "*.py")):
        files += list((ROOT / folder).rglob(pattern))
    files += list((ROOT / "scripts").glob("*"))
    for path in files:
        if path.is_file():
            found = re.search(r"\b(?:https?|ftp)://\S+", path.read_text(errors="replace"))
            assert not found, f"{path.relative_to(ROOT)} names a web address: {found.group(0)}"
