"""The implementations a workload is timed as: graphc on a target with one ``CompileOptions``
(``GraphcImpl``), graphc's cold compile and warm start (W5), and a peer framework
(``PeerImpl``). Each has ``setup``, ``run`` (what is timed), ``values`` (what is checked
against the reference), ``collect`` (figures after timing) and ``close``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import graphc as gc

from .figures import exe_figures, feed_dims
from .peers import to_numpy


class Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """An implementation cannot run here; the message says why."""


def session_skip(exc: Exception) -> Skip | None:
    """An exception that means "not available yet" (rather than a bug) as a Skip."""
    if isinstance(exc, gc.errors.UnimplementedError | gc.errors.UnavailableError):
        return Skip(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, NotImplementedError):
        return Skip(f"not implemented yet: {exc}")
    return None


def fail_reason(exc: BaseException) -> str:
    """The one-line reason a row gives for an exception: its type and message."""
    return f"{type(exc).__name__}: {exc}".strip()


class GraphcImpl:
    """A workload run by ``gc.Session`` on one target with one CompileOptions."""

    family = "graphc"

    def __init__(self, name, case, target, options):
        self.name, self.case, self.target, self.options = name, case, target, options
        self.sess = None
        self.figures: dict = {}
        self.extra: dict = {}
        self._losses: list = []
        self._outs: list = []

    def setup(self):
        self.sess = gc.Session(graph=self.case.graph, target=self.target, options=self.options)
        if self.case.init is not None:
            self.sess.run(self.case.init)
        self._step_compiles = 0

    def run(self):
        if len(self.case.feeds) == 1:  # the common case: nothing but the run (W4 times this)
            self._outs = self.sess.run(self.case.run_fetches, self.case.feeds[0])
            self._losses = self._outs[:1]
            return
        losses = []
        for feeds in self.case.feeds:
            before = self.sess.cache_info()["compiles"]
            out = self.sess.run(self.case.run_fetches, feeds)
            self._step_compiles += self.sess.cache_info()["compiles"] - before
            losses.append(out[0])
        self._outs = out
        self._losses = losses

    def values(self):
        if self.case.loss is None:
            return list(self._outs)
        return [*self._losses, *self.sess.run(self.case.variables)]

    def collect(self):
        """Figures of the compiled step (after the runs: sess.compile then hits the cache)."""
        feed_list = list(self.case.feeds[0])
        exe = self.sess.compile(self.case.run_fetches, feed_list)
        # figures for the last (for W8 the largest) feed, the one each step ends with
        self.figures = exe_figures(exe, feed_dims(self.case.feeds[-1]))
        if len(self.case.feeds) > 1:
            # executables compiled by the training-step runs over all the feeds (batch sizes)
            self.extra["compiles"] = self._step_compiles
            self.extra["batch_sizes"] = [len(next(iter(f.values()))) for f in self.case.feeds]

    def close(self):
        if self.sess is not None:
            self.sess.close()


class GraphcColdCompile(GraphcImpl):
    """W5: compile the step in a new Session with an empty on-disk cache (sess.compile time)."""

    def setup(self):
        self.root = Path(tempfile.mkdtemp(prefix="graphc-bench-"))
        self.count = 0

    def _open(self):
        self.count += 1
        opts = gc.CompileOptions(fusion=self.options.fusion, cache_dir=self.root / str(self.count))
        if self.sess is not None:
            self.sess.close()
        self.sess = gc.Session(graph=self.case.graph, target=self.target, options=opts)

    def run(self):
        self._open()
        self.exe = self.sess.compile(self.case.run_fetches, list(self.case.feeds[0]))

    def values(self):
        self.sess.run(self.case.init)
        self._step_compiles = 0
        GraphcImpl.run(self)
        return GraphcImpl.values(self)

    def collect(self):
        self.figures = exe_figures(self.exe, feed_dims(self.case.feeds[-1]))

    def close(self):
        super().close()
        shutil.rmtree(self.root, ignore_errors=True)


class GraphcWarmStart(GraphcColdCompile):
    """W5: a new Session on a cache_dir that already holds the step: time to the first result."""

    def setup(self):
        self.root = Path(tempfile.mkdtemp(prefix="graphc-bench-"))
        self.count = 0
        self.opts = gc.CompileOptions(fusion=self.options.fusion, cache_dir=self.root / "cache")
        self._start()  # fills the cache
        self.sess.close()

    def _start(self):
        self.sess = gc.Session(graph=self.case.graph, target=self.target, options=self.opts)
        self.sess.run(self.case.init)
        GraphcImpl.run(self)

    def run(self):
        if self.sess is not None:
            self.sess.close()
        self._start()

    def values(self):
        return GraphcImpl.values(self)

    def collect(self):
        exe = self.sess.compile(self.case.run_fetches, list(self.case.feeds[0]))
        self.figures = exe_figures(exe, feed_dims(self.case.feeds[-1]))
        self.figures["compile_s"] = None  # it was loaded, not compiled, when all goes well
        info = self.sess.cache_info()
        self.extra["disk_loads"] = info.get("disk_loads")
        self.extra["compiles"] = info.get("compiles")


class LimitImpl:
    """What bounds a workload on this machine (``Workload.limit``), timed like a peer but not
    an implementation of it: no values to check."""

    family = "limit"

    def __init__(self, name, workload, sizes, inputs):
        self.name = name
        self._args = (workload, sizes, inputs)
        self.figures: dict = {}
        self.extra: dict = {}
        self._fn = None

    def setup(self):
        workload, sizes, inputs = self._args
        self._fn = workload.limit(sizes, inputs)

    def run(self):
        self._fn()

    def values(self):
        return None

    def collect(self):
        pass

    def close(self):
        self._fn = None


class PeerImpl:
    """A peer framework's implementation of a workload."""

    family = "peer"

    def __init__(self, name, builder, workload, sizes, inputs, device):
        self.name, self._builder = name, builder
        self._args = (workload, sizes, inputs, device)
        self.figures: dict = {}
        self.extra: dict = {}
        self._obj = None
        self._last = None

    def setup(self):
        self._obj = self._builder(*self._args)

    def run(self):
        if callable(self._obj):
            self._last = self._obj()
        else:
            self._obj.run()

    def values(self):
        vals = self._last if callable(self._obj) else self._obj.values()
        return [to_numpy(v) for v in vals]

    def collect(self):
        pass

    def own_compile(self) -> tuple:
        """(wall, CPU) seconds of the compile the peer's object measured itself (its
        ``compile_s`` and ``compile_cpu_s``, when a run's time is not the compile: TF1's
        first step less a later one); None for each it does not measure."""
        return getattr(self._obj, "compile_s", None), getattr(self._obj, "compile_cpu_s", None)

    def close(self):
        self._obj = None
