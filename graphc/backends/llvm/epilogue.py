"""Which GEMM epilogues the LLVM renderer may run inside the GEMM's row chunks.

A GEMM kernel (``kernel.lower_gemm.emit_gemm_group``) is a ``gemm`` LibCall writing C, then a
parallel loop over the elements of C applying the epilogue (bias, relu, the SGD update
``V - lr * C``). The Kernel IR keeps that meaning; the cpu renderer may instead run the
loop's iterations for rows [r0, r1) of C right after the chunk's sgemm computed those rows,
on the same thread (``blas._gemm_rows``): the rows are still in that core's cache, and the
kernel needs one pool dispatch instead of two (W3: ~0.1 ms less on dW1 = x^T dy with its
SGD update).

That is only equivalent when no chunk's epilogue can see or disturb another chunk's GEMM:
``row_epilogue`` checks it statically, the generated code checks the sizes at run time
(one batch item, split by rows, the loop covering exactly ``[0, m*n)``) and falls back to
running the loop after the GEMM.
"""

from __future__ import annotations

from ... import dtypes as _dt
from ...expr import Const, Load, Var, sub_exprs
from ...kernel.ir import If, Let, LibCall, Loop, Store


def row_epilogue(call, loop, kp, root: dict) -> bool:
    """Whether parallel ``loop`` (right after ``call``) may run per row chunk of the GEMM.

    Requires: a BLAS GEMM (float32/64) writing C from offset 0; a loop from 0 whose body
    reads and writes storage of C only at element ``i`` (the loop variable) of C itself,
    writes nothing sharing storage with A or B (other chunks' sgemm still read them), and
    makes no library call."""
    if not (isinstance(call, LibCall) and call.fn == "gemm"):
        return False
    if not (isinstance(loop, Loop) and loop.parallel):
        return False
    a, b, c = call.args[:3]
    if kp.buffers[c].dtype not in (_dt.float32, _dt.float64):
        return False
    oc = call.args[16]
    if not (isinstance(oc, Const) and oc.value == 0):
        return False
    if not (isinstance(loop.start, Const) and loop.start.value == 0):
        return False
    i = Var(loop.var, _dt.int64)
    c_root, ab_roots = root[c], {root[a], root[b]}
    ok = [True]

    def exprs(e):
        for x in sub_exprs(e):
            if isinstance(x, Load) and root[x.buffer] == c_root and (x.buffer != c or x.index != i):
                ok[0] = False

    def stmts(body):
        for s in body:
            if isinstance(s, Loop):
                if s.var == loop.var:  # a shadowing loop variable: i would not be i
                    ok[0] = False
                exprs(s.start)
                exprs(s.stop)
                stmts(s.body)
            elif isinstance(s, If):
                exprs(s.cond)
                stmts(s.then)
                stmts(s.orelse)
            elif isinstance(s, Let):
                exprs(s.value)
            elif isinstance(s, Store):
                r = root[s.buffer]
                if r in ab_roots or (r == c_root and (s.buffer != c or s.index != i)):
                    ok[0] = False
                exprs(s.index)
                exprs(s.value)
            else:  # LibCall or anything new: keep the GEMM and the loop apart
                ok[0] = False

    stmts(loop.body)
    return ok[0]
