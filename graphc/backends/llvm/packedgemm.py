"""A native convolution for constant float32 filters: an implicit GEMM over the NHWC input,
the filters packed once, at compile time, into panels for its micro-kernel (the
``conv_packed`` LibCall; the layout is ``kernel/conv_packed.py``'s).

Why: an ONNX model's convolution weights are constants, yet im2col + OpenBLAS sgemm copied
each 3 x 3 layer's input nine times over (7.2 MB per 56 x 56 layer of ResNet-50) and had
OpenBLAS pack the same weights into its panel layout again on every call. Here the filters
``[KH, KW, C, O]`` are panels ``[ceil(O / NB)][KH * KW * C][NB]`` of NB = nv * 16 output
channels (zeros past O), and the kernel reads the A operand straight from the input: output
pixel ``r``'s row for tap ``(i, j)`` is the C contiguous floats of the input pixel it sees
there, or the row of C zeros after the panels when the tap falls in the padding.

An imported model's NCHW input is read as it is (the LibCall's ``nchw``, a kernel variant of
its own: a pixel's channels ``h * w`` floats apart, each row stepping by its own stride, 0 for
a tap in the padding), so its transpose to NHWC is not computed.

The micro-kernel computes a tile of ``TILE_ROWS[nv]`` output pixels by NB channels: its
accumulators (16 floats each) stay in vector registers over the whole reduction (every tap,
every input channel); each step loads nv contiguous vectors of the panel and broadcasts one
input scalar per pixel. A task is a block of whole tiles of output pixels (one of
``row_blocks``) by a group of ``panels`` panels (all of them unless the pixels are too few to
split between the threads);
with all of them, the GEMM epilogue for those rows follows when one was fused (the protocol of
``blas._gemm_rows``: ``epi(ctx, r0 * O, r1 * O)`` while they are in cache). An epilogue of
a few elementwise steps (a batch norm's scale and shift, a residual, a ReLU:
``tile_epilogue.py``) is applied to the accumulators before the tile's store instead, by a
kernel of its own per chain of steps (``symbol(nv, steps)``). Tile rows past the task's
last pixel are computed but not stored (past the layer's last pixel, they repeat it: in
bounds); channels past O are masked off at the store (and the steps' loads). Every address
the kernel forms is inside X (the taps are bounds-checked against the input), the packed
operand, C's m rows of O floats, ``ldc`` apart from element ``oc``, or the steps' operands
(prefetch hints aside); the sizes themselves are the Conv2D's, checked before any kernel
runs (``lower_nn``'s shape rule), and a wider row (a concat's,
``concat_store.direct_concat``) or a step's operand is checked where it is chosen.
The kernel prefetches the input and the output lines of the tiles ahead (PREFETCH_TILES,
PREFETCH_OUT): a model's large layers read and write more than the caches hold.

The same kernel runs the ``gemm_packed`` LibCall (``emit_gemm_packed``): a batch of products
with constant right operands packed alike (Winograd's 16, ``kernel/lower_winograd.py``), each
a 1 x 1 convolution over an image of m x 1 pixels, the batch item's pointers stepped per
task (the struct's ``batch``, ``sx``, ``swp``, ``sout``).

``part(args, t0, t1)`` runs tasks [t0, t1) (a ``gc_parallel_for`` body); one per panel
width is emitted into the module of a program that uses it (``emit_conv_packed`` renders
the LibCall as a call of it); ``kernels_ir`` gives them alone (tests, tuning). The tiles are
sized for AVX-512's 32 vector registers; a program for a CPU without AVX-512 gets tiles one
vector wide (``NARROW_TILE_ROWS``, not tuned: the lowering does not know the target, so the
cpu target takes this kernel for constant filters on every machine).
"""

from __future__ import annotations

from llvmlite import ir

from ...errors import UnimplementedError
from ...expr import Const
from ...kernel.conv_packed import LANES
from ...kernel.ir import LIBCALLS
from . import math as _m
from .irutil import (
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
)
from .tasks import row_range, split_tasks
from .tile_epilogue import KINDS, MAX_OPERANDS, kinds, operands, signature

