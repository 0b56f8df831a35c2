"""Launch geometry and library-call arguments, computed from runtime sizes (no GPU needed).

The runtime asks ``configure`` how to launch each ``render.Launch`` once the run's dims are
known; the grid-stride loops make every grid size correct, so these choices only affect
speed. Kept apart from ``runtime.py`` so that it is tested on machines without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...expr import NUMPY_MATH, Call, Const, Dim, Var
from ...kernel.runtime import eval_int
from .rendered import Launch

THREADS_BLOCK = 256
MAX_GRID = 65535 * 32  # enough blocks to fill any GPU several times over; loops stride


@dataclass(frozen=True)
class Geometry:
    """How to launch one function: ``None`` function means "nothing to do" (empty range)."""

    function: str | None
    params: tuple
    grid: tuple
    block: tuple


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def rows_block(inner: int) -> int:
    """Threads per row block: about 4 elements per thread, a multiple of 32, 32..1024."""
    want = _ceil_div(max(inner, 1), 4)
    return max(32, min(1024, _ceil_div(want, 32) * 32))


def configure(launch: Launch, dims: dict, sm_count: int = 132, limits=None) -> Geometry:
    """Grid and block for ``launch`` given the run's dim values.

    ``limits``: function name -> the most threads per block it can launch with (its
    register use decides; the runtime reads it from the compiled function).
    """
    if launch.kind == "serial":
        return Geometry(launch.function, launch.params, (1, 1, 1), (1, 1, 1))
    if launch.kind == "threads":
        n = int(eval_int(launch.count, dims))
        if n <= 0:
            return Geometry(None, launch.params, (0, 1, 1), (THREADS_BLOCK, 1, 1))
        per_thread = _ceil_div(n, launch.vector)  # vectorised launches take quads
        grid = min(_ceil_div(per_thread, THREADS_BLOCK), MAX_GRID)
        return Geometry(launch.function, launch.params, (grid, 1, 1), (THREADS_BLOCK, 1, 1))
    if launch.kind == "rows":
        rows = int(eval_int(launch.count, dims))
        inner = int(eval_int(launch.inner, dims))
        if rows <= 0:
            return Geometry(None, launch.params, (0, 1, 1), (32, 1, 1))
        # Short rows, or strided ones with plenty of rows: one thread per row reads
        # coalesced across threads and wastes no lanes.
        if launch.alt and (inner < 64 or (not launch.contiguous and rows >= 8 * sm_count * 4)):
            return configure_alt(launch, dims)
        block = rows_block(inner)
        if limits and launch.function in limits:
            block = max(32, min(block, limits[launch.function] // 32 * 32))
        return Geometry(launch.function, launch.params, (min(rows, MAX_GRID), 1, 1), (block, 1, 1))
    raise ValueError(f"no geometry for a {launch.kind!r} launch")


def configure_alt(launch: Launch, dims: dict) -> Geometry:
    """The one-thread-per-row function of a ``rows`` launch."""
    rows = int(eval_int(launch.count, dims))
    grid = min(max(_ceil_div(rows, THREADS_BLOCK), 1), MAX_GRID)
    return Geometry(launch.alt, launch.alt_params, (grid, 1, 1), (THREADS_BLOCK, 1, 1))


@dataclass(frozen=True)
class GemmArgs:
    """A ``gemm`` LibCall with every size evaluated (see graphc.kernel.ir.LIBCALLS)."""

    a: str
    b: str
    c: str
    trans_a: bool
    trans_b: bool
    m: int
    n: int
    k: int
    batch: int
    stride_a: int
    stride_b: int
    stride_c: int
    alpha: float
    beta: float
    offset_a: int
    offset_b: int
    offset_c: int

    @property
    def lda(self) -> int:
        """Leading dimension of A as stored (row-major): its row length."""
        return self.m if self.trans_a else self.k

    @property
    def ldb(self) -> int:
        return self.k if self.trans_b else self.n

    def tiled_grid(self) -> tuple:
        """Grid of the fallback kernel ``gc_gemm_*`` (64 x 64 tiles, batch on z)."""
        return (_ceil_div(self.n, 64), _ceil_div(self.m, 64), max(1, min(self.batch, 65535)))


def eval_scalar(e, dims: dict, env: dict):
    """Value of a size expression over Dims, Consts and bound loop variables (``env``)."""
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, Const | Dim):
        return eval_int(e, dims)
    if isinstance(e, Call):
        args = [np.asarray(eval_scalar(a, dims, env)) for a in e.args]
        return np.asarray(NUMPY_MATH[e.fn](*args)).item()
    raise TypeError(f"not a size expression: {e!r}")


def gemm_calls(launch: Launch, dims: dict) -> list:
    """Every library GEMM a ``gemm`` launch makes (one per iteration of its loops)."""
    ranges = []
    for var, start, stop in launch.loops:
        ranges.append((var, start, stop))
    out = []

    def walk(level, env):
        if level == len(ranges):
            out.append(gemm_args(launch, dims, env))
            return
        var, start, stop = ranges[level]
        for v in range(int(eval_scalar(start, dims, env)), int(eval_scalar(stop, dims, env))):
            walk(level + 1, {**env, var: v})

    walk(0, {})
    return out


def gemm_args(launch: Launch, dims: dict, env=None) -> GemmArgs:
    a, b, c, *rest = launch.args
    vals = [eval_scalar(x, dims, env or {}) for x in rest]
    ta, tb, m, n, k, batch, sa, sb, sc, alpha, beta, oa, ob, oc = vals
    g = GemmArgs(a, b, c, bool(ta), bool(tb), int(m), int(n), int(k), int(batch),
                 int(sa), int(sb), int(sc), float(alpha), float(beta),
                 int(oa), int(ob), int(oc))  # fmt: skip
    if min(g.m, g.n, g.k, g.batch) < 0:
        raise ValueError(f"gemm with negative size: {g}")
    if g.batch > 1 and g.stride_c == 0:
        raise ValueError("gemm: several batch entries would write one output (stride_c == 0)")
    return g
