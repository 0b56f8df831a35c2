"""The cpu target.

Interim: until the LLVM code generator lands, the optimised Program runs in the numpy
interpreter, one kernel per node.
"""

from __future__ import annotations

from ...executable import Executable, KernelInfo
from ..reference.interpreter import ReferenceExecutable


def build_executable(source, result, options) -> Executable:
    program = result.program
    kernels = [
        KernelInfo(n.name or f"%{n.id}", (n.name,), (n.op,))
        for n in program.nodes
        if n.op not in ("Feed", "NoOp")
    ]
    stats = {"kernel_count": len(kernels)}
    return Executable("cpu", source, program, ReferenceExecutable(program), kernels, stats,
                      dict(result.stages))  # fmt: skip