#: vectors of output channels per panel (NB = nv * LANES channels; ``conv_packed.
#: panel_vectors`` picks 1 or 4) -> output pixels per tile (input scalars broadcast per
#: reduction step). 4 x 6 accumulators: AVX-512's 32 registers hold them, the 4 panel
#: vectors and a broadcast. Measured on one core of the AVX-512 machine (Zen 4): 6 x 4
#: 103-115 GFLOP/s on ResNet-50's convolutions; 7 x 4 spills, 7 x 3 measured no faster. For
#: 16-48 output channels (SqueezeNet's squeeze layers) a 64-wide panel is mostly padding:
#: 12 x 1 88-104 GFLOP/s there where 6 x 4 gave 27-56 (and 12 x 2, 8 x 3 no faster than
#: 12 x 1 for 32 and 48 channels; 24 x 1 and 16 x 1 slower)
TILE_ROWS = {1: 12, 4: 6}
#: ... for targets without AVX-512 (16 vector registers of 8 floats: a 16-float vector takes
#: two): tiles of NARROW_TILE_ROWS pixels by one vector (12 halves of accumulators, the
#: AVX2 GEMM kernels' 6 x 16), a 64-wide panel in four such column blocks. Not tuned on an
#: AVX2-only machine (none at hand): compiled for x86-64-v3 and run on the AVX-512 one (whose
#: AVX2 multiply-adds are as fast), a 14 x 14 x 64 -> 256 3 x 3 layer took 1.12 ms against
#: 1.02 with the AVX-512 tiles (2.09 with 1 x 64 tiles, the first narrow choice)
NARROW_TILE_ROWS = 6
#: rows of the tiles after a task's last full tile (at most a tile's): a 49-pixel layer
#: (ResNet-50's last stage at batch 1) is 8 tiles of 6 and one of 2, not 9 of 6
REST_ROWS = 2
#: each reduction step of a tap prefetches one address of the input that the tile
#: PREFETCH_TILES ahead reads for that tap: the c steps sweep its rows' c * tile-rows floats,
#: assumed contiguous (the same image row, as every row of a 1 x 1 layer's input is; a wrong
#: guess costs a useless prefetch: a prefetch is a hint that never faults). A layer's input
#: comes from memory when the layer before wrote more than the caches hold, and the hardware
#: prefetchers miss the tile's strided reads: SqueezeNet's 128 -> 16 squeeze at 55 x 55,
#: batch 8, took 2.57 ms in the model against 1.05 ms on a cached input; 1.20 with this (0: no
#: prefetch; 1 and 2 measured alike on the whole model, 4 slower)
PREFETCH_TILES = 2
#: each tile first prefetches for writing the output lines of the tile PREFETCH_OUT ahead: a
#: store to a line not in cache waits for the line. ResNet-50's 64 -> 256 1 x 1 layers at
#: batch 8 (25.7 MB out) took 10.95 ms on one core, 8.96 with this (2: 8.89; 4: 9.78); the
#: whole model on one core 632 -> 606 ms (0: no prefetch)
PREFETCH_OUT = 1
#: ... and (a tile epilogue adding an element operand: a residual) that operand's lines of the
#: tile PREFETCH_ELEMENTS ahead, for reading (0: no prefetch)
PREFETCH_ELEMENTS = 1


def tile_shapes() -> dict:
    """{nv: (output pixels, vectors of channels) per tile} for the CPU being compiled for
    (``math.flag``)."""
    if _m.flag("avx512f"):
        return {nv: (mr, nv) for nv, mr in TILE_ROWS.items()}
    return {nv: (NARROW_TILE_ROWS, 1) for nv in TILE_ROWS}


def symbol(nv: int, steps=(), nchw: bool = False) -> str:
    """The kernel's function name for panels of ``nv`` vectors (and a tile epilogue of the
    kinds ``steps``, ``tile_epilogue.kinds``; ``nchw``: reading an NCHW input)."""
    suffix = signature(steps)
    return (f"gc_conv_packed_s{nv}" + ("_nchw" if nchw else "")
            + (f"_e{suffix}" if suffix else ""))  # fmt: skip


