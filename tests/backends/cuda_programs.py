"""Hand-written KernelPrograms exercising each mapping of the CUDA renderer.

They follow the Kernel IR contract (graphc/kernel/ir.py) and are what the lowering produces
for the same computations (elementwise chain, row reduction, softmax-like row kernel, full
reduction, library GEMM), so the renderer is tested without depending on the lowering.
"""

from __future__ import annotations

import numpy as np

from graphc import dtypes as dt
from graphc.backends.cuda import render as _render
from graphc.backends.cuda.launch_plan import plan_launches
from graphc.expr import Cast, Const, Dim, Load, Math, Var, i64
from graphc.kernel.ir import (
    STATUS_BUFFER,
    Buffer,
    Check,
    If,
    Kernel,
    KernelProgram,
    Let,
    LibCall,
    Loop,
    Store,
)

F32 = dt.float32
I64 = dt.int64


def render_program(kp: KernelProgram, prefix: str = "gc_"):
    """The cuda backend's kernel pass (``plan_launches``), then its renderer: what the
    pipeline does with a planned program (the renderer alone refuses unplanned kernels)."""
    return _render.render_program(plan_launches(kp), prefix)


def f32(v):
    return Const(float(v), F32)


def iv(name):
    return Var(name, I64)


def elementwise_chain(n=None) -> KernelProgram:
    """W1: a=x*1.702; s=1/(1+exp(-a)); y=x*s; z=tanh(y*0.5+0.1)*y+x (n None: runtime size)."""
    size = Dim("n") if n is None else i64(n)
    i = iv("i")
    x = Load("x", i, F32)
    a = Math.MUL(x, f32(1.702))
    s = Math.DIV(f32(1), Math.ADD(f32(1), Math.EXP(Math.NEG(a))))
    body = (
        Let("y", F32, Math.MUL(x, s)),
        Store("z", i, Math.ADD(Math.MUL(Math.TANH(Math.ADD(Math.MUL(Var("y", F32), f32(0.5)),
                                                           f32(0.1))), Var("y", F32)), x)),
    )  # fmt: skip
    k = Kernel("fused_chain", (Loop("i", i64(0), size, body, parallel=True),),
               ops=("a", "s", "y", "z"), op_types=("Mul", "Sigmoid", "Mul", "Tanh"))  # fmt: skip
    bufs = {"x": Buffer("x", F32, (size,), "input"), "z": Buffer("z", F32, (size,), "output")}
    dims = {"n": (0, 0)} if n is None else {}
    return KernelProgram(bufs, [k], dims, inputs=("x",), outputs=("z",))


def softmax_rows(rows=None, cols=1024) -> KernelProgram:
    """W2: row softmax as one kernel: max, sum of exp, normalise (three inner loops)."""
    R = Dim("r") if rows is None else i64(rows)
    K = i64(cols)
    r, k = iv("r"), iv("k")
    ix = Math.ADD(Math.MUL(r, K), k)
    x = Load("x", ix, F32)
    m, s, inv = Var("m", F32), Var("s", F32), Var("inv", F32)
    body = (
        Let("m", F32, f32(float("-inf"))),
        Loop("k", i64(0), K, (Let("m", F32, Math.MAX(m, x), reduce=True),)),
        Let("s", F32, f32(0)),
        Loop("k", i64(0), K, (Let("s", F32, Math.ADD(s, Math.EXP(Math.SUB(x, m))), True),)),
        Let("inv", F32, Math.DIV(f32(1), s)),
        Loop("k", i64(0), K, (Store("y", ix, Math.MUL(Math.EXP(Math.SUB(x, m)), inv)),)),
    )  # fmt: skip
    kern = Kernel("softmax", (Loop("r", i64(0), R, body, parallel=True),), op_types=("Softmax",))
    shape = (R, K)
    bufs = {"x": Buffer("x", F32, shape, "input"), "y": Buffer("y", F32, shape, "output")}
    return KernelProgram(bufs, [kern], {"r": (0, 0)} if rows is None else {}, ("x",), ("y",))


