"""Kernel IR: a small loop-nest IR that both backends (LLVM, CUDA) render.

Contract (shared by lowering ``lower.py``, the numpy interpreter ``interp.py``, the buffer
planner ``passes/plan.py`` and every renderer):

* A ``KernelProgram`` is what one Executable runs: named ``Buffer``s, runtime ``dims``
  (sizes of ``None`` dimensions, int64), and ``Kernel``s executed in order.
* Buffers are dense, row-major arrays addressed by a flat int64 element index. ``kind``:
    - ``input``: a feed (``inputs[k]`` is the buffer of ``ctx.feeds[k]``; read-only),
    - ``output``: a fetch (a fresh array handed to the caller after the run),
    - ``temp``: scratch; may share storage with another temp by plan (``alias_of``),
    - ``const``: data baked into the program (``value``; read-only),
    - ``var``: a session variable's value *at the start of the run* (see Variables),
    - ``rng``: int64 per-run random keys, filled by the runtime (see Random ops),
    - ``status``: int32 failure flags, zeroed by the runtime before the run (see Checks).
  Every buffer has storage for at least one element: a size-0 buffer gets one dummy
  element, so a load clamped to index 0 (concat/pad of an empty piece, whose value a SELECT
  discards) is always safe.
* A ``Kernel`` body is a tuple of statements:
    - ``Loop(var, start, stop, body, parallel)``: ``for var in range(start, stop)``; loop
      variables are int64 ``Var``s. ``parallel=True`` (outermost loops only) promises
      iterations are independent: a backend may split them across threads / blocks.
    - ``Let(var, dtype, value)``: define or re-assign a scalar local (mutable; e.g.
      accumulators). A local is visible after its Let in the same body and in nested bodies.
    - ``Store(buffer, index, value)``: ``buffer[index] = value`` (value has the buffer's
      dtype: the lowering casts explicitly, never implicitly).
    - ``If(cond, then, orelse)``: run ``then`` when the bool expression ``cond`` holds, else
      ``orelse`` (used to raise status flags; rare in hot loops).
    - ``LibCall(fn, args)``: call a library routine (e.g. ``"gemm"``) with buffer names and
      int64/float expressions; see LIBCALLS for the signatures.
* Expressions are those of ``expr.py`` (Const, Var, Dim, Load, Call(Math...), Cast). Index
  arithmetic is int64 (Math.ADD/MUL/FLOORDIV/MOD/MIN/MAX/SELECT on int64). ``Arg`` never
  appears in a kernel body (lowering replaces op operands by Loads). Math semantics are those
  of ``expr.NUMPY_MATH`` (e.g. MAX/MIN propagate NaN like ``np.maximum``; integer DIV and
  FLOORDIV floor, and x // 0 == x % 0 == 0; integer ADD/MUL wrap; SHR is a logical shift).
* ``reduce=True`` on a Let marks an accumulator update of the exact form
  ``acc = OP(acc, e)`` with OP in {ADD, MUL, MAX, MIN, AND, OR}, ``acc`` defined by a Let
  before the enclosing loop and ``e`` not reading ``acc``: its floating arithmetic may be
  reassociated (vectorised reductions); everything else keeps IEEE order unless fast_math.
  A Let without ``reduce`` that re-assigns a local defined outside its loop makes that
  loop sequential (scans, argmax).
* A loop is *vectorisable* by a renderer/interpreter when its body carries nothing from one
  iteration to the next except ``reduce=True`` accumulators, and it stores to no buffer it
  also loads, except at the identical index expression (in-place elementwise updates) when
  that index uses the loop's variable and does not depend on a value loaded inside the
  loop. A data-dependent index (``out[idx[i]] += g[i]``: scatter-add, where indices may
  repeat) or one the loop's variable does not change (``out[c] = out[c] + x[a, c]`` in a
  loop over ``a``: accumulation in memory) makes the loop sequential; such loops are never
  ``parallel``.

Runtime dims and shape checks
  ``dims``: name -> (feed position k, axis): the size of axis ``axis`` of ``ctx.feeds[k]``.
  Every other size is an int64 expression of Dims and Consts (``Buffer.shape``), so a new
  batch size needs no recompilation. ``dim_checks`` are (bool Expr over Dims, message)
  pairs the runtime evaluates before any kernel runs (``runtime.check_dims``); a failing
  one raises InvalidArgumentError(message) and nothing runs. Static programs have none.

Variables (copy-in / copy-out; a failed run changes nothing)
  ``var_reads``: buffer -> variable name: the buffer holds the variable's value at the
  start of the run (reading an uninitialised variable raises FailedPreconditionError before
  anything runs: ``runtime.bind_variables``). Kernels never write a ``var`` buffer unless
  the plan aliases an update to it (below). ``var_updates``: variable name -> buffer whose
  content at the end of the run is the variable's new value; the runtime commits these
  (``ctx.write_variable`` + ``ctx.commit()`` in the Session) only after every kernel and
  every status check succeeded. Several assignments to one variable in a run follow program
  order (a later read sees the earlier write), as in the reference interpreter.
  In-place updates: when ``buffers[var_updates[v]].alias_of`` is the var buffer, the update
  is written into the var buffer's storage (an optimizer step ``w -= lr * g``). The planner
  does this only when no kernel reads the old value after the update and the program has no
  status checks (so no failure can occur once kernels run). The runtime must then give the
  var buffer storage it may write and commit: a private copy of the session value, or
  storage it owns (resident variables), never an array the user may hold.

Random ops (counter-based splitmix64, ``graphc/ops/random.py``)
  ``rng``: tuple of (op name, seed, seed2), one per random op, and one ``rng`` buffer
  (int64, shape (len(rng),)), named ``RNG_BUFFER``. Before the run the runtime stores
  ``random.stream_key(seed, seed2, ctx.rng_counter(op_name))`` (as int64 bits) at position
  j; the kernel computes element i from (key, i) with int64 Math (ADD/MUL wrap, BITXOR, SHR)
  exactly as ``random.random_bits``. ``runtime.rng_keys`` builds the array.

Checks (CheckNumerics, gather bounds...)
  ``checks``: tuple of ``Check(slot, message, kind)``; a kernel that detects a failure
  stores a non-zero int32 to ``STATUS_BUFFER[slot]`` (stores of one slot all write the same
  value, so racing threads agree). After the run (or after each kernel) the runtime calls
  ``runtime.raise_status(kp, status)``: the first failed check in slot order raises
  InvalidArgumentError with its message, and no variable is committed. ``kind``:
  ``"nan"``/``"inf"`` (message gets " : Tensor had NaN values"/"Inf values", NaN first, like
  the reference) or ``"plain"`` (message as is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes as _dt
from ..expr import Expr, sub_exprs
from .printer import expr_text

#: Library routines a LibCall may name, with their argument lists.
LIBCALLS = {
    # C[b] (M x N) = alpha * op(A[b]) (M x K) @ op(B[b]) (K x N) + beta * C[b]; row-major.
    # args: (A, B, C buffer names, trans_a, trans_b (0/1 Const), M, N, K, batch,
    #        stride_a, stride_b, stride_c (elements per batch; 0 = broadcast), alpha, beta,
    #        offset_a, offset_b, offset_c (elements))
    "gemm": (
        "A",
        "B",
        "C",
        "trans_a",
        "trans_b",
        "M",
        "N",
        "K",
        "batch",
        "stride_a",
        "stride_b",
        "stride_c",
        "alpha",
        "beta",
        "offset_a",
        "offset_b",
        "offset_c",
    ),  # fmt: skip
    # A convolution on the cpu target with constant float32 filters packed at compile time
    # (graphc/backends/llvm/packedgemm.py): C[m, o] (m the output pixel n*OH*OW + oy*OW + ox,
    # NHWC) = sum over taps (i, j) and channels ch of X[n, oy*sh + i*dh - pt, ox*sw + j*dw
    # - pl, ch] (0 outside the input) * filter[i, j, ch, o], the filters HWIO laid out in
    # W by ``conv_packed.pack_filters(filters, nv)``. args: (X, W, C buffer names, then
    # int64 expressions nv, m, o, c, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, ldc, oc,
    # nchw): output pixel r's o channels are C[oc + r * ldc : oc + r * ldc + o] (ldc = o,
    # oc = 0 from the lowering; a wider row is a piece of a concat written in place); nchw
    # (a constant 0 or 1): X is laid out [N, C, H, W] instead of NHWC (an imported model's
    # input, read without its transpose: ``lower_nn``)
    "conv_packed": tuple("X W C nv m o c h w oh ow kh kw sh sw dh dw pt pl ldc oc nchw".split()),
    # A batch of products with constant right operands packed at compile time, on the same
    # kernel (Winograd's 16 products of a 3 x 3 convolution: ``lower_winograd``): for b in
    # [0, batch), C[b] (m x o, rows o apart) = A[b] (m x c, rows c apart) @ the [c, o] matrix
    # laid out in W[b] by ``conv_packed.pack_filters(matrix.reshape(1, 1, c, o), nv)``;
    # A[b], W[b], C[b] start stride_a, stride_w, stride_c elements after A[b - 1]'s, ...
    "gemm_packed": tuple("A W C nv batch m o c stride_a stride_w stride_c".split()),
}


@dataclass(frozen=True)
class Buffer:
    """A dense row-major array; ``shape`` entries are int64 expressions (Const or Dim...)."""

    name: str
    dtype: _dt.DType
    shape: tuple  # tuple[Expr]
    kind: str  # input | output | temp | const | var | rng | status
    value: object = None  # numpy array for const buffers
    alias_of: str | None = None  # shares storage with this buffer (set by buffer planning)


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
class If(Stmt):
    cond: Expr
    then: tuple
    orelse: tuple = ()


@dataclass(frozen=True)
class LibCall(Stmt):
    fn: str
    args: tuple


def walk_stmts(stmts):
    """Every statement of ``stmts`` and of the bodies nested in them (Loop bodies, If
    branches), in program order: the one statement walk analyses of kernel bodies share."""
    for s in stmts:
        yield s
        if isinstance(s, Loop):
            yield from walk_stmts(s.body)
        elif isinstance(s, If):
            yield from walk_stmts(s.then)
            yield from walk_stmts(s.orelse)


def stmt_exprs(s: Stmt) -> tuple:
    """The expressions statement ``s`` holds itself (not those of nested statements);
    a LibCall's buffer-name arguments are not expressions."""
    if isinstance(s, Let):
        return (s.value,)
    if isinstance(s, Store):
        return (s.index, s.value)
    if isinstance(s, Loop):
        return (s.start, s.stop)
    if isinstance(s, If):
        return (s.cond,)
    if isinstance(s, LibCall):
        return tuple(a for a in s.args if isinstance(a, Expr))
    raise TypeError(f"unknown Kernel IR statement {s!r}")


