"""Kernel IR: a small loop-nest IR that both backends (LLVM, CUDA) render.

Contract (shared by lowering, the numpy interpreter ``interp.py`` and every renderer):

* A ``KernelProgram`` is what one Executable runs: named ``Buffer``s, runtime ``dims``
  (sizes of ``None`` dimensions, int64), and ``Kernel``s executed in order.
* Buffers are dense, row-major arrays addressed by a flat int64 element index. ``kind``:
  ``input`` (a feed), ``output`` (a fetch), ``temp`` (planned scratch, may alias by plan),
  ``const`` (data baked into the program), ``var`` (a session variable, updated in place).
* A ``Kernel`` body is a tuple of statements:
    - ``Loop(var, start, stop, body, parallel)``: ``for var in range(start, stop)``; loop
      variables are int64 ``Var``s. ``parallel=True`` (outermost loops only) promises
      iterations are independent: a backend may split them across threads / blocks.
    - ``Let(var, value)``: define or re-assign a scalar local (mutable; e.g. accumulators).
    - ``Store(buffer, index, value)``: ``buffer[index] = value`` (value cast to the buffer's
      dtype by the lowering, never implicitly).
    - ``LibCall(fn, args)``: call a library routine (e.g. ``"gemm"``) with buffer names and
      int64/float expressions; see LIBCALLS for the signatures.
* Expressions are those of ``expr.py`` (Const, Var, Dim, Load, Call(Math...), Cast). Index
  arithmetic is int64 (Math.ADD/MUL/FLOORDIV/MOD on int64). ``Arg`` never appears in a
  kernel body (lowering replaces op operands by Loads).
* ``reduce=True`` on a Let marks an accumulator update whose floating arithmetic may be
  reassociated (vectorised reductions); everything else keeps IEEE order unless fast_math.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes as _dt
from .expr import Expr

#: Library routines a LibCall may name, with their argument lists.
LIBCALLS = {
    # C[b] (M x N) = alpha * op(A[b]) (M x K) @ op(B[b]) (K x N) + beta * C[b]; row-major.
    # args: (A, B, C buffer names, trans_a, trans_b (0/1 Const), M, N, K, batch,
    #        stride_a, stride_b, stride_c (elements per batch; 0 = broadcast), alpha, beta,
    #        offset_a, offset_b, offset_c (elements))
    "gemm": (
        "A", "B", "C", "trans_a", "trans_b", "M", "N", "K", "batch",
        "stride_a", "stride_b", "stride_c", "alpha", "beta", "offset_a", "offset_b", "offset_c",
    ),  # fmt: skip
}


@dataclass(frozen=True)
class Buffer:
    """A dense row-major array; ``shape`` entries are int64 expressions (Const or Dim...)."""

    name: str
    dtype: _dt.DType
    shape: tuple  # tuple[Expr]
    kind: str  # input | output | temp | const | var
    value: object = None  # numpy array for const buffers
    alias_of: str | None = None  # temp buffer sharing storage with another (buffer planning)


class Stmt:
    __slots__ = ()


@dataclass(frozen=True)
class Loop(Stmt):
    var: str
    start: Expr
    stop: Expr
    body: tuple
    parallel: bool = False


@dataclass(frozen=True)
class Let(Stmt):
    var: str
    dtype: _dt.DType
    value: Expr
    reduce: bool = False


@dataclass(frozen=True)
class Store(Stmt):
    buffer: str
    index: Expr
    value: Expr


@dataclass(frozen=True)
class LibCall(Stmt):
    fn: str
    args: tuple


@dataclass
class Kernel:
    """One launch: a loop nest over some buffers. ``ops`` are the graph ops it computes."""

    name: str
    body: tuple
    ops: tuple = ()  # graph op names fused here
    op_types: tuple = ()
    reads: tuple = ()  # buffer names read
    writes: tuple = ()  # buffer names written
    bytes_moved: Expr | int | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class KernelProgram:
    """Everything one Executable runs: buffers, runtime dims, kernels in order.

    dims: name -> (feed position, axis) telling where each runtime size comes from.
    inputs: buffer names in feed order; outputs: buffer names in fetch order (a fetch may
    name an input, const or var buffer too). var_updates: var name -> buffer holding its new
    value at the end of the run (None when updated in place).
    """

    buffers: dict  # name -> Buffer
    kernels: list  # list[Kernel]
    dims: dict = field(default_factory=dict)
    inputs: tuple = ()
    outputs: tuple = ()
    var_reads: dict = field(default_factory=dict)  # buffer name -> variable name
    var_updates: dict = field(default_factory=dict)  # variable name -> buffer name
    meta: dict = field(default_factory=dict)

    def text(self) -> str:
        from .printer import print_program

        return print_program(self)
