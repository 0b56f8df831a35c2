"""Where a benchmark workload's graphc step spends its time, kernel by kernel.

    python scripts/profile_step.py W9                  # fused, the default threads, wall clock
    python scripts/profile_step.py W9 --cpu-clock      # one thread, thread CPU time per kernel
    python scripts/profile_step.py W9 --unfused --top 20

Runs the workload's step (full sizes unless ``--quick``) a few times with
``RunOptions(trace=True)`` and prints each kernel's median time with the op types it fuses,
then the compile seconds per stage (``exe.stats["compile_seconds"]``).

``--cpu-clock`` is for shared, loaded machines, where wall-clock kernel times mostly measure
the scheduler: the step runs on one thread and the trace's clock (CLOCK_MONOTONIC in the
generated code) is switched to CLOCK_THREAD_CPUTIME_ID for this process only, so each kernel
reads the CPU time it used, whatever the load. It patches the renderer of the process it runs
in while it compiles the step (never the disk cache).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import time

import numpy as np
from llvmlite import ir

import graphc as gc
from graphc.backends.llvm import render
from graphc.bench.suite import WORKLOADS

CLOCK_THREAD_CPUTIME_ID = 3


@contextlib.contextmanager
def thread_cpu_clock():
    """While open, the kernel trace of code rendered in this process reads the calling
    thread's CPU time (the first argument of the ``clock_gettime`` call in the renderer's
    ``gc.now``); the renderer is restored on exit."""
    original = render.Renderer._now

    def _now(self, b):
        out = original(self, b)
        for instr in self._decls["gc.now"].blocks[0].instructions:
            if isinstance(instr, ir.CallInstr) and instr.callee.name == "clock_gettime":
                instr.operands[1] = ir.Constant(ir.IntType(32), CLOCK_THREAD_CPUTIME_ID)
        return out

    render.Renderer._now = _now
    try:
        yield
    finally:
        render.Renderer._now = original


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workload", help="a step workload id, e.g. W9")
    ap.add_argument("--unfused", action="store_true", help="CompileOptions(fusion=False)")
    ap.add_argument("--quick", action="store_true", help="the workload's quick sizes")
    ap.add_argument("--cpu-clock", action="store_true", help="one thread, thread CPU time")
    ap.add_argument("--runs", type=int, default=5, help="traced runs (median per kernel)")
    ap.add_argument("--top", type=int, default=0, help="print only the N slowest kernels")
    args = ap.parse_args(argv)

    w = WORKLOADS[args.workload.upper()]
    sizes = w.sizes(args.quick)
    inputs = w.inputs(sizes, np.random.default_rng(0))
    case = w.build(sizes, inputs)
    opts = gc.CompileOptions(fusion=not args.unfused, cache_dir=None,
                             threads=1 if args.cpu_clock else None)  # fmt: skip
    sess = gc.Session(graph=case.graph, target="cpu", options=opts)
    if case.init is not None:
        sess.run(case.init)
    with thread_cpu_clock() if args.cpu_clock else contextlib.nullcontext():
        exe = sess.compile(case.run_fetches, list(case.feeds[0]))
    for _ in range(2):  # warm-up
        sess.run(case.run_fetches, case.feeds[0])
    per_kernel = collections.defaultdict(list)
    steps = []
    for _ in range(args.runs):
        md = gc.RunMetadata()
        t0 = time.perf_counter()
        sess.run(case.run_fetches, case.feeds[0], options=gc.RunOptions(trace=True),
                 run_metadata=md)  # fmt: skip
        steps.append(time.perf_counter() - t0)
        totals = collections.defaultdict(float)
        for s in md.step_stats:
            totals[s.name] += s.duration
        for name, t in totals.items():
            per_kernel[name].append(t)
    sess.close()

    types = {k.name: k.op_types for k in exe.kernels}
    rows = sorted(((float(np.median(v)), n) for n, v in per_kernel.items()), reverse=True)
    clock = "thread CPU time, 1 thread" if args.cpu_clock else "wall clock"
    total = sum(t for t, _ in rows)
    print(f"{w.id} {w.describe(sizes)}")
    print(f"{'unfused' if args.unfused else 'fused'}: {len(exe.kernels)} kernels; step wall "
          f"median {1e3 * float(np.median(steps)):.1f} ms; kernels' sum ({clock}) "
          f"{1e3 * total:.1f} ms")  # fmt: skip
    for t, name in rows[: args.top or None]:
        share = 100 * t / total if total else 0.0
        print(f"{1e3 * t:9.3f} ms {share:5.1f}%  {name[:32]:32s} {' '.join(types.get(name, ()))}")
    seconds = exe.stats.get("compile_seconds") or {}
    print("compile seconds:", json.dumps({k: round(v, 3) for k, v in seconds.items()}))


if __name__ == "__main__":
    main()
