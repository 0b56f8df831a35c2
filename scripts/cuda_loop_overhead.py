"""Host (Python) overhead per loop iteration of control flow on the cuda target, measured
without a GPU.

pycuda is the stub of ``scripts/cuda_overhead.py`` whose calls cost nothing (kernels do not
run, copies do not happen), so what is timed is graphc's own work per iteration of a loop
(``graphc/backends/cuda/control.py``): binding the body's device feeds, its size plan,
launch loop, outputs. A tanh RNN step ``tanh(h @ W + x_t)`` (batch 32, 256 units) as a
``scan`` of ``--steps`` steps, forward and forward with gradient, and a ``while_loop``
whose body is ``i + 1`` (one one-byte condition read per iteration).

    python scripts/cuda_loop_overhead.py [--steps 200] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from cuda_overhead import install_free_stub  # noqa: E402

from tests.backends import fake_pycuda as F  # noqa: E402


def _median_run(sess, fetches, feeds, runs) -> float:
    sess.run(fetches, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(fetches, feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    install_free_stub()

    def alloc(self, nbytes):  # (the stub's allocations fill their bytes: a real pool's
        self.buf = np.empty(max(nbytes, 1), np.uint8)  # do not; loops allocate per step)

    F._Alloc.__init__ = alloc
    import graphc as gc

    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float32, (None, 32, 256), name="xs")
        w = gc.Variable((rng.standard_normal((256, 256)) * 0.05).astype(np.float32), name="w")
        hs = gc.scan(lambda h, x: gc.tanh(gc.matmul(h, w) + x), xs,
                     initializer=gc.zeros((32, 256)))  # fmt: skip
        loss = gc.reduce_sum(hs[-1])
        grad = gc.gradients(loss, [w])[0]
        n = gc.placeholder(gc.int32, (), name="n")
        count = gc.while_loop(lambda i: i < n, lambda i: i + 1, [gc.constant(0)])
    feed = {xs: rng.standard_normal((args.steps, 32, 256)).astype(np.float32)}
    opts = gc.CompileOptions(cache_dir=None)
    with gc.Session(graph=g, target="cuda", options=opts) as s:
        s.run(w.initializer)
        rows = [
            ("scan forward", _median_run(s, loss, feed, args.runs)),
            ("scan forward and gradient", _median_run(s, [loss, grad], feed, args.runs)),
        ]
        # the stub's copies back read zeros; the while_loop's condition (a one-byte bool)
        # reads True ``--steps`` times a run instead, so the loop runs that many iterations
        left = [0]

        def dtoh(dest, src):
            if dest.dtype == np.bool_ and dest.size == 1 and left[0] > 0:
                left[0] -= 1
                dest.fill(True)
            else:
                dest.fill(0)

        F.memcpy_dtoh = dtoh
        times = []
        for _ in range(args.runs + 1):
            left[0] = args.steps
            t0 = time.perf_counter()
            s.run(count, {n: args.steps})  # (its value reads 0: no kernel ran)
            times.append(time.perf_counter() - t0)
            assert left[0] == 0  # every True read: ``--steps`` iterations ran
        rows.append(("while_loop i + 1", statistics.median(times[1:])))
    for name, t in rows:
        print(f"{name}: {t * 1e3:.2f} ms a run, {t / args.steps * 1e6:.1f} us per step "
              f"({args.steps} steps, median of {args.runs} runs)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
