"""Compile a Program for a target: run the pass pipeline, then hand it to the backend."""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager

from .errors import UnavailableError
from .executable import Executable, KernelInfo
from .options import CompileOptions
from .program import Program
from .progress import compile_progress

TARGETS = ("cpu", "cuda", "reference")


def check_target(target: str) -> str:
    if target in ("", None):
        return "cpu"
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if target == "cuda":
        from .backends.cuda import availability

        problem = availability()
        if problem:
            raise UnavailableError(f"target 'cuda' is unavailable: {problem}")
    return target


_gc_lock = threading.Lock()
_gc_state = {"depth": 0, "was_enabled": False}


@contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off while compiling: passes, lowering and the
    llvmlite IR builder allocate many small objects, which trigger collections that scan
    every live object (~6% of a cold compile of the W3 step). Nothing a compile creates
    needs collecting before it ends; the collector's previous state is restored after
    the last of any concurrent compiles."""
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            if _gc_state["depth"] == 0 and _gc_state["was_enabled"]:
                gc.enable()


def compile_program(program: Program, target: str, options: CompileOptions) -> Executable:
    """Optimise ``program`` and build the target's Executable."""
    with _gc_paused(), compile_progress(program, target, getattr(options, "verbose", None)):
        return _compile(program, target, options)


def _compile(program: Program, target: str, options: CompileOptions) -> Executable:
    if target == "reference":
        # The oracle runs the extracted graph as is: no pass may change what it computes.
        from .backends.reference import ReferenceExecutable

        kernels = [KernelInfo(n.name or f"%{n.id}", (n.name,), (n.op,)) for n in program.nodes]
        return Executable(
            target, program, program, ReferenceExecutable(program), kernels,
            {"kernel_count": len(kernels), "compile_seconds": {}},
            {"input": program.text()},
        )  # fmt: skip
    from .passes.manager import optimize

    t0 = time.perf_counter()
    # a disk-cache hit (keyed by this un-optimised Program) needs no pass at all
    if target == "cpu":
        from .backends.cpu import try_load_cached
    else:
        from .backends.cuda import try_load_cached
    exe = try_load_cached(program, options)
    if exe is not None:
        exe.stats["compile_seconds"]["total"] = time.perf_counter() - t0
        return exe
    result = optimize(program, options)
    if target == "cpu":
        from .backends.cpu import build_executable
    else:
        from .backends.cuda import build_executable
    exe = build_executable(program, result, options)
    exe.stats.setdefault("compile_seconds", {}).update(result.seconds)
    exe.stats["compile_seconds"]["total"] = time.perf_counter() - t0
    if options.dump_dir is not None:
        _dump_dot(options.dump_dir, exe)
    return exe


def _dump_dot(dump_dir, exe: Executable) -> None:
    """The optimised program as DOT, fusion groups as clusters (``dot -Tsvg graph.dot``)."""
    from pathlib import Path

    d = Path(dump_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{exe.target}.graph.dot").write_text(exe.to_dot())