def layer_norm_rows() -> KernelProgram:
    """Mean and mean of squares in one loop (two accumulators), then normalise with gamma."""
    R, K = Dim("r"), Dim("c")
    r, k = iv("r"), iv("k")
    ix = Math.ADD(Math.MUL(r, K), k)
    x = Load("x", ix, F32)
    kf = Cast(K, F32)
    body = (
        Let("s1", F32, f32(0)),
        Let("s2", F32, f32(0)),
        Loop("k", i64(0), K, (
            Let("t", F32, x),
            Let("s1", F32, Math.ADD(Var("s1", F32), Var("t", F32)), reduce=True),
            Let("s2", F32, Math.ADD(Var("s2", F32), Math.MUL(Var("t", F32), Var("t", F32))),
                reduce=True),
        )),
        Let("mean", F32, Math.DIV(Var("s1", F32), kf)),
        Let("var", F32, Math.SUB(Math.DIV(Var("s2", F32), kf),
                                 Math.MUL(Var("mean", F32), Var("mean", F32)))),
        Let("rstd", F32, Math.RSQRT(Math.ADD(Var("var", F32), f32(1e-5)))),
        Store("mean_out", r, Var("mean", F32)),
        Loop("k", i64(0), K, (
            Store("y", ix, Math.MUL(Math.MUL(Math.SUB(x, Var("mean", F32)), Var("rstd", F32)),
                                    Load("gamma", k, F32))),
        )),
    )  # fmt: skip
    kern = Kernel("layer_norm", (Loop("r", i64(0), R, body, parallel=True),))
    bufs = {
        "x": Buffer("x", F32, (R, K), "input"),
        "gamma": Buffer("gamma", F32, (K,), "const", np.ones(4, np.float32)),
        "y": Buffer("y", F32, (R, K), "output"),
        "mean_out": Buffer("mean_out", F32, (R,), "output"),
    }
    return KernelProgram(bufs, [kern], {"r": (0, 0), "c": (0, 1)}, ("x",), ("y", "mean_out"))


def column_sum_and_full_sum() -> KernelProgram:
    """reduce_sum over axis 0 (2-D parallel nest collapsed), then a full sum (no parallel loop),
    then an argmax-style sequential loop (must stay correct: one thread)."""
    R, C = Dim("r"), Dim("c")
    j, i = iv("j"), iv("i")
    col = Kernel("colsum", (Loop("j", i64(0), C, (
        Let("acc", F32, f32(0)),
        Loop("i", i64(0), R, (Let("acc", F32, Math.ADD(Var("acc", F32),
                                                       Load("x", Math.ADD(Math.MUL(i, C), j), F32)),
                                  reduce=True),)),
        Store("cs", j, Var("acc", F32)),
    ), parallel=True),))  # fmt: skip
    full = Kernel("fullsum", (
        Let("t", F32, f32(0)),
        Loop("i", i64(0), C, (Let("t", F32, Math.ADD(Var("t", F32), Load("cs", i, F32)), True),)),
        Store("total", i64(0), Var("t", F32)),
    ))  # fmt: skip
    best, bi = Var("best", F32), Var("bi", I64)
    argmax = Kernel("argmax", (
        Let("best", F32, f32(float("-inf"))),
        Let("bi", I64, i64(0)),
        Loop("i", i64(0), C, (
            Let("v", F32, Load("cs", i, F32)),
            Let("bi", I64, Math.SELECT(Math.GT(Var("v", F32), best), i, bi)),
            Let("best", F32, Math.MAX(best, Var("v", F32))),
        )),
        Store("am", i64(0), bi),
    ))  # fmt: skip
    bufs = {
        "x": Buffer("x", F32, (R, C), "input"),
        "cs": Buffer("cs", F32, (C,), "output"),
        "total": Buffer("total", F32, (), "output"),
        "am": Buffer("am", I64, (), "output"),
    }
    return KernelProgram(bufs, [col, full, argmax], {"r": (0, 0), "c": (0, 1)}, ("x",),
                         ("cs", "total", "am"))  # fmt: skip


