"""What the runtime needs to launch a rendered CUDA module: ``Launch`` (one launch of a
generated kernel and how it maps onto the GPU), ``RenderedKernel`` (a Kernel's launches and
why a slower mapping was taken) and ``CudaModule`` (the CUDA C and its kernels)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...expr import Expr


@dataclass
class Launch:
    """One launch of a generated kernel.

    kind: ``threads`` (grid-stride over ``count`` iterations, ``vector`` per thread a step),
    ``rows`` (one block per row of ``count`` rows, inner cooperative loops of length
    ``inner``; ``alt`` names the one-thread-per-row function of the same loop), ``serial``
    (one thread), ``gemm``.
    params: ``("buffer", name)`` / ``("dim", name)`` in argument order.
    """

    kind: str
    function: str = ""
    params: tuple = ()
    count: Expr | None = None
    inner: Expr | None = None
    alt: str | None = None
    contiguous: bool = True
    args: tuple = ()  # gemm: the LibCall arguments (see graphc.kernel.ir.LIBCALLS)
    alt_params: tuple = ()  # parameters of ``alt``
    loops: tuple = ()  # gemm: (var, start, stop) of enclosing loops, outermost first
    vector: int = 1  # threads: iterations per thread per step (vectorised loads/stores)


@dataclass
class RenderedKernel:
    name: str
    ops: tuple
    op_types: tuple
    launches: list
    notes: list = field(default_factory=list)  # why a kernel got a slower mapping


@dataclass
class CudaModule:
    """The CUDA C of one KernelProgram and how to launch each of its kernels."""

    source: str  # complete translation unit: templates + generated functions
    kernels: list  # list[RenderedKernel]
    functions: list  # the generated __global__ function names
    body: str = ""  # the generated functions alone (tests batch several modules)
