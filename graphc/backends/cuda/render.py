"""Kernel IR -> CUDA C: one module per KernelProgram, one or more launches per Kernel.

The renderer translates; it decides nothing about how a kernel runs on the GPU. The cuda
backend's Kernel IR pass (``launch_plan.plan_launches``, its ``KERNEL_PASSES``) has already
cut every kernel into units and chosen each unit's mapping, and this module writes them:

* ``GemmUnit``: a ``gemm`` launch; the runtime calls cuBLAS when it finds it, else the tiled
  kernel of ``kernels/cuda/gemm.cuh`` (always compiled into the module); with loops, one
  library call per iteration.
* ``ThreadsUnit``: a grid-stride loop over ``blockIdx``/``threadIdx`` (``threads``), one
  thread per iteration of the flattened nest, with the vector loop of its ``VectorPlan``
  (each thread takes 4 or 2 iterations a step and moves them as one 128-bit
  ``float4``/``double2`` access, a scalar loop for the tail and misaligned pointers); with a
  block-per-row plan, a ``rows`` launch whose ``alt`` is the grid-stride function, and the
  runtime picks one from the sizes it sees (``launch.py``).
* ``RowsUnit``: one block (``rows`` with one row): cooperative loops strided over the
  block's threads, accumulators combined with warp shuffles and shared memory
  (``reduce.cuh``).
* ``SerialUnit``: one thread (``serial``).

Top-level ``Let``s a unit reads (its plan's ``prefix``) are re-evaluated at the start of its
launch. Runtime sizes (``Dim``) are ``long long`` kernel arguments; nothing is specialised on
them. A kernel without a plan (or with the plan of another body) is refused.

This module is the driver (templates, kernels, serial and gemm launches); ``mappings.py``
writes ``threads`` and ``rows`` functions, ``function.py`` the C of one generated function,
and ``rendered.py`` holds the launch descriptions the runtime reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from ... import dtypes as _dt
from ...errors import CompileError, UnimplementedError
from ...expr import Const, Load, Var, sub_exprs
from ...kernel.ir import LIBCALLS, Kernel, KernelProgram, LibCall
from .function import _Function, _Namer
from .launch_plan import GemmUnit, RowsUnit, SerialUnit, ThreadsUnit, launches_of
from .mappings import MappingEmitter
from .mathtable import STORAGE_TYPE
from .rendered import CudaModule, Launch, RenderedKernel

#: Hand-written CUDA templates pasted into every module, in this order.
TEMPLATES = ("prelude.cuh", "reduce.cuh", "gemm.cuh")


def kernels_dir() -> Path:
    """The folder holding the hand-written CUDA templates: ``kernels/cuda`` of the checkout,
    or ``graphc/_cuda_kernels`` where setup.py put them in an installed wheel."""
    return find_kernels_dir(Path(__file__).resolve().parents[2])


def find_kernels_dir(package: Path) -> Path:
    """``kernels/cuda`` beside the ``graphc`` package folder ``package``, else the copy
    inside it (``_cuda_kernels``); FileNotFoundError naming both places if neither exists."""
    for candidate in (package.parent / "kernels" / "cuda", package / "_cuda_kernels"):
        if (candidate / "prelude.cuh").is_file():
            return candidate
    raise FileNotFoundError(
        f"the CUDA templates (prelude.cuh...) are missing: looked in {package.parent}/kernels/cuda "
        f"and {package}/_cuda_kernels; reinstall graphc"
    )


def template_source() -> str:
    parts = []
    for name in TEMPLATES:
        path = kernels_dir() / name
        parts.append(f"// ---- {name} ----\n{path.read_text()}")
    return "\n".join(parts)


class _ModuleRenderer(MappingEmitter):
    """Renders one KernelProgram: kernels cut into launches (the loop mappings come from
    ``MappingEmitter``), the generated functions collected into one module."""

    def __init__(self, program: KernelProgram, prefix: str = "gc_"):
        self.program = program
        self.prefix = prefix
        self.names = _Namer()
        self.functions: list = []
        self._order = {name: i for i, name in enumerate(program.buffers)}

    def ordered(self, buffers) -> list:
        return sorted(buffers, key=lambda b: self._order[b])

    def root(self, buffer: str) -> str:
        """The buffer whose storage ``buffer`` shares (itself when it owns its storage)."""
        while self.program.buffers[buffer].alias_of is not None:
            buffer = self.program.buffers[buffer].alias_of
        return buffer

    def param_decl(self, buffer: str, written: bool, alone: bool) -> str:
        """A pointer parameter; ``__restrict__`` when no other parameter of the function can
        share its storage (distinct buffers live in distinct allocations unless planned
        to alias), which lets loads go through the read-only cache."""
        ident = self.names("b_", buffer)
        ctype = STORAGE_TYPE[self.program.buffers[buffer].dtype.name]
        if alone:
            ident = f"__restrict__ {ident}"
        return f"{'' if written else 'const '}{ctype}* {ident}"

    # -- kernels ----------------------------------------------------------------------------
    def kernel(self, index: int, k: Kernel) -> RenderedKernel:
        plan = launches_of(k)
        if plan is None:
            raise CompileError(
                f"cuda renderer: kernel '{k.name}' has no launch plan for its body: run the "
                "cuda backend's kernel pass (launch_plan.plan_launches, in KERNEL_PASSES) "
                "on the program first"
            )
        base = f"{self.prefix}k{index}_{re.sub(r'[^0-9A-Za-z_]', '_', k.name)[:40]}"
        rk = RenderedKernel(k.name, tuple(k.ops), tuple(k.op_types), [], list(plan.notes))
        for n, unit in enumerate(plan.units):
            name = base if len(plan.units) == 1 else f"{base}_{n}"
            rk.launches.append(self._launch(name, unit))
        return rk

    def _launch(self, name: str, unit) -> Launch:
        if isinstance(unit, GemmUnit):
            launch = self._libcall(unit.call, {v for v, _, _ in unit.loops})
            launch.loops = unit.loops
            return launch
        if isinstance(unit, ThreadsUnit):
            return self._threads(name, unit)
        if isinstance(unit, RowsUnit):
            fn = self._rows_function(name, unit.prefix, unit.rows, None)
            return Launch("rows", fn.name, fn.params(), Const(1, _dt.int64), unit.rows.inner,
                          None, unit.rows.contiguous)  # fmt: skip
        if isinstance(unit, SerialUnit):
            fn = _Function(self, name)
            fn.emit("if (blockIdx.x != 0 || threadIdx.x != 0) return;", 1)
            fn.stmts([*unit.prefix, *unit.stmts], 1)
            self._add(fn)
            return Launch("serial", fn.name, fn.params())
        raise CompileError(f"cuda renderer: unknown launch unit {unit!r}")

    def _libcall(self, s: LibCall, loop_vars=frozenset()) -> Launch:
        if s.fn not in LIBCALLS:
            raise UnimplementedError(f"cuda renderer: unknown library call '{s.fn}'")
        if len(s.args) != len(LIBCALLS[s.fn]):
            raise CompileError(
                f"cuda renderer: {s.fn} takes {len(LIBCALLS[s.fn])} arguments, got {len(s.args)}"
            )
        for name, a in zip(LIBCALLS[s.fn], s.args):
            if name in ("A", "B", "C"):
                if a not in self.program.buffers:
                    raise CompileError(f"cuda renderer: gemm operand {name}={a!r} is no buffer")
            elif any(
                isinstance(x, Load) or (isinstance(x, Var) and x.name not in loop_vars)
                for x in sub_exprs(a)
            ):
                raise UnimplementedError(
                    f"cuda renderer: gemm argument {name} must depend on sizes and enclosing "
                    f"loop variables only, got {a!r}"
                )
        dtypes = {self.program.buffers[b].dtype for b in s.args[:3]}
        if len(dtypes) != 1 or next(iter(dtypes)) not in (_dt.float16, _dt.float32, _dt.float64):
            raise UnimplementedError(f"cuda renderer: gemm on {sorted(d.name for d in dtypes)}")
        return Launch("gemm", "", tuple(("buffer", b) for b in s.args[:3]), args=tuple(s.args))

    def _add(self, fn: _Function) -> None:
        self.functions.append(fn)

    # -- module -----------------------------------------------------------------------------
    def render(self) -> CudaModule:
        kernels = [self.kernel(i, k) for i, k in enumerate(self.program.kernels)]
        body = "\n\n".join(fn.source() for fn in self.functions) + "\n"
        source = "\n\n".join(
            ["// generated by graphc (cuda backend)", template_source(),
             "// ---- generated kernels ----", body]
        )  # fmt: skip
        return CudaModule(source, kernels, [fn.name for fn in self.functions], body)


def render_program(program: KernelProgram, prefix: str = "gc_") -> CudaModule:
    """CUDA C for every kernel of ``program``, with the launches the runtime makes.

    ``prefix`` starts every generated function name (distinct prefixes let several modules
    share one translation unit).
    """
    return _ModuleRenderer(program, prefix).render()
