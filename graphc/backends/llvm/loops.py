"""Loop emission for the LLVM renderer: counted loops (an innermost reduction asks LLVM for
interleaved vector accumulators), parallel loops outlined into ``kN.parJ`` functions and run
inline or over the process-wide worker pool (``pool.py``) depending on their estimated work,
and the static and run-time cost model that decides it."""

from __future__ import annotations

from llvmlite import ir

from ... import dtypes as _dt
from ...expr import Call, Cast, Const, Load, Math, Var
from ...kernel.ir import If, Let, LibCall, Loop
from . import math as _m
from .blas import emit_libcall
from .function import _SSA, _Fn, _sanitize
from .irutil import I8, I32, I64, PTR, VOID, gep, mark_cold, value_type
from .tile_epilogue import tile_steps, tile_target

#: convolution epilogues of a few steps applied in the tiles (``tile_epilogue.py``; False:
#: always per task, after the tiles)
TILE_EPILOGUES = True

#: estimated work units (roughly: scalar loads/stores/flops; a transcendental counts 20) per
#: thread below which a parallel loop stays on the calling thread. Measured (2 cores, shared):
#: one unit ~0.03 ns of vector code, a thread start + join 25-70 us, so splitting pays from
#: ~150 us of serial work; exp(x)*2+1 on 2^16 floats took 27 us on 1 thread and 95 us on 2
#: with the old threshold of 2^17 units, 2^20 floats 365 us vs 286 us.
PARALLEL_MIN_WORK = 1 << 22
#: the same threshold while the pool is hot (``gc_pool_hot``: its workers are spinning after a
#: job that ended less than ``pool.WORKER_SPIN_NS`` ago, so handing them a chunk costs about a
#: microsecond, not a wake-up): a loop body's elementwise kernels between two split GEMMs
#: (W11's gate math, 10-60 us each, 32 x 256 elements) then run on both cores too
PARALLEL_MIN_WORK_HOT = 1 << 16

#: vector bodies interleaved (independent accumulators) in an innermost loop that carries a
#: ``reduce`` accumulator, for a cheap body and for one with a transcendental. The JIT turns
#: interleaving off in general (code size, compile time); a single accumulator chain makes a
#: reduction latency-bound instead: a float32 (4096, 1024) row max took 0.98 ms on one thread
#: with one chain and 0.39 ms with four (W2 softmax 2.4 -> 1.9 ms), a row sum 0.41 -> 0.33 ms.
#: Two suffice where an exp already fills the pipes.
REDUCE_INTERLEAVE = 4
REDUCE_INTERLEAVE_COSTLY = 2

#: an innermost reduction loop with a static trip count below this is left scalar
#: (``llvm.loop.vectorize.enable`` off): a classifier's loss sums 10 classes a row, which the
#: vectorizer turned into masked 8-lane loads four times interleaved, 28 KB of IR and ~30 ms
#: of LLVM time for a loop of 10 multiply-adds (the costliest function of the W3 and W12 MLP
#: steps); one vector of 16 floats is the least a vector loop needs to pay
SCALAR_REDUCE_TRIPS = 16


def _has_vars(e) -> bool:
    """Whether an expression reads a loop variable, a local or memory (not only Dims)."""
    if isinstance(e, Var | Load):
        return True
    if isinstance(e, Call):
        return any(_has_vars(a) for a in e.args)
    if isinstance(e, Cast):
        return _has_vars(e.x)
    return False


def _body_cost(body) -> int:
    """Static work estimate of one execution of ``body`` (inner loops of unknown trip count
    count as 64 iterations)."""
    total = 0
    for s in body:
        if isinstance(s, Loop):
            trips = 64
            if isinstance(s.start, Const) and isinstance(s.stop, Const):
                trips = max(int(s.stop.value) - int(s.start.value), 0)
            total += trips * max(_body_cost(s.body), 1)
        elif isinstance(s, LibCall):
            total += 1 << 20
        elif isinstance(s, If):
            total += 1 + max(_body_cost(s.then), _body_cost(s.orelse))
        else:
            total += 1 + _expr_cost(getattr(s, "value", None))
    return total


def _expr_cost(e) -> int:
    if isinstance(e, Call):
        own = 20 if e.fn.name in _m.TRANSCENDENTAL or e.fn in (Math.POW, Math.MOD) else 1
        return own + sum(_expr_cost(a) for a in e.args)
    if isinstance(e, Cast):
        return _expr_cost(e.x)
    if isinstance(e, Load):
        return 1
    return 0