#: fields of the argument struct (all i64 but the pointers): m (output pixels N*OH*OW),
#: o (output channels), c (input channels), h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl,
#: ldc (floats from one output row to the next: o, or a concat's wider rows),
#: x (NHWC input), wp (packed filters, then c zeros), out (m rows of o floats, ldc apart:
#: the LibCall's C from its element oc), row_blocks (blocks of
#: whole tiles of pixels: ``tasks.row_range``),
#: panels (panels per task: a task is a block of rows by a group of panels), epi (row
#: epilogue or null; run only when a task has every panel), epi_ctx, ep0..ep5 (the buffers
#: of a kernel's tile epilogue steps, ``tile_epilogue.operands``; null past them)
#: batch (independent products, ``gemm_packed``; 1 for a convolution), sx, swp, sout (floats
#: from one batch item's x, wp and out to the next's); a task is then a batch item's block of
#: rows by a group of panels
FIELDS = ("m", "o", "c", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl",
          "ldc", "x", "wp", "out", "row_blocks", "panels", "epi", "epi_ctx",
          "ep0", "ep1", "ep2", "ep3", "ep4", "ep5", "batch", "sx", "swp", "sout")  # fmt: skip
POINTER_FIELDS = ("x", "wp", "out", "epi", "epi_ctx", "ep0", "ep1", "ep2", "ep3", "ep4", "ep5")
ARGS_TYPE = ir.LiteralStructType([PTR if f in POINTER_FIELDS else I64 for f in FIELDS])


def kernels_ir(tiles: dict | None = None, steps=(), nchw: bool = False) -> str:
    """IR text defining the kernel of each panel width (``part(args, t0, t1)``: tasks
    [t0, t1) of the convolution described by the ARGS_TYPE struct at ``args``; external
    ``symbol(nv, steps, nchw)``) without a target line, for tests and tuning. ``tiles``:
    {nv: rows or (rows, vectors)} instead of ``tile_shapes()``; ``steps``: a tile epilogue's
    kinds; ``nchw``: the kernels reading an NCHW input."""
    mod = StandaloneModule("gc_conv_packed")
    for nv, shape in (tiles or tile_shapes()).items():
        mr, vt = shape if isinstance(shape, tuple) else (shape, nv)
        name = symbol(nv, steps, nchw)
        fn = ir.Function(mod.module, ir.FunctionType(VOID, [PTR, I64, I64]), name)
        _emit(mod, fn, mr, nv, vt, tuple(steps), nchw)
    return "\n".join(
        line for line in str(mod.module).splitlines()
        if not line.startswith(("target ", "; ModuleID", "source_filename"))
    )  # fmt: skip


def _c(v):
    return ir.Constant(I64, v)


def _position(b, i, v):
    """(image, output y, output x) of output pixel ``i``."""
    q = b.sdiv(i, v["ow"])
    ox = b.sub(i, b.mul(q, v["ow"]))
    img = b.sdiv(q, v["oh"])
    return img, b.sub(q, b.mul(img, v["oh"])), ox


