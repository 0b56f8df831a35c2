"""A native GEMM for products with few rows: ``C = alpha * op(A) @ B + beta * C`` where
``op(A)`` has at most SMALL_M_MAX rows and ``B`` is not transposed (row-major ``[K, N]``).

Why: a loop body's per-step product (W11: the LSTM step's ``[32, 321] x [321, 1024]`` and
its gradient's ``[32, 1024] x [1024, 256]``) is too thin for OpenBLAS, which packs the whole
weight operand into its own panel layout on every call (a third of those calls' time on the
W11 step, a quarter of the whole step). This kernel streams ``B`` in its natural layout
instead: C is computed in tiles of ``MR`` rows by ``NV`` vectors of columns; the tile's
accumulators stay in vector registers over the whole ``k`` loop, each step loading ``NV``
contiguous vectors of one row of ``B`` and broadcasting ``MR`` scalars of ``A`` (one fused
multiply-add per accumulator). For a column block every row block of A is done before the
next column block, so the block of B (``K x NV`` vectors) is read from memory once and from
L2 for the other row blocks.

Edges need no scalar code: the columns past N are masked off (masked loads and stores of the
last block), and a tile's rows past M repeat row M - 1 (in bounds) and are not stored.

``part(args, b0, b1)`` computes the column blocks [b0, b1), a ``gc_parallel_for`` body, so a
product is split over the worker pool by column blocks (``blas.py`` decides when). The
kernels are compiled once per process into the worker pool's object (``pool.py``), not into
every program's module (~65 ms of LLVM time each).
"""

from __future__ import annotations

from llvmlite import ir

from ... import dtypes as _dt
from ...expr import Const
from . import math as _m
from .irutil import F64, I1, I8, I32, I64, PTR, VOID, StandaloneModule, for_range, gep, value_type

#: products with 2 to SMALL_M_MAX rows of op(A) and at most SMALL_K_MAX terms use this
#: kernel (B not transposed). Measured against OpenBLAS on one core of the AVX-512 machine
#: (M x K x N, us per call): 32x321x1024 202 vs 359, 32x1024x256 171 vs 205, 64x512x512 300
#: vs 366, 4x512x512 26 vs 65, 1x512x512 27 vs 24; past K = 1024 a column block of B
#: (K x 64 floats) no longer stays in L2 for the next row block: 64x2048x1024 4.4 vs 3.5 ms
SMALL_M_MAX = 64
SMALL_K_MAX = 1024
#: bytes per vector register (AVX-512); narrower machines split each vector in LLVM
VECTOR_BYTES = 64
#: rows of C per tile (A scalars broadcast per k step); 4 x 4 and 8 x 3 measured alike
MR = 4
#: vectors of columns per tile (B vectors loaded per k step); MR * NV accumulators
NV = 4

#: fields of the argument struct: m, n, k, alpha, beta, A, lda, B, ldb, C, ldc
ARGS_TYPE = ir.LiteralStructType([I64, I64, I64, F64, F64, PTR, I64, PTR, I64, PTR, I64])


def lanes(dt) -> int:
    """Elements per vector of ``dt``."""
    return VECTOR_BYTES // dt.itemsize


def block_columns(dt) -> int:
    """Columns of C per column block (the unit ``part``'s range counts)."""
    return NV * lanes(dt)


class SmallGemm:
    """What ``small_gemm`` emitted: ``use`` (i1, true when this product takes the kernel at
    run time) and ``call(pa, pb, pc)``, which computes one item of the product there."""

    def __init__(self, r, f, dt, ta, ival, al, be, lds, big):
        b = f.b
        self.f = f
        m, n, k = ival[0], ival[1], ival[2]
        one = ir.Constant(I64, 1)
        use = b.and_(b.icmp_signed(">", m, one),
                     b.icmp_signed("<=", m, ir.Constant(I64, SMALL_M_MAX)))  # fmt: skip
        self.use = b.and_(use, b.icmp_signed("<=", k, ir.Constant(I64, SMALL_K_MAX)))
        self.part = r.declare(symbol(dt, ta), VOID, [PTR, I64, I64])
        self.parallel_for = r._parallel_for()
        nb = ir.Constant(I64, block_columns(dt))
        self.blocks = b.sdiv(b.add(n, b.sub(nb, one)), nb)
        nthr = b.sext(f.nthreads, I64)
        nt = b.select(b.icmp_signed("<", self.blocks, nthr), self.blocks, nthr)
        self.nt = b.select(big, nt, one)
        self.args = f.alloca(ARGS_TYPE, name="gemm.small")
        self.fields = [m, n, k, al, be, None, lds[0], None, lds[1], None, lds[2]]

    def call(self, pa, pb, pc):
        b = self.f.b
        fields = list(self.fields)
        fields[5], fields[7], fields[9] = pa, pb, pc
        for j, v in enumerate(fields):
            b.store(v, gep(b, self.args, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                           source_etype=ARGS_TYPE))  # fmt: skip
        zero, one = ir.Constant(I64, 0), ir.Constant(I64, 1)
        with b.if_else(b.icmp_signed("<=", self.nt, one), likely=True) as (then, otherwise):
            with then:
                b.call(self.part, [self.args, zero, self.blocks])
            with otherwise:
                b.call(self.parallel_for, [self.part, self.args, zero, self.blocks, self.nt])


