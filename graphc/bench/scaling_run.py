"""How the runner runs a scaling workload (W12): one cold compile per (series, size) point,
timed per compile stage, then one run checked against the reference. A failing point is
reported and the others still run."""

from __future__ import annotations

import time

import numpy as np

import graphc as gc

from .impls import GraphcImpl, fail_reason, session_skip
from .measure import compare
from .results import FUSED, REFERENCE, ImplResult

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


def run_scaling(workload, sizes, res, target, progress, result_hook, seed) -> None:
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
        skip = session_skip(exc)
        out.status = "skipped" if skip else "error"
        out.reason = f"{stage}: {fail_reason(exc)}"
        out.median_s = out.min_s = out.compile_s = None
    finally:
        for impl in (ref, sess):
            if impl is not None:
                impl.close()
    return out
