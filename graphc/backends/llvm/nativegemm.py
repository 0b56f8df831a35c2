"""graphc's own GEMM for AVX-512 targets: ``C = alpha * op(A) @ op(B) + beta * C``, float32
and float64, the ``gemm`` LibCall's products that it runs faster than OpenBLAS (``blas.py``
decides per call, at run time, from ``NativeGemm.use``).

Why: OpenBLAS packs both operands into its own panel layouts on every call, and its AVX-512
kernels ran at 94-104 GFLOP/s per core here. This kernel streams ``B`` in its row-major
layout (no packing) and reads ``A`` in place: 104-113 GFLOP/s on the W3 and W9 products,
0.66-0.79x OpenBLAS's time on a loop body's thin per-step products (W11's ``[32, 321] x
[321, 1024]``), which OpenBLAS spends mostly packing.

C is computed in tiles of ``MR`` rows by ``NV`` vectors of columns; the tile's accumulators
stay in vector registers over a chunk of ``KC`` terms, each step loading ``NV`` contiguous
vectors of one row of ``B`` and broadcasting ``MR`` scalars of ``A`` (one fused multiply-add
per accumulator). A *task* is a block of rows by a group of column blocks
(``split_tasks``: whole rows, so the GEMM's fused epilogue runs per task while its rows are
in cache, unless the rows are too few for the threads, which then split the columns); it
runs its chunks of terms one after another, each over all its column blocks and tiles, so
the chunk of B's column block and of its rows of A stay in L2. Edges need no scalar code:
the columns past N are masked off, a tile's rows past the task's last repeat that row (in
bounds) and are not stored, and the rows after the last whole tile go in tiles of
REST_ROWS.

Which products take it (``use``): 2 rows of op(A) or more, or a row vector times a B of
GEMV_MIN_ELEMENTS or more (a classifier at batch 1); past SMALL_M_MAX rows only when
the last column block is mostly columns of C (N = 10: OpenBLAS); a transposed A with more
than TA_K_MAX terms only up to DEEP_M_MAX rows, or DEEP_WIDE_M_MAX for a small C (see there),
its panels packed (PANEL_LD); a transposed B only from
TB_M_MIN rows, as it is first transposed into a scratch (``malloc``, freed after the call) in
panels ``[N / (NV * lanes)][K][NV * lanes]`` by ``transposekernel.py``, worth it only when
enough rows of A amortise the copy.

``part(args, t0, t1)`` runs tasks [t0, t1), a ``gc_parallel_for`` body; a batch of items
too small to split by rows runs whole items per thread (the items kernel, B not
transposed). The kernels are compiled once per process into the worker pool's object
(``pool.py``, linked in without IR passes, which do not speed them up), not into every
program's module.
"""

from __future__ import annotations

from llvmlite import ir

from ... import dtypes as _dt
from ...expr import Const
from . import math as _m
from .irutil import (
    F64,
    I1,
    I8,
    I32,
    I64,
    PTR,
    VOID,
    StandaloneModule,
    as_fn,
    for_range,
    gep,
    load_fields,
    splat,
    store_fields,
    value_type,
)
from .tasks import row_range, split_tasks
from .transposekernel import T_ARGS_TYPE, T_FIELDS, emit_transpose, transpose_symbol

