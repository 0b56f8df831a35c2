"""What fusion buys: W1 (elementwise chain) and W2 (row softmax), unfused vs fused.

    python examples/bench_fusion.py           # medium sizes, a few seconds
    python examples/bench_fusion.py --full    # the sizes of BENCH.md (graphc bench W1,W2)
    python examples/bench_fusion.py --small   # tiny sizes (a smoke test)

Each graph runs in two sessions: ``CompileOptions(fusion=False)`` (one kernel per op) and the
default fused one. Results are checked against each other before anything is timed.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import graphc as gc
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import graphc as gc


def w1_graph():
    x = gc.placeholder(gc.float32, (None,), name="x")
    a = x * 1.702
    s = 1 / (1 + gc.exp(-a))
    y = x * s
    return x, gc.tanh(y * 0.5 + 0.1) * y + x


def w2_graph(cols):
    x = gc.placeholder(gc.float32, (None, cols), name="x")
    return x, gc.nn.softmax(x, axis=-1)


def median_time(sess, y, feeds, repeat):
    sess.run(y, feeds)  # compiles; later runs reuse the executable
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(y, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(name, build, value, repeat):
    graph = gc.Graph()
    with graph.as_default():
        x, y = build()
    row = {"workload": name}
    results = {}
    for label, fusion in (("unfused", False), ("fused", True)):
        opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
        with gc.Session(graph=graph, options=opts) as sess:
            results[label] = sess.run(y, {x: value})
            row[label + "_ms"] = median_time(sess, y, {x: value}, repeat) * 1e3
            row[label + "_kernels"] = len(sess.compile(y, [x]).kernels)
    np.testing.assert_allclose(results["fused"], results["unfused"], rtol=1e-4, atol=1e-5)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the sizes of BENCH.md")
    size.add_argument("--small", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, rows, cols = (2**24, 4096, 1024) if args.full else (2**10, 16, 64) if args.small else (
        2**20, 1024, 1024)  # fmt: skip
    rng = np.random.default_rng(0)
    table = [
        measure(f"W1 chain, {n} floats", w1_graph,
                rng.standard_normal(n).astype(np.float32), args.repeat),
        measure(f"W2 softmax, {rows}x{cols}", lambda: w2_graph(cols),
                rng.standard_normal((rows, cols)).astype(np.float32), args.repeat),
    ]  # fmt: skip
    print(f"{'workload':28s} {'unfused':>10s} {'fused':>10s} {'speedup':>8s} {'kernels':>9s}")
    for r in table:
        speedup = r["unfused_ms"] / r["fused_ms"]
        kernels = f"{r['unfused_kernels']}->{r['fused_kernels']}"
        print(f"{r['workload']:28s} {r['unfused_ms']:8.2f}ms {r['fused_ms']:8.2f}ms "
              f"{speedup:7.2f}x {kernels:>9s}")  # fmt: skip


if __name__ == "__main__":
    main()
