"""How much slower is code exported for the "generic" CPU than for the host? (docs/api.md)

Exports the W3 MLP training step (784-512-512-10, batch 256, forward, backward and SGD
update; the step's loss is the output, the updates run before it) twice, with
``cpu="host"`` and ``cpu="generic"``, loads both artifacts in this process (each runs its
stored code natively) and times them interleaved; then the same for a loop-bound graph
(elementwise transcendental math, no GEMM): ``--rounds`` rounds of ``--steps`` steps
of each, alternating, reporting the median step time of each and the ratio.

    .venv/bin/python scripts/bench_export_cpu.py [--rounds 15] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import graphc as gc
from graphc.bench.workloads import build_mlp_step, mlp_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    sizes = {"inputs": 784, "hidden": 512, "classes": 10, "batch": 256}
    inputs = mlp_inputs(sizes, np.random.default_rng(0), sizes["batch"])
    g, x, labels, loss, step, _, init = build_mlp_step(sizes, inputs)
    with g.as_default():
        with gc.control_dependencies([step]):
            out = gc.identity(loss)
    feeds = {"x": inputs["x"], "labels": inputs["labels"]}
    print("W3 MLP step (784-512-512-10, batch 256):")
    _compare(g, init, {"x": x, "labels": labels}, {"loss": out}, feeds, args)
    # a loop-bound graph (no GEMM): elementwise transcendental math over 1M floats
    g2 = gc.Graph()
    with g2.as_default():
        x2 = gc.placeholder(gc.float32, (None,), name="x")
        y2 = gc.exp(-x2 * x2) * gc.tanh(x2) + gc.sigmoid(x2) * 0.5
    xv = np.random.default_rng(1).normal(size=1 << 20).astype(np.float32)
    print("elementwise exp/tanh/sigmoid over 1M float32:")
    _compare(g2, None, {"x": x2}, {"y": y2}, {"x": xv}, args)


def _compare(g, init, inputs, outputs, feeds, args) -> None:
    """Export ``outputs`` for the host and the generic CPU, load both and time them."""
    models = {}
    with tempfile.TemporaryDirectory() as tmp, gc.Session(graph=g, target="cpu") as sess:
        if init is not None:
            sess.run(init)
        for cpu in ("host", "generic"):
            path = Path(tmp) / f"{cpu}.gca"
            gc.export(sess, path, inputs, outputs, cpu=cpu)
            models[cpu] = gc.load(path)
            assert models[cpu].loaded_native, models[cpu].recompiled_reason
            print(f"  {cpu:8s} native code for CPU {models[cpu].header['native']['cpu']}")
    times: dict = {cpu: [] for cpu in models}
    for m in models.values():  # warm up (worker pool, page faults)
        for _ in range(3):
            m(**feeds)
    for _ in range(args.rounds):
        for cpu, m in models.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                m(**feeds)
            times[cpu].append((time.perf_counter() - t0) / args.steps)
    med = {cpu: statistics.median(ts) for cpu, ts in times.items()}
    for cpu, t in med.items():
        print(f"  {cpu:8s} median {t * 1e3:.3f} ms")
    print(f"  generic / host: {med['generic'] / med['host']:.2f}x")


if __name__ == "__main__":
    main()
