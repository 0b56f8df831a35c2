"""Workload W14 (docs/benchmarks.md): W3 data-parallel over 2 processes against 1 process.

``graphc bench --suite W14`` launches the jobs itself (``mpiexec -n N python -m mpi4py
graphc/bench/dist_worker.py``, see ``graphc.distribute.launch``): one job of 1 process and
one of 2, each process with one thread and the same per-process batch, training W3's MLP
with ``gc.distribute.DistributedOptimizer`` (plain SGD, as W3). Throughput is samples per
second (processes x batch / median step time); the target is 2 processes >= 1.8x one.

Checks before any figure is reported: the first step of each job equals numpy's SGD step on
the job's whole global batch (N x batch rows), and every rank ends with the same variables
(digest). Where the time goes, per step of the 2-process job: ``allreduce`` (packing the
gradients, the MPI allreduce, unpacking), ``wait`` (the 16-byte signature check before it:
mostly waiting for the slower rank to arrive) and ``compute`` (the rest of the step: the
native segments and the host op's Python), against the 1-process job's compute.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from ..distribute import comm, launch
from ..errors import UnavailableError
from .workloads import MLPStep

WORKER = Path(__file__).resolve().parent / "dist_worker.py"
PROCESSES = 2
JOB_TIMEOUT_S = 600


class DataParallel(MLPStep):
    """W14: W3's step on 1 and on 2 processes (kind "distributed": its own runner)."""

    id = "W14"
    title = "data-parallel W3"
    stresses = "allreduce cost, scaling over processes"
    kind = "distributed"
    in_default_suite = False  # starts MPI jobs: run when named (--suite W14)
    rtol, atol = 2e-4, 2e-5

    def describe(self, sizes):
        return (
            super().describe(sizes) + f"; SGD via gc.distribute.DistributedOptimizer, "
            f"1 and {PROCESSES} processes (mpiexec), 1 thread each, batch {sizes['batch']} "
            "per process"
        )

    def missing(self):
        try:
            comm.require_installed()  # without starting MPI in this process
        except UnavailableError as exc:
            return str(exc)
        return super().missing()

    def run_jobs(self, sizes, res, repeat, progress, impl_cls) -> None:
        """Run the jobs and fill ``res`` (see ``run``)."""
        run(self, sizes, res, repeat, progress, impl_cls)


def run_job(n: int, sizes: dict, steps: int, warmup: int, root: Path) -> list:
    """Per-rank result dicts of one job of ``n`` processes (RuntimeError if it fails)."""
    spec = root / f"spec{n}.json"
    spec.write_text(json.dumps({"sizes": sizes, "steps": steps, "warmup": warmup}))
    prefix = root / f"out{n}"
    res = launch.run_job(n, WORKER, [spec, prefix], timeout=JOB_TIMEOUT_S)
    if res.timed_out or res.returncode != 0:
        tail = (res.stderr or res.stdout)[-1500:]
        why = "timed out" if res.timed_out else f"exit status {res.returncode}"
        raise RuntimeError(f"the {n}-process job failed ({why}): {tail}")
    return [json.loads(Path(f"{prefix}.{r}.json").read_text()) for r in range(n)]


def summarize(ranks: list, batch: int) -> dict:
    """Median step, throughput and where the time goes (seconds per step) of one job; the
    slowest rank's figures (every rank waits for it at the allreduce)."""
    per = []
    for d in ranks:
        step = statistics.median(d["step_s"])
        red = statistics.median(d["allreduce_s"])
        wait = statistics.median(d["check_s"])
        per.append({"step": step, "min": min(d["step_s"]), "allreduce": red, "wait": wait,
                    "cpu": statistics.median(d["cpu_s"]),
                    "compute": statistics.median(
                        [s - a - c for s, a, c in zip(d["step_s"], d["allreduce_s"], d["check_s"])]
                    )})  # fmt: skip
    slow = max(per, key=lambda p: p["step"])
    return {
        **slow,
        "runs": len(ranks[0]["step_s"]),
        "samples_per_s": len(ranks) * batch / slow["step"],
        "max_err": max(d["first_step_max_err"] for d in ranks),
        "same_variables": len({d["digest"] for d in ranks}) == 1,
        "bytes_per_step": ranks[0]["allreduce_bytes_per_step"],
        "calls_per_step": ranks[0]["allreduce_calls_per_step"],
        "first_step_s": max(d["first_step_s"] for d in ranks),
        "bare_allreduce": ranks[0].get("bare_allreduce_s"),
        "per_rank": per,
    }


