"""The docs cannot rot: every ```python snippet of docs/*.md and README.md runs here.

The snippets of one file run in order in one namespace (a later snippet may use names an
earlier one defined), in a temporary working directory. A snippet preceded by the line
``<!-- no-test: reason -->`` is skipped (say why: e.g. it needs a GPU). Paths such as
``graphc/passes/fusion.py`` named in architecture.md must exist.
"""

import re
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
REQUIRED = ("architecture.md", "api.md", "adding_an_op.md", "benchmarks.md", "debugging.md")

FENCE = re.compile(r"^```python[ \t]*$")
NO_TEST = re.compile(r"^<!--\s*no-test:\s*\S.*-->\s*$")


def snippets(path: Path) -> list:
    """(first line number, code, skipped) of each python block of a markdown file."""
    lines = path.read_text().splitlines()
    out = []
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise AssertionError(f"{path.name}:{i + 1}: unclosed ```python block")
            skipped = i > 0 and bool(NO_TEST.match(lines[i - 1].strip()))
            out.append((start + 1, "\n".join(lines[start:j]) + "\n", skipped))
            i = j
        i += 1
    return out


def test_the_docs_exist():
    names = {p.name for p in DOCS}
    for name in REQUIRED:
        assert name in names, f"docs/{name} is missing"
    assert len(snippets(ROOT / "docs" / "api.md")) >= 5


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_snippets_run(path, tmp_path, monkeypatch):
    from graphc.ops import registry

    blocks = snippets(path)
    if not blocks:
        pytest.skip(f"{path.name} has no python snippets")
    monkeypatch.chdir(tmp_path)
    saved = dict(registry.REGISTRY)  # a snippet may register a demo op: keep it local
    namespace = {"__name__": f"docs_{path.stem}"}
    try:
        for line, code, skipped in blocks:
            if skipped:
                continue
            try:
                exec(compile(code, f"{path.name}:{line}", "exec"), namespace)  # noqa: S102
            except Exception:
                pytest.fail(
                    f"the snippet of {path.relative_to(ROOT)} at line {line} failed:\n"
                    f"{traceback.format_exc()}"
                )
    finally:
        registry.REGISTRY.clear()
        registry.REGISTRY.update(saved)


def test_architecture_names_only_real_paths():
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:graphc|kernels|tests|examples)/[\w./]*)`", text))
    assert paths, "architecture.md names no module"
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"architecture.md names paths that do not exist: {missing}"