#: a transposed A with more terms than this (a weight's gradient ``X^T @ dY``) is computed
#: in tasks of all the rows (each chunk of B read once, the panels of A^T packed, PANEL_LD),
#: and only up to DEEP_M_MAX rows, or DEEP_WIDE_M_MAX rows where C has at most DEEP_MN_MAX
#: elements (A^T [4096, M] x [4096, N], packed panels, one core, time against OpenBLAS's:
#: M = 256, N = 1024 0.95-0.96x, N = 256 0.90x; M = 1024, N = 256 0.95-1.00x (two threads
#: 0.98x); W11's M = 321, N = 1024, K = 2048 0.98x (two threads 0.91-0.95x); M = 512, N =
#: 1024, K = 2048 1.03x (two threads 0.97x); M = 1024, N = 1024 (K = 2048) 1.04x (two
#: threads 1.08x); M = 2048, N = 128 two threads 1.11x; M = 4096, N = 256 1.03x)
TA_K_MAX = 1024
DEEP_M_MAX = 256
DEEP_WIDE_M_MAX = 1024
DEEP_MN_MAX = 384 << 10
#: products with at most this many rows take the kernel whatever N (thin products: OpenBLAS
#: packs B for few rows; 4 x 512 x 512 26 against 65 us)
SMALL_M_MAX = 64
#: a row vector (M = 1) takes the kernel when B has at least this many elements (one core,
#: B a constant: ResNet-50's classifier 1 x 2048 x 1000 142 against OpenBLAS's 425 us, two
#: threads 105 against 246; 1 x 512 x 1000: 50 against 43 us)
GEMV_MIN_ELEMENTS = 1 << 20
#: ... more rows only when the padding of the last column block is at most
#: WASTE_NUM / WASTE_DEN of N (256 x 512 x 10, one block of 64 for 10 columns: OpenBLAS)
WASTE_NUM, WASTE_DEN = 1, 8
#: a transposed B from this many rows of A (the transpose into panels costs about as much as
#: ~100 rows of the product gain)
TB_M_MIN = 256
#: a batch of items with B transposed runs whole items per thread from any number of rows,
#: each item's B first transposed into panels on the thread's stack, when those panels take
#: at most this many bytes (W9's attention scores Q K^T, 128 items of [128, 64] x [128,
#: 64]^T: 32 KB per item)
ITEMS_TB_SCRATCH_MAX = 128 << 10
#: bytes per vector register (AVX-512); narrower machines split each vector in LLVM
VECTOR_BYTES = 64
#: rows of C per tile (A scalars broadcast per k step): 6 x 4 accumulators, the 4 vectors of
#: B and a broadcast fill AVX-512's 32 registers
MR = 6
#: rows of the tiles after a task's last full tile
REST_ROWS = 2
#: terms (K) per chunk: a task runs its chunks one after another, each over all its tiles
KC = 256
#: rows of a task per panel: a task runs each chunk of terms over its rows a panel at a
#: time, each panel over all the task's column blocks, so that the panel's chunk of A (KC x
#: PANEL_ROWS, 258 KB of float32) stays in L2 from one column block to the next (a deep
#: transposed A: a weight's gradient, whose tasks have all the rows)
PANEL_ROWS = 43 * MR
#: a deep transposed A's panel chunk (KC terms of PANEL_ROWS rows of op(A)) is first copied
#: to a scratch whose rows are PANEL_LD elements apart (1,056 bytes for float32): read in
#: place, a tile's consecutive terms are M elements apart, and for M a multiple of 1024
#: floats (4 KB) they all fall in the same L1 set (W9's ``[4096, 1024]^T x [4096, 256]``
#: ran at 93-96 GFLOP/s in place)
PANEL_LD = PANEL_ROWS + MR
#: vectors of columns per tile (B vectors loaded per k step); MR * NV accumulators
NV = 4

#: fields of the argument struct: the product (alpha and beta doubles, the operands
#: pointers, the rest i64), ``row_blocks`` (blocks of rows: block i has tiles [i * T / R,
#: (i + 1) * T / R) of the T tiles of MR rows, so blocks differ by at most a tile), ``cols``
#: (column blocks per task: a task is a block of rows by a group of column blocks), ``epi``
#: (a row epilogue or null, run after a task that has every column block), ``epi_ctx``,
#: ``bps`` (elements of B from one column block to the next: ``NV * lanes`` in B's row-major
#: layout, ``K * NV * lanes`` for B packed as panels ``[N / (NV * lanes)][K][NV * lanes]``,
#: where ``ldb`` is the panel width)
FIELDS = ("m", "n", "k", "alpha", "beta", "a", "lda", "b", "ldb", "c", "ldc", "row_blocks", "cols",
          "epi", "epi_ctx", "bps")  # fmt: skip
_TYPES = {"alpha": F64, "beta": F64, "a": PTR, "b": PTR, "c": PTR, "epi": PTR, "epi_ctx": PTR}
ARGS_TYPE = ir.LiteralStructType([_TYPES.get(name, I64) for name in FIELDS])


def lanes(dt) -> int:
    """Elements per vector of ``dt``."""
    return VECTOR_BYTES // dt.itemsize


def block_columns(dt) -> int:
    """Columns of C per column block (the unit ``part``'s range counts)."""
    return NV * lanes(dt)


