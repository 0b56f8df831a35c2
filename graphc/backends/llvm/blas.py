"""GEMM for the LLVM renderer: the ``gemm`` LibCall of the Kernel IR.

float32/float64 call graphc's own kernel (``nativegemm.py``) for the products it runs faster
(decided at run time, per call), else scipy-openblas32's ``scipy_cblas_sgemm``/``dgemm``
from the generated code, once per batch item; an OpenBLAS product with at least
GEMM_PARALLEL_MIN_FLOPS multiply-adds is split by rows of C (columns when they are few) over
the process-wide worker pool, and a batch of smaller items that have as many together is
split by whole items
(``gc_parallel_for``, ``pool.py``; OpenBLAS itself runs single-threaded, see
``load_library``), so GEMMs and loops share one set of threads and no spinning BLAS pool
competes with them. Other dtypes get a plain loop nest
(float16 accumulates in float32, integers in int64).

Without scipy-openblas32 the code would call an unresolved symbol (LLVM aborts the process
on loading it), so a float GEMM then raises ``UnavailableError`` naming the package, at
compile time and before stored code that calls the BLAS is loaded.
"""

from __future__ import annotations

import ctypes
import os
import threading

import llvmlite.binding as llvm
from llvmlite import ir

from ... import dtypes as _dt
from ...errors import UnavailableError, UnimplementedError
from ...expr import Const, expr_dtype
from ...kernel.ir import LibCall
from .irutil import F64, I8, I32, I64, PTR, VOID, for_range, gep, mark_cold, value_type
from .nativegemm import native_gemm
from .packedgemm import emit_conv_packed, emit_gemm_packed

#: a GEMM is split over threads when it has at least this many multiply-adds (~20 us on one
#: core). The pool's workers spin between the kernels of a step, so handing them a chunk
#: costs ~1 us. Measured on 2 cores, sgemm on one thread vs split in two (min of 3000):
#: 256x10x512 52 -> 18 us, 512x10x256 (A transposed) 59 -> 14 us, 256x512x10 44 -> 26 us
#: (the three small GEMMs of the W3 step, 1.3M each), 128x512x64 90 -> 50 us
GEMM_PARALLEL_MIN_FLOPS = 1 << 20
#: items per thread at least for graphc's kernel to run a batch by whole items when each
#: item's rows could be split (fewer: a thread would wait for another's last item)
ITEMS_PER_THREAD = 4
#: ... and items of at most this many rows (the items kernel runs an item as one task of all
#: its rows: more rows than this and a chunk of A no longer stays in L2)
ITEMS_MAX_ROWS = 256
#: ... and at least this many rows (or columns) of C per thread
GEMM_MIN_ROWS = 32
#: rows of C per thread from which a GEMM is split by rows; a thinner product with more
#: columns than rows is split by columns. Measured on 2 cores (sgemm, one chunk per thread on
#: a pool): 256x512x784 by rows 1045 us, by columns 1065-1085 us; 32x512x784 by rows 226 us,
#: by columns 190 us
GEMM_ROW_SPLIT_MIN = 64


#: the pip package that provides the BLAS
PACKAGE = "scipy-openblas32"
#: the BLAS functions generated code calls
SYMBOLS = ("scipy_cblas_sgemm", "scipy_cblas_dgemm")

_lock = threading.Lock()
_state: dict = {}


