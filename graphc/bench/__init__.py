"""``graphc bench``: the benchmark suite (workloads W1..W8, docs/benchmarks.md).

Every workload runs three ways on graphc (``target="reference"``, unfused with
``CompileOptions(fusion=False)``, fused) and on the peers importable here (numpy eager always;
JAX jit, TensorFlow 1 graph mode with and without XLA, PyTorch eager / ``torch.compile`` when
installed). Each result is checked against the reference before it is timed; a wrong result is
refused, never reported.

    python -m graphc.bench --quick --suite W1,W2 --json out.json
    graphc bench --plot bench.png

Modules: ``workloads`` (what is run), ``peers`` (the other frameworks), ``measure`` (timing),
``runner`` (check, time, collect) with ``impls`` (what is timed), ``figures`` (kernels, bytes,
memory), ``results`` (the records) and ``scaling_run`` (W12), ``report`` (table, JSON, machine
info), ``plot``, ``cli``.
"""

from .cli import add_arguments, main
from .results import BenchResult, ImplResult, WorkloadResult
from .runner import run_suite
from .suite import WORKLOADS

__all__ = [
    "WORKLOADS",
    "BenchResult",
    "ImplResult",
    "WorkloadResult",
    "add_arguments",
    "main",
    "run_suite",
]