class NativeGemm:
    """What ``native_gemm`` emitted: ``use`` (i1, true when this product takes the kernel at
    run time), ``whole_rows`` (i1, true when each task has whole rows of C: the epilogue
    given to ``call`` runs per task) and ``call(pa, pb, pc, epi, epi_ctx)``, which computes
    one item of the product there."""

    def __init__(self, r, f, dt, ta, tb, ival, al, be, lds, big):
        b = f.b
        self.f = f
        self.tb = tb
        m, n, k = ival[0], ival[1], ival[2]
        one = ir.Constant(I64, 1)
        # a row vector (M = 1) only with a large B: streaming B is then the whole cost, and
        # the kernel streams it faster than OpenBLAS's gemv
        gemv = b.icmp_signed(">=", b.mul(k, n), ir.Constant(I64, GEMV_MIN_ELEMENTS))
        self.use = b.or_(b.icmp_signed(">", m, one), b.and_(b.icmp_signed("==", m, one), gemv))
        # past SMALL_M_MAX rows only where the last column block is mostly columns of C
        nbc = block_columns(dt)
        padded = b.mul(b.sdiv(b.add(n, ir.Constant(I64, nbc - 1)), ir.Constant(I64, nbc)),
                       ir.Constant(I64, nbc * WASTE_DEN))  # fmt: skip
        dense = b.icmp_signed("<=", padded, b.mul(n, ir.Constant(I64, WASTE_DEN + WASTE_NUM)))
        few = b.icmp_signed("<=", m, ir.Constant(I64, SMALL_M_MAX))
        self.use = b.and_(self.use, b.or_(few, dense))
        self.part = r.declare(symbol(dt, ta), VOID, [PTR, I64, I64])
        self.parallel_for = r._parallel_for()
        nb = ir.Constant(I64, block_columns(dt))
        blocks = b.sdiv(b.add(n, b.sub(nb, one)), nb)
        nthr = b.sext(f.nthreads, I64)
        nthr = b.select(big, nthr, one)
        self.nthr = nthr
        # a transposed A with many terms (a weight's gradient X^T dY): every task all the
        # rows, so each chunk of B is read once, A's from L2 for each column block
        deep = None
        if ta:
            deep = b.icmp_signed(">", k, ir.Constant(I64, TA_K_MAX))
            # ... when a chunk of A^T (KC x M) stays in L2 for the next column block, and
            # there are column blocks for every thread (a convolution's filter gradient with
            # 64 output channels: one block; OpenBLAS splits its rows)
            fits = b.icmp_signed("<=", m, ir.Constant(I64, DEEP_M_MAX))
            narrow = b.and_(
                b.icmp_signed("<=", m, ir.Constant(I64, DEEP_WIDE_M_MAX)),
                b.icmp_signed("<=", b.mul(m, n), ir.Constant(I64, DEEP_MN_MAX)),
            )
            fits = b.or_(fits, narrow)  # fmt: skip
            fits = b.and_(fits, b.icmp_signed(">=", blocks, nthr))
            self.use = b.and_(self.use, b.or_(b.not_(deep), fits))
        self.row_blocks, self.cols, self.tasks, by_cols = split_tasks(
            b, m, n, blocks, ir.Constant(I64, MR), nthr, deep
        )
        self.whole_rows = b.not_(by_cols)
        self.blocks = blocks
        self.items_use = self.use
        self.items_part = None
        if not (ta and tb):
            self.items_part = r.declare(items_symbol(dt, ta, tb), VOID, [PTR, I64, I64])
        if tb:
            scratch = b.mul(b.mul(k, b.mul(blocks, nb)), ir.Constant(I64, dt.itemsize))
            small = b.icmp_signed("<=", scratch, ir.Constant(I64, ITEMS_TB_SCRATCH_MAX))
            self.items_use = b.and_(self.items_use, small)
        self.nt = b.select(b.icmp_signed(">", nthr, one), self.tasks, one)
        self.args = f.alloca(ARGS_TYPE, name="gemm.native")
        ldb = lds[1]
        self.scratch = None
        if tb:
            # B^T is transposed into a scratch once per item, as panels [N / nbc][K][nbc]
            # (each column block's rows contiguous: streamed without cache-set conflicts,
            # whatever N); worth it only for enough rows of A to amortise the copy
            self.use = b.and_(self.use, b.icmp_signed(">=", m, ir.Constant(I64, TB_M_MIN)))
            self.scratch = f.alloca(PTR, name="gemm.scratch")
            b.store(ir.Constant(PTR, None), self.scratch)
            malloc = r.declare("malloc", PTR, [I64])
            self._free = r.declare("free", VOID, [PTR])
            with b.if_then(self.use):
                size = b.mul(b.mul(k, b.mul(blocks, nb)), ir.Constant(I64, dt.itemsize))
                b.store(b.call(malloc, [size]), self.scratch)
            got = b.load(self.scratch, typ=PTR)
            self.use = b.and_(self.use, b.icmp_unsigned("!=", b.ptrtoint(got, I64),
                                                        ir.Constant(I64, 0)))  # fmt: skip
            self.t_part = r.declare(transpose_symbol(dt), VOID, [PTR, I64, I64])
            self.t_args = f.alloca(T_ARGS_TYPE, name="gemm.transpose")
            w = ir.Constant(I64, lanes(dt))
            self.t_blocks = b.sdiv(b.add(n, b.sub(w, one)), w)
            self.t_nt = b.select(b.icmp_signed("<", self.t_blocks, nthr), self.t_blocks, nthr)
            self.t_fields = {"lds": ldb, "ldd": nb, "r": n, "c": k, "panel": nb,
                             "pstride": b.mul(k, nb)}  # fmt: skip
            self.ldb_src = ldb
            ldb = nb
            bps = b.mul(k, nb)
        else:
            bps = nb
        self.fields = {"m": m, "n": n, "k": k, "alpha": al, "beta": be, "lda": lds[0],
                       "ldb": ldb, "ldc": lds[2], "row_blocks": self.row_blocks, "cols": self.cols,
                       "bps": bps}  # fmt: skip

    def _run(self, part, args, tasks, nt):
        b = self.f.b
        zero, one = ir.Constant(I64, 0), ir.Constant(I64, 1)
        with b.if_else(b.icmp_signed("<=", nt, one), likely=True) as (then, otherwise):
            with then:
                b.call(part, [args, zero, tasks])
            with otherwise:
                b.call(self.parallel_for, [part, args, zero, tasks, nt])

    def call(self, pa, pb, pc, epi, epi_ctx):
        b = self.f.b
        if self.tb:
            dst = b.load(self.scratch, typ=PTR)
            store_fields(b, self.t_args, T_ARGS_TYPE, T_FIELDS,
                          dict(self.t_fields, src=pb, dst=dst))  # fmt: skip
            self._run(self.t_part, self.t_args, self.t_blocks, self.t_nt)
            pb = dst
        fields = dict(self.fields, a=pa, b=pb, c=pc, epi=epi, epi_ctx=epi_ctx)
        store_fields(b, self.args, ARGS_TYPE, FIELDS, fields)
        self._run(self.part, self.args, self.tasks, self.nt)

    def call_items(self, pa, pb, pc, strides, batch, nthr):
        """The ``batch`` items of a batched product (A, B, C of item i ``strides``
        elements after item i - 1's), whole items per thread (a transposed B is transposed
        per item, on the thread's stack: ``items_use``)."""
        b = self.f.b
        args = self.f.alloca(ITEMS_TYPE, name="gemm.native.items")
        one_item = gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, 0)],
                       source_etype=ITEMS_TYPE)  # fmt: skip
        null = ir.Constant(PTR, None)
        fields = dict(self.fields, a=pa, b=pb, c=pc, epi=null, epi_ctx=null,
                      row_blocks=ir.Constant(I64, 1), cols=self.blocks)  # fmt: skip
        store_fields(b, one_item, ARGS_TYPE, FIELDS, fields)
        ldb_src = self.ldb_src if self.tb else ir.Constant(I64, 0)
        for j, v in enumerate((*strides, ldb_src), start=1):
            b.store(v, gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                           source_etype=ITEMS_TYPE))  # fmt: skip
        chunks = b.select(b.icmp_signed("<", batch, nthr), batch, nthr)
        self._run(self.items_part, args, batch, chunks)

    def release(self):
        """Free the scratch (after the last item)."""
        if self.scratch is None:
            return
        b = self.f.b
        got = b.load(self.scratch, typ=PTR)
        with b.if_then(b.icmp_unsigned("!=", b.ptrtoint(got, I64), ir.Constant(I64, 0))):
            b.call(self._free, [got])


