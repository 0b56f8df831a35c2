"""Python overhead of the cuda runtime per run, measured without a GPU.

pycuda is replaced by a stub whose calls cost nothing (kernels do not run, copies do not
happen, allocations are numpy buffers from tests/backends/fake_pycuda.py), so what is timed
is graphc's own work per ``Session.run`` on the cuda target: binding, size plans, launch
loops, commit. The W3 step (MLP 784-512-512-10, batch 256, fwd+bwd+SGD) by default.

    python scripts/cuda_overhead.py [--runs 300] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.machinery
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.backends import fake_pycuda as F  # noqa: E402


class _Patch:
    def setitem(self, d, k, v):
        d[k] = v


class _Module:
    def get_function(self, name):
        return F._Function(None, name)


def install_free_stub() -> None:
    """The fake pycuda with launches and copies turned into no-ops; no nvcc, no cuBLAS."""
    F.install(_Patch())
    sys.modules["pycuda"].__spec__ = importlib.machinery.ModuleSpec("pycuda", None)
    from graphc.backends.cuda import cublas, nvcc

    nvcc.compile_source = lambda source, arch, kind, cache_dir, options=(): (source.encode(), 0)
    cublas.load = lambda: None
    F.module_from_buffer = lambda data: _Module()
    F._Function.prepared_async_call = lambda self, grid, block, stream, *args: None
    F.memcpy_htod = lambda dest, src: None
    # copies back read zeros: no kernel ran, so no status flag (a label out of range...)
    # may be set
    F.memcpy_dtoh = lambda dest, src: dest.fill(0)
    F.memcpy_dtod = lambda dest, src, size: None
    F.memset_d8 = lambda dest, data, size: None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the runs")
    args = parser.parse_args(argv)
    install_free_stub()
    import graphc as gc
    from graphc.bench import workloads as W

    sizes = {"inputs": 784, "hidden": 512, "classes": 10}
    inputs = W.mlp_inputs(sizes, np.random.default_rng(0), 256)
    g, x, labels, loss, step, params, init = W.build_mlp_step(sizes, inputs)
    feeds = {x: inputs["x"], labels: inputs["labels"]}
    with gc.Session(graph=g, target="cuda", options=gc.CompileOptions(cache_dir=None)) as s:
        s.run(init)
        s.run([loss, step], feeds)
        exe = s.compile([loss, step], list(feeds))
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            s.run([loss, step], feeds)
            times.append(time.perf_counter() - t0)
        print(f"W3 step on the cuda target, {exe.stats['kernel_count']} kernels, "
              f"{exe.stats['launches']} launches: median Python overhead "
              f"{statistics.median(times) * 1e6:.0f} us over {args.runs} runs")  # fmt: skip
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.runs):
                s.run([loss, step], feeds)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
