"""Executable: what compiling a Program for one target produces, and how it is inspected."""

from __future__ import annotations

from dataclasses import dataclass, field

from .passes.dot import program_to_dot
from .program import Program


@dataclass
class KernelInfo:
    """One launched kernel: its name and the graph ops it computes."""

    name: str
    ops: tuple  # op names (graph names) fused into this kernel
    op_types: tuple = ()
    bytes_moved: int | None = None

    def __repr__(self) -> str:
        return f"<kernel {self.name}: {', '.join(self.op_types or self.ops)}>"


@dataclass
class Executable:
    """A compiled (fetches, feeds) signature: runs with one call per ``Session.run``.

    kernels: the kernels launched, with the ops each fuses.
    stats: kernel count, buffer bytes, peak temporary memory, compile seconds per pass.
    """

    target: str
    source: Program  # the Program extracted from the graph
    program: Program  # after the optimisation pipeline
    runner: object  # backend object with .run(ctx, trace) -> list of arrays
    kernels: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)  # stage name -> text (Program after each pass...)
    fusion_decisions: list = field(default_factory=list)  # (group/producer, decision, reason)
    dot: str = ""

    def run(self, ctx, trace: list | None = None) -> list:
        return self.runner.run(ctx, trace)

    def dump_ir(self, stage: str | None = None) -> str:
        """Text of one compilation stage (``None``: list the stage names)."""
        if stage is None:
            return "\n".join(self.stages)
        try:
            return self.stages[stage]
        except KeyError:
            raise KeyError(f"no stage {stage!r}; stages: {', '.join(self.stages)}") from None

    def to_dot(self) -> str:
        """Graphviz DOT of the optimised program with fusion groups as clusters."""
        if self.dot:
            return self.dot
        return program_to_dot(self.program, self.kernels)

    def fusion_report(self) -> str:
        """Every fusion group and every refusal, with its reason."""
        lines = [f"{len(self.kernels)} kernel(s) for {len(self.program.nodes)} node(s)"]
        for k in self.kernels:
            lines.append(f"  kernel {k.name}: {', '.join(k.op_types) or '-'}  [{', '.join(k.ops)}]")
        if self.fusion_decisions:
            lines.append("decisions:")
            for what, decision, reason in self.fusion_decisions:
                lines.append(f"  {decision:8s} {what}: {reason}")
        return "\n".join(lines)
