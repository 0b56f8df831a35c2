"""Run the suite: for each workload build it, check every implementation against the
reference, time the ones that are right, and collect kernel counts, bytes and memory.
"""

from __future__ import annotations

import ast
import operator
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import graphc as gc

from .measure import compare, time_runs
from .peers import PEERS, to_numpy
from .progress import Progress
from .suite import WORKLOADS
from .workloads import Workload

REFERENCE, UNFUSED, FUSED = "graphc reference", "graphc unfused", "graphc fused"

# exe.stats keys the backends may use for the two memory figures (first one present wins).
BYTES_KEYS = ("bytes_moved", "bytes_moved_per_run", "estimated_bytes_moved")
PEAK_KEYS = ("peak_temp_bytes", "peak_temporary_bytes", "peak_temp_memory", "peak_bytes")


class Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """An implementation cannot run here; the message says why."""


@dataclass
class ImplResult:
    """One implementation of one workload: its status, times and compiled-code figures."""

    name: str
    family: str  # graphc | peer
    status: str = "ok"  # ok | skipped | wrong | error
    reason: str = ""
    median_s: float | None = None
    min_s: float | None = None
    runs: int = 0
    inner: int = 1
    vs_baseline: float | None = None  # this median / baseline median (>1: baseline faster)
    max_abs_err: float | None = None
    kernels: int | None = None
    bytes_moved: int | None = None
    peak_temp_bytes: int | None = None
    compile_s: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class WorkloadResult:
    """One workload: what it is, its status and every implementation's result."""

    id: str
    title: str
    stresses: str
    description: str
    unit: str
    sizes: dict
    status: str = "ok"  # ok | skipped | refused | error
    reason: str = ""
    baseline: str = FUSED
    impls: list = field(default_factory=list)
    speedups: dict = field(default_factory=dict)  # "fused_over_unfused", "<peer>_over_fused"
    notes: list = field(default_factory=list)


@dataclass
class BenchResult:
    """Everything one ``graphc bench`` run measured, with the machine it ran on."""

    machine: dict
    options: dict
    workloads: list

    @property
    def ok(self) -> bool:
        """False when a result was refused or graphc failed (peers' failures do not count)."""
        for w in self.workloads:
            if w.status in ("refused", "error"):
                return False
            if any(i.family == "graphc" and i.status in ("wrong", "error") for i in w.impls):
                return False
        return True


# -- implementations --------------------------------------------------------------------------


def _session_skip(exc: Exception) -> Skip | None:
    """An exception that means "not available yet" (rather than a bug) as a Skip."""
    if isinstance(exc, gc.errors.UnimplementedError | gc.errors.UnavailableError):
        return Skip(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, NotImplementedError):
        return Skip(f"not implemented yet: {exc}")
    return None


_SIZE_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
             ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # fmt: skip


def size_value(expr: str, dims: dict) -> int | None:
    """Evaluate a size expression such as ``"((d0_0 * 4) + 64)"`` or ``"max(a, b)"``.

    Backends state sizes that depend on ``None`` dimensions as such text, naming the
    runtime dims ``d<feed>_<axis>``. Only integer arithmetic, max/min and known dim names
    are accepted; anything else gives None (reported as "n/a").
    """

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in dims:
            return dims[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _SIZE_OPS:
            return _SIZE_OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if is_call and node.func.id in ("max", "min") and node.args and not node.keywords:
            return (max if node.func.id == "max" else min)(ev(a) for a in node.args)
        raise ValueError("not a size expression")

    try:
        return int(ev(ast.parse(expr.strip(), mode="eval")))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, RecursionError):
        return None


def feed_dims(feeds: dict) -> dict:
    """``d<feed>_<axis>`` -> size for a feed dict, feeds in the Session's order."""
    ordered = sorted(feeds, key=lambda t: (t.op._id, t.value_index))
    return {
        f"d{i}_{axis}": int(n)
        for i, t in enumerate(ordered)
        for axis, n in enumerate(np.shape(feeds[t]))
    }


