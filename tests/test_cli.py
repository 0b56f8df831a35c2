"""The ``graphc`` command line: --version, bench, inspect and dot."""

import json
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main


def _cli(*args, module="graphc.cli"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_version():
    proc = _cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"graphc {gc.__version__}"


def test_bench_quick_w1_writes_json(tmp_path):
    out = tmp_path / "w1.json"
    proc = _cli("bench", "--quick", "--suite", "W1", "--repeat", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "W1 elementwise chain" in proc.stdout and "graphc fused (base)" in proc.stdout
    assert "1/" in proc.stderr  # the progress bar
    doc = json.loads(out.read_text())
    (w1,) = doc["workloads"]
    assert w1["id"] == "W1" and w1["status"] == "ok"
    names = {i["name"]: i for i in w1["impls"]}
    assert {"graphc reference", "graphc unfused", "graphc fused", "numpy eager"} <= set(names)
    assert names["graphc fused"]["median_s"] > 0 and names["graphc fused"]["kernels"] >= 1


def test_python_m_graphc_bench_rejects_an_unknown_workload():
    proc = _cli("--suite", "W42", "--no-progress", module="graphc.bench")
    assert proc.returncode == 2
    assert "unknown workload(s) W42" in proc.stderr


def test_bench_rejects_unknown_peers_and_unavailable_targets(capsys):
    assert main(["bench", "--quick", "--suite", "W4", "--peers", "numpy eager,mxnet"]) == 2
    assert "unknown peer(s) 'mxnet'" in capsys.readouterr().err
    from graphc.backends.cuda import availability

    problem = availability()
    if problem is None:
        pytest.skip("a GPU is usable here")
    assert main(["bench", "--quick", "--suite", "W4", "--target", "cuda"]) == 2
    assert "target 'cuda' is unavailable" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "bench" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--quick", "--suite", "W1", "--plot", str(tmp_path / "p.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err


def test_inspect_and_dot_of_a_missing_artifact(tmp_path, capsys):
    missing = str(tmp_path / "nope.gcx")
    assert main(["inspect", missing]) == 1
    assert main(["dot", missing, "-o", str(tmp_path / "g.dot")]) == 1
    err = capsys.readouterr().err
    assert "graphc inspect:" in err and "graphc dot:" in err and "nope.gcx" in err


def test_inspect_and_dot_of_an_exported_model(tmp_path, capsys):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    w = gc.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
    y = gc.tanh(x @ w) * 2
    path = tmp_path / "model.gcx"
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        try:
            gc.export(sess, str(path), inputs={"x": x}, outputs={"y": y})
        except gc.errors.UnimplementedError as exc:
            pytest.skip(f"export not available here: {exc}")
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "inputs:" in text and "x:" in text and "y:" in text
    dot = tmp_path / "g.dot"
    assert main(["dot", str(path), "-o", str(dot)]) == 0
    assert dot.read_text().startswith("digraph")


def test_a_bad_artifact_is_named_once(tmp_path, capsys):
    bad = tmp_path / "bad.gcx"
    bad.write_bytes(b"not an artifact at all")
    assert main(["inspect", str(bad)]) == 1
    assert main(["dot", str(bad), "-o", "-"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"graphc inspect: {bad}: ") and lines[1].startswith("graphc dot:")
    assert all(line.count(str(bad)) == 1 for line in lines)


def test_dot_to_stdout(tmp_path, capsys, monkeypatch):
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    y = gc.exp(x) + 1
    path = tmp_path / "model.gcx"
    with gc.Session() as sess:
        gc.export(sess, str(path), inputs={"x": x}, outputs={"y": y})
    monkeypatch.chdir(tmp_path)
    assert main(["dot", str(path), "-o", "-"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("digraph") and out.out.rstrip().endswith("}")
    assert not (tmp_path / "-").exists() and "wrote" not in out.err
