"""CompileOptions, RunOptions and RunMetadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import config

_DEFAULT = object()


class CompileOptions:
    """How a Session compiles.

    fusion: False keeps one kernel per op (the unfused baseline for benchmarks).
    opt_level: 0 runs no optimisation passes; 1 the cheap ones; 2 all (default).
    dump_dir: write the Program after each pass, the Kernel IR, the generated code and a
        DOT file of fusion groups there.
    threads: worker threads for the cpu target (default: every core), at run time and
        for compiling (LLVM modules of a large program compile in parallel).
    cache_dir: the persistent compile cache (default under the user cache dir; None: off).
    fast_math: let the backend reassociate floating-point arithmetic.
    winograd: cpu: compute 3 x 3 stride-1 convolutions with constant float32 filters (an
        imported ONNX model's, a frozen graph's) of 32 or more channels by Winograd's
        F(2x2, 3x3), in 2.25x fewer multiply-adds (``kernel/lower_winograd.py``). Results
        differ from the direct form's by a few float32 roundings, and a NaN or Inf in the
        input reaches the whole 2 x 2 output tiles it touches (4 x 4 outputs, not 3 x 3).
        False: the direct form.
    verbose: progress lines on stderr (what is compiled, then how long it took): True for
        every compile, False never, None (default) for a compile that takes more than about
        2 s while stderr is a terminal.
    """

    def __init__(
        self,
        fusion: bool = True,
        opt_level: int = 2,
        dump_dir=None,
        threads=None,
        cache_dir=_DEFAULT,
        fast_math: bool = False,
        verify: bool | None = None,
        verbose: bool | None = None,
        winograd: bool = True,
    ):
        if opt_level not in (0, 1, 2, 3):
            raise ValueError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        self.fusion = bool(fusion)
        self.opt_level = opt_level
        self.dump_dir = None if dump_dir is None else Path(dump_dir)
        self.threads = threads
        self.cache_dir = config.default_cache_dir() if cache_dir is _DEFAULT else cache_dir
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        self.fast_math = bool(fast_math)
        self.winograd = bool(winograd)
        self.verify = config.debug_verify() if verify is None else bool(verify)
        self.verbose = None if verbose is None else bool(verbose)  # graphc/progress.py
        #: cpu: emit position-independent code for a shared library (gc.export_c sets it)
        self.position_independent = False
        #: cpu: the CPU the code is for (backends/llvm/cpus.py), None for this machine's
        #: (gc.export and gc.export_c set it from their ``cpu=``; the cache key names it)
        self.target_cpu = None

    def key(self) -> tuple:
        """The part of the options that changes generated code (a cache-key component)."""
        return (
            (self.fusion, self.opt_level, self.threads, self.fast_math)
            + (("pic",) if self.position_independent else ())
            + (() if self.winograd else ("no-winograd",))
        )

    def __repr__(self) -> str:
        return (
            f"CompileOptions(fusion={self.fusion}, opt_level={self.opt_level}, "
            f"dump_dir={self.dump_dir}, threads={self.threads}, cache_dir={self.cache_dir}, "
            f"fast_math={self.fast_math}, winograd={self.winograd})"
        )


@dataclass
class RunOptions:
    """Per-run options: ``trace=True`` records the time of every kernel."""

    trace: bool = False
    timeout_in_ms: int = 0


@dataclass
class KernelStat:
    """One executed kernel: name, the ops it fuses, start and end (seconds, perf_counter)."""

    name: str
    ops: tuple
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class RunMetadata:
    """Filled by ``Session.run`` when ``RunOptions(trace=True)``."""

    step_stats: list = field(default_factory=list)

    def chrome_trace(self) -> str:
        """The step as a Chrome-trace (about:tracing / Perfetto) JSON string."""
        if not self.step_stats:
            return json.dumps({"traceEvents": []})
        t0 = min(s.start for s in self.step_stats)
        events = [
            {
                "name": s.name,
                "cat": "kernel",
                "ph": "X",
                "ts": (s.start - t0) * 1e6,
                "dur": max(s.duration, 0.0) * 1e6,
                "pid": 0,
                "tid": 0,
                "args": {"ops": list(s.ops)},
            }
            for s in self.step_stats
        ]
        return json.dumps({"traceEvents": events, "displayTimeUnit": "ms"})