def gemm_bias_relu() -> KernelProgram:
    """W3 layer: h = relu(x @ w + b): a gemm LibCall, then the epilogue kernel."""
    B, K, N = Dim("b"), i64(784), i64(512)
    gemm = Kernel("matmul", (LibCall("gemm", (
        "x", "w", "h", i64(0), i64(0), B, N, K, i64(1), i64(0), i64(0), i64(0),
        f32(1), f32(0), i64(0), i64(0), i64(0))),))  # fmt: skip
    r, c = iv("r"), iv("c")
    ix = Math.ADD(Math.MUL(r, N), c)
    epi = Kernel("bias_relu", (Loop("r", i64(0), B, (Loop("c", i64(0), N, (
        Store("y", ix, Math.MAX(Math.ADD(Load("h", ix, F32), Load("b", c, F32)), f32(0))),
    ), parallel=True),), parallel=True),))  # fmt: skip
    bufs = {
        "x": Buffer("x", F32, (B, K), "input"),
        "w": Buffer("w", F32, (K, N), "var"),
        "b": Buffer("b", F32, (N,), "var"),
        "h": Buffer("h", F32, (B, N), "temp"),
        "y": Buffer("y", F32, (B, N), "output"),
    }
    return KernelProgram(bufs, [gemm, epi], {"b": (0, 0)}, ("x",), ("y",),
                         var_reads={"w": "w", "b": "b"})  # fmt: skip


def every_math(dtype) -> KernelProgram:
    """One store per Math member applicable to ``dtype`` (bool results stored as bool)."""
    from graphc.expr import expr_dtype

    i = iv("i")
    a, b, c = (Load(n, i, dtype) for n in ("a", "b", "c"))
    cond = Load("m", i, dt.bool_)
    stmts, bufs = [], {}
    n = Dim("n")
    for name in ("a", "b", "c"):
        bufs[name] = Buffer(name, dtype, (n,), "input")
    bufs["m"] = Buffer("m", dt.bool_, (n,), "input")
    for fn in Math:
        if fn in (Math.BITXOR, Math.SHR) and dtype != I64:
            continue
        if fn in _INTEGER_ONLY and not dtype.is_integer:
            continue
        if dtype.is_bool and fn not in (Math.AND, Math.OR, Math.XOR, Math.NOT, Math.EQ,
                                        Math.NE, Math.SELECT, Math.MAX, Math.MIN):  # fmt: skip
            continue
        if dtype.is_integer and not _integer_valued(fn, dtype):
            continue  # numpy gives floats there: not a well-typed integer Kernel IR op
        args = (cond, a, b) if fn is Math.SELECT else (a, b, c)[: fn.arity]
        e = fn(*args)
        out = f"o_{fn.name.lower()}"
        bufs[out] = Buffer(out, expr_dtype(e), (n,), "output")
        stmts.append(Store(out, i, e))
    # casts to and from every dtype
    for other in dt.ALL:
        out = f"cast_{other.name}"
        bufs[out] = Buffer(out, other, (n,), "output")
        stmts.append(Store(out, i, Cast(a, other)))
    k = Kernel(f"math_{dtype.name}", (Loop("i", i64(0), n, tuple(stmts), parallel=True),))
    outs = tuple(b for b in bufs if bufs[b].kind == "output")
    return KernelProgram(bufs, [k], {"n": (0, 0)}, ("a", "b", "c", "m"), outs)


#: Math members defined on integer operands only (the bit operations)
_INTEGER_ONLY = {Math.BITAND, Math.BITOR, Math.BITNOT, Math.SHL, Math.SAR, Math.LSHR}


def _integer_valued(fn, dtype) -> bool:
    from graphc.expr import NUMPY_MATH

    x = np.array([1, 2], dtype.np)
    args = (x > 1, x, x) if fn is Math.SELECT else (x,) * fn.arity
    return np.asarray(NUMPY_MATH[fn](*args)).dtype.kind in "iub"