def exprs_in(stmts):
    """Every expression in ``stmts`` and their nested bodies, sub-expressions included."""
    for s in walk_stmts(stmts):
        for e in stmt_exprs(s):
            yield from sub_exprs(e)


@dataclass(frozen=True)
class Check:
    """A run-time failure the kernels can report through the status buffer."""

    slot: int
    message: str
    kind: str = "plain"  # plain | nan | inf


RNG_BUFFER = "rng_keys"
STATUS_BUFFER = "status"


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
    inputs: one entry per feed of the signature (``ctx.feeds`` order): its buffer name, or
    None when the program does not read that feed. outputs: buffer names in fetch order (a
    fetch may name an input, const or var buffer too: the runtime returns a copy).
    var_reads / var_updates / rng / checks / dim_checks: see the module docstring.
    stats (filled by ``passes.plan``): bytes per kernel, peak temporary bytes, totals.
    """

    buffers: dict  # name -> Buffer
    kernels: list  # list[Kernel]
    dims: dict = field(default_factory=dict)
    inputs: tuple = ()
    outputs: tuple = ()
    var_reads: dict = field(default_factory=dict)  # buffer name -> variable name
    var_updates: dict = field(default_factory=dict)  # variable name -> buffer name
    meta: dict = field(default_factory=dict)
    rng: tuple = ()  # (op name, seed, seed2) per rng slot
    checks: tuple = ()  # tuple[Check]
    dim_checks: tuple = ()  # tuple[(bool Expr over Dims, message)]
    stats: dict = field(default_factory=dict)

    def text(self) -> str:
        """Buffers, dims, checks and every kernel's loop nest, as text."""
        return print_program(self)


