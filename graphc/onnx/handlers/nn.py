"""ONNX neural-network ops: MatMul/Gemm, convolutions and pools (NCHW), normalizations,
softmax family, dropout (inference).

graphc's convolutions and pools are NHWC (``gc.nn.conv2d`` with HWIO filters); an ONNX
NCHW op becomes transpose -> NHWC op -> transpose, and the compiler's simplifier removes the
transposes that cancel between consecutive ops. ONNX's explicit pads, ``auto_pad``,
``ceil_mode`` and ``count_include_pad`` become explicit (top, bottom, left, right) pads;
1-D ops get a width-1 axis; ``group`` splits channels into separate convolutions.
"""

from __future__ import annotations

import numpy as np

from ...ops import elementwise as ew
from ...ops import indexing as gidx
from ...ops import linalg as glin
from ...ops import nn as gnn
from ...ops import reduce as gred
from ...ops import shape as gshape
from .base import handler
from .tensor import static_shape


def _c(x, value):
    return np.asarray(value, dtype=x.dtype.np)


# -- matrix products -----------------------------------------------------------------------


@handler("MatMul")
def _matmul(ctx):
    return glin.matmul(ctx.input(0), ctx.input(1))


@handler("Gemm")
def _gemm(ctx):
    a, b, c = ctx.input(0), ctx.input(1), ctx.input(2)
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    trans_b = bool(ctx.attr("transB", 0))
    if trans_b and ctx.is_static(1):
        # static weights (a classifier's [classes, features]) transposed at import: a GEMM
        # with a transposed B ran 3x slower (sgemm 1 x 1000 x 2048, ResNet-50's last layer
        # at batch 1: 1.33 -> 0.40 ms), and the compiler does not fold a large transpose
        v = np.asarray(ctx.const(1))
        if v.dtype == b.dtype.np:
            b, trans_b = np.ascontiguousarray(v.T), False
    y = glin.matmul(a, b, transpose_a=bool(ctx.attr("transA", 0)), transpose_b=trans_b)
    if alpha != 1.0:
        y = ew.multiply(y, _c(y, alpha))
    if c is not None:
        if beta != 1.0:
            c = ew.multiply(c, _c(c, beta))
        y = ew.add(y, c)
    return y


# -- window geometry -----------------------------------------------------------------------


