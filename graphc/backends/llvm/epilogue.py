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

The decision is a Kernel IR pass of the cpu backend (``plan_row_epilogues``, in its
``KERNEL_PASSES``, after buffer planning: which buffers share storage decides it): it
records in ``kernel.meta[ROW_EPILOGUES]`` the top-level positions of the GEMMs that take
the loop after them, and the renderer only follows that record (a kernel without one runs
every loop after its GEMM).
"""

from __future__ import annotations

from dataclasses import replace

from ... import dtypes as _dt
from ...expr import Const, Load, Var, sub_exprs
from ...kernel.ir import If, KernelProgram, Let, LibCall, Loop, Store

#: ``kernel.meta`` key of the positions ``plan_row_epilogues`` chose
ROW_EPILOGUES = "row_epilogues"


def plan_row_epilogues(kp: KernelProgram) -> KernelProgram:
    """``kp`` with each kernel's ``meta[ROW_EPILOGUES]``: the positions ``j`` of its top-level
    body whose GEMM (``body[j]``) runs the parallel loop after it (``body[j + 1]``) per row
    chunk (``row_epilogue``)."""
    root = storage_roots(kp)
    kernels = []
    for k in kp.kernels:
        body = k.body
        marks, j = [], 0
        while j < len(body) - 1:
            if isinstance(body[j], LibCall) and row_epilogue(body[j], body[j + 1], kp, root):
                marks.append(j)
                j += 2  # the loop goes with its GEMM
            else:
                j += 1
        kernels.append(replace(k, meta={**k.meta, ROW_EPILOGUES: tuple(marks)}))
    return replace(kp, kernels=kernels)


def storage_roots(kp: KernelProgram) -> dict:
    """Buffer name -> the buffer owning its storage (following ``alias_of``)."""
    root = {}
    for name in kp.buffers:
        r, seen = name, set()
        while kp.buffers[r].alias_of is not None and r not in seen:
            seen.add(r)
            r = kp.buffers[r].alias_of
        root[name] = r
    return root


def row_epilogue(call, loop, kp, root: dict) -> bool:
    """Whether parallel ``loop`` (right after ``call``) may run per row chunk of the GEMM.

    Requires: a BLAS GEMM (float32/64) writing C from offset 0; a loop from 0 whose body
    reads and writes storage of C only at element ``i`` (the loop variable) of C itself,
    writes nothing sharing storage with A or B (other chunks' sgemm still read them), and
    makes no library call."""
    if not (isinstance(call, LibCall) and call.fn in ("gemm", "conv_packed")):
        return False
    if not (isinstance(loop, Loop) and loop.parallel):
        return False
    a, b, c = call.args[:3]
    if kp.buffers[c].dtype not in (_dt.float32, _dt.float64):
        return False
    oc = call.args[16] if call.fn == "gemm" else Const(0, _dt.int64)  # conv_packed: from 0
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
