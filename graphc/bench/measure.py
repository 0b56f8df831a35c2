"""Timing and result checking: warm-up, repeated runs, median and min; tolerance checks."""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Timing:
    """Seconds per run: median and min over ``runs`` samples (each the mean of ``inner``)."""

    median_s: float
    min_s: float
    runs: int
    inner: int = 1


@contextlib.contextmanager
def _no_gc():
    """Python's cyclic garbage collector off while timing (as ``timeit`` does), after one
    collection: with the peers' frameworks loaded, a collection walks all their objects, and
    whichever implementation's sample it lands in pays for everyone's garbage."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_runs(fn, repeat: int, warmup: int = 1, inner: int = 1, budget_s: float = 10.0) -> Timing:
    """Call ``fn`` ``warmup`` times, then time up to ``repeat`` samples of ``inner`` calls.

    Stops early once ``budget_s`` seconds were spent timing and three samples exist, so a slow
    implementation (the reference interpreter on a large workload) cannot stall the suite.
    """
    if repeat < 1 or inner < 1:
        raise ValueError(f"repeat and inner must be >= 1, got {repeat} and {inner}")
    for _ in range(warmup):
        fn()
    samples = []
    with _no_gc():
        start = time.perf_counter()
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
            if len(samples) >= 3 and time.perf_counter() - start > budget_s:
                break
    return Timing(statistics.median(samples), min(samples), len(samples), inner)


#: untimed calls of an implementation before each of its timed calls in ``time_alternating``
#: last at least this long (one call at least). After onnxruntime's runs on 2 threads, graphc's
#: SqueezeNet batch 1 took 7.6-7.8 ms for 40 ms (its pool threads spin), 4.1-4.4 ms up to
#: 250 ms after, then 4.0-4.1
SETTLE_S = 0.25


def time_alternating(
    fns: list, repeat: int, budget_s: float = 20.0, inner: int = 1, settle_s: float | None = None
) -> list[Timing]:
    """Time each of ``fns`` in turns: ``repeat`` rounds, each calling every function in order,
    untimed until ``settle_s`` (default SETTLE_S) passed (one call at least), then one
    timed sample of ``inner`` calls. One Timing per function (seconds per call); stops early
    once ``budget_s`` seconds were spent and three rounds exist.

    The collector is off meanwhile (``_no_gc``). Why turns: on a shared
    machine the load changes over seconds, and two blocks timed one after the other see
    different machines; in turns both see the same. The untimed calls
    absorb what the previous function left behind (onnxruntime's pool threads spin for a
    while after a run and take the cores the next calls need; caches hold the other's data).
    """
    if repeat < 1 or inner < 1 or not fns:
        raise ValueError(
            f"repeat and inner must be >= 1 and fns not empty, got {repeat}, {inner} and {len(fns)}"
        )
    settle = SETTLE_S if settle_s is None else settle_s
    samples: list = [[] for _ in fns]
    with _no_gc():
        start = time.perf_counter()
        for _ in range(repeat):
            for fn, got in zip(fns, samples):
                t0 = time.perf_counter()
                fn()
                while time.perf_counter() - t0 < settle:
                    fn()
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                got.append((time.perf_counter() - t0) / inner)
            if len(samples[0]) >= 3 and time.perf_counter() - start > budget_s:
                break
    return [Timing(statistics.median(v), min(v), len(v), inner) for v in samples]


def compare(got: list, ref: list, rtol: float, atol: float) -> tuple[float, str | None]:
    """(max abs error, None) when ``got`` matches ``ref``, else (error, what is wrong).

    Element-wise test: ``|got - ref| <= atol * max(1, max|ref|) + rtol * |ref|``; the scale
    keeps the absolute tolerance meaningful for outputs far from unit size.
    """
    if len(got) != len(ref):
        return float("inf"), f"{len(got)} values where the reference has {len(ref)}"
    worst = 0.0
    for i, (g, r) in enumerate(zip(got, ref)):
        g = np.asarray(g)
        r = np.asarray(r)
        if g.shape != r.shape:
            return float("inf"), f"value {i} has shape {g.shape}, the reference {r.shape}"
        if r.size == 0:
            continue
        g64 = g.astype(np.float64)
        r64 = r.astype(np.float64)
        if not np.all(np.isfinite(g64) == np.isfinite(r64)):
            return float("inf"), f"value {i} has non-finite entries where the reference has not"
        finite = np.isfinite(r64)
        err = np.where(finite, np.abs(g64 - r64), 0.0)
        scale = max(1.0, float(np.max(np.abs(r64[finite]), initial=0.0)))
        bound = atol * scale + rtol * np.abs(np.where(finite, r64, 0.0))
        max_err = float(err.max())
        worst = max(worst, max_err)
        if np.any(err > bound):
            where = np.unravel_index(int(np.argmax(err - bound)), err.shape)
            return max_err, (
                f"value {i} differs from the reference: max abs error {max_err:.3g} "
                f"(at index {tuple(int(k) for k in where)}: got {g64[where]:.7g}, "
                f"expected {r64[where]:.7g}; tolerance {atol:g}*{scale:.3g} + {rtol:g}*|ref|)"
            )
    return worst, None
