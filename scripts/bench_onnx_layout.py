"""W13's models with the layout pass and the per-task convolution epilogues off and on.

    PYTHONPATH=. GRAPHC_THREADS=1 taskset -c 1 /path/to/venv-with-onnxruntime/bin/python \\
        scripts/bench_onnx_layout.py resnet50 --batch 1 --runs 21

Imports the onnx package's light model with random weights (``graphc.bench.onnx_models``)
and compiles it three times in this process: ``base`` (the ``layout`` pass taken out of
``passes.manager.PIPELINE`` and ``epilogue.row_nest`` refusing every nest), ``layout``
(the pass only) and ``rows`` (both, the default); then runs the three and onnxruntime
interleaved run by run and prints the medians and their ratios to onnxruntime's. Process
CPU time with one thread (what another job on a shared machine disturbs least), wall time
otherwise. Every graphc result is first compared with onnxruntime's. Needs onnx and
onnxruntime (the W13 peer's environment).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np

import graphc as gc
from graphc.backends.llvm import epilogue
from graphc.passes import manager


@contextlib.contextmanager
def _without_layout():
    saved = list(manager.PIPELINE)
    manager.PIPELINE[:] = [p for p in saved if p[0] != "layout"]
    try:
        yield
    finally:
        manager.PIPELINE[:] = saved


@contextlib.contextmanager
def _without_rows():
    saved = epilogue.row_nest
    epilogue.row_nest = lambda *a: None
    try:
        yield
    finally:
        epilogue.row_nest = saved


@contextlib.contextmanager
def _base():
    with _without_layout(), _without_rows():
        yield


VARIANTS = {"base": _base, "layout": _without_rows, "rows": contextlib.nullcontext}


def main() -> None:
    # optional dependencies: the W13 peer's environment
    from graphc.bench import onnx_models as lm
    from graphc.onnx.runner import OnnxModel

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", choices=("resnet50", "squeezenet", "inception_v1"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default="base,layout,rows")
    a = p.parse_args()

    model = lm.with_batch(lm.with_random_weights(lm.light_model(a.model), 0), a.batch)
    x = lm.random_input(model, a.batch, 0)
    peer = lm.onnxruntime_session(model, a.threads)
    feed = {lm.input_info(model).name: x}
    want = peer.run(None, feed)[0]
    opts = gc.CompileOptions(threads=a.threads, cache_dir=None)
    calls = {}
    for v in a.variants.split(","):
        with VARIANTS[v]():  # compiled on the first run, inside the switch
            m = OnnxModel(model, "cpu", opts)
            err = float(np.abs(m.run([x])[0] - want).max())
        print(f"{v}: max abs error against onnxruntime {err:.2e}")
        calls[v] = lambda m=m: m.run([x])
    calls["onnxruntime"] = lambda: peer.run(None, feed)
    clock = time.process_time if a.threads == 1 else time.perf_counter
    times: dict = {k: [] for k in calls}
    for f in calls.values():
        f()
    for _ in range(a.runs):
        for k, f in calls.items():
            t = clock()
            f()
            times[k].append(clock() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    what = "process CPU" if a.threads == 1 else "wall"
    ratios = ", ".join(f"{k} {t:.2f} ({t / med['onnxruntime']:.3f}x)" for k, t in med.items())
    print(f"{a.model} batch {a.batch}, {a.threads} thread(s), {what} ms, median of {a.runs}: "
          f"{ratios}")  # fmt: skip


if __name__ == "__main__":
    main()
