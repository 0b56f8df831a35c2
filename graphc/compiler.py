"""Compile a Program for a target: the stages of ``pipeline.py`` in order, then the backend's
render and load (``BACKENDS``)."""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .backends import cpu, cuda
from .backends.reference import ReferenceExecutable
from .errors import UnavailableError, UnimplementedError
from .executable import Executable, KernelInfo
from .options import CompileOptions
from .pipeline import lower_program, optimize
from .program import Program
from .progress import compile_progress

#: the backends by target name: each supplies REDUCTION_LAYOUT, try_load_cached and
#: build_executable (render + load), and build_with_host_ops (a program split around ops
#: without a lowering: any on cpu, control flow on cuda)
BACKENDS = {"cpu": cpu, "cuda": cuda}

TARGETS = ("cpu", "cuda", "reference")


def check_target(target: str) -> str:
    if target in ("", None):
        return "cpu"
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if target == "cuda":
        problem = cuda.availability()
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
    """The stages of ``pipeline.py`` in order, the backend's render and load last."""
    if target == "reference":
        # The oracle runs the extracted graph as is: no pass may change what it computes.
        kernels = [KernelInfo(n.name or f"%{n.id}", (n.name,), (n.op,)) for n in program.nodes]
        return Executable(
            target, program, program, ReferenceExecutable(program), kernels,
            {"kernel_count": len(kernels), "compile_seconds": {}},
            {"input": program.text()},
        )  # fmt: skip
    backend = BACKENDS[target]
    t0 = time.perf_counter()
    # a disk-cache hit (keyed by this un-optimised Program) needs no stage at all
    exe = backend.try_load_cached(program, options)
    if exe is not None:
        exe.stats["compile_seconds"]["total"] = time.perf_counter() - t0
        return exe
    result = optimize(program, options)
    try:
        lowered = lower_program(
            result.program, options, backend.REDUCTION_LAYOUT, backend.KERNEL_PASSES
        )
    except UnimplementedError as exc:
        if not hasattr(backend, "build_with_host_ops"):
            raise

        def compile_body(body):
            return compile_program(body, target, options)

        exe = backend.build_with_host_ops(program, result, options, exc, compile_body)
    else:
        exe = backend.build_executable(program, result, lowered, options)
    exe.stats.setdefault("compile_seconds", {}).update(result.seconds)
    exe.stats["compile_seconds"]["total"] = time.perf_counter() - t0
    if options.dump_dir is not None:
        _dump_dot(options.dump_dir, exe)
    return exe


def _dump_dot(dump_dir, exe: Executable) -> None:
    """The optimised program as DOT, fusion groups as clusters (``dot -Tsvg graph.dot``)."""
    d = Path(dump_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{exe.target}.graph.dot").write_text(exe.to_dot())