def small_gemm(r, f, s, dt, ta, tb, ival, al, be, lds, big):
    """A SmallGemm for the ``gemm`` LibCall ``s`` (float32/64, ``ival`` its index values as
    in ``blas.py``, ``al``/``be`` alpha and beta as doubles, ``lds`` (lda, ldb, ldc), ``big``
    whether it is worth splitting over threads), or None when it can never take the kernel:
    B transposed, a static M or K out of range, or a target without AVX-512 (its 16 vector
    registers cannot hold the tile: OpenBLAS's kernels for it are the better choice)."""
    if tb or not _m.flag("avx512f"):
        return None
    m, k = s.args[5], s.args[7]
    if isinstance(m, Const) and not 1 < int(m.value) <= SMALL_M_MAX:
        return None
    if isinstance(k, Const) and int(k.value) > SMALL_K_MAX:
        return None
    return SmallGemm(r, f, dt, ta, ival, al, be, lds, big)


def symbol(dt, ta: bool) -> str:
    """The kernel's function name for ``dt`` (float32/64) and ``ta``."""
    return f"gc_gemm_small_{'s' if dt == _dt.float32 else 'd'}{int(ta)}"


#: the kernels the worker pool's object defines (pool.py), one per dtype and trans_a
SYMBOLS = tuple(symbol(dt, ta) for dt in (_dt.float32, _dt.float64) for ta in (False, True))


def kernels_ir() -> str:
    """IR text defining every kernel of SYMBOLS (``part(args, b0, b1)``: column blocks
    [b0, b1) of C, each ``block_columns(dt)`` wide, from the ARGS_TYPE struct at ``args``),
    without a target line: the worker pool's module appends it (pool.py), so the kernels are
    compiled once per process (and cached with the pool), not in every program's module."""
    mod = StandaloneModule("gc_gemm_small")
    for dt in (_dt.float32, _dt.float64):
        for ta in (False, True):
            fn = ir.Function(mod.module, ir.FunctionType(VOID, [PTR, I64, I64]), symbol(dt, ta))
            _emit(mod, fn, dt, ta)
    return "\n".join(
        line for line in str(mod.module).splitlines()
        if not line.startswith(("target ", "; ModuleID", "source_filename"))
    )  # fmt: skip