def _number(v, dims=None):
    if isinstance(v, str) and dims is not None:
        return size_value(v, dims)
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return None
    return int(v)


def _first(stats: dict, keys, dims):
    for k in keys:
        v = _number(stats.get(k), dims)
        if v is not None:
            return v
    return None


def exe_figures(exe, dims: dict | None = None) -> dict:
    """Kernel count, bytes moved per run, peak temporary memory and compile time of ``exe``.

    Backends fill ``exe.stats`` as they can; a figure they do not provide is None ("n/a").
    ``dims`` gives the runtime sizes for figures that depend on ``None`` dimensions.
    """
    stats = getattr(exe, "stats", {}) or {}
    out = {"kernels": len(exe.kernels)}
    out["bytes_moved"] = _first(stats, BYTES_KEYS, dims)
    if out["bytes_moved"] is None and exe.kernels:
        per_kernel = [_number(getattr(k, "bytes_moved", None), dims) for k in exe.kernels]
        if all(b is not None for b in per_kernel):
            out["bytes_moved"] = sum(per_kernel)
    out["peak_temp_bytes"] = _first(stats, PEAK_KEYS, dims)
    seconds = stats.get("compile_seconds") or {}
    total = seconds.get("total") if isinstance(seconds, dict) else None
    out["compile_s"] = float(total) if isinstance(total, int | float) else None
    return out


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

    def close(self):
        self._obj = None


# -- the suite --------------------------------------------------------------------------------


def select(suite: str | None) -> list[Workload]:
    """Workloads named by ``suite`` ("W1,W3", "all" or None for all), in suite order.

    "All" is the default suite (W1..W8); W12 (compile scaling, minutes) runs when named.
    """
    if suite is None or suite.strip().lower() in ("", "all"):
        return [w for w in WORKLOADS.values() if w.in_default_suite]
    ids = [s.strip().upper() for s in suite.split(",") if s.strip()]
    unknown = [i for i in ids if i not in WORKLOADS]
    if unknown:
        raise ValueError(
            f"unknown workload(s) {', '.join(unknown)}; expected some of {', '.join(WORKLOADS)}"
        )
    return [WORKLOADS[i] for i in WORKLOADS if i in ids]


def available_peers(names=None) -> list:
    """The peers importable here (optionally only those named; unknown names are an error)."""
    if names is not None:
        known = [p.name for p in PEERS]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"unknown peer(s) {', '.join(map(repr, unknown))}; expected some of "
                f"{', '.join(map(repr, known))}"
            )
    return [p for p in PEERS if p.available() and (names is None or p.name in names)]


def _steps(workload, peers, quick=False, scale=None) -> int:
    """Progress steps of one workload: its graphc variants and the peers that implement it
    (a scaling workload: its points)."""
    if workload.kind == "scaling":
        return len(workload.points(workload.scaled(workload.sizes(quick), scale)))
    if workload.kind == "distributed":
        return 2  # a job of 1 process, then one of 2
    if workload.kind == "own":  # W13: one step per (model, batch) of its own loop
        return len(workload.sizes(quick)["models"]) * len(workload.sizes(quick)["batches"])
    return (4 if workload.kind == "compile" else 3) + sum(workload.id in p.builders for p in peers)