def native_gemm(r, f, s, dt, ta, tb, ival, al, be, lds, big, batched=True):
    """A NativeGemm for the ``gemm`` LibCall ``s`` (float32/64, ``ival`` its index values as
    in ``blas.py``, ``al``/``be`` alpha and beta as doubles, ``lds`` (lda, ldb, ldc), ``big``
    whether it is worth splitting over threads, ``batched`` whether it may have several
    items), or None when it can never take the kernel: a static M or K out of range, or a
    target without AVX-512 (its 16 vector registers cannot hold the tile: OpenBLAS's kernels
    for it are the better choice)."""
    if not _m.flag("avx512f"):
        return None
    m, k = s.args[5], s.args[7]
    few = TB_M_MIN if tb and not (batched and not ta) else 1  # (batched: items from any M)
    if isinstance(m, Const) and int(m.value) < few:
        return None
    deep = ta and isinstance(k, Const) and int(k.value) > TA_K_MAX
    if deep and isinstance(m, Const) and int(m.value) > DEEP_WIDE_M_MAX:
        return None
    return NativeGemm(r, f, dt, ta, tb, ival, al, be, lds, big)


def symbol(dt, ta: bool) -> str:
    """The kernel's function name for ``dt`` (float32/64) and ``ta``."""
    return f"gc_gemm_native_{'s' if dt == _dt.float32 else 'd'}{int(ta)}"