def load_library():
    """Load scipy-openblas32 and make its cblas symbols resolvable by JIT-linked code (once
    per process); UnavailableError naming the package when it cannot be loaded."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        try:
            import scipy_openblas32 as sob

            path = os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}.so")
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            addrs = {name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                     for name in SYMBOLS}  # fmt: skip
        except (ImportError, OSError, AttributeError) as exc:
            raise UnavailableError(
                f"float32/float64 matmul on the cpu target needs the package {PACKAGE} "
                f"(a dependency of graphc; install it with pip): {type(exc).__name__}: {exc}"
            ) from None
        for name, addr in addrs.items():
            llvm.add_symbol(name, addr)
        # generated code splits large GEMMs over its own threads (_blas_gemm): a second,
        # spinning BLAS thread pool would only compete with them for the cores
        try:
            lib.scipy_openblas_set_num_threads(1)
        except AttributeError:  # pragma: no cover
            pass
        _state["lib"] = lib
        return lib


def try_load():
    """load_library(), or None when the BLAS is unavailable (programs without a float GEMM
    do not need it; those with one raise when compiled or loaded)."""
    try:
        return load_library()
    except UnavailableError:
        return None


def uses_blas(objs) -> bool:
    """Whether object code (bytes, or a list of them) calls the BLAS."""
    return any(name.encode() in o for o in ([objs] if isinstance(objs, bytes) else objs)
               for name in SYMBOLS)  # fmt: skip


def emit_libcall(r, f, s: LibCall, epilogue=None, tile=None):
    """``gemm`` (see kernel.ir.LIBCALLS): BLAS for float32/64, a loop nest otherwise.

    ``epilogue``: (body, ctx, lo, hi) of the parallel loop after the GEMM that
    ``epilogue.row_epilogue`` accepted; the result is then an i1 value, true when each row
    chunk of C ran ``body(ctx, r0 * n, r1 * n)`` right after computing its rows (else the
    caller runs the loop). ``tile``: see ``emit_conv_packed``."""
    if s.fn == "conv_packed":
        return emit_conv_packed(r, f, s, epilogue, tile)
    if s.fn == "gemm_packed":
        emit_gemm_packed(r, f, s)
        return ir.Constant(ir.IntType(1), 0)
    if s.fn != "gemm":
        raise UnimplementedError(f"cpu backend: library call {s.fn!r} is not implemented")
    (_, _, c, ta, tb, m, n, k, batch, sa, sb, sc, alpha, beta, oa, ob, oc) = s.args
    dt = r.kp.buffers[c].dtype
    ival = [r._index(f, e) for e in (m, n, k, batch, sa, sb, sc, oa, ob, oc)]
    ta_v = bool(ta.value) if isinstance(ta, Const) else ta
    tb_v = bool(tb.value) if isinstance(tb, Const) else tb
    if not isinstance(ta_v, bool) or not isinstance(tb_v, bool):
        raise UnimplementedError("gemm: trans_a/trans_b must be constants")
    if dt in (_dt.float32, _dt.float64):
        return _blas_gemm(r, f, s, dt, ta_v, tb_v, ival, alpha, beta, epilogue)
    _naive_gemm(r, f, s, dt, ta_v, tb_v, ival, alpha, beta)
    return ir.Constant(ir.IntType(1), 0)


def _blas_gemm(r, f, s, dt, ta, tb, ival, alpha, beta, epilogue=None):
    """cblas_?gemm per batch item; a large product is split by rows of C over threads
    (each thread one single-threaded BLAS call), so GEMMs and loops share one threading
    scheme and no BLAS thread pool spins against the kernel threads."""
    load_library()  # refuse now rather than emit a call nothing can resolve
    b = f.b
    a_name, b_name, c_name = s.args[:3]
    m, n, k, batch, sa, sb, sc, oa, ob, oc = ival
    al = r._cast(f, r._expr(f, alpha), expr_dtype(alpha), _dt.float64)
    be = r._cast(f, r._expr(f, beta), expr_dtype(beta), _dt.float64)
    one = ir.Constant(I64, 1)

    def mx1(v):
        return b.select(b.icmp_signed("<", v, one), one, v)

    lda = mx1(m if ta else k)
    ldb = mx1(k if tb else n)
    ldc = mx1(n)
    nonempty = b.and_(b.icmp_signed(">", m, ir.Constant(I64, 0)),
                      b.icmp_signed(">", n, ir.Constant(I64, 0)))  # fmt: skip
    rows_fn, args_ty = _gemm_rows(r, dt, ta, tb)
    args = f.alloca(args_ty, name="gemm.args")
    flops = b.mul(b.mul(m, n), k)
    nthr = b.sext(f.nthreads, I64)
    # split rows of C (measured faster than columns for every W3 product, also when N > M:
    # each thread's C and A rows are contiguous); columns only when the rows are too few
    few_rows = b.icmp_signed("<", m, b.mul(nthr, ir.Constant(I64, GEMM_ROW_SPLIT_MIN)))
    by_cols = b.and_(few_rows, b.icmp_signed(">", n, m))
    span = b.select(by_cols, n, m)
    want = b.sdiv(span, ir.Constant(I64, GEMM_MIN_ROWS))
    nt = b.select(b.icmp_signed("<", want, nthr), want, nthr)
    big = b.icmp_signed(">=", flops, ir.Constant(I64, GEMM_PARALLEL_MIN_FLOPS))
    nt = b.select(big, nt, one)
    # a batch of items too small to split by rows, big enough together: split by whole
    # items (each item's rows split over the threads measured as fast or faster for W9's
    # 128 x 128 x 64 attention products, 2 threads: 14.5 vs 18.0 ms for its six BatchMatMuls)
    by_items = b.and_(b.icmp_signed(">", batch, one), b.icmp_signed(">", nthr, one))
    total = b.mul(flops, batch)
    by_items = b.and_(
        by_items, b.icmp_signed(">=", total, ir.Constant(I64, GEMM_PARALLEL_MIN_FLOPS))
    )
    items_all = by_items  # (graphc's kernel, below: whole items also when rows could split)
    by_items = b.and_(by_items, b.icmp_signed("<=", nt, one))
    # (a product of one item, known when compiling, emits no code for batches: less IR to
    # render and compile per GEMM)
    single = isinstance(s.args[8], Const) and int(s.args[8].value) == 1
    if single:
        by_items = ir.Constant(ir.IntType(1), 0)
    # graphc's own kernel where it takes the product or the items (nativegemm.py: it does
    # not pack B)
    native = native_gemm(r, f, s, dt, ta, tb, ival, al, be, (lda, ldb, ldc), big, not single)
    if native is not None and not single:
        # graphc's kernel runs whole items per thread also where each item's rows could be
        # split, given ITEMS_PER_THREAD items a thread (W9's attention products, 128 items of
        # 128 x 128 x 64 on 2 threads: 1.75-1.87 against 1.95-2.26 ms split by rows)
        many = b.icmp_signed(">=", batch, b.mul(nthr, ir.Constant(I64, ITEMS_PER_THREAD)))
        many = b.and_(many, b.icmp_signed("<=", m, ir.Constant(I64, ITEMS_MAX_ROWS)))
        by_items = b.or_(by_items, b.and_(b.and_(items_all, many), native.items_use))
    # the epilogue runs per row chunk (task) when the loop covers C
    fused = ir.Constant(ir.IntType(1), 0)
    epi_fn = epi_ctx = ir.Constant(PTR, None)
    if epilogue is not None:
        body, ctx, lo, hi = epilogue
        zero = ir.Constant(I64, 0)
        covers = b.and_(b.icmp_signed("==", lo, zero), b.icmp_signed("==", hi, b.mul(m, n)))
        covers = b.and_(b.and_(nonempty, covers), b.icmp_signed("==", batch, one))
        # the BLAS when it is split by rows, the native kernel when its tasks are whole rows
        fused = b.and_(b.icmp_signed(">", nt, one), b.not_(by_cols))
        if native is not None:
            fused = b.select(native.use, native.whole_rows, fused)
        fused = b.and_(fused, covers)
        epi_fn = b.select(fused, body, epi_fn)
        epi_ctx = b.select(fused, ctx, epi_ctx)
    with b.if_then(nonempty):
        if not single:
            with b.if_then(by_items):
                _items(r, f, s, dt, ta, tb, ival, al, be, (lda, ldb, ldc), nthr, native)
        with b.if_then(b.not_(by_items)), for_range(b, f.fn, ir.Constant(I64, 0), batch) as i:
            pa, _ = f.buf_ptr(a_name, b.add(oa, b.mul(i, sa)))
            pb, _ = f.buf_ptr(b_name, b.add(ob, b.mul(i, sb)))
            pc, _ = f.buf_ptr(c_name, b.add(oc, b.mul(i, sc)))
            use_blas = ir.Constant(ir.IntType(1), 1)
            if native is not None:  # the native kernel, else the BLAS below
                with b.if_then(native.use):
                    native.call(pa, pb, pc, epi_fn, epi_ctx)
                use_blas = b.not_(native.use)
            with b.if_then(use_blas):
                cols = b.zext(by_cols, I64)
                fields = [n, k, al, be, pa, lda, pb, ldb, pc, ldc, m, cols, epi_fn, epi_ctx]
                for j, v in enumerate(fields):
                    b.store(v, gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                                    source_etype=args_ty))  # fmt: skip
                serial = b.icmp_signed("<=", nt, one)
                with b.if_else(serial, likely=True) as (then, otherwise):
                    with then:
                        b.call(rows_fn, [args, ir.Constant(I64, 0), span])
                    with otherwise:
                        b.call(r._parallel_for(), [rows_fn, args, ir.Constant(I64, 0), span, nt])
    if native is not None:
        native.release()
    return fused


def _items(r, f, s, dt, ta, tb, ival, al, be, lds, nthr, native):
    """A batch split by whole items: graphc's kernel per item where ``native`` takes the
    items (``items_use``), else OpenBLAS per item."""
    if native is None or native.items_part is None:
        _gemm_items(r, f, s, dt, ta, tb, ival, al, be, lds, nthr)
        return
    b = f.b
    m, n, k, batch, sa, sb, sc, oa, ob, oc = ival
    with b.if_else(native.items_use) as (then, otherwise):
        with then:
            ptrs = [f.buf_ptr(name, off)[0] for name, off in zip(s.args[:3], (oa, ob, oc))]
            native.call_items(*ptrs, (sa, sb, sc), batch, nthr)
        with otherwise:
            _gemm_items(r, f, s, dt, ta, tb, ival, al, be, lds, nthr)


def _gemm_items(r, f, s, dt, ta, tb, ival, al, be, lds, nthr):
    """The items of a batched GEMM in chunks over the pool (``gc.gemm_items``): a thread
    runs whole items, one BLAS call each (one chunk per thread: the pool runs as many threads
    as a call has chunks). Before, items too small to split by rows ran one after another on
    one thread."""
    b = f.b
    a_name, b_name, c_name = s.args[:3]
    m, n, k, batch, sa, sb, sc, oa, ob, oc = ival
    items_fn, args_ty = _gemm_items_fn(r, dt, ta, tb)
    args = f.alloca(args_ty, name="gemm.items")
    pa, _ = f.buf_ptr(a_name, oa)
    pb, _ = f.buf_ptr(b_name, ob)
    pc, _ = f.buf_ptr(c_name, oc)
    fields = [m, n, k, al, be, pa, lds[0], pb, lds[1], pc, lds[2], sa, sb, sc]
    for j, v in enumerate(fields):
        b.store(v, gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)],
                        source_etype=args_ty))  # fmt: skip
    chunks = b.select(b.icmp_signed("<", batch, nthr), batch, nthr)
    b.call(r._parallel_for(), [items_fn, args, ir.Constant(I64, 0), batch, chunks])


def _gemm_items_fn(r, dt, ta, tb):
    """(part function, argument struct type) for one (dtype, trans_a, trans_b):
    ``part(args, i0, i1)`` computes the whole items [i0, i1) of a batched GEMM (a
    gc_parallel_for body)."""
    sfx = f"{'s' if dt == _dt.float32 else 'd'}{int(ta)}{int(tb)}"
    args_ty = ir.LiteralStructType(
        [I64, I64, I64, F64, F64, PTR, I64, PTR, I64, PTR, I64, I64, I64, I64]
    )
    fn = r._decls.get(f"gc.gemm_items.{sfx}")
    if fn is not None:
        return fn, args_ty
    fty = value_type(dt)
    es = ir.Constant(I64, dt.itemsize)
    gemm = _declare_cblas(r, dt)
    fn, b, field_ = _part_function(r, f"gc.gemm_items.{sfx}", args_ty)
    _, i0, i1 = fn.args

    m, n, k = field_(0, I64), field_(1, I64), field_(2, I64)
    al, be = field_(3, F64), field_(4, F64)
    if dt == _dt.float32:
        al, be = b.fptrunc(al, fty), b.fptrunc(be, fty)
    pa, lda, pb, ldb, pc, ldc = (field_(5, PTR), field_(6, I64), field_(7, PTR),
                                 field_(8, I64), field_(9, PTR), field_(10, I64))  # fmt: skip
    sa, sb, sc = field_(11, I64), field_(12, I64), field_(13, I64)

    def i32(v):
        return b.trunc(v, I32)

    with for_range(b, fn, i0, i1) as i:
        ia = gep(b, pa, [b.mul(b.mul(i, sa), es)], source_etype=I8)
        ib = gep(b, pb, [b.mul(b.mul(i, sb), es)], source_etype=I8)
        ic = gep(b, pc, [b.mul(b.mul(i, sc), es)], source_etype=I8)
        b.call(gemm, [ir.Constant(I32, 101), ir.Constant(I32, 112 if ta else 111),
                      ir.Constant(I32, 112 if tb else 111), i32(m), i32(n), i32(k), al,
                      ia, i32(lda), ib, i32(ldb), be, ic, i32(ldc)])  # fmt: skip
    b.ret_void()
    return fn, args_ty


def _part_function(r, name: str, args_ty):
    """A new ``void name(ptr args, i64 lo, i64 hi)`` (a gc_parallel_for body reading its
    arguments from a struct of ``args_ty``), registered in the module; returns it, a
    builder at its entry and ``field(j, ty)``, which loads field ``j`` of the struct."""
    fn = ir.Function(r.module, ir.FunctionType(VOID, [PTR, I64, I64]), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    mark_cold(fn)
    r._decls[name] = fn
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args = fn.args[0]

    def field(j, ty):
        p = gep(b, args, [ir.Constant(I32, 0), ir.Constant(I32, j)], source_etype=args_ty)
        return b.load(p, typ=ty)

    return fn, b, field


def _declare_cblas(r, dt):
    """The declaration of ``scipy_cblas_sgemm`` or ``dgemm`` in the module being rendered."""
    cblas = "scipy_cblas_sgemm" if dt == _dt.float32 else "scipy_cblas_dgemm"
    fty = value_type(dt)
    return r.declare(cblas, VOID, [I32, I32, I32, I32, I32, I32, fty, PTR, I32, PTR, I32,
                                   fty, PTR, I32])  # fmt: skip


def _gemm_rows(r, dt, ta, tb):
    """(part function, argument struct type) for one (dtype, trans_a, trans_b):
    ``part(args, p0, p1)`` computes rows [p0, p1) of C, or columns when ``args.cols`` is set
    (a gc_parallel_for body), then ``args.epi(args.epi_ctx, p0 * n, p1 * n)`` when ``epi``
    is set (rows only: see epilogue.py)."""
    sfx = f"{'s' if dt == _dt.float32 else 'd'}{int(ta)}{int(tb)}"
    args_ty = ir.LiteralStructType(
        [I64, I64, F64, F64, PTR, I64, PTR, I64, PTR, I64, I64, I64, PTR, PTR]
    )
    fn = r._decls.get(f"gc.gemm_rows.{sfx}")
    if fn is not None:
        return fn, args_ty
    fty = value_type(dt)
    esize = dt.itemsize
    gemm = _declare_cblas(r, dt)
    fn, b, field_ = _part_function(r, f"gc.gemm_rows.{sfx}", args_ty)
    args, m0, m1 = fn.args

    n, k = field_(0, I64), field_(1, I64)
    al, be = field_(2, F64), field_(3, F64)
    pa, lda, pb, ldb, pc, ldc = (field_(4, PTR), field_(5, I64), field_(6, PTR),
                                 field_(7, I64), field_(8, PTR), field_(9, I64))  # fmt: skip
    if dt == _dt.float32:
        al, be = b.fptrunc(al, fty), b.fptrunc(be, fty)
    m, cols = field_(10, I64), field_(11, I64)
    es = ir.Constant(I64, esize)
    zero = ir.Constant(I64, 0)
    by_cols = b.icmp_signed("!=", cols, zero)
    # rows [p0, p1): A from row p0 of op(A), C from row p0
    a_row = m0 if ta else b.mul(m0, lda)
    # columns [p0, p1): B from column p0 of op(B), C from column p0
    b_col = b.mul(m0, ldb) if tb else m0
    a_off = b.select(by_cols, zero, a_row)
    b_off = b.select(by_cols, b_col, zero)
    c_off = b.select(by_cols, m0, b.mul(m0, ldc))
    pa = gep(b, pa, [b.mul(a_off, es)], source_etype=I8)
    pb = gep(b, pb, [b.mul(b_off, es)], source_etype=I8)
    pc = gep(b, pc, [b.mul(c_off, es)], source_etype=I8)
    part = b.sub(m1, m0)
    rows = b.select(by_cols, m, part)
    n = b.select(by_cols, part, n)

    def i32(v):
        return b.trunc(v, I32)

    b.call(gemm, [ir.Constant(I32, 101), ir.Constant(I32, 112 if ta else 111),
                  ir.Constant(I32, 112 if tb else 111), i32(rows), i32(n), i32(k), al,
                  pa, i32(lda), pb, i32(ldb), be, pc, i32(ldc)])  # fmt: skip
    # (a typed pointer type only to tell llvmlite the callee's signature: prints as ptr)
    epi = field_(12, ir.PointerType(ir.FunctionType(VOID, [PTR, I64, I64])))
    epi_ctx = field_(13, PTR)
    with b.if_then(b.icmp_unsigned("!=", b.ptrtoint(epi, I64), ir.Constant(I64, 0))):
        n_full = field_(0, I64)
        b.call(epi, [epi_ctx, b.mul(m0, n_full), b.mul(m1, n_full)])
    b.ret_void()

    return fn, args_ty


def _naive_gemm(r, f, s, dt, ta, tb, ival, alpha, beta):
    """Triple loop for dtypes BLAS lacks (float16 accumulates in float32, ints in int64)."""
    b = f.b
    f.hot = True  # loops: optimise this function (see irutil.mark_cold)
    a_name, b_name, c_name = s.args[:3]
    m, n, k, batch, sa, sb, sc, oa, ob, oc = ival
    acc_dt = _dt.float32 if dt == _dt.float16 else (_dt.int64 if dt.is_integer else dt)
    if dt == _dt.bool_:
        raise UnimplementedError("gemm on bool buffers")
    at = r.kp.buffers[a_name].dtype
    bt = r.kp.buffers[b_name].dtype
    al = r._cast(f, r._expr(f, alpha), expr_dtype(alpha), acc_dt)
    be = r._cast(f, r._expr(f, beta), expr_dtype(beta), acc_dt)
    acc_slot = f.alloca(value_type(acc_dt))
    fl = acc_dt.is_floating
    zero = ir.Constant(value_type(acc_dt), 0.0 if fl else 0)
    with for_range(b, f.fn, ir.Constant(I64, 0), batch) as bi:
        with for_range(b, f.fn, ir.Constant(I64, 0), m) as i:
            with for_range(b, f.fn, ir.Constant(I64, 0), n) as j:
                b.store(zero, acc_slot)
                with for_range(b, f.fn, ir.Constant(I64, 0), k) as p:
                    ia = b.add(
                        b.add(oa, b.mul(bi, sa)),
                        b.add(b.mul(p, m), i) if ta else b.add(b.mul(i, k), p),
                    )
                    ib = b.add(
                        b.add(ob, b.mul(bi, sb)),
                        b.add(b.mul(j, k), p) if tb else b.add(b.mul(p, n), j),
                    )
                    pa, ea = f.buf_ptr(a_name, ia)
                    pb, eb = f.buf_ptr(b_name, ib)
                    va = r._cast(f, b.load(pa, typ=ea), at, acc_dt)
                    vb = r._cast(f, b.load(pb, typ=eb), bt, acc_dt)
                    prod = b.fmul(va, vb) if fl else b.mul(va, vb)
                    acc = b.load(acc_slot, typ=value_type(acc_dt))
                    b.store(b.fadd(acc, prod) if fl else b.add(acc, prod), acc_slot)
                ic = b.add(b.add(oc, b.mul(bi, sc)), b.add(b.mul(i, n), j))
                pc, ec = f.buf_ptr(c_name, ic)
                acc = b.load(acc_slot, typ=value_type(acc_dt))
                res = b.fmul(acc, al) if fl else b.mul(acc, al)
                old = r._cast(f, b.load(pc, typ=ec), dt, acc_dt)
                oldb = b.fmul(old, be) if fl else b.mul(old, be)
                # beta == 0 must not propagate NaN/Inf from the uninitialised C
                is0 = b.fcmp_ordered("==", be, zero) if fl else b.icmp_signed("==", be, zero)
                res = b.select(is0, res, b.fadd(res, oldb) if fl else b.add(res, oldb))
                b.store(r._cast(f, res, acc_dt, dt), pc)
