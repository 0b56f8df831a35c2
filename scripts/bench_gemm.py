"""graphc's own GEMM (graphc/backends/llvm/nativegemm.py) against OpenBLAS, side by side.

    python scripts/bench_gemm.py shapes                 # the W3/W9/W11 products, one by one
    python scripts/bench_gemm.py shapes 256x784x512 512x256x512:tb 784x256x512:ta
    python scripts/bench_gemm.py step W3 --rounds 15    # a workload's whole step

Each product (or step) is compiled twice in this process: once as usual, once with the
kernel switched off (``blas.native_gemm`` returning None, so every product goes to
OpenBLAS); the two are then run alternately, so that a loaded machine slows both alike.
Products are timed in the calling thread's CPU time (meant for one thread: run with
``GRAPHC_THREADS=1 taskset -c 1``), steps in process CPU time and wall time. Prints minima
(products) or medians and minima (steps)."""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc.backends.llvm import blas
from graphc.bench.suite import WORKLOADS

#: M x K x N[:ta][:tb] of the products the kernel was tuned on
SHAPES = ["256x784x512", "256x512x512", "784x256x512:ta", "512x256x512:tb", "256x10x512:tb",
          "4096x256x1024", "4096x1024x256", "4096x1024x256:tb", "256x4096x1024:ta",
          "256x4096x256:ta", "128x128x64:ta", "32x321x1024", "64x2048x1024"]  # fmt: skip

_NATIVE = blas.native_gemm


def _switch(on: bool):
    blas.native_gemm = _NATIVE if on else (lambda *args, **kwargs: None)


def _product(spec: str):
    dims, *flags = spec.split(":")
    m, k, n = (int(v) for v in dims.split("x"))
    return m, k, n, "ta" in flags, "tb" in flags


def _compiled_product(m, k, n, ta, tb, on, feeds):
    _switch(on)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (k, m) if ta else (m, k))
        w = gc.placeholder(gc.float32, (n, k) if tb else (k, n))
        y = gc.matmul(x, w, transpose_a=ta, transpose_b=tb)
    sess = gc.Session(graph=g, options=gc.CompileOptions(cache_dir=None))
    feed = {x: feeds[0], w: feeds[1]}
    sess.run(y, feed)  # compiles now, with the switch as set
    return sess, y, feed


def shapes(specs, rounds):
    rng = np.random.default_rng(0)
    for spec in specs:
        m, k, n, ta, tb = _product(spec)
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
        runs = {name: _compiled_product(m, k, n, ta, tb, name == "graphc", (a, b))
                for name in ("graphc", "openblas")}  # fmt: skip
        for sess, y, feed in runs.values():
            err = float(np.abs(sess.run(y, feed) - want).max())
            assert err < 1e-3 * max(k, 1) ** 0.5, (spec, err)
        calls = max(3, int(2e8 / (2 * m * k * n)))
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(rounds):
            for name, (sess, y, feed) in runs.items():
                t0 = time.thread_time()
                for _ in range(calls):
                    sess.run(y, feed)
                best[name] = min(best[name], (time.thread_time() - t0) / calls)
        flops = 2 * m * k * n
        g, o = best["graphc"], best["openblas"]
        print(
            f"{spec:>20}: graphc {g * 1e6:9.0f} us ({flops / g / 1e9:4.0f} GFLOP/s)  "
            f"OpenBLAS {o * 1e6:9.0f} us ({flops / o / 1e9:4.0f})  ratio {g / o:.2f}"
        )
    _switch(True)


def step(workload, rounds, per_round):
    wl = WORKLOADS[workload]
    sizes = wl.sizes(False)
    inputs = wl.inputs(sizes, np.random.default_rng(0))
    runs = {}
    for name in ("graphc", "openblas"):
        _switch(name == "graphc")
        case = wl.build(sizes, inputs)
        sess = gc.Session(graph=case.graph, options=gc.CompileOptions(cache_dir=None))
        if case.init is not None:
            sess.run(case.init)
        sess.run(case.run_fetches, feed_dict=case.feeds[0])
        runs[name] = (sess, case)
    _switch(True)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (sess, case) in runs.items():
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(per_round):
                sess.run(case.run_fetches, feed_dict=case.feeds[0])
            cpu = (time.process_time() - c0) / per_round * 1e3
            times[name].append((cpu, (time.perf_counter() - w0) / per_round * 1e3))
    for name, v in times.items():
        cpu = sorted(x[0] for x in v)
        wall = sorted(x[1] for x in v)
        print(
            f"{workload} with {name:>8}: CPU median {cpu[len(cpu) // 2]:.3f} ms (min "
            f"{cpu[0]:.3f}), wall median {wall[len(wall) // 2]:.3f} ms (min {wall[0]:.3f})"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("shapes", help="products one by one")
    p.add_argument("specs", nargs="*", default=SHAPES, help="MxKxN[:ta][:tb]")
    p.add_argument("--rounds", type=int, default=7)
    p = sub.add_parser("step", help="a workload's whole step")
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--per-round", type=int, default=3)
    args = ap.parse_args()
    if args.mode == "shapes":
        shapes(args.specs, args.rounds)
    else:
        step(args.workload, args.rounds, args.per_round)


if __name__ == "__main__":
    main()
