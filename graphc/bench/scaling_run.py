"""How the runner runs a scaling workload (W12): one cold compile per (series, size) point,
timed per compile stage, then one run checked against the reference; then each importable
peer's cold compile of the same step, its first step checked too. A failing point is
reported and the others still run."""

from __future__ import annotations

import time

import numpy as np

import graphc as gc

from .impls import GraphcImpl, PeerImpl, fail_reason, session_skip
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


def run_scaling(workload, sizes, res, target, peers, progress, result_hook, seed) -> None:
    """One row per (series, size) point: a cold compile of its step (fused, no disk cache),
    timed per stage from ``exe.stats["compile_seconds"]``, then one run checked against the
    reference; then, for each of ``peers`` that has a builder for the workload, a row of its
    cold compile of the same step (``_peer_point``). A failing point (a RecursionError...) is
    reported and the others still run; a peer failing or wrong does not refuse the workload."""
    for series, n in workload.points(sizes):
        name = workload.point_name(series, n)
        progress.note(f"{workload.id} {name}")
        row, inputs, expected = _scaling_point(workload, sizes, series, n, name, target,
                                               result_hook, seed)  # fmt: skip
        res.impls.append(row)
        progress.advance(1)
        for peer in peers:
            if workload.id in peer.builders:
                progress.note(f"{workload.id} {peer.name} {name}")
                res.impls.append(_peer_point(peer, workload, sizes, series, n, row, inputs,
                                             expected, target, result_hook))  # fmt: skip
                progress.advance(1)
    graphc = [i for i in res.impls if i.family == "graphc"]
    for series in dict.fromkeys(s for s, _ in workload.points(sizes)):
        rows = [i for i in graphc if i.extra.get("series") == series]
        ok = [i for i in rows if i.status == "ok"]
        if len(ok) == len(rows) >= 2:
            first, last = ok[0].extra["s_per_op"], ok[-1].extra["s_per_op"]
            res.speedups[f"{series}_per_op_largest_over_smallest"] = last / first
        largest = rows[-1].name if rows else None
        for i in res.impls:
            if i.family == "peer" and i.extra["point"] == largest and "graphc_over_peer" in i.extra:
                key = f"{series}_largest_graphc_over_{i.extra['peer'].replace(' ', '_')}"
                res.speedups[key] = i.extra["graphc_over_peer"]
    if any(i.status == "wrong" for i in graphc):
        res.status = "refused"
        res.reason = "a graphc result differs from the reference: see the implementations"


def scaling_peer_notes(workload, known_peers, peers) -> list:
    """Why a peer that could compile ``workload``'s points has no rows: not importable here,
    or not among the ``peers`` asked for."""
    names = [p.name for p in peers]
    notes = []
    for p in known_peers:
        if workload.id in p.builders and p.name not in names:
            why = "not importable here" if not p.available() else "not asked for (--peers)"
            notes.append(f"{p.name}: {why}; no {p.name} compile times")
    return notes


def _peer_point(peer, workload, sizes, series, n, row, inputs, expected, target,
                result_hook) -> ImplResult:  # fmt: skip
    """A peer's cold compile of the point's step (its builder's ``run()``, timed once: for
    JAX tracing, lowering and compiling a new function; or the seconds the peer measured
    itself, ``PeerImpl.own_compile``) and its first step checked against the reference
    like graphc's. ``extra["cpu_s"]``: the CPU seconds of the process meanwhile (all its
    threads; steadier than wall time on a loaded machine). When graphc's ``row`` compiled
    too, the peer's row gets ``graphc_over_peer``: graphc's compile seconds over the peer's."""
    out = ImplResult(f"{peer.name} {row.name}", "peer")
    out.extra.update(series=series, size=n, point=row.name, peer=peer.name)
    if expected is None:
        out.status, out.reason = "skipped", "no reference values for this point (see its row)"
        return out
    impl = PeerImpl(out.name, peer.builders[workload.id], workload,
                    workload.point_sizes(sizes, series, n), inputs, target)  # fmt: skip
    stage = "setting up"
    try:
        impl.setup()
        stage = "compiling"
        t0, c0 = time.perf_counter(), time.process_time()
        impl.run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        own_wall, own_cpu = impl.own_compile()
        out.median_s = out.min_s = out.compile_s = wall if own_wall is None else own_wall
        out.extra["cpu_s"] = cpu if own_cpu is None else own_cpu
        out.runs = 1
        stage = "the first step"
        got = impl.values()
        if result_hook is not None:
            got = result_hook(out.name, workload.id, got)
        err, problem = compare(got, expected, workload.rtol, workload.atol)
        out.max_abs_err = err
        if problem:
            out.status, out.reason = "wrong", f"refused: {problem}"
        elif row.status == "ok":
            out.extra["graphc_over_peer"] = row.compile_s / out.compile_s
    except ImportError as exc:
        out.status, out.reason = "skipped", f"import failed: {exc}"
    except Exception as exc:  # noqa: BLE001 - a peer failing must not stop the series
        out.status, out.reason = "error", f"{stage}: {fail_reason(exc)}"
        out.median_s = out.min_s = out.compile_s = None
    finally:
        impl.close()
    return out


def _scaling_point(workload, sizes, series, n, name, target, result_hook, seed) -> tuple:
    """(graphc's row of the point, the point's inputs, the reference's values); the last two
    None when they could not be made."""
    out = ImplResult(name, "graphc")
    out.extra.update(series=series, size=n)
    stage = "building the graph"
    ref = sess = inputs = expected = None
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
        t0, c0 = time.perf_counter(), time.process_time()
        exe = sess.sess.compile(case.run_fetches, list(case.feeds[0]))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        seconds = dict(exe.stats.get("compile_seconds") or {})
        total = float(seconds.get("total", wall))
        ops = len(exe.source.nodes)
        out.median_s = out.min_s = out.compile_s = total
        out.runs, out.kernels = 1, len(exe.kernels)
        out.extra.update(
            ops=ops, s_per_op=total / ops, cpu_s=cpu,
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
    return out, inputs, expected
