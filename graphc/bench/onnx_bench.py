"""Workload W13 of the benchmark (docs/benchmarks.md): ONNX inference against onnxruntime.

The ResNet-50, Inception v1 and SqueezeNet architectures of the onnx package's ``light``
test models (``onnx_models.py``), with seeded random weights, at batch 1 and 8: imported
with ``gc.onnx`` and run on graphc's cpu target, and run by onnxruntime (CPU execution
provider) on the same number of threads. graphc's output is checked against onnxruntime's
(rtol 1e-3) before anything is timed; a wrong result is refused, never timed. The two are
timed in turns (``measure.time_alternating``: each timed run after untimed ones of its own),
so that both see the same load of a shared machine. The ratio reported per model and batch
is graphc's median time over onnxruntime's (target <= 1.0).

It runs its own loop (kind "own": the runner hands it the result to fill), as each
(model, batch) pair is one row pair.
"""

from __future__ import annotations

import os

import numpy as np

import graphc as gc

from .measure import time_alternating, time_runs
from .workloads import Workload


class OnnxInference(Workload):
    """W13: light models through gc.onnx against onnxruntime."""

    id = "W13"
    title = "ONNX inference vs onnxruntime"
    stresses = "conv nets end to end, NCHW"
    requires = ("onnx.import_model",)
    kind = "own"
    in_default_suite = False  # minutes: run when named (--suite W13)
    rtol = 1e-3

    def sizes(self, quick):
        threads = os.cpu_count() or 1
        if quick:
            return {"models": ("squeezenet",), "batches": (1,), "threads": threads}
        return {"models": ("resnet50", "inception_v1", "squeezenet"), "batches": (1, 8),
                "threads": threads}  # fmt: skip

    def describe(self, sizes):
        return (
            f"{', '.join(sizes['models'])} (onnx light models, random weights) at batch "
            f"{', '.join(map(str, sizes['batches']))}; graphc cpu and onnxruntime on "
            f"{sizes['threads']} thread(s)"
        )

    def missing(self):
        for mod in ("onnx", "onnxruntime"):
            try:
                __import__(mod)
            except ImportError:
                return f"W13 needs the package {mod} (pip install 'graphc[onnx]')"
        return None

    def run_jobs(self, sizes, res, repeat, progress, impl_cls) -> None:
        run(self, sizes, res, repeat, progress, impl_cls)


def run(workload, sizes, res, repeat, progress, impl_cls) -> None:
    """Fill ``res``: a graphc and an onnxruntime row per (model, batch), and the ratios."""
    from ..onnx.runner import OnnxModel
    from . import onnx_models as lm

    threads = sizes["threads"]
    options = gc.CompileOptions(threads=threads, cache_dir=None)
    # each graphc row's "vs base" is its time over onnxruntime's on the same model and batch
    res.baseline = "onnxruntime, same model and batch"
    for name in sizes["models"]:
        for batch in sizes["batches"]:
            label = f"{name} b{batch}"
            model = lm.with_batch(lm.with_random_weights(lm.light_model(name), 0), batch)
            x = lm.random_input(model, batch, 0)
            feed = {lm.input_info(model).name: x}
            ours = impl_cls(f"graphc cpu {label}", "graphc")
            peer = impl_cls(f"onnxruntime {label}", "peer")
            progress.note(f"W13 {label}")
            try:
                sess = lm.onnxruntime_session(model, threads)
                want = sess.run(None, feed)[0]
                m = OnnxModel(model, "cpu", options)
                t0 = time_runs(lambda m=m, x=x: m.run([x]), 1, warmup=0)
                got = m.run([x])[0]
                ours.compile_s = t0.median_s
                err = float(np.max(np.abs(got - want)))
                ours.max_abs_err = err
                scale = float(np.max(np.abs(want)))
                if not np.allclose(got, want, rtol=workload.rtol, atol=1e-6 * scale):
                    ours.status = "wrong"
                    ours.reason = f"refused, not timed: differs from onnxruntime by {err:.2e}"
                else:
                    # in turns: both see the same machine (see measure.time_alternating)
                    t, p = time_alternating(
                        [lambda m=m, x=x: m.run([x]), lambda s=sess, f=feed: s.run(None, f)],
                        repeat,
                        budget_s=40,
                    )
                    ours.median_s, ours.min_s, ours.runs = t.median_s, t.min_s, t.runs
                    peer.median_s, peer.min_s, peer.runs = p.median_s, p.min_s, p.runs
                    ratio = t.median_s / p.median_s
                    ours.vs_baseline = ratio
                    peer.vs_baseline = 1.0
                    res.speedups[f"{name}_b{batch}_graphc_time_over_onnxruntime"] = ratio
                m.close()
            except Exception as exc:  # noqa: BLE001 - reported; the suite goes on
                ours.status, ours.reason = "error", f"{type(exc).__name__}: {exc}"
            res.impls.extend([ours, peer])
            progress.advance(1)
    if any(i.status == "wrong" for i in res.impls):
        res.status = "refused"
        res.reason = "a graphc result differs from onnxruntime's: see the rows"
    ratios = [v for k, v in res.speedups.items() if k.endswith("_over_onnxruntime")]
    if ratios:
        res.notes.append(
            "graphc time / onnxruntime time per model and batch (target <= 1.0): "
            + ", ".join(f"{k.split('_graphc')[0]} {v:.2f}" for k, v in res.speedups.items())
        )
