"""The optimisation pipeline: one visible list of passes, each Program -> Program."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..options import CompileOptions
from ..program import Program

# (name, function, minimum opt_level). Filled in by the passes as they land.
PIPELINE: list = []


@dataclass
class PipelineResult:
    program: Program
    stages: dict = field(default_factory=dict)  # stage -> Program text
    seconds: dict = field(default_factory=dict)  # pass name -> seconds


def optimize(program: Program, options: CompileOptions) -> PipelineResult:
    """Run every pass enabled at ``options.opt_level``; verify between passes if asked."""
    result = PipelineResult(program, {"input": program.text()})
    for name, fn, level in PIPELINE:
        if options.opt_level < level:
            continue
        t0 = time.perf_counter()
        program = fn(program)
        result.seconds[name] = time.perf_counter() - t0
        if options.verify:
            program.verify()
        result.stages[name] = program.text()
    result.program = program
    return result
