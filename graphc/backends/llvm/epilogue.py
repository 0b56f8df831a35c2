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

A convolution's epilogue is lowered over its output's own space, an NHWC nest
``(n?, h, w, c)``, not the flat ``[0, m*o)`` loop above. ``row_nest`` turns such a nest
after a ``conv_packed`` call into a loop over the m output pixels (the GEMM's rows) with
the channel loop inside (the outer loop variables recomputed per row), and merges the loops
after it over the same pixels (the pieces of a concat epilogue: SqueezeNet's fire
modules, each of whose 3 x 3 kernels also stores the 1 x 1 branch's half of the concat).
``kernel.meta[ROW_COLUMNS]`` then names the columns per row (o) of that position: the
renderer runs the row loop for the element range [r0 * o, r1 * o) the task gives it.
"""

from __future__ import annotations

from dataclasses import replace

from ... import dtypes as _dt
from ...expr import Call, Const, Load, Math, Var, sub_exprs
from ...kernel.ir import If, KernelProgram, Let, LibCall, Loop, Store

#: ``kernel.meta`` key of the positions ``plan_row_epilogues`` chose
ROW_EPILOGUES = "row_epilogues"
#: ``kernel.meta`` key of ``((position, columns), ...)``: the row epilogues whose loop runs
#: over the GEMM's rows (``row_nest``), each row ``columns`` elements
ROW_COLUMNS = "row_epilogue_columns"


def plan_row_epilogues(kp: KernelProgram) -> KernelProgram:
    """``kp`` with each kernel's ``meta[ROW_EPILOGUES]``: the positions ``j`` of its top-level
    body whose GEMM (``body[j]``) runs the parallel loop after it (``body[j + 1]``) per row
    chunk (``row_epilogue``)."""
    root = storage_roots(kp)
    kernels = []
    for k in kp.kernels:
        body = k.body
        marks, cols, j = [], [], 0
        while j < len(body) - 1:
            nest = row_nest(body, j, kp, root) if isinstance(body[j], LibCall) else None
            if nest is not None:
                loop, used, o = nest
                body = body[: j + 1] + (loop,) + body[j + 1 + used :]
                marks.append(j)
                cols.append((j, o))
                j += 2
            elif isinstance(body[j], LibCall) and row_epilogue(body[j], body[j + 1], kp, root):
                marks.append(j)
                j += 2  # the loop goes with its GEMM
            else:
                j += 1
        meta = {**k.meta, ROW_EPILOGUES: tuple(marks)}
        if cols:
            meta[ROW_COLUMNS] = tuple(cols)
        kernels.append(replace(k, body=body, meta=meta))
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


# -- convolution epilogues over the output's NHWC space (row_nest) ---------------------------


def row_nest(body, j: int, kp, root: dict):
    """``(loop, count, o)`` when the parallel loops ``body[j + 1 : j + 1 + count]`` after the
    ``conv_packed`` call ``body[j]`` may run per task of its rows as ``loop``: one parallel
    loop over its m output pixels, each row running, in order, every merged nest's channel
    loop; else None.

    Each merged loop must be a perfect nest of loops from 0 to static bounds whose outer
    extents multiply to m (the output's NHWC space; the innermost extent o where it touches
    C: any for another concat piece), with only
    Let and Store statements inside, reading and writing storage of C only at the
    nest's own element of C itself (row-major over the nest), writing nothing sharing
    storage with the input or the filters. A loop after the first joins only when no merged
    loop reads what another one writes, and the stores they share a buffer in are each
    ``K * row + (offset in [0, K))`` with one K (a concat's pieces): a row's stores then
    never meet another row's, and within a row they keep their order."""
    call = body[j]
    if call.fn != "conv_packed":
        return None
    x, w, c = call.args[:3]
    m_e, o_e = call.args[4], call.args[5]
    if not (isinstance(m_e, Const) and isinstance(o_e, Const)):
        return None
    m, o = int(m_e.value), int(o_e.value)
    if kp.buffers[c].dtype not in (_dt.float32, _dt.float64) or m <= 0 or o <= 0:
        return None
    row = _fresh_var(body, "row")
    pieces, writes, reads, shared = [], set(), set(), {}
    for s in body[j + 1 :]:
        piece = _nest_rows(s, m, o, row, c, {root[x], root[w]}, root)
        if piece is None:
            break
        stmts, stored, loaded, strides = piece
        if stored & reads or loaded & writes:
            break
        if any(shared[b] != strides[b] for b in stored & writes):
            break
        for b in stored:
            shared.setdefault(b, strides[b])
        writes |= stored
        reads |= loaded
        pieces.append(stmts)
    if not pieces:
        return None
    loop = Loop(row, Const(0, _dt.int64), Const(m, _dt.int64),
                tuple(st for p in pieces for st in p), parallel=True)  # fmt: skip
    return loop, len(pieces), o


def _read_before_overwritten(roots, loads, stores) -> bool:
    """Whether every storage root in ``roots``, both stored and loaded by a row, is stored
    once and loaded only at that element, before the store (a result stored over the
    residual it adds: ``passes/plan.py``): the row then reads only its own element, and the
    value before it is overwritten."""
    for r in roots:
        if len(stores[r]) != 1:
            return False
        idx, pos = stores[r][0]
        if any(lr == r and (li != idx or lp > pos) for lr, li, lp in loads):
            return False
    return True


def counted(loop: Loop) -> bool:
    """Whether ``loop`` runs from 0 a static, positive number of times (a channel loop of
    ``row_nest``'s rows)."""
    return (isinstance(loop.start, Const) and loop.start.value == 0
            and isinstance(loop.stop, Const) and int(loop.stop.value) > 0)  # fmt: skip


def _fresh_var(body, base: str) -> str:
    names = set()
    for s in _walk(body):
        if isinstance(s, Loop | Let):
            names.add(s.var)
    k = 0
    while f"{base}{k}" in names:
        k += 1
    return f"{base}{k}"


def _walk(stmts):
    for s in stmts:
        yield s
        if isinstance(s, Loop):
            yield from _walk(s.body)
        elif isinstance(s, If):
            yield from _walk(s.then)
            yield from _walk(s.orelse)


def affine_index(e):
    """``({var: coefficient}, constant)`` of an int64 index that is a sum of products of
    loop variables and constants, else None."""
    if isinstance(e, Const) and isinstance(e.value, int):
        return {}, int(e.value)
    if isinstance(e, Var):
        return {e.name: 1}, 0
    if isinstance(e, Call) and e.fn in (Math.ADD, Math.SUB):
        a, b = affine_index(e.args[0]), affine_index(e.args[1])
        if a is None or b is None:
            return None
        sign = 1 if e.fn is Math.ADD else -1
        terms = dict(a[0])
        for v, k in b[0].items():
            terms[v] = terms.get(v, 0) + sign * k
        return terms, a[1] + sign * b[1]
    if isinstance(e, Call) and e.fn is Math.MUL:
        a, b = affine_index(e.args[0]), affine_index(e.args[1])
        if a is None or b is None:
            return None
        if not a[0]:
            a, b = b, a
        if b[0]:
            return None  # a product of two variables
        return {v: k * b[1] for v, k in a[0].items()}, a[1] * b[1]
    return None


def _i64(v: int) -> Const:
    return Const(v, _dt.int64)


def linear_index(parts, const: int):
    """``sum(var * k for var, k in parts) + const`` without the zero terms."""
    e = None
    for var, k in parts:
        if k:
            t = var if k == 1 else Call(Math.MUL, (var, _i64(k)))
            e = t if e is None else Call(Math.ADD, (e, t))
    if e is None:
        return _i64(const)
    return e if const == 0 else Call(Math.ADD, (e, _i64(const)))


def _nest_rows(loop, m: int, o: int, row: str, c: str, ab_roots: set, root: dict):
    """A nest after the call as the statements of one row ``row`` (see ``row_nest``):
    ``(stmts, stored roots, loaded roots, {stored root: K})``, else None."""
    if not (isinstance(loop, Loop) and loop.parallel):
        return None
    nest, s = [], loop
    while True:
        if not (isinstance(s.start, Const) and s.start.value == 0 and isinstance(s.stop, Const)):
            return None
        nest.append((s.var, int(s.stop.value)))
        if len(s.body) == 1 and isinstance(s.body[0], Loop):
            s = s.body[0]
            continue
        break
    inner = s.body
    if len(nest) < 2 or any(n <= 0 for _, n in nest):
        return None
    width = nest[-1][1]  # o where the nest reads or writes C
    outer = nest[:-1]
    total = 1
    for _, n in outer:
        total *= n
    if total != m:
        return None
    if not all(isinstance(st, Let | Store) for st in inner):
        return None
    col = nest[-1][0]
    # row strides of the outer variables: row = sum(v * rstride[v])
    rstride, acc = {}, 1
    for v, n in reversed(outer):
        rstride[v] = acc
        acc *= n
    own = {v: k * width for v, k in rstride.items()}
    own[col] = 1
    c_root = root[c]
    rvar = Var(row, _dt.int64)
    c_index = linear_index([(rvar, o), (Var(col, _dt.int64), 1)], 0)
    ok = [True]
    used_outer = set()

    def index(e):
        """The index ``e`` in terms of ``row`` where its outer variables are a multiple of
        the row strides; else ``e`` (reading the outer variables, recomputed per row)."""
        aff = affine_index(e)
        if aff is not None:
            terms, const = aff
            k = None
            for v, _ in outer:
                t = terms.get(v, 0)
                if t % rstride[v] or (k is not None and t // rstride[v] != k):
                    k = None
                    break
                k = t // rstride[v]
            if k is not None and set(terms) <= set(rstride) | {col}:
                parts = [(rvar, k), (Var(col, _dt.int64), terms.get(col, 0))]
                return linear_index(parts, const), (k, terms, const)
        for x in sub_exprs(e):
            if isinstance(x, Var) and x.name in rstride:
                used_outer.add(x.name)
            elif isinstance(x, Load) and root.get(x.buffer) == c_root:
                ok[0] = False  # C read at an index this check does not follow
        return e, None

    def expr(e):
        if isinstance(e, Load):
            if root.get(e.buffer) == c_root:
                aff = affine_index(e.index)
                if e.buffer != c or width != o or aff is None or aff != (own, 0):
                    ok[0] = False
                    return e
                loaded.add(c_root)
                return Load(e.buffer, c_index, e.dtype)
            r = root.get(e.buffer, e.buffer)
            loaded.add(r)
            idx = index(e.index)[0]
            other_loads.append((r, idx, len(out)))
            return Load(e.buffer, idx, e.dtype)
        if isinstance(e, Call):
            return Call(e.fn, tuple(expr(a) for a in e.args))
        if hasattr(e, "x"):  # Cast
            return replace(e, x=expr(e.x))
        if isinstance(e, Var) and e.name in rstride:
            used_outer.add(e.name)
        return e

    loaded, stored, strides = set(), set(), {}
    other_loads, other_stores = [], {}  # (root, index, position) of loads; of stores by root
    out = []
    for st in inner:
        if isinstance(st, Let):
            if st.var in rstride or st.var == col:
                return None
            out.append(replace(st, value=expr(st.value)))
            continue
        r = root.get(st.buffer, st.buffer)
        if r in ab_roots:
            return None
        value = expr(st.value)
        if r == c_root:
            aff = affine_index(st.index)
            if st.buffer != c or width != o or aff is None or aff != (own, 0):
                return None
            idx, k = c_index, o
            bounds = (0, o - 1)
        else:
            idx, form = index(st.index)
            k, bounds = None, None
            if form is not None:
                k, span = form[0], form[1].get(col, 0) * (width - 1)
                bounds = (form[2] + min(0, span), form[2] + max(0, span))
        if k is None or bounds[0] < 0 or bounds[1] >= k or strides.get(r, k) != k:
            return None  # a store another row might also make: not row by row
        strides[r] = k
        stored.add(r)
        if r != c_root:
            other_stores.setdefault(r, []).append((idx, len(out)))
        out.append(Store(st.buffer, idx, value))
    if not ok[0] or not _read_before_overwritten((stored - {c_root}) & loaded, other_loads,
                                                 other_stores):  # fmt: skip
        return None  # (a value another row stores may be read: rows not independent)
    lets = []
    for v, _n in outer:
        if v in used_outer:
            e = Call(Math.FLOORDIV, (rvar, _i64(rstride[v])))
            n = dict(outer)[v]
            if rstride[v] * n != m:
                e = Call(Math.MOD, (e, _i64(n)))
            lets.append(Let(v, _dt.int64, e))
    channel = Loop(col, _i64(0), _i64(width), tuple(out))
    return tuple(lets) + (channel,), stored, loaded, strides