def _emit(r, fn, mr, nv, vt, steps=(), nchw=False):
    """The kernel for panels of ``nv`` vectors in tiles of ``mr`` pixels by ``vt`` vectors
    (``vt`` divides ``nv``), applying the tile epilogue ``steps`` (kinds) before the store;
    ``nchw``: the input is laid out [N, C, H, W] (a pixel's channels ``h * w`` floats apart)
    instead of NHWC."""
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args, t0, t1 = fn.args
    fty = ir.FloatType()
    w = LANES
    nb = nv * w
    vty = ir.VectorType(fty, w)
    mty = ir.VectorType(I1, w)
    ity = ir.VectorType(I64, w)
    es = _c(4)

    v = load_fields(b, args, ARGS_TYPE, FIELDS)
    m, o, c = v["m"], v["o"], v["c"]
    kh, kw = v["kh"], v["kw"]
    ktot = b.mul(b.mul(kh, kw), c)
    nblk = b.sdiv(b.add(o, _c(nb - 1)), _c(nb))
    fma = r.declare("llvm.fma.v16f32", vty, [vty, vty, vty])
    mstore = r.declare("llvm.masked.store.v16f32.p0", VOID, [vty, PTR, I32, mty])
    mload = r.declare("llvm.masked.load.v16f32.p0", vty, [PTR, I32, mty, vty])
    operand = {}  # (step, None or its own step) -> the ep field of its buffer
    for si, kind in enumerate(steps):
        if isinstance(kind, tuple):  # add_x: the element's buffer, then its own steps'
            operand[si, None] = f"ep{len(operand)}"
            for ii, _ in enumerate(kind[1]):
                operand[si, ii] = f"ep{len(operand)}"
        elif KINDS[kind][1]:
            operand[si, None] = f"ep{len(operand)}"
    prefetch = r.declare("llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])
    zero_v = ir.Constant(vty, [0.0] * w)
    lane_ids = ir.Constant(ity, list(range(w)))
    # accumulators and the per-row input pointers live in allocas (promoted to registers)
    acc = [[b.alloca(vty) for _ in range(vt)] for _ in range(mr)]
    rowp = [b.alloca(PTR) for _ in range(mr)]
    # NCHW: each row's step from one channel to the next (bytes), 0 for a tap in the padding
    # (its row is then the one zero after the panels, read for every channel)
    rows_step = [b.alloca(I64) for _ in range(mr)] if nchw else None
    plane = b.mul(v["h"], v["w"])
    chan_bytes = b.mul(plane, es)
    o_v = splat(b, o, ity)
    rest = min(REST_ROWS, mr)
    end = _position(b, b.sub(m, _c(1)), v)  # the last pixel's (image, y, x)

    def tile(i0, mr, r1, j, masks, panel):  # (mr: this tile's rows, at most _emit's)
        """C[i0 : i0 + mr, j : j + vt * w] from the panel's columns at ``panel`` (rows from
        r1 on are computed, not stored)."""
        geo = []  # (image row offset, first input y, first input x) per tile row
        # the first row's position by division, the others stepped from it (divisions per
        # row cost 4% of a 1 x 1, 64 -> 256 layer's time); rows past the last pixel take its
        # position (in bounds; they are not stored)
        img, oy, ox = _position(b, i0, v)
        for rr in range(mr):
            if rr:
                ox = b.add(ox, _c(1))
                wrap = b.icmp_signed("==", ox, v["ow"])
                ox = b.select(wrap, _c(0), ox)
                oy = b.add(oy, b.zext(wrap, I64))
                wrap = b.icmp_signed("==", oy, v["oh"])
                oy = b.select(wrap, _c(0), oy)
                img = b.add(img, b.zext(wrap, I64))
            inside = b.icmp_signed("<", b.add(i0, _c(rr)), m)
            pos = [b.select(inside, a, z) for a, z in zip((img, oy, ox), end)]
            # (the image's first element in rows of w floats: NHWC's pixel index base, or
            # NCHW's row index, h rows a channel)
            img_rows = b.mul(pos[0], b.mul(v["h"], c) if nchw else v["h"])
            geo.append((img_rows, b.sub(b.mul(pos[1], v["sh"]), v["pt"]),
                        b.sub(b.mul(pos[2], v["sw"]), v["pl"])))  # fmt: skip
        for row in acc[:mr]:
            for a in row:
                b.store(zero_v, a)
        if PREFETCH_OUT:  # the output lines of the tile PREFETCH_OUT tiles ahead, for writing
            ahead = b.add(i0, _c(PREFETCH_OUT * mr))
            for rr in range(mr):
                crow = b.add(b.mul(b.add(ahead, _c(rr)), v["ldc"]), j)
                for q in range(vt):
                    cp = gep(b, v["out"], [b.mul(b.add(crow, _c(q * w)), es)], source_etype=I8)
                    b.call(prefetch, [cp, ir.Constant(I32, 1), ir.Constant(I32, 3),
                                      ir.Constant(I32, 1)])  # fmt: skip
        element_ops = [operand[si, None] for si, kind in enumerate(steps)
                       if kind == "add_e" or isinstance(kind, tuple)]  # fmt: skip
        if PREFETCH_ELEMENTS and element_ops:
            ahead = b.add(i0, _c(PREFETCH_ELEMENTS * mr))
            for field in element_ops:
                for rr in range(mr):
                    erow = b.add(b.mul(b.add(ahead, _c(rr)), o), j)
                    for q in range(vt):
                        ep = gep(b, v[field], [b.mul(b.add(erow, _c(q * w)), es)],
                                 source_etype=I8)  # fmt: skip
                        b.call(prefetch, [ep, ir.Constant(I32, 0), ir.Constant(I32, 3),
                                          ir.Constant(I32, 1)])  # fmt: skip
        with for_range(b, fn, _c(0), kh) as ty:
            with for_range(b, fn, _c(0), kw) as tx:
                for rr in range(mr):
                    img_h, y0, x0 = geo[rr]
                    y = b.add(y0, b.mul(ty, v["dh"]))
                    x = b.add(x0, b.mul(tx, v["dw"]))
                    ok = b.and_(b.icmp_unsigned("<", y, v["h"]),
                                b.icmp_unsigned("<", x, v["w"]))  # fmt: skip
                    pix = b.add(b.mul(b.add(img_h, y), v["w"]), x)
                    px = gep(b, v["x"], [b.mul(pix if nchw else b.mul(pix, c), es)],
                             source_etype=I8)  # fmt: skip
                    b.store(b.select(ok, px, pad_row), rowp[rr])
                    if nchw:
                        b.store(b.select(ok, chan_bytes, _c(0)), rows_step[rr])
                kbase = b.mul(b.add(b.mul(ty, kw), tx), c)
                tap = gep(b, panel, [b.mul(b.mul(kbase, _c(nb)), es)], source_etype=I8)
                ptrs = [b.load(p, typ=PTR) for p in rowp[:mr]]
                steps_ = [b.load(p, typ=I64) for p in rows_step[:mr]] if nchw else None
                # the next tiles' input for this tap, assumed ahead in the same image row
                ahead = b.mul(_c(PREFETCH_TILES * mr * 4), v["sw"])
                ahead = ahead if nchw else b.mul(ahead, c)
                pf_row = gep(b, ptrs[0], [ahead], source_etype=I8)
                pf_step = chan_bytes if nchw else b.mul(_c(mr * 4), v["sw"])
                with for_range(b, fn, _c(0), c) as p:
                    if PREFETCH_TILES:
                        pf = gep(b, pf_row, [b.mul(p, pf_step)], source_etype=I8)
                        b.call(prefetch, [pf, ir.Constant(I32, 0), ir.Constant(I32, 3),
                                          ir.Constant(I32, 1)])  # fmt: skip
                    bp = gep(b, tap, [b.mul(b.mul(p, _c(nb)), es)], source_etype=I8)
                    bv = [b.load(gep(b, bp, [_c(q * w * 4)], source_etype=I8), typ=vty,
                                 align=4) for q in range(vt)]  # fmt: skip
                    for rr in range(mr):
                        step = steps_[rr] if nchw else es
                        ap = gep(b, ptrs[rr], [b.mul(p, step)], source_etype=I8)
                        av = splat(b, b.load(ap, typ=fty, align=4), vty)
                        for q in range(vt):
                            cur = b.load(acc[rr][q], typ=vty)
                            b.store(b.call(fma, [av, bv[q], cur]), acc[rr][q])
        per_channel = {}  # (step, own step, q) -> its operand at this tile's channels
        for si, kind in enumerate(steps):
            inner = enumerate(kind[1]) if isinstance(kind, tuple) else [(None, kind)]
            for ii, k in inner:
                if k not in ("mul_c", "add_c"):
                    continue
                for q in range(vt):
                    sp = gep(b, v[operand[si, ii]], [b.mul(b.add(j, _c(q * w)), es)],
                             source_etype=I8)  # fmt: skip
                    per_channel[si, ii, q] = b.call(mload, [sp, ir.Constant(I32, 4), masks[q],
                                                            zero_v])  # fmt: skip
        for rr in range(mr):
            i = b.add(i0, _c(rr))
            with b.if_then(b.icmp_signed("<", i, r1)):
                crow = b.add(b.mul(i, v["ldc"]), j)
                erow = b.add(b.mul(i, o), j)  # (an element operand's rows are o apart)
                for q in range(vt):
                    cp = gep(b, v["out"], [b.mul(b.add(crow, _c(q * w)), es)],
                             source_etype=I8)  # fmt: skip
                    val = b.load(acc[rr][q], typ=vty)
                    for si, kind in enumerate(steps):
                        arg = per_channel.get((si, None, q))
                        if kind == "add_e" or isinstance(kind, tuple):
                            ep = gep(b, v[operand[si, None]], [b.mul(b.add(erow, _c(q * w)), es)],
                                     source_etype=I8)  # fmt: skip
                            arg = b.call(mload, [ep, ir.Constant(I32, 4), masks[q], zero_v])
                        if isinstance(kind, tuple):  # add_x: the element through its steps
                            for ii, k in enumerate(kind[1]):
                                arg = _step(b, k, arg, per_channel[si, ii, q], zero_v)
                            kind = "add_e"
                        val = _step(b, kind, val, arg, zero_v)
                    b.call(mstore, [val, cp, ir.Constant(I32, 4), masks[q]])

    panels = v["panels"]
    groups = b.sdiv(b.add(nblk, b.sub(panels, _c(1))), panels)
    per_item = b.mul(v["row_blocks"], groups)
    base = {k: v[k] for k in ("x", "wp", "out")}
    with for_range(b, fn, t0, t1) as t:
        item = b.sdiv(t, per_item)  # (0 but for gemm_packed's batch)
        t = b.srem(t, per_item)
        for k, stride in (("x", "sx"), ("wp", "swp"), ("out", "sout")):
            v[k] = gep(b, base[k], [b.mul(b.mul(item, v[stride]), es)], source_etype=I8)
        # (the row of c zeros after the panels, read for a tap in the padding)
        pad_row = gep(b, v["wp"], [b.mul(b.mul(nblk, b.mul(ktot, _c(nb))), es)], source_etype=I8)
        rb = b.sdiv(t, groups)
        p0 = b.mul(b.srem(t, groups), panels)
        p1 = b.add(p0, panels)
        p1 = b.select(b.icmp_signed("<", p1, nblk), p1, nblk)
        r0, r1 = row_range(b, rb, v["row_blocks"], m, _c(mr))
        # column blocks of vt vectors: the panels [p0, p1), each in nv / vt blocks
        with for_range(b, fn, b.mul(p0, _c(nv // vt)), b.mul(p1, _c(nv // vt))) as cb:
            jb = b.sdiv(cb, _c(nv // vt))
            sub = b.mul(b.srem(cb, _c(nv // vt)), _c(vt * w))  # first column in the panel
            j = b.add(b.mul(jb, _c(nb)), sub)
            masks = []
            for q in range(vt):
                col = b.add(splat(b, b.add(j, _c(q * w)), ity), lane_ids)
                masks.append(b.icmp_signed("<", col, o_v))
            panel = gep(b, v["wp"], [b.mul(b.add(b.mul(jb, b.mul(ktot, _c(nb))), sub), es)],
                        source_etype=I8)  # fmt: skip
            full = b.sdiv(b.sub(r1, r0), _c(mr))
            with for_range(b, fn, _c(0), full) as ti:
                tile(b.add(r0, b.mul(ti, _c(mr))), mr, r1, j, masks, panel)
            # the rows after the last full tile (ResNet-50's 49-pixel layers: 1 of 6), in
            # tiles of REST_ROWS instead of a whole tile of repeats
            rest0 = b.add(r0, b.mul(full, _c(mr)))
            nrest = b.sdiv(b.add(b.sub(r1, rest0), _c(rest - 1)), _c(rest))
            with for_range(b, fn, _c(0), nrest) as ti:
                tile(b.add(rest0, b.mul(ti, _c(rest))), rest, r1, j, masks, panel)
        epi = v["epi"]  # (only with whole rows: one group of panels)
        whole = b.icmp_signed("==", groups, _c(1))
        with b.if_then(b.and_(whole, b.icmp_unsigned("!=", b.ptrtoint(epi, I64), _c(0)))):
            fty_epi = ir.FunctionType(VOID, [PTR, I64, I64])
            b.call(as_fn(b, epi, fty_epi), [v["epi_ctx"], b.mul(r0, o), b.mul(r1, o)])
    b.ret_void()


def _step(b, kind, val, arg, zero):
    """``val`` after one tile epilogue step (``arg``: its operand's vector), computed as the
    loop it replaces computes it (``emit_expr``'s fmul, fadd and numpy's maximum: NaN from
    either side wins)."""
    if kind == "mul_c":
        return b.fmul(val, arg)
    if kind in ("add_c", "add_e"):
        return b.fadd(val, arg)
    if kind == "max0":  # max(v, 0)
        r = b.select(b.fcmp_ordered(">", val, zero), val, zero)
        return b.select(b.fcmp_unordered("uno", val, val), val, r)
    if kind == "max0_first":  # max(0, v): 0 > v picks 0, else v (a NaN v included)
        return b.select(b.fcmp_ordered(">", zero, val), zero, val)
    raise ValueError(f"tile epilogue step {kind!r}")


def _panels(s):
    """(nv, tile rows as an i64 constant) of the LibCall ``s``: its panel width in vectors
    (a constant, one the kernel has)."""
    nv_e = s.args[3]
    if not isinstance(nv_e, Const) or int(nv_e.value) not in TILE_ROWS:
        raise UnimplementedError(f"{s.fn}: panels of {nv_e} vectors")
    nv = int(nv_e.value)
    return nv, _c(tile_shapes()[nv][0])


def _run_tasks(r, f, part, args, tasks, nt, nonempty):
    """Run tasks [0, tasks) of ``part`` over ``args``: inline for one chunk, else as ``nt``
    pool chunks; nothing when ``nonempty`` is false."""
    b = f.b
    zero, one = _c(0), _c(1)
    with b.if_then(nonempty):
        with b.if_else(b.icmp_signed("<=", nt, one), likely=True) as (then, otherwise):
            with then:
                b.call(part, [args, zero, tasks])
            with otherwise:
                b.call(r._parallel_for(), [part, args, zero, tasks, nt])


def emit_gemm_packed(r, f, s):
    """Render the ``gemm_packed`` LibCall ``s`` (kernel.ir.LIBCALLS): its products as 1 x 1
    convolutions over images of m x 1 pixels, each batch item's tasks as ``emit_conv_packed``
    cuts them for one thread when the items are at least as many as the threads (the pool
    then shares out whole items' tasks: one dispatch for the batch), else for all of them."""
    b = f.b
    names = LIBCALLS["gemm_packed"]
    nv, mr = _panels(s)
    a = {k: r._index(f, e) for k, e in zip(names[4:], s.args[4:])}
    m, o, c, batch = a["m"], a["o"], a["c"], a["batch"]
    one, zero = _c(1), _c(0)
    nonempty = b.and_(b.icmp_signed(">", m, zero), b.icmp_signed(">", o, zero))
    nonempty = b.and_(nonempty, b.icmp_signed(">", batch, zero))
    nthr = b.sext(f.nthreads, I64)
    big = b.icmp_signed(">=", b.mul(b.mul(b.mul(m, o), c), batch), _c(PARALLEL_MIN_FLOPS))
    nthr = b.select(big, nthr, one)
    per_thread = b.select(b.icmp_signed(">=", batch, nthr), one, nthr)
    nblk = b.sdiv(b.add(o, _c(nv * LANES - 1)), _c(nv * LANES))
    row_blocks, panels, tasks, _ = split_tasks(b, m, o, nblk, mr, per_thread)
    tasks = b.mul(tasks, batch)
    nt = b.select(b.icmp_signed(">", nthr, one), tasks, one)
    val = {
        "m": m,
        "o": o,
        "c": c,
        "h": m,
        "w": one,
        "oh": m,
        "ow": one,
        "kh": one,
        "kw": one,
        "sh": one,
        "sw": one,
        "dh": one,
        "dw": one,
        "pt": zero,
        "pl": zero,
        "ldc": o,
        "x": f.buf_ptr(s.args[0], zero)[0],
        "wp": f.buf_ptr(s.args[1], zero)[0],
        "out": f.buf_ptr(s.args[2], zero)[0],
        "row_blocks": row_blocks,
        "panels": panels,
        "epi": ir.Constant(PTR, None),
        "epi_ctx": ir.Constant(PTR, None),
        **{f"ep{k}": ir.Constant(PTR, None) for k in range(MAX_OPERANDS)},
        "batch": batch,
        "sx": a["stride_a"],
        "swp": a["stride_w"],
        "sout": a["stride_c"],
    }
    args = f.alloca(ARGS_TYPE, name="gemm.packed")
    store_fields(b, args, ARGS_TYPE, FIELDS, val)
    _run_tasks(r, f, _kernel(r, nv), args, tasks, nt, nonempty)


#: a convolution is split over threads from this many multiply-adds (as blas.py's GEMMs)
PARALLEL_MIN_FLOPS = 1 << 20


def _kernel(r, nv: int, steps=(), nchw=False) -> ir.Function:
    """The kernel for panels of ``nv`` vectors (and a tile epilogue of the kinds ``steps``;
    ``nchw``: of an NCHW input) in the module being rendered (emitted on first use: only
    programs with such convolutions pay its compile time, ~0.1 s each; in the worker pool's
    object every process would, whether it has convolutions or not)."""
    name = symbol(nv, steps, nchw)
    fn = r._decls.get(name)
    if fn is None:
        fn = ir.Function(r.module, ir.FunctionType(VOID, [PTR, I64, I64]), name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        r._decls[name] = fn
        mr, vt = tile_shapes()[nv]
        _emit(r, fn, mr, nv, vt, tuple(steps), nchw)
    return fn


def emit_conv_packed(r, f, s, epilogue=None, tile=None):
    """Render the ``conv_packed`` LibCall ``s`` (kernel.ir.LIBCALLS) as a call of the pool's
    kernel: tasks of blocks of output pixels (``tasks.split_tasks``: whole tiles, at most
    TASK_FLOATS outputs, at least TASKS_PER_THREAD tasks a thread), one pool chunk each when
    the product is large enough to split; with fewer than COLUMN_SPLIT_TILES tiles of pixels
    per thread, tasks of all the pixels by a share of the panels instead (the epilogue then
    runs after, as a loop).

    ``epilogue``: (body, ctx, lo, hi) of the parallel loop after it that
    ``epilogue.row_epilogue`` accepted; returns an i1, true when every task ran
    ``body(ctx, r0 * o, r1 * o)`` after computing its rows (else the caller runs the loop).
    ``tile``: the steps (``tile_epilogue.tile_steps``) of the loop after it, applied in the
    tiles instead (the result is then true: the loop is not to run)."""
    b = f.b
    names = LIBCALLS["conv_packed"]
    nv, mr = _panels(s)
    nchw_e = s.args[names.index("nchw")]
    if not isinstance(nchw_e, Const) or int(nchw_e.value) not in (0, 1):
        raise UnimplementedError(f"conv_packed: input layout flag {nchw_e}")
    val = {k: r._index(f, e) for k, e in zip(names[4:], s.args[4:]) if k != "nchw"}
    m, o = val["m"], val["o"]
    one, zero = _c(1), _c(0)
    nonempty = b.and_(b.icmp_signed(">", m, zero), b.icmp_signed(">", o, zero))
    nthr = b.sext(f.nthreads, I64)
    k = b.mul(b.mul(val["kh"], val["kw"]), val["c"])
    big = b.icmp_signed(">=", b.mul(b.mul(m, o), k), _c(PARALLEL_MIN_FLOPS))
    nthr = b.select(big, nthr, one)
    nblk = b.sdiv(b.add(o, _c(nv * LANES - 1)), _c(nv * LANES))
    # tasks of whole tiles of pixels by every panel (the epilogue per task), or with few
    # pixels for the threads (ResNet-50's 7 x 7 layers at batch 1) all the pixels by a share
    # of the panels (the epilogue after, as a loop)
    row_blocks, panels, tasks, by_cols = split_tasks(b, m, o, nblk, mr, nthr)
    by_cols = b.and_(by_cols, nonempty)
    nt = b.select(b.icmp_signed(">", nthr, one), tasks, one)
    fused = ir.Constant(I1, 0)
    epi_fn = epi_ctx = ir.Constant(PTR, None)
    if epilogue is not None:
        body, ctx, lo, hi = epilogue
        fused = b.and_(nonempty, b.not_(by_cols))
        fused = b.and_(fused, b.icmp_signed("==", lo, zero))
        fused = b.and_(fused, b.icmp_signed("==", hi, b.mul(m, o)))
        epi_fn = b.select(fused, body, epi_fn)
        epi_ctx = b.select(fused, ctx, epi_ctx)
    ops = [f.buf_ptr(name, zero)[0] for name in operands(tile or ())]
    ops += [ir.Constant(PTR, None)] * (MAX_OPERANDS - len(ops))
    if tile:
        fused, epi_fn, epi_ctx = ir.Constant(I1, 1), ir.Constant(PTR, None), ir.Constant(PTR, None)
    ptrs = {"x": f.buf_ptr(s.args[0], zero)[0], "wp": f.buf_ptr(s.args[1], zero)[0],
            "out": f.buf_ptr(s.args[2], val["oc"])[0], "row_blocks": row_blocks, "panels": panels,
            "epi": epi_fn, "epi_ctx": epi_ctx, "batch": one, "sx": zero, "swp": zero,
            "sout": zero, **{f"ep{k}": p for k, p in enumerate(ops)}}  # fmt: skip
    args = f.alloca(ARGS_TYPE, name="conv.packed")
    store_fields(b, args, ARGS_TYPE, FIELDS, {**val, **ptrs})
    part = _kernel(r, nv, kinds(tile or ()), bool(nchw_e.value))
    _run_tasks(r, f, part, args, tasks, nt, nonempty)
    return fused
