"""Progress lines of long compiles (graphc/progress.py, CompileOptions(verbose=...))."""

import io

import numpy as np

import graphc as gc
from graphc import progress


def _run(opts):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.reduce_sum(gc.tanh(x) * 2.0, axis=1, name="y")
    with gc.Session(options=opts) as sess:
        return sess.run(y, {x: np.ones((2, 3), np.float32)})


def test_verbose_true_prints_what_and_how_long(capsys):
    out = _run(gc.CompileOptions(cache_dir=None, verbose=True))
    np.testing.assert_allclose(out, 6 * np.tanh(1.0), rtol=1e-6)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("graphc: compiling a ") and "-op program for cpu (y)" in err[0]
    assert err[1].startswith("graphc: compiled a ") and err[1].endswith(" s")


def test_default_is_quiet_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress, "THRESHOLD_S", 0.0)
    _run(gc.CompileOptions(cache_dir=None))
    _run(gc.CompileOptions(cache_dir=None, verbose=False))
    assert capsys.readouterr().err == ""


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_auto_prints_only_past_the_threshold_on_a_terminal(monkeypatch):
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    _run(gc.CompileOptions(cache_dir=None))  # a fast compile: under 2 s, nothing
    assert tty.getvalue() == ""
    monkeypatch.setattr(progress, "THRESHOLD_S", 0.0)
    gc.reset_default_graph()
    _run(gc.CompileOptions(cache_dir=None))
    lines = tty.getvalue().splitlines()
    assert len(lines) == 2 and "compiling" in lines[0] and "compiled" in lines[1]


def test_a_failed_compile_says_so(capsys):
    lines = []
    try:
        with progress.compile_progress(_FakeProgram(), "cpu", True):
            raise RuntimeError("boom")
    except RuntimeError:
        lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "graphc: compiling a 2-op program for cpu (a, b) ..."
    assert lines[1].startswith("graphc: failed compiling a 2-op program")


class _FakeProgram:
    class _Node:
        def __init__(self, name):
            self.name = name

    nodes = (1, 2)
    fetches = ((0, 0), (1, 0))
    targets = ()

    def node(self, i):
        return self._Node("ab"[i])