def _geometry(ctx, spatial, kernel, strides, dilations, ceil_mode=False):
    """[(before, after)] per spatial dim from ONNX pads / auto_pad / ceil_mode."""
    n = len(spatial)
    auto = ctx.attr("auto_pad", "NOTSET")
    pads = list(ctx.attr("pads") or [0] * (2 * n))
    out = []
    for i in range(n):
        size, k, s, d = spatial[i], kernel[i], strides[i], dilations[i]
        eff = (k - 1) * d + 1
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            want = -(-size // s)
            total = max((want - 1) * s + eff - size, 0)
            small = total // 2
            lo, hi = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
        elif auto == "VALID":
            lo, hi = 0, 0
        else:
            lo, hi = pads[i], pads[i + n]
        if ceil_mode:
            span = size + lo + hi - eff
            count = -(-span // s) + 1
            if (count - 1) * s >= size + lo:  # the last window would start in the padding
                count -= 1
            hi = max(hi, (count - 1) * s + eff - size - lo)
        out.append((lo, hi))
    return out


def _to_nhwc(x, rank):
    """NC(spatial) -> N(spatial)C; 1-D gets a height of 1."""
    if rank == 3:
        x = gshape.expand_dims(x, 2)
    return gshape.transpose(x, [0, 2, 3, 1])


def _from_nhwc(y, rank):
    y = gshape.transpose(y, [0, 3, 1, 2])
    return gshape.squeeze(y, [2]) if rank == 3 else y


def _window_args(ctx, x, kernel):
    shape = static_shape(ctx, x)
    rank = len(shape)
    if rank not in (3, 4):
        ctx.fail(f"only 1-D and 2-D windows are supported, got input rank {rank}")
    n = rank - 2
    strides = list(ctx.attr("strides") or [1] * n)
    dil = list(ctx.attr("dilations") or [1] * n)
    return shape, rank, n, strides, dil


def _pair2(values, rank, fill):
    return ([fill] + list(values)) if rank == 3 else list(values)


@handler("Conv")
def _conv(ctx):
    x, w, b = ctx.input(0), ctx.input(1), ctx.input(2)
    wshape = static_shape(ctx, w, "weights")
    kernel = list(ctx.attr("kernel_shape") or wshape[2:])
    shape, rank, n, strides, dil = _window_args(ctx, x, kernel)
    pads = _geometry(ctx, shape[2:], kernel, strides, dil)
    group = ctx.attr("group", 1)
    if rank == 3:
        w = gshape.expand_dims(w, 2)
    wt = gshape.transpose(w, [2, 3, 1, 0])  # (M, C/g, kh, kw) -> (kh, kw, C/g, M)
    xt = _to_nhwc(x, rank)
    padding = [[0, 0]] + [list(p) for p in _pair2(pads, rank, (0, 0))] + [[0, 0]]
    st, dl = _pair2(strides, rank, 1), _pair2(dil, rank, 1)
    if group == 1:
        y = gnn.conv2d(xt, _static_hwio(ctx, w, rank) if ctx.is_static(1) else wt, st, padding,
                       dilations=dl)  # fmt: skip
    elif group > 4 and ctx.is_static(1):
        # many groups, static weights: one convolution with block-diagonal filters (zeros
        # between groups) compiles to one GEMM instead of a kernel per group
        y = gnn.conv2d(xt, _block_diagonal(ctx.const(1), group, rank), st, padding, dilations=dl)
    elif group == shape[1] and group > 4:
        y = _depthwise(xt, wt, padding, st, dl, wshape[0] // group)
    else:
        xs = gshape.split(xt, group, axis=3)
        ws = gshape.split(wt, group, axis=3)
        y = gshape.concat([gnn.conv2d(a, f, st, padding, dilations=dl)
                           for a, f in zip(xs, ws)], axis=3)  # fmt: skip
    if b is not None:
        y = ew.add(y, b)
    return _from_nhwc(y, rank)


def _static_hwio(ctx, w, rank):
    """Static ONNX filters (M, C, kh[, kw]) as HWIO filters transposed at import, or the
    graph's transpose of ``w`` when the value's dtype is not the graph's (a carried type).
    A transpose of a large constant is not folded by the compiler, so each run would copy
    the weights in a strided loop (ResNet-50 at batch 1: 26 of its 82 ms)."""
    v = np.asarray(ctx.const(1))
    if v.dtype != w.dtype.np:
        return gshape.transpose(w, [2, 3, 1, 0])
    if rank == 3:
        v = v[:, :, None, :]
    return np.ascontiguousarray(np.transpose(v, (2, 3, 1, 0)))


def _block_diagonal(w, group, rank):
    """HWIO filters of a grouped convolution with ONNX weights ``w`` (M, C/g, kh[, kw]):
    input channel c feeds output m only when both are in the same group."""
    w = np.asarray(w)
    if rank == 3:
        w = w[:, :, None, :]
    m, cpg, kh, kw = w.shape
    mpg = m // group
    out = np.zeros((kh, kw, cpg * group, m), w.dtype)
    for g in range(group):
        block = np.transpose(w[g * mpg : (g + 1) * mpg], (2, 3, 1, 0))  # kh, kw, cpg, mpg
        out[:, :, g * cpg : (g + 1) * cpg, g * mpg : (g + 1) * mpg] = block
    return out


def _depthwise(xt, wt, padding, strides, dilations, mult):
    """A depthwise convolution (one group per input channel) of NHWC ``xt`` with HW1M
    filters ``wt``: the sum over the window of strided slices of the padded input times one
    filter entry per channel (elementwise ops the compiler fuses), instead of one
    convolution per channel."""
    if mult > 1:  # output channel c*mult + k reads input channel c
        xt = gidx.gather(xt, np.repeat(np.arange(xt.shape[3]), mult).astype(np.int64), axis=3)
    xp = gshape.pad(xt, padding) if any(p for pair in padding for p in pair) else xt
    _, hp, wp, _ = xp.shape
    kh, kw = wt.shape[0], wt.shape[1]
    (sh, sw), (dh, dw) = strides, dilations
    oh = (hp - ((kh - 1) * dh + 1)) // sh + 1
    ow = (wp - ((kw - 1) * dw + 1)) // sw + 1
    total = None
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            tap = xp[:, r0 : r0 + (oh - 1) * sh + 1 : sh, c0 : c0 + (ow - 1) * sw + 1 : sw, :]
            term = ew.multiply(tap, wt[i, j, 0, :])
            total = term if total is None else ew.add(total, term)
    return total


@handler("ConvTranspose")
def _conv_transpose(ctx):
    x, w, b = ctx.input(0), ctx.input(1), ctx.input(2)
    wshape = static_shape(ctx, w, "weights")
    kernel = list(ctx.attr("kernel_shape") or wshape[2:])
    shape, rank, n, strides, dil = _window_args(ctx, x, kernel)
    group = ctx.attr("group", 1)
    out_pad = list(ctx.attr("output_padding") or [0] * n)
    full = [(shape[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 + out_pad[i]
            for i in range(n)]  # fmt: skip
    auto = ctx.attr("auto_pad", "NOTSET")
    out_shape = ctx.attr("output_shape")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(out_shape)[-n:] if out_shape is not None else [
            shape[2 + i] * strides[i] for i in range(n)]  # fmt: skip
        crops = []
        for i in range(n):
            total = full[i] - target[i]
            if auto == "SAME_UPPER":
                crops.append((total // 2, total - total // 2))
            else:
                crops.append((total - total // 2, total // 2))
    else:
        p = list(ctx.attr("pads") or [0] * (2 * n))
        crops = [(p[i], p[i + n]) for i in range(n)]
    if rank == 3:
        w = gshape.expand_dims(w, 2)
    wt = gshape.transpose(w, [2, 3, 1, 0])  # (C, M/g, kh, kw) -> (kh, kw, M/g, C)
    xt = _to_nhwc(x, rank)
    st, dl = _pair2(strides, rank, 1), _pair2(dil, rank, 1)
    fhw = _pair2(full, rank, 1)
    m = wshape[1] * group
    batch = shape[0]

    def one(a, f, channels):
        return gnn.conv2d_transpose(a, f, [batch, fhw[0], fhw[1], channels], st,
                                    padding="VALID", dilations=dl)  # fmt: skip

    if group == 1:
        y = one(xt, wt, m)
    else:
        xs = gshape.split(xt, group, axis=3)
        ws = gshape.split(wt, group, axis=3)
        y = gshape.concat([one(a, f, wshape[1]) for a, f in zip(xs, ws)], axis=3)
    crops = _pair2(crops, rank, (0, 0))
    grow = [[0, 0]] + [[max(-lo, 0), max(-hi, 0)] for lo, hi in crops] + [[0, 0]]
    if any(g for pair in grow for g in pair):  # an output_shape past the full size: zeros
        y = gshape.pad(y, grow)
        fhw = [fhw[i] + grow[1 + i][0] + grow[1 + i][1] for i in range(2)]
        crops = [(max(lo, 0), max(hi, 0)) for lo, hi in crops]
    if any(c for pair in crops for c in pair):
        key = (slice(None),) + tuple(slice(lo, fhw[i] - hi) for i, (lo, hi) in
                                     enumerate(crops)) + (slice(None),)  # fmt: skip
        y = y[key]
    if b is not None:
        y = ew.add(y, b)
    return _from_nhwc(y, rank)


def _pool(ctx, kind):
    x = ctx.input(0)
    kernel = list(ctx.attr("kernel_shape"))
    shape, rank, n, strides, dil = _window_args(ctx, x, kernel)
    if any(d != 1 for d in dil):
        ctx.fail("pools with dilations are not supported")
    ceil = bool(ctx.attr("ceil_mode", 0))
    pads = _geometry(ctx, shape[2:], kernel, strides, dil, ceil_mode=ceil)
    xt = _to_nhwc(x, rank)
    ks, st = _pair2(kernel, rank, 1), _pair2(strides, rank, 1)
    if kind == "max":
        padding = [[0, 0]] + [list(p) for p in _pair2(pads, rank, (0, 0))] + [[0, 0]]
        if xt.dtype.is_integer:  # exact: float64 holds every int32 carrier value
            y = ew.cast(gnn.max_pool2d(ew.cast(xt, np.float64), ks, st, padding), xt.dtype)
        else:
            y = gnn.max_pool2d(xt, ks, st, padding)
    else:
        if ctx.attr("count_include_pad", 0):
            # the declared pads count as zeros; what ceil_mode adds past them does not
            plain = _geometry(ctx, shape[2:], kernel, strides, dil, ceil_mode=False)
            zero_pad = [[0, 0]] + [list(p) for p in _pair2(plain, rank, (0, 0))] + [[0, 0]]
            xt = gshape.pad(xt, zero_pad)
            extra = [(0, hi - p[1]) for (lo, hi), p in zip(pads, plain)]
            padding = [[0, 0]] + [list(p) for p in _pair2(extra, rank, (0, 0))] + [[0, 0]]
        else:
            padding = [[0, 0]] + [list(p) for p in _pair2(pads, rank, (0, 0))] + [[0, 0]]
        y = gnn.avg_pool2d(xt, ks, st, padding)
    return _from_nhwc(y, rank)


@handler("MaxPool")
def _max_pool(ctx):
    if len([o for o in ctx.node.output if o]) > 1:
        ctx.fail("MaxPool's Indices output is not supported")
    if ctx.attr("storage_order", 0):
        ctx.fail("MaxPool storage_order=1 is not supported")
    return _pool(ctx, "max")


@handler("AveragePool")
def _avg_pool(ctx):
    return _pool(ctx, "avg")


@handler("LpPool")
def _lp_pool(ctx):
    """(sum over the window of |x|^p)^(1/p): zero padding, a VALID average pool times the
    window size."""
    x = ctx.input(0)
    kernel = list(ctx.attr("kernel_shape"))
    shape, rank, n, strides, dil = _window_args(ctx, x, kernel)
    if any(d != 1 for d in dil):
        ctx.fail("LpPool with dilations is not supported")
    p = float(ctx.attr("p", 2))
    pads = _geometry(ctx, shape[2:], kernel, strides, dil, ceil_mode=bool(ctx.attr("ceil_mode", 0)))
    xt = _to_nhwc(ew.pow(ew.abs(x), _c(x, p)), rank)
    widths = [[0, 0]] + [list(q) for q in _pair2(pads, rank, (0, 0))] + [[0, 0]]
    if any(w for pair in widths for w in pair):
        xt = gshape.pad(xt, widths)
    ks, st = _pair2(kernel, rank, 1), _pair2(strides, rank, 1)
    total = ew.multiply(gnn.avg_pool2d(xt, ks, st, "VALID"), _c(x, int(np.prod(kernel))))
    return _from_nhwc(ew.pow(total, _c(x, 1.0 / p)), rank)


@handler("GlobalAveragePool")
def _global_avg(ctx):
    return _global_pool(ctx, gred.reduce_mean)


@handler("GlobalMaxPool")
def _global_max(ctx):
    return _global_pool(ctx, gred.reduce_max)


def _global_pool(ctx, reduce):
    """A reduction over the spatial axes with the channels moved last (the transpose cancels
    with an NHWC convolution's): a reduction over leading axes keeping the trailing, unit-
    stride channels, which the cpu target vectorises across channels (over NCHW's trailing
    axes each channel's sum read its pixels with a stride of C: SqueezeNet's 13 x 13 x 1000
    pool, one thread, ~110 -> ~15 us), then the spatial axes back as 1s."""
    x = ctx.input(0)
    if x.shape is None:
        ctx.fail(f"input {x.name} needs a known rank")
    rank = len(x.shape)  # (a run-time batch or size is fine)
    if rank < 3:
        return reduce(x, axis=list(range(2, rank)), keepdims=True)
    y = reduce(gshape.transpose(x, [0, *range(2, rank), 1]), axis=list(range(1, rank - 1)))
    for axis in range(2, rank):
        y = gshape.expand_dims(y, axis)
    return y


# -- normalizations ------------------------------------------------------------------------


def _per_channel(v, rank):
    """A (C,) parameter shaped to broadcast over N C spatial..."""
    return gshape.reshape(v, [-1] + [1] * (rank - 2))


@handler("BatchNormalization")
def _batch_norm(ctx):
    x, scale, bias, mean, var = (ctx.input(i) for i in range(5))
    rank = len(static_shape(ctx, x))
    eps = ctx.attr("epsilon", 1e-5)
    n_out = len([o for o in ctx.node.output if o])
    if ctx.attr("training_mode", 0):
        # the batch's statistics (population variance) normalise; the running ones move
        axes = [0] + list(range(2, rank))
        b_mean, b_var = gnn.moments(x, axes)
        mom = ctx.attr("momentum", 0.9)
        y = _normalize(x, scale, bias, b_mean, b_var, eps, rank)
        run_mean = ew.add(ew.multiply(mean, _c(mean, mom)), ew.multiply(b_mean, _c(mean, 1 - mom)))
        run_var = ew.add(ew.multiply(var, _c(var, mom)), ew.multiply(b_var, _c(var, 1 - mom)))
        return [y, run_mean, run_var]
    if n_out > 1:
        ctx.fail("BatchNormalization's running statistics outputs need training_mode=1")
    return _normalize(x, scale, bias, mean, var, eps, rank)


def _normalize(x, scale, bias, mean, var, eps, rank):
    inv = ew.multiply(ew.rsqrt(ew.add(var, _c(var, eps))), scale)
    shift = ew.subtract(bias, ew.multiply(mean, inv))
    return ew.add(ew.multiply(x, _per_channel(inv, rank)), _per_channel(shift, rank))


@handler("InstanceNormalization")
def _instance_norm(ctx):
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    rank = len(static_shape(ctx, x))
    axes = list(range(2, rank))
    mean, var = gnn.moments(x, axes, keepdims=True)
    eps = ctx.attr("epsilon", 1e-5)
    y = ew.multiply(ew.subtract(x, mean), ew.rsqrt(ew.add(var, _c(var, eps))))
    return ew.add(ew.multiply(y, _per_channel(scale, rank)), _per_channel(bias, rank))


@handler("LayerNormalization")
def _layer_norm(ctx):
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    rank = len(static_shape(ctx, x))
    axis = ctx.attr("axis", -1)
    axis = axis + rank if axis < 0 else axis
    axes = list(range(axis, rank))
    mean, var = gnn.moments(x, axes, keepdims=True)
    inv = ew.rsqrt(ew.add(var, _c(var, ctx.attr("epsilon", 1e-5))))
    y = ew.multiply(ew.multiply(ew.subtract(x, mean), inv), scale)
    if bias is not None:
        y = ew.add(y, bias)
    return [y, mean, inv]


@handler("GroupNormalization")
def _group_norm(ctx):
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    shape = static_shape(ctx, x)
    g = ctx.attr("num_groups")
    if ctx.opset < 21:
        ctx.fail("GroupNormalization before opset 21 (per-group scale) is not supported")
    t = gshape.reshape(x, [shape[0], g, -1])
    mean, var = gnn.moments(t, [2], keepdims=True)
    t = ew.multiply(ew.subtract(t, mean), ew.rsqrt(ew.add(var, _c(var, ctx.attr("epsilon", 1e-5)))))
    y = gshape.reshape(t, list(shape))
    rank = len(shape)
    return ew.add(ew.multiply(y, _per_channel(scale, rank)), _per_channel(bias, rank))


@handler("LpNormalization")
def _lp_norm(ctx):
    x = ctx.input(0)
    axis, p = ctx.attr("axis", -1), ctx.attr("p", 2)
    if p == 1:
        norm = gred.reduce_sum(ew.abs(x), axis=axis, keepdims=True)
    else:
        norm = ew.sqrt(gred.reduce_sum(ew.multiply(x, x), axis=axis, keepdims=True))
    zero = ew.equal(norm, _c(norm, 0))
    return ew.where(zero, ew.multiply(x, _c(x, 0)), ew.divide(x, ew.where(zero, _c(norm, 1), norm)))


@handler("MeanVarianceNormalization")
def _mvn(ctx):
    x = ctx.input(0)
    axes = list(ctx.attr("axes", [0, 2, 3]))
    mean, var = gnn.moments(x, axes, keepdims=True)
    return ew.divide(ew.subtract(x, mean), ew.add(ew.sqrt(var), _c(x, 1e-9)))


@handler("LRN")
def _lrn(ctx):
    x = ctx.input(0)
    shape = static_shape(ctx, x)
    size = ctx.attr("size")
    alpha, beta, bias = ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75), ctx.attr("bias", 1.0)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = ew.multiply(x, x)
    padded = gshape.pad(sq, [[0, 0], [lo, hi]] + [[0, 0]] * (len(shape) - 2))
    c = shape[1]
    total = padded[:, 0:c]
    for j in range(1, size):
        total = ew.add(total, padded[:, j : j + c])
    denom = ew.pow(ew.add(_c(x, bias), ew.multiply(total, _c(x, alpha / size))), _c(x, beta))
    return ew.divide(x, denom)


# -- softmax family ------------------------------------------------------------------------


def _softmax_like(ctx, fn):
    x = ctx.input(0)
    shape = static_shape(ctx, x)
    axis = ctx.attr("axis", -1 if ctx.opset >= 13 else 1)
    axis = axis + len(shape) if axis < 0 else axis
    if ctx.opset >= 13:
        return fn(x, axis)
    # before opset 13 the input is coerced to 2-D at ``axis``
    flat = gshape.reshape(x, [int(np.prod(shape[:axis], dtype=np.int64)), -1])
    return gshape.reshape(fn(flat, 1), list(shape))


@handler("Softmax")
def _softmax(ctx):
    return _softmax_like(ctx, lambda t, a: gnn.softmax(t, axis=a))


@handler("LogSoftmax")
def _log_softmax(ctx):
    return _softmax_like(ctx, lambda t, a: gnn.log_softmax(t, axis=a))


@handler("Hardmax")
def _hardmax(ctx):
    def hardmax(t, a):
        depth = static_shape(ctx, t)[a]
        idx = gred.argmax(t, axis=a)
        return gidx.one_hot(idx, depth, axis=a, dtype=t.dtype)

    return _softmax_like(ctx, hardmax)


@handler("Dropout")
def _dropout(ctx):
    x = ctx.input(0)
    if ctx.opset >= 12 and ctx.has(2):
        training = ctx.const(2, "training_mode")
        ratio = ctx.const(1, "ratio") if ctx.has(1) else 0.5
        if bool(np.asarray(training).reshape(-1)[0]) and float(np.asarray(ratio)) != 0.0:
            ctx.fail("Dropout in training mode is not supported (its mask is random)")
    elif ctx.opset < 7 and not ctx.attr("is_test", 0):
        ctx.fail("Dropout in training mode is not supported (inference only)")
    y = x
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        return [y, np.ones(static_shape(ctx, x), bool)]
    return y
