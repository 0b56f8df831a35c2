"""The compiler pipeline, graph to executable, in one list.

===================  ==============================  =========================================
stage                function                        result
===================  ==============================  =========================================
graph passes         ``passes.manager.optimize``     optimised Program (simplify, fold, CSE,
                                                     DCE, rewrites; verified between passes,
                                                     dumped with ``CompileOptions.dump_dir``)
fusion               ``passes.fusion.fuse``          FusionPlan: groups, each decision with
                                                     its reason (``exe.fusion_report()``)
lowering             ``kernel.lower.lower``          KernelProgram: loop nests, buffers,
                                                     run-time shape checks
buffer planning      ``passes.plan.plan``            KernelProgram with buffer reuse
kernel passes        the backend's ``KERNEL_PASSES`` KernelProgram rewritten or annotated
                                                     kernel by kernel (cpu:
                                                     ``kernel.recip.hoist_divisors``; cuda:
                                                     ``backends.cuda.launch_plan.
                                                     plan_launches``, the launch mapping and
                                                     vectorization of every kernel)
render               the backend                     LLVM IR (cpu, with the backend's own
                                                     Kernel IR transforms) or CUDA C (cuda:
                                                     a translation of the kernels and of
                                                     the launch plans the pass recorded)
load                 the backend                     native code and its runner
===================  ==============================  =========================================

The stages up to the kernel passes run here for every target (``compiler.py`` drives them);
a backend supplies only what differs: its capabilities (``REDUCTION_LAYOUT``, the Kernel IR
passes it wants, ``KERNEL_PASSES``), render
and load (``build_executable``), its disk cache (``try_load_cached``) and, on cpu, the host
fallback for ops it cannot lower. No backend runs a generic stage itself.

The kernel passes run on the planned program: a pass may rewrite kernel bodies and record
decisions in ``Kernel.meta`` (e.g. which accesses move as vectors, which depends on which
buffers share storage), but it adds no buffers and changes no kernel's reads or writes.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace

from .errors import UnimplementedError
from .kernel.ir import KernelProgram
from .kernel.lower import lower
from .kernel.shapes import SymShapes
from .passes.fusion import fuse
from .passes.fusion_plan import FusionPlan
from .passes.manager import optimize
from .passes.plan import plan as plan_buffers

#: the stages in order; ``exe.stats["compile_seconds"]`` uses these names (plus the
#: backend's own, e.g. "llvm", "nvcc")
STAGES = ("graph passes", "fusion", "lower", "plan", "kernel passes", "render", "load")

__all__ = ["STAGES", "Lowered", "body_pass", "optimize", "lower_program", "run_kernel_passes"]


@dataclass
class Lowered:
    """What the generic stages hand to a backend: the fusion plan and the planned kernels."""

    fplan: FusionPlan
    kp: KernelProgram
    seconds: dict = field(default_factory=dict)


def lower_program(
    program, options, reduction_layout: str = "rows", kernel_passes: tuple = ()
) -> Lowered:
    """Fusion, lowering, buffer planning and the backend's Kernel IR passes of an optimised
    Program.

    ``reduction_layout`` is the backend's choice for row reductions: "columns" (cpu:
    unit-stride SIMD over the rows) or "rows" (cuda: one thread block per row);
    ``kernel_passes`` its Kernel IR passes (``KERNEL_PASSES``, run after planning). Raises
    UnimplementedError when an op has no lowering (the cpu backend then runs it on the host).
    """
    secs = {}
    t0 = time.perf_counter()
    try:  # the program's symbolic shapes: one analysis for fusion and lowering
        shapes = SymShapes(program)
    except UnimplementedError:
        shapes = None  # fusion keeps one kernel per op; lowering says why
    fplan = fuse(program, options, reduction_layout, shapes)
    secs["fusion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kp = lower(program, fplan, options, reduction_layout=reduction_layout, shapes=shapes)
    secs["lower"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kp = plan_buffers(kp) or kp
    secs["plan"] = time.perf_counter() - t0
    if kernel_passes:
        t0 = time.perf_counter()
        kp = run_kernel_passes(kp, kernel_passes)
        secs["kernel passes"] = time.perf_counter() - t0
    return Lowered(fplan, kp, secs)


def run_kernel_passes(kp: KernelProgram, passes: tuple) -> KernelProgram:
    """``kp`` with each of ``passes`` (a function from a KernelProgram to one that computes
    the same, with the same buffers) applied in order."""
    for p in passes:
        kp = p(kp)
    return kp


def body_pass(rewrite):
    """The kernel pass that applies ``rewrite`` (a function from a kernel body to a kernel
    body that computes the same) to the body of every kernel."""

    @functools.wraps(rewrite)
    def run(kp: KernelProgram) -> KernelProgram:
        kernels = []
        for k in kp.kernels:
            body = rewrite(k.body)
            kernels.append(k if body is k.body else replace(k, body=body))
        return replace(kp, kernels=kernels)

    return run