def _emit(r, fn, dt, ta):
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args, b0, b1 = fn.args
    fty = value_type(dt)
    w = lanes(dt)
    vty = ir.VectorType(fty, w)
    mty = ir.VectorType(I1, w)
    es = ir.Constant(I64, dt.itemsize)

    def field(j, ty):
        p = gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)], source_etype=ARGS_TYPE)
        return b.load(p, typ=ty)

    m, n, k = field(0, I64), field(1, I64), field(2, I64)
    al, be = field(3, F64), field(4, F64)
    if dt == _dt.float32:
        al, be = b.fptrunc(al, fty), b.fptrunc(be, fty)
    pa, lda, pb, ldb, pc, ldc = (field(5, PTR), field(6, I64), field(7, PTR), field(8, I64),
                                 field(9, PTR), field(10, I64))  # fmt: skip
    sfx = f"v{w}f{dt.itemsize * 8}"
    fma = r.declare(f"llvm.fma.{sfx}", vty, [vty, vty, vty])
    mload = r.declare(f"llvm.masked.load.{sfx}.p0", vty, [PTR, I32, mty, vty])
    mstore = r.declare(f"llvm.masked.store.{sfx}.p0", VOID, [vty, PTR, I32, mty])
    align = ir.Constant(I32, dt.itemsize)
    zero_v = ir.Constant(vty, [0.0] * w)
    lane_ids = ir.Constant(ir.VectorType(I64, w), list(range(w)))
    beta0 = b.fcmp_ordered("==", be, ir.Constant(fty, 0.0))
    al_v = _splat(b, al, vty)
    be_v = _splat(b, be, vty)
    one = ir.Constant(I64, 1)
    last_row = b.sub(m, one)
    a_row_step = one if ta else lda  # elements between A[i, p] and A[i + 1, p]
    a_k_step = lda if ta else one  # ... between A[i, p] and A[i, p + 1]

    with for_range(b, fn, b0, b1) as jb:
        j = b.mul(jb, ir.Constant(I64, NV * w))
        masks = []
        for v in range(NV):
            col = b.add(_splat(b, b.add(j, ir.Constant(I64, v * w)), ir.VectorType(I64, w)),
                        lane_ids)  # fmt: skip
            masks.append(b.icmp_signed("<", col, _splat(b, n, ir.VectorType(I64, w))))
        with for_range(b, fn, ir.Constant(I64, 0), b.udiv(b.add(m, ir.Constant(I64, MR - 1)),
                                                          ir.Constant(I64, MR))) as ib:  # fmt: skip
            i0 = b.mul(ib, ir.Constant(I64, MR))
            rows = []  # element offsets of A[i0 + rr, 0] (rows past M repeat row M - 1)
            for rr in range(MR):
                i = b.add(i0, ir.Constant(I64, rr))
                i = b.select(b.icmp_signed("<", i, m), i, last_row)
                rows.append(b.mul(i, a_row_step))
            # the k loop: accumulators as phis, in registers
            pre = b.block
            head = fn.append_basic_block("k.head")
            body = fn.append_basic_block("k.body")
            done = fn.append_basic_block("k.done")
            b.branch(head)
            b.position_at_end(head)
            p = b.phi(I64)
            p.add_incoming(ir.Constant(I64, 0), pre)
            acc = [[b.phi(vty) for _ in range(NV)] for _ in range(MR)]
            for row in acc:
                for a in row:
                    a.add_incoming(zero_v, pre)
            b.cbranch(b.icmp_signed("<", p, k), body, done)
            b.position_at_end(body)
            brow = b.add(b.mul(p, ldb), j)
            bv = [
                b.call(mload, [gep(b, pb, [b.mul(b.add(brow, ir.Constant(I64, v * w)), es)],
                                   source_etype=I8), align, masks[v], zero_v])
                for v in range(NV)
            ]  # fmt: skip
            ak = b.mul(p, a_k_step)
            new = []
            for rr in range(MR):
                ap = gep(b, pa, [b.mul(b.add(rows[rr], ak), es)], source_etype=I8)
                av = _splat(b, b.load(ap, typ=fty), vty)
                new.append([b.call(fma, [av, bv[v], acc[rr][v]]) for v in range(NV)])
            p.add_incoming(b.add(p, one), b.block)
            for rr in range(MR):
                for v in range(NV):
                    acc[rr][v].add_incoming(new[rr][v], b.block)
            b.branch(head)
            b.position_at_end(done)
            # C = alpha * acc (+ beta * C unless beta is 0: C may hold NaN then)
            for rr in range(MR):
                i = b.add(i0, ir.Constant(I64, rr))
                with b.if_then(b.icmp_signed("<", i, m)):
                    crow = b.mul(i, ldc)
                    for v in range(NV):
                        cp = gep(b, pc, [b.mul(b.add(crow, b.add(j, ir.Constant(I64, v * w))),
                                               es)], source_etype=I8)  # fmt: skip
                        res = b.fmul(acc[rr][v], al_v)
                        old = b.call(mload, [cp, align, masks[v], zero_v])
                        res = b.select(beta0, res, b.call(fma, [old, be_v, res]))
                        b.call(mstore, [res, cp, align, masks[v]])
    b.ret_void()


def _splat(b, x, vty):
    """``x`` in every lane of a vector of type ``vty``."""
    undef = ir.Constant(vty, ir.Undefined)
    v = b.insert_element(undef, x, ir.Constant(I32, 0))
    return b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(I32, vty.count), [0] * vty.count))
