"""Per-iteration cost of gc.while_loop on the cpu target: a trivial body (the host loop's
own overhead), and a tanh RNN step (h <- tanh(h @ W + x_t), batch 32, 256 units) run as a
scan, forward and forward+backward, against the same step fetched one sess.run at a time.
Prints the median of several runs; also the compile time of the scan and its gradient.

    python scripts/bench_control_flow.py [--steps 200] [--repeat 5]

Figures are reported in docs/control_flow.md; this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc as gc  # noqa: E402


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up (compiles)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    steps, batch, units = args.steps, 32, 256
    rng = np.random.default_rng(0)

    n = gc.placeholder(gc.int32, (), name="n")
    count = gc.while_loop(lambda i: i < n, lambda i: i + 1, [gc.constant(0)], back_prop=False)

    xs = gc.placeholder(gc.float32, (None, batch, units), name="xs")  # [time, batch, units]
    w = gc.Variable(rng.normal(0, 0.05, (units, units)).astype(np.float32), name="w")
    h0 = gc.zeros((batch, units))
    hs = gc.scan(lambda h, x: gc.tanh(gc.matmul(h, w) + x), xs, initializer=h0)
    loss = gc.reduce_sum(hs[-1])
    (gw,) = gc.gradients(loss, [w])
    h_in = gc.placeholder(gc.float32, (batch, units), name="h_in")
    x_in = gc.placeholder(gc.float32, (batch, units), name="x_in")
    one_step = gc.tanh(gc.matmul(h_in, w) + x_in)
    data = rng.normal(0, 1, (steps, batch, units)).astype(np.float32)

    with gc.Session(target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        t0 = time.perf_counter()
        sess.compile(hs, [xs])
        compile_fwd = time.perf_counter() - t0
        t0 = time.perf_counter()
        sess.compile([hs, gw], [xs])
        compile_bwd = time.perf_counter() - t0

        trivial = median_seconds(lambda: sess.run(count, {n: 20000}), args.repeat) / 20000
        fwd = median_seconds(lambda: sess.run(hs, {xs: data}), args.repeat) / steps
        both = median_seconds(lambda: sess.run([hs, gw], {xs: data}), args.repeat) / steps
        h = np.zeros((batch, units), np.float32)

        def stepwise():
            state = h
            for t in range(steps):
                state = sess.run(one_step, {h_in: state, x_in: data[t]})

        per_run = median_seconds(stepwise, args.repeat) / steps
    print(f"trivial body (i + 1): {trivial * 1e6:.1f} us per iteration")
    print(f"RNN step as a scan, forward: {fwd * 1e6:.1f} us per step")
    print(f"RNN step as a scan, forward + gradient: {both * 1e6:.1f} us per step")
    print(f"RNN step, one sess.run per step: {per_run * 1e6:.1f} us per step")
    print(f"compile: scan {compile_fwd:.2f} s, scan + gradient {compile_bwd:.2f} s")


if __name__ == "__main__":
    main()