def _stmts(body, indent, out):
    pad = "  " * indent
    for s in body:
        if isinstance(s, Loop):
            par = " parallel" if s.parallel else ""
            out.append(f"{pad}for{par} {s.var} in {expr_text(s.start)}..{expr_text(s.stop)}:")
            _stmts(s.body, indent + 1, out)
        elif isinstance(s, Let):
            op = " reduce" if s.reduce else ""
            out.append(f"{pad}let{op} {s.var}: {s.dtype.name} = {expr_text(s.value)}")
        elif isinstance(s, Store):
            out.append(f"{pad}{s.buffer}[{expr_text(s.index)}] = {expr_text(s.value)}")
        elif isinstance(s, If):
            out.append(f"{pad}if {expr_text(s.cond)}:")
            _stmts(s.then, indent + 1, out)
            if s.orelse:
                out.append(f"{pad}else:")
                _stmts(s.orelse, indent + 1, out)
        elif isinstance(s, LibCall):
            args = ", ".join(a if isinstance(a, str) else expr_text(a) for a in s.args)
            out.append(f"{pad}call {s.fn}({args})")
        else:
            out.append(f"{pad}{s!r}")


def print_program(kp: KernelProgram) -> str:
    """Buffers, dims, checks and every kernel's loop nest."""
    out = []
    for name, (k, axis) in kp.dims.items():
        out.append(f"dim {name} = feeds[{k}].shape[{axis}]")
    for check in kp.dim_checks:
        cond, msg = check[0], check[1]
        sizes = ", ".join(expr_text(a) for a in (check[2] if len(check) > 2 else ()))
        out.append(f"check {expr_text(cond)}  # {msg}" + (f" [{sizes}]" if sizes else ""))
    for name, b in kp.buffers.items():
        shape = ", ".join(expr_text(d) for d in b.shape)
        alias = f" alias_of={b.alias_of}" if b.alias_of else ""
        out.append(f"buffer {name}: {b.kind} {b.dtype.name}[{shape}]{alias}")
    for j, (op, seed, seed2) in enumerate(kp.rng):
        out.append(f"rng[{j}] = key({seed}, {seed2}, counter('{op}'))")
    for c in kp.checks:
        out.append(f"status[{c.slot}]: {c.kind} {c.message!r}")
    out.append("inputs: " + ", ".join(str(i) for i in kp.inputs))
    out.append("outputs: " + ", ".join(kp.outputs))
    for var, buf in kp.var_updates.items():
        out.append(f"update {var} <- {buf}")
    for k in kp.kernels:
        ops = ", ".join(k.op_types)
        out.append("")
        out.append(f"kernel {k.name}  # {ops}")
        _stmts(k.body, 1, out)
    return "\n".join(out)
