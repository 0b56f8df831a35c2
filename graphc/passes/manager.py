"""The optimisation pipeline: one visible list of passes, each a pure ``Program -> Program``.

``optimize`` runs the passes of ``PIPELINE`` enabled at ``options.opt_level`` in order; at
``opt_level >= 2`` it repeats the whole list until the program stops changing (at most
``MAX_ROUNDS`` rounds: one rewrite often enables another, e.g. folding exposes ``x * 1``).
It records the seconds spent in each pass, verifies the program after every pass when
``options.verify`` is set (tests and ``GRAPHC_DEBUG=1`` do), and with ``options.dump_dir``
writes the program text after every pass there as ``NN_passname.txt``.
Target-specific stages (fusion, buffer planning) run after this, in the backends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..options import CompileOptions
from ..program import Program, StageTexts
from .cleanup import cleanup
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .layout import sink_transposes
from .narrow import narrow_products
from .simplify import simplify

# (name, function, minimum opt_level), in the order they run.
# Folding runs before simplifying: the constants it makes (a gradient's ``Cast`` of a
# static size, 1.0) are what the algebraic rules match (``x / 1``), so one round finds both
# instead of the next round finding the rule (one round fewer to the fixed point on the W3,
# W9, W10, W11 and W12 MLP steps; the same programs up to the ids of new constants).
PIPELINE: list = [
    ("cleanup", cleanup, 1),  # training-graph clean-ups: static SumToShape, ones_like ...
    ("fold", fold_constants, 1),  # constant folding
    ("layout", sink_transposes, 1),  # transposes sunk below elementwise ops (layout.LAYOUT)
    ("simplify", simplify, 1),  # algebraic rewrite rules (simplify.RULES)
    ("cse", cse, 1),  # common-subexpression elimination
    ("narrow", narrow_products, 1),  # products of which only some columns are read
    ("dce", dce, 1),  # dead-code elimination
]

#: the most rounds of PIPELINE at opt_level >= 2
MAX_ROUNDS = 4


@dataclass
class PipelineResult:
    """What ``optimize`` returns: the optimised program, its text after each stage, and the
    seconds spent in each pass (summed over rounds)."""

    program: Program
    stages: dict = field(default_factory=StageTexts)  # stage -> Program text (last round)
    seconds: dict = field(default_factory=dict)  # pass name -> seconds
    rounds: int = 0


class PassError(AssertionError):
    """A pass produced an invalid program (found by the verifier); names the pass."""


def optimize(program: Program, options: CompileOptions, pipeline=None) -> PipelineResult:
    """Run every pass enabled at ``options.opt_level``; see the module doc string."""
    passes = [(name, fn) for name, fn, level in (PIPELINE if pipeline is None else pipeline)
              if options.opt_level >= level]  # fmt: skip
    result = PipelineResult(program, StageTexts(input=program.text))
    dump = _Dumper(options.dump_dir)
    if dump.directory is not None:
        dump.write("input", program.text())
    if options.verify:
        _verify(program, "input")
    rounds = 1 if options.opt_level < 2 else MAX_ROUNDS
    after: dict = {}  # pass name -> its output in the last round (printed once, at the end)
    for _ in range(rounds if passes else 0):
        before = program
        for name, fn in passes:
            t0 = time.perf_counter()
            program = fn(program)
            result.seconds[name] = result.seconds.get(name, 0.0) + time.perf_counter() - t0
            if options.verify:
                _verify(program, name)
            after[name] = program
            if dump.directory is not None:
                dump.write(name, program.text())
        result.rounds += 1
        if _same_nodes(program, before) or (
            len(program.nodes) == len(before.nodes) and program.hash() == before.hash()
        ):
            break
    for name, prog in after.items():
        result.stages[name] = prog.text  # rendered when asked for (once per Program)
    result.program = program
    return result


def _same_nodes(a: Program, b: Program) -> bool:
    """``a`` holds the very Node objects of ``b`` in the same order (a pass that changes
    nothing keeps its input's nodes), so it is the same program. Checked before comparing
    the two programs' texts (only when their node counts agree), which renders every node
    line of a new Program."""
    return a is b or (
        len(a.nodes) == len(b.nodes)
        and all(x is y for x, y in zip(a.nodes, b.nodes))
        and a.fetches == b.fetches
        and a.feeds == b.feeds
        and a.targets == b.targets
    )


def _verify(program: Program, stage: str) -> None:
    try:
        program.verify()
    except AssertionError as exc:
        raise PassError(f"invalid program after pass '{stage}': {exc}") from exc


class _Dumper:
    """Writes ``NN_stage.txt`` files into the dump directory (when there is one)."""

    def __init__(self, directory):
        self.directory = None if directory is None else Path(directory)
        self.count = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, stage: str, text: str) -> None:
        if self.directory is None:
            return
        (self.directory / f"{self.count:02d}_{stage}.txt").write_text(text + "\n")
        self.count += 1