def _impls(workload, case, sizes, inputs, target, peers, device):
    if workload.kind == "compile":
        graphc = [
            GraphcColdCompile(f"{UNFUSED} cold compile", case, target,
                              gc.CompileOptions(fusion=False)),
            GraphcWarmStart(f"{UNFUSED} warm start", case, target,
                            gc.CompileOptions(fusion=False)),
            GraphcColdCompile(f"{FUSED} cold compile", case, target,
                              gc.CompileOptions(fusion=True)),
            GraphcWarmStart(f"{FUSED} warm start", case, target,
                            gc.CompileOptions(fusion=True)),
        ]  # fmt: skip
    else:
        graphc = [
            GraphcImpl(UNFUSED, case, target, gc.CompileOptions(fusion=False, cache_dir=None)),
            GraphcImpl(FUSED, case, target, gc.CompileOptions(fusion=True, cache_dir=None)),
        ]
    others = [
        PeerImpl(p.name, p.builders[workload.id], workload, sizes, inputs, device)
        for p in peers
        if workload.id in p.builders
    ]
    return graphc + others


def _fail_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def run_workload(workload, quick, target, repeat, budget_s, peers, progress, result_hook,
                 seed=0, scale=None) -> WorkloadResult:  # fmt: skip
    """Build, check and time one workload; never raises for a failing implementation.
    ``scale``: the sizes of a scaling workload's points (None: those of ``quick``)."""
    sizes = workload.sizes(quick)
    if workload.kind == "scaling":
        sizes = workload.scaled(sizes, scale)
    res = WorkloadResult(
        workload.id, workload.title, workload.stresses, workload.describe(sizes),
        workload.unit, {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
    )  # fmt: skip
    if workload.kind == "compile":
        res.baseline = f"{FUSED} cold compile"
    missing = workload.missing()
    if missing:
        res.status, res.reason = "skipped", missing
        progress.advance(_steps(workload, peers, quick, scale), f"{workload.id} skipped")
        return res
    if workload.kind in ("distributed", "own"):  # W14's MPI jobs, W13's model loop
        workload.run_jobs(sizes, res, repeat, progress, ImplResult)
        return res
    if workload.kind == "scaling":
        res.baseline = ""
        _run_scaling(workload, sizes, res, target, progress, result_hook, seed)
        return res
    inputs = workload.inputs(sizes, np.random.default_rng(seed))
    try:
        case = workload.build(sizes, inputs)
    except (AttributeError, NotImplementedError, gc.errors.UnimplementedError) as exc:
        res.status, res.reason = "skipped", f"cannot build the graph yet: {_fail_reason(exc)}"
        progress.advance(_steps(workload, peers), f"{workload.id} skipped")
        return res
    except Exception as exc:  # noqa: BLE001 - reported, the suite goes on
        res.status, res.reason = "error", f"building the graph failed: {_fail_reason(exc)}"
        progress.advance(_steps(workload, peers), f"{workload.id} error")
        return res

    # The oracle: graphc's reference interpreter. Its values are what everything must match.
    ref = GraphcImpl(REFERENCE, case, "reference", gc.CompileOptions(cache_dir=None))
    progress.note(f"{workload.id} {REFERENCE}")
    try:
        ref.setup()
        ref.run()
        expected = [np.asarray(v) for v in ref.values()]
    except Exception as exc:  # noqa: BLE001
        skip = _session_skip(exc)
        res.status = "skipped" if skip else "error"
        res.reason = f"the reference run failed: {_fail_reason(exc)}"
        ref.close()
        progress.advance(_steps(workload, peers), f"{workload.id} {res.status}")
        return res

    impls = _impls(workload, case, sizes, inputs, target, peers, target)
    if workload.kind != "compile":
        impls.insert(0, ref)
    inner = workload.inner_calls(sizes)
    for impl in impls:
        progress.note(f"{workload.id} {impl.name}")
        res.impls.append(_measure(impl, workload, expected, inner, repeat, budget_s, result_hook))
        impl.close()
        progress.advance(1)
    if workload.kind == "compile":
        ref.close()
    _ratios(res)
    if any(i.family == "graphc" and i.status == "wrong" for i in res.impls):
        res.status = "refused"
        res.reason = "a graphc result differs from the reference: see the implementations"
    return res


#: compile stages of a scaling table: column -> ``compile_seconds`` keys summed into it
SCALING_STAGES = {
    "passes": ("cleanup", "simplify", "fold", "cse", "dce"),
    "fusion": ("fusion",),
    "lower": ("lower",),
    "plan": ("plan",),
    "render": ("llvm_render",),
    "llvm": ("llvm_wall",),
    "load": ("llvm_load",),
}


def _run_scaling(workload, sizes, res, target, progress, result_hook, seed) -> None:
    """One row per (series, size) point: a cold compile of its step (fused, no disk cache),
    timed per stage from ``exe.stats["compile_seconds"]``, then one run checked against the
    reference. A failing point (a RecursionError...) is reported and the others still run."""
    for series, n in workload.points(sizes):
        name = workload.point_name(series, n)
        progress.note(f"{workload.id} {name}")
        res.impls.append(_scaling_point(workload, sizes, series, n, name, target, result_hook,
                                        seed))  # fmt: skip
        progress.advance(1)
    for series in dict.fromkeys(s for s, _ in workload.points(sizes)):
        rows = [i for i in res.impls if i.extra.get("series") == series]
        ok = [i for i in rows if i.status == "ok"]
        if len(ok) == len(rows) >= 2:
            first, last = ok[0].extra["s_per_op"], ok[-1].extra["s_per_op"]
            res.speedups[f"{series}_per_op_largest_over_smallest"] = last / first
    if any(i.status == "wrong" for i in res.impls):
        res.status = "refused"
        res.reason = "a graphc result differs from the reference: see the implementations"


def _scaling_point(workload, sizes, series, n, name, target, result_hook, seed) -> ImplResult:
    out = ImplResult(name, "graphc")
    out.extra.update(series=series, size=n)
    stage = "building the graph"
    ref = sess = None
    try:
        inputs = workload.point_inputs(sizes, series, n, np.random.default_rng(seed))
        case = workload.build_point(sizes, series, n, inputs)
        stage = "the reference run"
        ref = GraphcImpl(REFERENCE, case, "reference", gc.CompileOptions(cache_dir=None))
        ref.setup()
        ref.run()
        expected = [np.asarray(v) for v in ref.values()]
        stage = "compiling"
        opts = gc.CompileOptions(fusion=True, cache_dir=None)
        sess = GraphcImpl(f"{FUSED} {name}", case, target, opts)
        sess.setup()  # runs the initializer (its own small executable)
        t0 = time.perf_counter()
        exe = sess.sess.compile(case.run_fetches, list(case.feeds[0]))
        wall = time.perf_counter() - t0
        seconds = dict(exe.stats.get("compile_seconds") or {})
        total = float(seconds.get("total", wall))
        ops = len(exe.source.nodes)
        out.median_s = out.min_s = out.compile_s = total
        out.runs, out.kernels = 1, len(exe.kernels)
        out.extra.update(
            ops=ops, s_per_op=total / ops,
            stages={col: sum(seconds.get(k, 0.0) for k in keys)
                    for col, keys in SCALING_STAGES.items()},
        )  # fmt: skip
        stage = "the compiled run"
        sess.run()
        got = sess.values()
        if result_hook is not None:
            got = result_hook(name, workload.id, got)
        err, problem = compare(got, expected, workload.rtol, workload.atol)
        out.max_abs_err = err
        if problem:
            out.status, out.reason = "wrong", f"refused: {problem}"
    except Exception as exc:  # noqa: BLE001 - one point failing must not stop the series
        skip = _session_skip(exc)
        out.status = "skipped" if skip else "error"
        out.reason = f"{stage}: {_fail_reason(exc)}"
        out.median_s = out.min_s = out.compile_s = None
    finally:
        for impl in (ref, sess):
            if impl is not None:
                impl.close()
    return out


def _measure(impl, workload, expected, inner, repeat, budget_s, result_hook) -> ImplResult:
    out = ImplResult(impl.name, impl.family)
    stage = "setting up"
    try:
        impl.setup()
        stage = "the first run"
        impl.run()
        stage = "reading the results"
        got = impl.values()
        if result_hook is not None:
            got = result_hook(impl.name, workload.id, got)
        err, problem = compare(got, expected, workload.rtol, workload.atol)
        out.max_abs_err = err
        if problem:
            out.status = "wrong"
            out.reason = f"refused, not timed: {problem}"
            return out
        stage = "timing"
        # No warm-up for compile timings: a cold compile must stay cold (and the first run
        # above already warmed everything a run-time measurement needs).
        warmup = 0 if workload.kind == "compile" else 1
        t = time_runs(impl.run, repeat, warmup=warmup, inner=inner, budget_s=budget_s)
        out.median_s, out.min_s, out.runs, out.inner = t.median_s, t.min_s, t.runs, t.inner
        stage = "collecting figures"
        impl.collect()
        for k, v in impl.figures.items():
            setattr(out, k, v)
        out.extra.update(impl.extra)
    except Skip as exc:
        out.status, out.reason = "skipped", str(exc)
    except ImportError as exc:
        out.status, out.reason = "skipped", f"import failed: {exc}"
    except Exception as exc:  # noqa: BLE001 - one implementation failing must not stop the suite
        skip = _session_skip(exc)
        out.status = "skipped" if skip else "error"
        out.reason = f"{stage}: {_fail_reason(exc)}"
    return out


def _ratios(res: WorkloadResult) -> None:
    by_name = {i.name: i for i in res.impls if i.status == "ok" and i.median_s}
    base = by_name.get(res.baseline)
    if base is None:
        return
    for impl in res.impls:
        if impl.name in by_name:
            impl.vs_baseline = impl.median_s / base.median_s
    if res.baseline == FUSED:
        for name, impl in by_name.items():
            if name == FUSED:
                continue
            key = "fused_over_" + name.replace("graphc ", "").replace(" ", "_")
            res.speedups[key] = impl.median_s / base.median_s
    else:
        unfused = by_name.get(f"{UNFUSED} cold compile")
        if unfused:
            res.speedups["cold_compile_unfused_over_fused"] = unfused.median_s / base.median_s
        warm = by_name.get(f"{FUSED} warm start")
        if warm:
            res.speedups["fused_cold_over_warm"] = base.median_s / warm.median_s


def run_suite(suite=None, quick=False, target="cpu", repeat=10, budget_s=10.0, peers=None,
              progress: bool = True, result_hook=None, stream=None,
              scale=None) -> BenchResult:  # fmt: skip
    """Run the selected workloads; ``result_hook(impl, workload_id, values) -> values`` may
    alter results before they are checked (tests use it to inject a wrong result).
    ``scale``: sizes of the points of scaling workloads (W12), e.g. ``(8, 16)``.
    """
    from .report import machine_info

    workloads = select(suite)
    if target not in ("cpu", "cuda"):
        raise ValueError(f"target must be 'cpu' or 'cuda', got {target!r}")
    gc.Session(target=target).close()  # raises UnavailableError naming what is missing
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if scale is not None:
        scale = tuple(int(n) for n in scale)
        if not scale or min(scale) < 1:
            raise ValueError(f"scale sizes must be positive integers, got {scale}")
    peer_list = available_peers(peers)
    steps = sum(_steps(w, peer_list, quick, scale) for w in workloads)
    bar = Progress(steps, enabled=progress, stream=stream)
    t0 = time.perf_counter()
    results = [
        run_workload(
            w, quick, target, repeat, budget_s, peer_list, bar, result_hook, scale=scale
        )  # fmt: skip
        for w in workloads
    ]
    bar.finish()
    options = {
        "suite": [w.id for w in workloads],
        "quick": quick,
        "target": target,
        "repeat": repeat,
        "budget_s": budget_s,
        "scale": None if scale is None else list(scale),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return BenchResult(machine_info(), options, results)