def status_check() -> KernelProgram:
    """CheckNumerics-style flags (nested If, as the lowering emits) inside a row reduction."""
    R, K = Dim("r"), i64(64)
    r, k = iv("r"), iv("k")
    x = Load("x", Math.ADD(Math.MUL(r, K), k), F32)
    one = Const(1, dt.int32)
    flag = If(Math.NOT(Math.ISFINITE(x)), (If(Math.ISNAN(x), (Store(STATUS_BUFFER, i64(0), one),),
                                              (Store(STATUS_BUFFER, i64(1), one),)),))  # fmt: skip
    body = (
        Let("s", F32, f32(0)),
        Loop("k", i64(0), K, (flag, Let("s", F32, Math.ADD(Var("s", F32), x), reduce=True))),
        Store("y", r, Var("s", F32)),
    )
    kern = Kernel("checked_sum", (Loop("r", i64(0), R, body, parallel=True),))
    bufs = {
        "x": Buffer("x", F32, (R, K), "input"),
        "y": Buffer("y", F32, (R,), "output"),
        STATUS_BUFFER: Buffer(STATUS_BUFFER, dt.int32, (i64(2),), "status"),
    }
    checks = (Check(0, "x is bad", "nan"), Check(1, "x is bad", "inf"))
    return KernelProgram(bufs, [kern], {"r": (0, 0)}, ("x",), ("y",), checks=checks)


def split_kernel() -> KernelProgram:
    """Two parallel loops in one kernel body sharing a pure scalar: two launches."""
    n = Dim("n")
    i = iv("i")
    rev = Math.SUB(Math.SUB(n, i), i64(1))
    body = (
        Let("scale", F32, Cast(n, F32)),
        Loop("i", i64(0), n, (Store("t", i, Math.MUL(Load("x", i, F32), Var("scale", F32))),),
             parallel=True),
        Loop("i", i64(0), n, (Store("y", i, Math.ADD(Load("t", i, F32), Load("t", rev, F32))),),
             parallel=True),
    )  # fmt: skip
    bufs = {
        "x": Buffer("x", F32, (n,), "input"),
        "t": Buffer("t", F32, (n,), "temp"),
        "y": Buffer("y", F32, (n,), "output"),
    }
    return KernelProgram(bufs, [Kernel("two_loops", body)], {"n": (0, 0)}, ("x",), ("y",))


ALL = {
    "elementwise_chain": elementwise_chain,
    "elementwise_chain_static": lambda: elementwise_chain(4099),
    "softmax_rows": softmax_rows,
    "layer_norm_rows": layer_norm_rows,
    "column_sum_and_full_sum": column_sum_and_full_sum,
    "gemm_bias_relu": gemm_bias_relu,
    "status_check": status_check,
    "split_kernel": split_kernel,
    **{f"every_math_{d.name}": (lambda d=d: every_math(d)) for d in dt.ALL},
}


def _rand(rng, shape, dtype):
    if dtype == dt.bool_:
        return rng.random(shape) < 0.5
    if dtype.is_integer:
        return rng.integers(-7, 8, size=shape).astype(dtype.np)
    return rng.uniform(-3, 3, size=shape).astype(dtype.np)


def feeds_for(name: str, kp: KernelProgram, rng) -> tuple:
    """(feeds, variables) for program ``name`` with small concrete sizes."""
    sizes = {"n": 1000, "r": 37, "c": 300, "b": 5}
    if name == "status_check":
        x = rng.uniform(-1, 1, (9, 64)).astype(np.float32)
        return [x], {}
    if name == "layer_norm_rows":
        kp.buffers["gamma"] = kp.buffers["gamma"].__class__(
            "gamma",
            F32,
            kp.buffers["gamma"].shape,
            "const",
            rng.uniform(0.5, 1.5, 300).astype(np.float32),
        )
    feeds = []
    for buf_name in kp.inputs:
        buf = kp.buffers[buf_name]
        shape = tuple(sizes[d.name] if isinstance(d, Dim) else int(d.value) for d in buf.shape)
        if name == "softmax_rows":
            shape = (sizes["r"], 1024)
        feeds.append(_rand(rng, shape, buf.dtype))
    variables = {}
    for buf_name, var in kp.var_reads.items():
        buf = kp.buffers[buf_name]
        shape = tuple(sizes[d.name] if isinstance(d, Dim) else int(d.value) for d in buf.shape)
        variables[var] = _rand(rng, shape, buf.dtype)
    return feeds, variables