def items_symbol(dt, ta: bool, tb: bool = False) -> str:
    """The batched kernel's function name (whole items per thread) for ``dt``, ``ta`` and
    ``tb`` (not both transposed)."""
    return f"gc_gemm_native_items_{'s' if dt == _dt.float32 else 'd'}{int(ta)}{int(tb)}"


#: the batched kernel's argument struct: one item's GEMM (ARGS_TYPE, as one task: one block
#: of rows, every column block, no epilogue; with B transposed, its ``b`` is item 0's B^T
#: and ``ldb``/``bps`` those of the panels), then the element strides of A, B and C from one
#: item to the next, then B's row stride (B transposed)
ITEMS_TYPE = ir.LiteralStructType([ARGS_TYPE, I64, I64, I64, I64])


def _emit_items(fn, kernel, dt, transpose=None):
    """``part(args, i0, i1)``: the items [i0, i1) of a batched product one after another on
    this thread, each one task of ``kernel`` (a batch of products too small to split by rows:
    W9's attention, 128 items of 128 x 128 x 64). With ``transpose`` (B transposed), each
    item's B^T first goes into panels in a stack buffer (at most ITEMS_TB_SCRATCH_MAX bytes:
    the caller checks), which the kernel then streams."""
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args, i0, i1 = fn.args
    one = gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, 0)], source_etype=ITEMS_TYPE)
    base = b.load(one, typ=ARGS_TYPE)
    strides = [b.load(gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                          source_etype=ITEMS_TYPE), typ=I64) for j in (1, 2, 3, 4)]  # fmt: skip
    local = b.alloca(ARGS_TYPE)
    es = ir.Constant(I64, dt.itemsize)
    scratch = t_args = None
    if transpose is not None:
        n, k = (b.extract_value(base, FIELDS.index(f)) for f in ("n", "k"))
        nb = ir.Constant(I64, block_columns(dt))
        padded = b.mul(b.sdiv(b.add(n, ir.Constant(I64, block_columns(dt) - 1)), nb), nb)
        scratch = b.alloca(I8, size=b.mul(b.mul(k, padded), es))
        scratch.align = 64
        t_args = b.alloca(T_ARGS_TYPE)
        w = ir.Constant(I64, lanes(dt))
        t_blocks = b.sdiv(b.add(n, b.sub(w, ir.Constant(I64, 1))), w)
        t_fields = {"lds": strides[3], "dst": scratch, "ldd": nb, "r": n, "c": k,
                    "panel": nb, "pstride": b.mul(k, nb)}  # fmt: skip
    with for_range(b, fn, i0, i1) as i:
        b.store(base, local)
        for name, stride in zip(("a", "b", "c"), strides):
            j = FIELDS.index(name)
            ptr = b.extract_value(base, j)
            moved = gep(b, ptr, [b.mul(b.mul(i, stride), es)], source_etype=I8)
            if name == "b" and transpose is not None:
                store_fields(b, t_args, T_ARGS_TYPE, T_FIELDS, dict(t_fields, src=moved))
                b.call(transpose, [t_args, ir.Constant(I64, 0), t_blocks])
                moved = scratch
            b.store(moved, gep(b, local, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                                source_etype=ARGS_TYPE))  # fmt: skip
        b.call(kernel, [local, ir.Constant(I64, 0), ir.Constant(I64, 1)])
    b.ret_void()


