"""Kernel IR -> CUDA C: one module per KernelProgram, one or more launches per Kernel.

How a ``Kernel`` body becomes launches (each a ``Launch``, in order):

* The body is cut into units: each top-level parallel ``Loop``, each ``LibCall``, and each
  maximal run of other statements. Top-level ``Let``s are scalars: they are re-evaluated at
  the start of every later launch that reads them (only when that is provably the same
  value; otherwise the whole kernel runs as one ``serial`` launch, which is always right).
* A parallel loop (perfect nests of parallel loops are collapsed into one index space, and
  so are inner sequential loops that are plain element-wise maps) becomes a grid-stride
  loop over ``blockIdx``/``threadIdx``: ``threads``, one thread per iteration, other inner
  loops stay sequential C loops. Where its loads and stores are contiguous and aligned,
  each thread takes 4 (or 2) iterations a step and moves them as one 128-bit
  ``float4``/``double2`` access, with a scalar loop for the tail and for misaligned
  pointers (``vectorize.py`` decides which accesses may move).
* When its body has the row-reduction shape (inner sequential loops whose iterations only
  accumulate ``reduce=True`` lets or store to distinct elements), a second function maps
  one *block* per iteration (``rows``): each inner loop is strided over the block's
  threads, accumulators combine with warp shuffles and shared memory (``reduce.cuh``),
  and the runtime picks rows or threads from the sizes it sees (``launch.py``). This is
  what turns softmax / layer norm / reduce_* into one pass per row block.
* Bodies with no parallel loop run as ``rows`` with one row when they have that shape
  (e.g. a full reduction), else on one thread (``serial``).
* ``LibCall("gemm")`` is a ``gemm`` launch: the runtime calls cuBLAS when it finds it, else
  the tiled kernel of ``kernels/cuda/gemm.cuh`` (always compiled into the module).

Runtime sizes (``Dim``) are ``long long`` kernel arguments; nothing is specialised on them.

This module is the driver (templates, cutting kernels into units, serial and gemm launches);
``mappings.py`` maps parallel loops to ``threads`` and ``rows`` launches, ``function.py``
writes the C of one generated function, ``analysis.py`` holds the small analyses they share,
and ``rendered.py`` the launch descriptions the runtime reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from ... import dtypes as _dt
from ...errors import CompileError, UnimplementedError
from ...expr import Const, Load, Var, sub_exprs
from ...kernel.analysis import (
    buffers_read,
    buffers_written,
    libcall_nest,
    locals_assigned,
    reads_before_write,
)
from ...kernel.ir import LIBCALLS, Kernel, KernelProgram, Let, LibCall, Loop
from .function import _Function, _Namer
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
        base = f"{self.prefix}k{index}_{re.sub(r'[^0-9A-Za-z_]', '_', k.name)[:40]}"
        rk = RenderedKernel(k.name, tuple(k.ops), tuple(k.op_types), [])
        units = self._units(k.body)
        plans = self._split(units, rk)
        for n, (prefix, unit) in enumerate(plans):
            name = base if len(plans) == 1 else f"{base}_{n}"
            rk.launches.append(self._launch(name, prefix, unit, rk))
        return rk

    @staticmethod
    def _units(body) -> list:
        units, run = [], []
        for s in body:
            if (isinstance(s, Loop) and s.parallel) or isinstance(s, LibCall):
                if run:
                    units.append(run)
                    run = []
                units.append([s])
            else:
                run.append(s)
        if run:
            units.append(run)
        return units

    def _split(self, units, rk) -> list:
        """[(prefix lets, unit statements)] per launch; one serial unit when unsafe to cut."""
        if len(units) <= 1:
            return [((), units[0])] if units else []
        body = [s for u in units for s in u]
        written = buffers_written(body)
        in_loops = locals_assigned([s for s in body if isinstance(s, Loop)])
        plans, prefix = [], []
        for unit in units:
            if all(isinstance(s, Let) for s in unit):
                prefix.extend(unit)
                continue
            needed = {v for v in locals_assigned(body) if reads_before_write(unit, v)}
            if needed & in_loops or any(
                let.var in needed and buffers_read([let]) & written for let in prefix
            ):
                rk.notes.append(f"serial: scalars {sorted(needed)} cross launches")
                return [((), body)]
            if any(isinstance(s, LibCall) for s in unit) and needed:
                rk.notes.append("serial: a library call reads a scalar local")
                return [((), body)]
            plans.append((tuple(prefix), unit))
            # Lets inside a unit that later units read would need carrying: refuse.
            prefix.extend(s for s in unit if isinstance(s, Let))
        return plans

    def _launch(self, name: str, prefix: tuple, unit: list, rk) -> Launch:
        if len(unit) == 1 and isinstance(unit[0], LibCall):
            return self._libcall(unit[0])
        nest = libcall_nest(unit)
        if nest is not None:  # batched GEMM by loops: one library call per iteration
            loops, call = nest
            launch = self._libcall(call, {v for v, _, _ in loops})
            launch.loops = tuple(loops)
            return launch
        if len(unit) == 1 and isinstance(unit[0], Loop) and unit[0].parallel:
            return self._parallel(name, list(prefix), unit[0], rk)
        rows = self._rows_function(name, list(prefix), unit, None, rk)
        if rows is not None:
            fn, inner, contiguous = rows
            return Launch("rows", fn.name, fn.params(), Const(1, _dt.int64), inner, None,
                          contiguous)  # fmt: skip
        fn = _Function(self, name)
        fn.emit("if (blockIdx.x != 0 || threadIdx.x != 0) return;", 1)
        fn.stmts([*prefix, *unit], 1)
        self._add(fn)
        return Launch("serial", fn.name, fn.params())

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
