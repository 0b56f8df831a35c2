"""The reference backend: a numpy interpreter of a Program, op by op (the test oracle)."""

from .interpreter import ReferenceExecutable, run_program

__all__ = ["ReferenceExecutable", "run_program"]