def run(workload, sizes, res, repeat, progress, impl_cls) -> None:
    """Fill ``res`` (a WorkloadResult) with the 1- and 2-process rows, the throughput ratio
    and notes on where the 2-process step's time goes."""
    steps, warmup = max(10, 2 * repeat), 3
    tol = workload.rtol
    with tempfile.TemporaryDirectory(prefix="graphc-w14-") as tmp:
        figures = {}
        for n in (1, PROCESSES):
            name = f"graphc fused, {n} process{'es' if n > 1 else ''}"
            progress.note(f"{workload.id} {name}")
            out = impl_cls(name, "graphc")
            try:
                f = summarize(run_job(n, sizes, steps, warmup, Path(tmp)), sizes["batch"])
            except Exception as exc:  # noqa: BLE001 - reported; the suite goes on
                out.status, out.reason = "error", f"{type(exc).__name__}: {exc}"
                res.impls.append(out)
                progress.advance(1)
                continue
            out.median_s, out.min_s, out.runs = f["step"], f["min"], f["runs"]
            out.max_abs_err = f["max_err"]
            out.compile_s = f["first_step_s"]
            out.extra = {k: v for k, v in f.items() if k not in ("step", "min", "runs")}
            if f["max_err"] > tol:
                out.status, out.reason = (
                    "wrong",
                    (
                        f"first step differs from numpy's SGD step on the global batch by "
                        f"{f['max_err']:.1e} (relative)"
                    ),
                )
            elif not f["same_variables"]:
                out.status, out.reason = "wrong", "the processes ended with different variables"
            figures[n] = f
            res.impls.append(out)
            progress.advance(1)
    res.baseline = res.impls[0].name if res.impls else ""
    if res.impls and res.impls[0].median_s:
        for i in res.impls:
            if i.median_s:
                i.vs_baseline = i.median_s / res.impls[0].median_s
    if any(i.status == "wrong" for i in res.impls):
        res.status = "refused"
        res.reason = "a data-parallel result differs from numpy's step: see the rows"
        return
    if 1 in figures and PROCESSES in figures:
        one, two = figures[1], figures[PROCESSES]
        res.speedups["throughput_2_processes_over_1"] = two["samples_per_s"] / one["samples_per_s"]
        res.notes.extend(_breakdown(one, two))


def _breakdown(one: dict, two: dict) -> list:
    ms = 1e3
    notes = [
        f"samples/s: 1 process {one['samples_per_s']:.0f}, {PROCESSES} processes "
        f"{two['samples_per_s']:.0f} (target >= 1.8x)",
        f"{PROCESSES}-process step (slowest rank, medians): {two['step'] * ms:.2f} ms = compute "
        f"{two['compute'] * ms:.2f} ms + allreduce {two['allreduce'] * ms:.2f} ms "
        f"({two['calls_per_step']:.0f} call(s), {two['bytes_per_step'] / 1e6:.2f} MB a step, "
        f"packing included) + wait for the other rank {two['wait'] * ms:.2f} ms; the same "
        f"bytes reduced alone after a barrier: {two['bare_allreduce'] * ms:.2f} ms",
        f"CPU time a step (process_time; the rest of the step the process waited for a core "
        f"or slept): 1 process {one['cpu'] * ms:.2f} of {one['step'] * ms:.2f} ms, "
        f"{PROCESSES} processes {two['cpu'] * ms:.2f} of {two['step'] * ms:.2f} ms",
        f"1-process step: {one['step'] * ms:.2f} ms, all compute; the {PROCESSES}-process "
        f"compute is {two['compute'] / one['compute']:.2f}x it (>1: the processes slow each "
        "other down: shared cores, memory bandwidth, or other load on the machine)",
    ]
    for r, p in enumerate(two["per_rank"]):
        notes.append(
            f"rank {r}: step {p['step'] * ms:.2f} ms (CPU {p['cpu'] * ms:.2f} ms), compute "
            f"{p['compute'] * ms:.2f} ms, "
            f"allreduce {p['allreduce'] * ms:.2f} ms, wait {p['wait'] * ms:.2f} ms"
        )
    return notes