#: the kernels the worker pool's object defines (pool.py): the GEMM per dtype and trans_a,
#: the transpose per dtype, the batched GEMM per dtype and trans_a or trans_b
_DTS = (_dt.float32, _dt.float64)
_ITEMS = ((False, False), (True, False), (False, True))  # (ta, tb)
SYMBOLS = tuple(symbol(dt, ta) for dt in _DTS for ta in (False, True))
SYMBOLS += tuple(transpose_symbol(dt) for dt in _DTS)
SYMBOLS += tuple(items_symbol(dt, ta, tb) for dt in _DTS for ta, tb in _ITEMS)


def kernels_ir() -> str:
    """IR text defining every kernel of SYMBOLS (``part(args, b0, b1)``: column blocks
    [b0, b1) of C, each ``block_columns(dt)`` wide, from the ARGS_TYPE struct at ``args``),
    without a target line: the worker pool's module appends it (pool.py), so the kernels are
    compiled once per process (and cached with the pool), not in every program's module."""
    mod = StandaloneModule("gc_gemm_native")
    fty = ir.FunctionType(VOID, [PTR, I64, I64])
    for dt in _DTS:
        transpose = ir.Function(mod.module, fty, transpose_symbol(dt))
        emit_transpose(transpose, dt)
        kernels = {}
        for ta in (False, True):
            kernels[ta] = ir.Function(mod.module, fty, symbol(dt, ta))
            _emit(mod, kernels[ta], dt, ta)
        for ta, tb in _ITEMS:
            items = ir.Function(mod.module, fty, items_symbol(dt, ta, tb))
            _emit_items(items, kernels[ta], dt, transpose if tb else None)
    return "\n".join(
        line for line in str(mod.module).splitlines()
        if not line.startswith(("target ", "; ModuleID", "source_filename"))
    )  # fmt: skip


