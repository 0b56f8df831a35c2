"""A transpose kernel in the worker pool's object: ``dst = src^T``, float32 or float64, plain
or into panels (graphc's own GEMM, ``nativegemm.py``, transposes a transposed B into the
panels its kernel streams).

Whole ``w x w`` blocks (``w`` the lanes of a 512-bit vector) are loaded as w vectors,
transposed in registers by log2(w) stages of two-vector shuffles, and stored as w vectors;
the blocks at the right and bottom edges go element by element. ~46 us for 512 x 512 floats
on one core (2 MB moved: about the copy rate).
"""

from __future__ import annotations

from llvmlite import ir

from ... import dtypes as _dt
from .irutil import I8, I32, I64, PTR, for_range, gep, load_fields, value_type

#: bytes per vector register (AVX-512)
VECTOR_BYTES = 64


def transpose_symbol(dt) -> str:
    """The transpose kernel's function name for ``dt`` (float32/64)."""
    return f"gc_transpose_{'s' if dt == _dt.float32 else 'd'}"


#: fields of the transpose kernel's argument struct: src (R x C, row stride lds), dst
#: (C x R, row stride ldd), R, C, and the panels of dst: src rows [q * panel, q * panel +
#: panel) go to the columns of panel q, which starts ``q * pstride`` elements into dst (a
#: multiple of the lanes; a plain transpose: one panel of at least R rows)
T_FIELDS = ("src", "lds", "dst", "ldd", "r", "c", "panel", "pstride")
T_ARGS_TYPE = ir.LiteralStructType([PTR, I64, PTR, I64, I64, I64, I64, I64])


def _transpose_stage(b, rows, d, w):
    """One stage of a ``w`` x ``w`` in-register transpose: in each 2d x 2d block of the
    matrix held in ``rows`` (one vector per row), swap the two off-diagonal d x d blocks.
    After the stages d = 1, 2, 4, ... w / 2 element (i, j) has moved to (j, i): each stage
    exchanges it with (i ^ d, j ^ d) when bit d of i and j differ."""
    lo_idx = ir.Constant(ir.VectorType(I32, w), [j if not j & d else w + j - d for j in range(w)])
    hi_idx = ir.Constant(ir.VectorType(I32, w), [j + d if not j & d else w + j for j in range(w)])
    out = list(rows)
    for i in range(w):
        if i & d:
            continue
        out[i] = b.shuffle_vector(rows[i], rows[i + d], lo_idx)
        out[i + d] = b.shuffle_vector(rows[i], rows[i + d], hi_idx)
    return out


def emit_transpose(fn, dt):
    """``part(args, b0, b1)``: dst = src^T (in panels) for the row blocks [b0, b1) of src,
    each w rows (the lanes of a vector): whole w x w blocks are loaded as w vectors, transposed in
    registers and stored as w vectors; the blocks at the right and bottom edges element by
    element."""
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args, b0, b1 = fn.args
    fty = value_type(dt)
    w = VECTOR_BYTES // dt.itemsize
    vty = ir.VectorType(fty, w)
    es = ir.Constant(I64, dt.itemsize)

    def c64(v):
        return ir.Constant(I64, v)

    fields = load_fields(b, args, T_ARGS_TYPE, T_FIELDS)
    src, lds, dst, ldd, nr, nc, panel, pstride = (fields[x] for x in T_FIELDS)

    def at(base, row, ld, col):
        return gep(b, base, [b.mul(b.add(b.mul(row, ld), col), es)], source_etype=I8)

    def panel_of(r):
        """(dst of the panel holding src row ``r``, r's column there)"""
        q = b.sdiv(r, panel)
        base = gep(b, dst, [b.mul(b.mul(q, pstride), es)], source_etype=I8)
        return base, b.srem(r, panel)

    full_cb = b.sdiv(nc, c64(w))
    with for_range(b, fn, b0, b1) as rb:
        r0 = b.mul(rb, c64(w))
        r1 = b.add(r0, c64(w))
        whole = b.icmp_signed("<=", r1, nr)
        with b.if_then(whole):
            with for_range(b, fn, c64(0), full_cb) as cb:
                c0 = b.mul(cb, c64(w))
                rows = [b.load(at(src, b.add(r0, c64(i)), lds, c0), typ=vty, align=dt.itemsize)
                        for i in range(w)]  # fmt: skip
                d = 1
                while d < w:
                    rows = _transpose_stage(b, rows, d, w)
                    d *= 2
                base, col = panel_of(r0)  # (a block of rows is inside one panel)
                for i in range(w):
                    b.store(rows[i], at(base, b.add(c0, c64(i)), ldd, col), align=dt.itemsize)
        # the edges: columns past the whole blocks (every row of the block), and the rows
        # of a last partial block (every column)
        r1 = b.select(whole, r1, nr)
        c_edge = b.select(whole, b.mul(full_cb, c64(w)), c64(0))
        with for_range(b, fn, r0, r1) as i:
            base, col = panel_of(i)
            with for_range(b, fn, c_edge, nc) as j:
                b.store(b.load(at(src, i, lds, j), typ=fty), at(base, j, ldd, col))
    b.ret_void()