def gemm_case(dtype, trans_a, trans_b, m, n, k, batch, broadcast_b=False, alpha=1.0, beta=0.0,
              offset=0) -> KernelProgram:  # fmt: skip
    """C[b] = alpha op(A[b]) op(B[b]) + beta C0[b] (C0 copied into C first), with offsets."""
    sa, sb, sc = m * k, 0 if broadcast_b else k * n, m * n
    a_len, b_len, c_len = offset + batch * sa, offset + max(batch * sb, k * n), offset + batch * sc
    i = iv("i")
    body = (Store("c", i, Load("c0", i, dtype)),)
    copy = Kernel("init_c", (Loop("i", i64(0), i64(c_len), body, parallel=True),))
    call = LibCall("gemm", (
        "a", "b", "c", i64(int(trans_a)), i64(int(trans_b)), i64(m), i64(n), i64(k),
        i64(batch), i64(sa), i64(sb), i64(sc), Const(alpha, dtype), Const(beta, dtype),
        i64(offset), i64(offset), i64(offset)))  # fmt: skip
    bufs = {
        "a": Buffer("a", dtype, (i64(a_len),), "input"),
        "b": Buffer("b", dtype, (i64(b_len),), "input"),
        "c0": Buffer("c0", dtype, (i64(c_len),), "input"),
        "c": Buffer("c", dtype, (i64(c_len),), "output"),
    }
    return KernelProgram(bufs, [copy, Kernel("gemm", (call,))], {}, ("a", "b", "c0"), ("c",))


GEMM_CASES = {
    "f32_nn": lambda: gemm_case(F32, False, False, 70, 45, 33, 1),
    "f32_tn_batched": lambda: gemm_case(F32, True, False, 17, 66, 20, 3, alpha=0.5, beta=2.0),
    "f32_nt_broadcast_b_offsets": lambda: gemm_case(
        F32, False, True, 9, 130, 65, 2, broadcast_b=True, offset=5
    ),
    "f64_tt": lambda: gemm_case(dt.float64, True, True, 65, 64, 17, 1, beta=-1.0),
    "f16_nn": lambda: gemm_case(dt.float16, False, False, 20, 24, 16, 2),
}


def mlp_step(n_in=12, hidden=16, classes=5, batch=9, lr=0.5, scale=0.3):
    """A one-hidden-layer MLP train step (relu, sparse softmax cross-entropy, SGD):
    (graph, loss, step op, initialiser, [w1, b1, w2], feeds)."""
    import graphc as gc

    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, n_in), name="x")
        labels = gc.placeholder(gc.int64, (None,), name="labels")
        w1 = gc.Variable(rng.standard_normal((n_in, hidden)).astype(np.float32) * scale,
                         name="w1")  # fmt: skip
        b1 = gc.Variable(np.zeros(hidden, np.float32), name="b1")
        w2 = gc.Variable(rng.standard_normal((hidden, classes)).astype(np.float32) * scale,
                         name="w2")  # fmt: skip
        logits = gc.matmul(gc.nn.relu(gc.matmul(x, w1) + b1), w2)
        loss = gc.reduce_mean(
            gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )
        params = [w1, b1, w2]
        grads = gc.gradients(loss, params)
        step = gc.group(*[gc.assign_sub(p, lr * gr) for p, gr in zip(params, grads)])
        init = gc.global_variables_initializer()
    feeds = {x: rng.random((batch, n_in), dtype=np.float32),
             labels: rng.integers(0, classes, batch)}  # fmt: skip
    return g, loss, step, init, params, feeds