def _emit(r, fn, dt, ta):
    """``part(args, t0, t1)``: tasks [t0, t1) of the product described at ``args``."""
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args, t0, t1 = fn.args
    fty = value_type(dt)
    w = lanes(dt)
    vty = ir.VectorType(fty, w)
    mty = ir.VectorType(I1, w)
    ity = ir.VectorType(I64, w)
    es = ir.Constant(I64, dt.itemsize)

    def c64(v):
        return ir.Constant(I64, v)

    v = load_fields(b, args, ARGS_TYPE, FIELDS)
    m, n, k = v["m"], v["n"], v["k"]
    al, be = v["alpha"], v["beta"]
    if dt == _dt.float32:
        al, be = b.fptrunc(al, fty), b.fptrunc(be, fty)
    pa, lda, pb, ldb, pc, ldc = (v[x] for x in ("a", "lda", "b", "ldb", "c", "ldc"))
    sfx = f"v{w}f{dt.itemsize * 8}"
    fma = r.declare(f"llvm.fma.{sfx}", vty, [vty, vty, vty])
    mload = r.declare(f"llvm.masked.load.{sfx}.p0", vty, [PTR, I32, mty, vty])
    mstore = r.declare(f"llvm.masked.store.{sfx}.p0", VOID, [vty, PTR, I32, mty])
    align = ir.Constant(I32, dt.itemsize)
    zero_v = ir.Constant(vty, [0.0] * w)
    lane_ids = ir.Constant(ity, list(range(w)))
    beta0 = b.fcmp_ordered("==", be, ir.Constant(fty, 0.0))
    al_v = splat(b, al, vty)
    be_v = splat(b, be, vty)
    one = c64(1)
    a_row_step = one if ta else lda  # elements between A[i, p] and A[i + 1, p]
    a_k_step = lda if ta else one  # ... between A[i, p] and A[i, p + 1]
    nbc = NV * w
    ncb = b.sdiv(b.add(n, c64(nbc - 1)), c64(nbc))
    cols = v["cols"]
    groups = b.sdiv(b.add(ncb, b.sub(cols, one)), cols)
    packed = None
    if ta:
        # a deep transposed A (a weight's gradient): its panels go through a scratch
        # (PANEL_LD), malloc'd once per call of this part; none (null) reads A in place
        deep = b.icmp_signed(">", k, c64(TA_K_MAX))
        packed = b.alloca(PTR, name="gemm.panel")
        b.store(ir.Constant(PTR, None), packed)
        with b.if_then(deep):
            size = c64(KC * PANEL_LD * dt.itemsize)
            b.store(b.call(r.declare("malloc", PTR, [I64]), [size]), packed)
        packed = b.load(packed, typ=PTR)
        use_pack = b.icmp_unsigned("!=", b.ptrtoint(packed, I64), c64(0))

    def pack_panel(p0, p1, k0, k1):
        """Copy op(A)'s rows [p0, p1) of terms [k0, k1) (A[k0:k1, p0:p1], a transposed A)
        to the scratch, row p - k0 at (p - k0) * PANEL_LD, in vectors; returns (base, step)
        for ``tile``: the scratch moved back by element ``p0 + k0 * PANEL_LD``, PANEL_LD."""
        width = b.sub(p1, p0)
        with b.if_then(use_pack):
            nvec = b.sdiv(b.add(width, c64(w - 1)), c64(w))
            width_v = splat(b, width, ity)
            with for_range(b, fn, k0, k1) as kk:
                src_row = b.add(b.mul(kk, lda), p0)
                dst_row = b.mul(b.sub(kk, k0), c64(PANEL_LD))
                with for_range(b, fn, c64(0), nvec) as vi:
                    e0 = b.mul(vi, c64(w))
                    mask = b.icmp_signed("<", b.add(splat(b, e0, ity), lane_ids), width_v)
                    src = gep(b, pa, [b.mul(b.add(src_row, e0), es)], source_etype=I8)
                    dst = gep(b, packed, [b.mul(b.add(dst_row, e0), es)], source_etype=I8)
                    val = b.call(mload, [src, align, mask, zero_v])
                    b.call(mstore, [val, dst, align, mask])
        back = b.sub(c64(0), b.add(p0, b.mul(k0, c64(PANEL_LD))))
        moved = gep(b, packed, [b.mul(back, es)], source_etype=I8)
        return (b.select(use_pack, moved, pa),
                b.select(use_pack, c64(PANEL_LD), a_k_step))  # fmt: skip

    def tile(i0, mr, r1, last, j, bcol, masks, k0, k1, first, a_base, a_step):
        """C[i0 : i0 + mr, j : j + NV * w] over the terms [k0, k1) (rows from r1 on repeat
        row ``last``, not stored): the accumulators are phis of the k loop, in vector
        registers; ``first`` (i1): the first chunk of terms, which applies beta, where the
        later ones add to C; A[i, p] is read at ``a_base + i * a_row_step + p * a_step``
        (``a_base`` is A itself, or a packed panel moved back by its first row and term)."""
        rows = []  # element offsets of A[i0 + rr, 0]
        for rr in range(mr):
            i = b.add(i0, c64(rr))
            i = b.select(b.icmp_signed("<", i, r1), i, last)
            rows.append(b.mul(i, a_row_step))
        pre = b.block
        head = fn.append_basic_block("k.head")
        body = fn.append_basic_block("k.body")
        done = fn.append_basic_block("k.done")
        b.branch(head)
        b.position_at_end(head)
        p = b.phi(I64)
        p.add_incoming(k0, pre)
        acc = [[b.phi(vty) for _ in range(NV)] for _ in range(mr)]
        for row in acc:
            for a in row:
                a.add_incoming(zero_v, pre)
        b.cbranch(b.icmp_signed("<", p, k1), body, done)
        b.position_at_end(body)
        brow = b.add(b.mul(p, ldb), bcol)
        bv = [
            b.call(mload, [gep(b, pb, [b.mul(b.add(brow, c64(q * w)), es)], source_etype=I8),
                           align, masks[q], zero_v])
            for q in range(NV)
        ]  # fmt: skip
        ak = b.mul(p, a_step)
        new = []
        for rr in range(mr):
            ap = gep(b, a_base, [b.mul(b.add(rows[rr], ak), es)], source_etype=I8)
            av = splat(b, b.load(ap, typ=fty), vty)
            new.append([b.call(fma, [av, bv[q], acc[rr][q]]) for q in range(NV)])
        p.add_incoming(b.add(p, one), b.block)
        for rr in range(mr):
            for q in range(NV):
                acc[rr][q].add_incoming(new[rr][q], b.block)
        b.branch(head)
        b.position_at_end(done)
        # C = alpha * acc for the first chunk (+ beta * C unless beta is 0: C is not read
        # then, it may hold NaN), C + alpha * acc for the others
        reads = b.or_(b.not_(first), b.not_(beta0))
        scale = b.select(first, be_v, ir.Constant(vty, [1.0] * w))
        for rr in range(mr):
            i = b.add(i0, c64(rr))
            with b.if_then(b.icmp_signed("<", i, r1)):
                crow = b.mul(i, ldc)
                cps = [gep(b, pc, [b.mul(b.add(crow, b.add(j, c64(q * w))), es)], source_etype=I8)
                       for q in range(NV)]  # fmt: skip
                res = [b.fmul(acc[rr][q], al_v) for q in range(NV)]
                with b.if_else(reads) as (then, otherwise):
                    with then:
                        for q in range(NV):
                            old = b.call(mload, [cps[q], align, masks[q], zero_v])
                            b.call(mstore, [b.call(fma, [old, scale, res[q]]), cps[q], align,
                                            masks[q]])  # fmt: skip
                    with otherwise:
                        for q in range(NV):
                            b.call(mstore, [res[q], cps[q], align, masks[q]])

    with for_range(b, fn, t0, t1) as t:
        rb = b.sdiv(t, groups)
        c0 = b.mul(b.srem(t, groups), cols)
        c1 = b.add(c0, cols)
        c1 = b.select(b.icmp_signed("<", c1, ncb), c1, ncb)
        r0, r1 = row_range(b, rb, v["row_blocks"], m, c64(MR))
        last = b.sub(r1, one)
        # chunks of KC terms, each over every column block and row tile of the task: the
        # chunk of B's column block (KC x NV vectors) and of the task's rows of A stay in L2
        nkc = b.sdiv(b.add(k, c64(KC - 1)), c64(KC))
        nkc = b.select(b.icmp_signed("<", nkc, one), one, nkc)  # (K = 0: one chunk, beta)
        with for_range(b, fn, c64(0), nkc) as kc:
            k0 = b.mul(kc, c64(KC))
            k1 = b.add(k0, c64(KC))
            k1 = b.select(b.icmp_signed("<", k1, k), k1, k)
            first = b.icmp_signed("==", kc, c64(0))
            npan = b.sdiv(b.add(b.sub(r1, r0), c64(PANEL_ROWS - 1)), c64(PANEL_ROWS))
            with for_range(b, fn, c64(0), npan) as pn:
                p0 = b.add(r0, b.mul(pn, c64(PANEL_ROWS)))
                p1 = b.add(p0, c64(PANEL_ROWS))
                p1 = b.select(b.icmp_signed("<", p1, r1), p1, r1)
                a_base, a_step = pa, a_k_step
                if packed is not None:
                    a_base, a_step = pack_panel(p0, p1, k0, k1)
                with for_range(b, fn, c0, c1) as jb:
                    j = b.mul(jb, c64(nbc))
                    bcol = b.mul(jb, v["bps"])
                    n_v = splat(b, n, ity)
                    masks = [b.icmp_signed("<", b.add(splat(b, b.add(j, c64(q * w)), ity),
                                                      lane_ids), n_v)
                             for q in range(NV)]  # fmt: skip
                    where = (r1, last, j, bcol, masks, k0, k1, first, a_base, a_step)
                    full = b.sdiv(b.sub(p1, p0), c64(MR))
                    with for_range(b, fn, c64(0), full) as ti:
                        tile(b.add(p0, b.mul(ti, c64(MR))), MR, *where)
                    # the rows after the last full tile in tiles of REST_ROWS (a 32-row
                    # product: 5 tiles of 6 and one of 2, not a sixth tile of 6 with 4
                    # repeated rows; only the last panel has them, the others being whole
                    # tiles)
                    rest0 = b.add(p0, b.mul(full, c64(MR)))
                    nrest = b.sdiv(b.add(b.sub(p1, rest0), c64(REST_ROWS - 1)), c64(REST_ROWS))
                    with for_range(b, fn, c64(0), nrest) as ti:
                        tile(b.add(rest0, b.mul(ti, c64(REST_ROWS))), REST_ROWS, *where)
        epi = v["epi"]  # (only with whole rows: one group of column blocks)
        whole = b.icmp_signed("==", groups, one)
        with b.if_then(b.and_(whole, b.icmp_unsigned("!=", b.ptrtoint(epi, I64), c64(0)))):
            b.call(as_fn(b, epi, ir.FunctionType(VOID, [PTR, I64, I64])),
                   [v["epi_ctx"], b.mul(r0, n), b.mul(r1, n)])  # fmt: skip
    if packed is not None:
        with b.if_then(b.icmp_unsigned("!=", b.ptrtoint(packed, I64), c64(0))):
            b.call(r.declare("free", VOID, [PTR]), [packed])
    b.ret_void()