class LoopEmitter:
    """The loop half of ``Renderer``: serial loops (interleaved vector accumulators for an
    innermost reduction), parallel loops outlined and dispatched inline or over the worker
    pool by their estimated work, a GEMM with its row-chunk epilogue."""

    def _loop(self, f: _Fn, s: Loop, start=None, stop=None):
        f.hot = True
        b = f.b
        lo = start if start is not None else self._index(f, s.start)
        hi = stop if stop is not None else self._index(f, s.stop)
        iv = f.alloca(I64, name=_sanitize(s.var))
        prev = f.scope.get(s.var)
        f.scope[s.var] = (iv, _dt.int64)
        b.store(lo, iv)
        header = f.fn.append_basic_block(f"{_sanitize(s.var)}.head")
        body = f.fn.append_basic_block(f"{_sanitize(s.var)}.body")
        exit_ = f.fn.append_basic_block(f"{_sanitize(s.var)}.exit")
        b.branch(header)
        b.position_at_end(header)
        i = b.load(iv, typ=I64)
        b.cbranch(b.icmp_signed("<", i, hi), body, exit_)
        b.position_at_end(body)
        self._stmts(f, s.body)
        i = b.load(iv, typ=I64)
        b.store(b.add(i, ir.Constant(I64, 1), flags=("nsw",)), iv)
        back = b.branch(header)
        trips = _static_trips(s)
        if (
            trips is not None
            and trips < SCALAR_REDUCE_TRIPS
            and _innermost_reduction(s.body, branches=True)
        ):
            back.set_metadata("llvm.loop", self._loop_id(("llvm.loop.vectorize.enable", 0)))
        elif _innermost_reduction(s.body):
            n = REDUCE_INTERLEAVE if _body_cost(s.body) < 20 else REDUCE_INTERLEAVE_COSTLY
            back.set_metadata("llvm.loop", self._loop_id(("llvm.loop.interleave.count", n)))
        b.position_at_end(exit_)
        f.memo = {}
        if prev is None:
            del f.scope[s.var]
        else:
            f.scope[s.var] = prev

    def _loop_id(self, *hints):
        """A fresh loop ID (``llvm.loop`` metadata) carrying (name, i32 value) hints."""
        m = self.module
        opts = [m.add_metadata([ir.MetaDataString(m, k), ir.Constant(I32, v)]) for k, v in hints]
        return _LoopID(m, opts)

    def _parallel_loop(self, f: _Fn, s: Loop):
        """Outline the loop body; run it inline or over threads depending on its size."""
        self._dispatch_loop(f, self._setup_loop(f, s))

    def _gemm_with_epilogue(self, f: _Fn, call: LibCall, loop: Loop, cols=None):
        """A GEMM whose epilogue loop runs inside its row chunks when the sizes allow it
        (see epilogue.py), else after it as usual. ``cols``: the loop runs over the GEMM's
        rows of ``cols`` elements (``epilogue.row_nest``), not over its elements; a
        convolution's loop that ``tile_epilogue.tile_steps`` takes runs in its tiles."""
        if call.fn == "conv_packed" and cols is not None and TILE_EPILOGUES:
            steps = tile_steps(call, loop, self.kp, self.layout.root)
            if steps is not None:
                target = tile_target(loop)  # (the tiles store the loop's results)
                call = LibCall(call.fn, (*call.args[:2], target, *call.args[3:]))
                emit_libcall(self, f, call, tile=steps)
                f.memo = {}
                return
        p = self._setup_loop(f, loop)
        ctx = self._loop_ctx(f, p)
        body, lo, hi = p["outl"].wrapper, p["lo"], p["hi"]
        if cols is not None:
            body = self._rows_wrapper(body, cols)
            lo = f.b.mul(lo, ir.Constant(I64, cols))
            hi = f.b.mul(hi, ir.Constant(I64, cols))
        fused = emit_libcall(self, f, call, epilogue=(body, ctx, lo, hi))
        f.memo = {}
        with f.b.if_then(f.b.not_(fused)):
            self._dispatch_loop(f, p, ctx)

    def _rows_wrapper(self, wrapper: ir.Function, cols: int) -> ir.Function:
        """``wrapper`` (a loop body over rows) called with the element range [lo, hi) of
        rows of ``cols`` elements: it runs rows [lo / cols, hi / cols)."""
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR, I64, I64]),
                         f"{wrapper.name}.rows")  # fmt: skip
        fn.linkage = "internal"
        mark_cold(fn)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        ctx, lo, hi = fn.args
        c = ir.Constant(I64, cols)
        b.call(wrapper, [ctx, b.sdiv(lo, c), b.sdiv(hi, c)])
        b.ret_void()
        return fn

    def _loop_ctx(self, f: _Fn, p):
        """Context of the outlined body's wrapper: {roots array, dims, frame}."""
        b = f.b
        root_vals = p["roots"]
        rarr = b.alloca(PTR, ir.Constant(I64, max(len(root_vals), 1)))
        for k, v in enumerate(root_vals):
            b.store(v, gep(b, rarr, [ir.Constant(I64, k)], source_etype=PTR))
        ctx_ty = ir.LiteralStructType([PTR, PTR, PTR])
        ctx = b.alloca(ctx_ty)
        for k, v in enumerate([rarr, f.dims_ptr, p["frame"]]):
            b.store(v, gep(b, ctx, [ir.Constant(I32, 0), ir.Constant(I32, k)],
                            source_etype=ctx_ty))  # fmt: skip
        return ctx

    def _setup_loop(self, f: _Fn, s: Loop) -> dict:
        """Outline parallel loop ``s``; its bounds, frame of locals and thread count."""
        b = f.b
        j = f.par_count
        f.par_count += 1
        roots = list(f.roots)
        # snapshot of the scalar locals the body may read (iterations are independent)
        locals_ = list(f.scope.items())
        frame_ty = ir.LiteralStructType([value_type(dt) for _, (_, dt) in locals_] or [I8])
        outl = self._outline(f, s, roots, locals_, frame_ty, j)

        lo = self._index(f, s.start)
        hi = self._index(f, s.stop)
        frame = f.alloca(frame_ty, name="frame")
        for k, (_, (slot, dt)) in enumerate(locals_):
            p = gep(b, frame, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=frame_ty)
            v = slot.v if isinstance(slot, _SSA) else b.load(slot, typ=value_type(dt))
            b.store(v, p)
        trips = b.sub(hi, lo)
        work = b.mul(trips, self._cost_ir(f, s.body))
        hot = b.icmp_signed("!=", b.call(self._pool_hot(), []), ir.Constant(I32, 0))
        least = b.select(hot, ir.Constant(I64, PARALLEL_MIN_WORK_HOT),
                         ir.Constant(I64, PARALLEL_MIN_WORK))  # fmt: skip
        want = b.sdiv(work, least)
        nthr = b.sext(f.nthreads, I64)
        n = b.select(b.icmp_signed("<", want, nthr), want, nthr)
        n = b.select(b.icmp_signed("<", trips, n), trips, n)
        root_vals = [f.roots[r] for r in roots]
        return {"outl": outl, "frame": frame, "lo": lo, "hi": hi, "trips": trips, "n": n,
                "roots": root_vals}  # fmt: skip

    def _dispatch_loop(self, f: _Fn, p: dict, ctx=None):
        """Run a set-up loop inline, or over the pool when it is worth it."""
        b = f.b
        serial = b.icmp_signed("<=", p["n"], ir.Constant(I64, 1))
        with b.if_else(serial, likely=True) as (then, otherwise):
            with then:
                b.call(p["outl"], p["roots"] + [f.dims_ptr, p["frame"], p["lo"], p["hi"]])
            with otherwise:
                if ctx is None:
                    ctx = self._loop_ctx(f, p)
                b.call(self._parallel_for(), [p["outl"].wrapper, ctx, p["lo"], p["trips"], p["n"]])

    def _cost_ir(self, f: _Fn, body):
        """Work estimate of one execution of ``body`` as an i64 value: like _body_cost, but
        inner loops whose bounds depend on runtime dims only count their real trip count."""
        b = f.b
        static = 0
        total = None
        for s in body:
            if isinstance(s, Loop) and not (_has_vars(s.start) or _has_vars(s.stop)):
                inner = self._cost_ir(f, s.body)
                n = b.sub(self._index(f, s.stop), self._index(f, s.start))
                n = b.select(b.icmp_signed("<", n, ir.Constant(I64, 0)), ir.Constant(I64, 0), n)
                term = b.mul(n, inner)
                total = term if total is None else b.add(total, term)
            elif isinstance(s, If) and _has_loop(s.then + s.orelse):
                # (hoist_divisors puts row passes under an If: count them like the rest)
                t, e = self._cost_ir(f, s.then), self._cost_ir(f, s.orelse)
                term = b.select(b.icmp_signed(">", t, e), t, e)
                total = term if total is None else b.add(total, term)
            else:
                static += _body_cost((s,))
        const = ir.Constant(I64, max(static, 1))
        return const if total is None else b.add(total, const)

    def _outline(self, f: _Fn, s: Loop, roots, locals_, frame_ty, j):
        args = [PTR] * len(roots) + [PTR, PTR, I64, I64]
        fn = ir.Function(self.module, ir.FunctionType(VOID, args), f"{f.kernel_name}.par{j}")
        fn.linkage = "internal"
        for a in fn.args[: len(roots)]:
            a.add_attribute("noalias")
        fn.attributes.add("nounwind")
        # called from up to three places (serial path, chunk 0, failed thread start):
        # inlining would triple the vectorised loop code and the compile time
        fn.attributes.add("noinline")
        dims, frame, lo, hi = fn.args[len(roots) :]
        g = _Fn(self, fn, dict(zip(roots, fn.args)), dims)
        g.nthreads = ir.Constant(I32, 1)
        g.kernel_name = f"{f.kernel_name}.par{j}"
        g.par_count = 0
        g.single = f.single
        eb = ir.IRBuilder(g.entry)
        for k, (var, (_, dt)) in enumerate(locals_):
            slot = eb.alloca(value_type(dt), name=_sanitize(var))
            p = gep(eb, frame, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=frame_ty)
            eb.store(eb.load(p, typ=value_type(dt)), slot)
            g.scope[var] = (slot, dt)
        self._loop(g, s, start=lo, stop=hi)
        g.b.ret_void()
        g.finish()

        # body wrapper for gc.parallel_for: (ctx = {roots array, dims, frame}, lo, hi)
        wr = ir.Function(self.module, ir.FunctionType(VOID, [PTR, I64, I64]),
                         f"{g.kernel_name}.body")  # fmt: skip
        wr.linkage = "internal"
        mark_cold(wr)
        wb = ir.IRBuilder(wr.append_basic_block("entry"))
        ctx, wlo, whi = wr.args
        ctx_ty = ir.LiteralStructType([PTR, PTR, PTR])

        def field_(k):
            p = gep(wb, ctx, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=ctx_ty)
            return wb.load(p, typ=PTR)

        rptr = field_(0)
        rv = [
            wb.load(gep(wb, rptr, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
            for k in range(len(roots))
        ]
        wb.call(fn, rv + [field_(1), field_(2), wlo, whi])
        wb.ret_void()
        fn.wrapper = wr
        return fn

    def _parallel_for(self) -> ir.Function:
        """``gc_parallel_for(body, ctx, lo, trips, n)``: run ``body(ctx, s, e)`` over n chunks
        of [lo, lo+trips) on the process-wide worker pool (``pool.py``), the calling thread
        taking a share; it returns when every chunk is done."""
        return self.declare("gc_parallel_for", VOID, [PTR, PTR, I64, I64, I64])

    def _pool_hot(self) -> ir.Function:
        """``gc_pool_hot()``: 1 while the pool's workers spin for the next job (``pool.py``)."""
        return self.declare("gc_pool_hot", I32, [])


class _LoopID(ir.values.MDValue):
    """``distinct !{!self, hints...}``: the self-referential node LLVM expects as a loop ID
    (llvmlite's add_metadata neither makes cycles nor prints ``distinct``)."""

    def __init__(self, module, opts):
        super().__init__(module, [], name=str(len(module.metadata)))
        self.operands = (self, *opts)

    def descr(self, buf):
        buf += ("distinct ",)
        super().descr(buf)

    __hash__ = object.__hash__  # the operands hold the node itself

    def __eq__(self, other):
        return self is other


def _has_loop(body) -> bool:
    return any(isinstance(s, Loop) for s in body)


def _static_trips(s: Loop) -> int | None:
    """The trip count of loop ``s`` when both bounds are constants, else None."""
    if isinstance(s.start, Const) and isinstance(s.stop, Const):
        return max(int(s.stop.value) - int(s.start.value), 0)
    return None


def _innermost_reduction(body, branches: bool = False) -> bool:
    """Whether ``body`` (of a loop) has no inner loop and updates a ``reduce`` accumulator;
    ``branches``: it may also hold an ``If`` (a bounds check)."""
    nested = Loop if branches else (Loop, If)
    return not any(isinstance(s, nested) for s in body) and any(
        isinstance(s, Let) and s.reduce for s in body
    )
