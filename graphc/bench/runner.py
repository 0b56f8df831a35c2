"""Run the suite: for each workload build it, check every implementation against the
reference, time the ones that are right, and collect kernel counts, bytes and memory.

The pieces it drives: ``impls`` (the implementations), ``figures`` (compiled-code figures),
``results`` (what is recorded), ``scaling_run`` (W12's points), ``measure`` (timing).
"""

from __future__ import annotations

import time

import numpy as np

import graphc as gc

from .impls import (
    GraphcColdCompile,
    GraphcImpl,
    GraphcWarmStart,
    LimitImpl,
    PeerImpl,
    Skip,
    fail_reason,
    session_skip,
)
from .measure import compare, time_alternating, time_runs
from .peers import PEERS
from .progress import Progress
from .report import machine_info
from .results import FUSED, REFERENCE, UNFUSED, BenchResult, ImplResult, WorkloadResult
from .scaling_run import run_scaling, scaling_peer_notes
from .suite import WORKLOADS
from .workloads import Workload


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
    if workload.kind == "scaling":  # each point: graphc's row, then one per peer
        points = len(workload.points(workload.scaled(workload.sizes(quick), scale)))
        return points * (1 + sum(workload.id in p.builders for p in peers))
    if workload.kind == "distributed":
        return 2  # a job of 1 process, then one of 2
    if workload.kind == "own":  # W13: one step per (model, batch) of its own loop
        return len(workload.sizes(quick)["models"]) * len(workload.sizes(quick)["batches"])
    return ((4 if workload.kind == "compile" else 3) + sum(workload.id in p.builders for p in peers)
            + bool(workload.limit_name))  # fmt: skip


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
    if workload.limit_name and target == "cpu":
        others.append(LimitImpl(workload.limit_name, workload, sizes, inputs))
    return graphc + others


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
        run_scaling(workload, sizes, res, target, peers, progress, result_hook, seed)
        res.notes.extend(scaling_peer_notes(workload, PEERS, peers))
        return res
    inputs = workload.inputs(sizes, np.random.default_rng(seed))
    try:
        case = workload.build(sizes, inputs)
    except (AttributeError, NotImplementedError, gc.errors.UnimplementedError) as exc:
        res.status, res.reason = "skipped", f"cannot build the graph yet: {fail_reason(exc)}"
        progress.advance(_steps(workload, peers), f"{workload.id} skipped")
        return res
    except Exception as exc:  # noqa: BLE001 - reported, the suite goes on
        res.status, res.reason = "error", f"building the graph failed: {fail_reason(exc)}"
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
        skip = session_skip(exc)
        res.status = "skipped" if skip else "error"
        res.reason = f"the reference run failed: {fail_reason(exc)}"
        ref.close()
        progress.advance(_steps(workload, peers), f"{workload.id} {res.status}")
        return res

    impls = _impls(workload, case, sizes, inputs, target, peers, target)
    if workload.kind != "compile":
        impls.insert(0, ref)
    inner = workload.inner_calls(sizes)
    turns = []  # (impl, its row): checked, then timed together below
    for impl in impls:
        progress.note(f"{workload.id} {impl.name}")
        # run-time measurements in turns; the reference (seconds a run on the large
        # workloads, and no one's rival) and compile timings (a cold compile must stay cold)
        # alone
        together = workload.kind != "compile" and impl is not ref
        out = _check(impl, workload, expected, result_hook)
        res.impls.append(out)
        if out.status == "ok" and together:
            turns.append((impl, out))
            continue  # timed, then closed, below
        if out.status == "ok":
            warmup = 0 if workload.kind == "compile" else 1
            _guard(out, "timing", _time_alone, impl, out, repeat, warmup, inner, budget_s)
            _guard(out, "collecting figures", _collect, impl, out)
        impl.close()
        progress.advance(1)
    if turns:
        progress.note(f"{workload.id} in turns: " + ", ".join(i.name for i, _ in turns))
        _time_in_turns(turns, inner, repeat, budget_s, 0.0 if quick else None)
        for impl, _ in turns:
            impl.close()
        progress.advance(len(turns))
    if workload.kind == "compile":
        ref.close()
    _ratios(res)
    if any(i.family == "graphc" and i.status == "wrong" for i in res.impls):
        res.status = "refused"
        res.reason = "a graphc result differs from the reference: see the implementations"
    return res


def _guard(out: ImplResult, stage: str, fn, *args) -> bool:
    """Run ``fn(*args)`` unless ``out`` failed already; an exception becomes ``out``'s status
    and reason (an implementation failing must not stop the suite). True when it ran."""
    if out.status != "ok":
        return False
    try:
        fn(*args)
        return True
    except Skip as exc:
        out.status, out.reason = "skipped", str(exc)
    except ImportError as exc:
        out.status, out.reason = "skipped", f"import failed: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported in the row
        skip = session_skip(exc)
        out.status = "skipped" if skip else "error"
        out.reason = f"{stage}: {fail_reason(exc)}"
    return False


def _check(impl, workload, expected, result_hook) -> ImplResult:
    """Set ``impl`` up, run it once and compare its values with ``expected``: its row, status
    "ok" when it may be timed."""
    out = ImplResult(impl.name, impl.family)
    got = []
    _guard(out, "setting up", impl.setup)
    _guard(out, "the first run", impl.run)
    if not _guard(out, "reading the results", lambda: got.append(impl.values())):
        return out
    (values,) = got
    if impl.family == "limit":  # not an implementation: nothing to check
        return out
    if result_hook is not None:
        values = result_hook(impl.name, workload.id, values)
    err, problem = compare(values, expected, workload.rtol, workload.atol)
    out.max_abs_err = err
    if problem:
        out.status = "wrong"
        out.reason = f"refused, not timed: {problem}"
    return out


def _set(out: ImplResult, t) -> None:
    out.median_s, out.min_s, out.runs, out.inner = t.median_s, t.min_s, t.runs, t.inner


def _time_alone(impl, out: ImplResult, repeat, warmup, inner, budget_s) -> None:
    _set(out, time_runs(impl.run, repeat, warmup=warmup, inner=inner, budget_s=budget_s))


def _collect(impl, out: ImplResult) -> None:
    impl.collect()
    for k, v in impl.figures.items():
        setattr(out, k, v)
    out.extra.update(impl.extra)


def _time_in_turns(turns, inner, repeat, budget_s, settle_s) -> None:
    """Time the checked implementations of a workload in turns (``measure.time_alternating``:
    on a shared machine whose load changes over seconds, a block of runs timed after another
    block compares two machines). When one of them fails while timed, each is timed alone,
    so that the failure is its own row's."""
    try:
        times = time_alternating(
            [impl.run for impl, _ in turns], repeat, budget_s=budget_s * len(turns),
            inner=inner, settle_s=settle_s,
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - found out below, one by one
        times = None
    for k, (impl, out) in enumerate(turns):
        if times is not None:
            _set(out, times[k])
        else:
            _guard(out, "timing", _time_alone, impl, out, repeat, 1, inner, budget_s)
        _guard(out, "collecting figures", _collect, impl, out)


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
            key = name.replace("graphc ", "").replace(" ", "_")
            if impl.family == "limit":  # how far above what bounds it graphc is
                ratio = base.median_s / impl.median_s
                res.speedups[f"fused_time_over_{key}"] = ratio
                continue
            res.speedups["fused_over_" + key] = impl.median_s / base.median_s
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
