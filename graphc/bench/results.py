"""What a benchmark run produces: one record per implementation, per workload and per run
(``ImplResult``, ``WorkloadResult``, ``BenchResult``), and the names of graphc's three
implementations. Plain data, so that the report, the plot and the workloads that run their
own loops (W13, W14) read and fill them without importing the runner."""

from __future__ import annotations

from dataclasses import dataclass, field

REFERENCE, UNFUSED, FUSED = "graphc reference", "graphc unfused", "graphc fused"


@dataclass
class ImplResult:
    """One implementation of one workload: its status, times and compiled-code figures."""

    name: str
    family: str  # graphc | peer
    status: str = "ok"  # ok | skipped | wrong | error
    reason: str = ""
    median_s: float | None = None
    min_s: float | None = None
    runs: int = 0
    inner: int = 1
    vs_baseline: float | None = None  # this median / baseline median (>1: baseline faster)
    max_abs_err: float | None = None
    kernels: int | None = None
    bytes_moved: int | None = None
    peak_temp_bytes: int | None = None
    compile_s: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class WorkloadResult:
    """One workload: what it is, its status and every implementation's result."""

    id: str
    title: str
    stresses: str
    description: str
    unit: str
    sizes: dict
    status: str = "ok"  # ok | skipped | refused | error
    reason: str = ""
    baseline: str = FUSED
    impls: list = field(default_factory=list)
    speedups: dict = field(default_factory=dict)  # "fused_over_unfused", "<peer>_over_fused"
    notes: list = field(default_factory=list)


@dataclass
class BenchResult:
    """Everything one ``graphc bench`` run measured, with the machine it ran on."""

    machine: dict
    options: dict
    workloads: list

    @property
    def ok(self) -> bool:
        """False when a result was refused or graphc failed (peers' failures do not count)."""
        for w in self.workloads:
            if w.status in ("refused", "error"):
                return False
            if any(i.family == "graphc" and i.status in ("wrong", "error") for i in w.impls):
                return False
        return True
