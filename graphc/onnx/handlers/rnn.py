"""RNN, GRU and LSTM: one graphc ``While`` op (``build_loop``) per direction, the input
sliced along its time axis, the hidden (and cell) state carried, each step's hidden state
stacked. ONNX's equations, gate orders (GRU: z r h; LSTM: i o f c, peepholes i o f),
``linear_before_reset``, ``clip``, ``input_forget``, ``layout`` and the default
activations; ``sequence_lens`` only when every sequence has the full length.
"""

from __future__ import annotations

import numpy as np

from ...ops import constant as gconst
from ...ops import elementwise as ew
from ...ops import linalg as glin
from ...ops import nn as gnn
from ...ops import shape as gshape
from ...ops.control_flow import LoopError, build_loop
from .base import handler

_ACT = {"Sigmoid": ew.sigmoid, "Tanh": ew.tanh, "Relu": gnn.relu}
_DEFAULT = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _acts(ctx, n_dirs):
    names = ctx.attr("activations", None)
    per = len(_DEFAULT[ctx.op_type])
    names = list(names) if names else _DEFAULT[ctx.op_type] * n_dirs
    if ctx.has_attr("activation_alpha") or ctx.has_attr("activation_beta"):
        ctx.fail("activation_alpha/activation_beta are not supported")
    for a in names:
        if a not in _ACT:
            ctx.fail(f"activation {a!r} is not supported (Sigmoid, Tanh, Relu are)")
    return [[_ACT[a] for a in names[d * per : (d + 1) * per]] for d in range(n_dirs)]


def _split(t, n, axis):
    return gshape.split(t, n, axis=axis) if n > 1 else [t]


@handler("RNN", "GRU", "LSTM")
def _rnn(ctx):
    op = ctx.op_type
    hidden = ctx.attr("hidden_size")
    direction = ctx.attr("direction", "forward")
    layout = ctx.attr("layout", 0)
    clip = ctx.attr("clip", None)
    n_dirs = 2 if direction == "bidirectional" else 1
    g = _GATES[op]
    x = ctx.input(0)
    if layout:
        x = gshape.transpose(x, [1, 0, 2])  # [seq, batch, input]
    if x.shape is None or len(x.shape) != 3 or None in x.shape[1:]:
        ctx.fail("the input's batch size and feature size must be known")
    batch = x.shape[1]
    w, r = ctx.input(1), ctx.input(2)
    b = ctx.input(3)
    if ctx.has(4):
        lens = ctx.const_ints(4, "sequence_lens")
        if x.shape[0] is None or any(n != x.shape[0] for n in lens):
            ctx.fail("sequence_lens shorter than the sequence are not supported")

    def initial(i):
        if ctx.has(i):
            t = ctx.input(i)
            return gshape.transpose(t, [1, 0, 2]) if layout else t
        return gconst.constant(np.zeros((n_dirs, batch, hidden), x.dtype.np))

    h0 = initial(5)
    c0 = initial(6) if op == "LSTM" else None
    p = ctx.input(7) if op == "LSTM" else None
    acts = _acts(ctx, n_dirs)
    lbr = ctx.attr("linear_before_reset", 0)
    input_forget = ctx.attr("input_forget", 0)

    def f_clip(v):
        return v if clip is None else ew.clip_by_value(v, -float(clip), float(clip))

    ys, hs, cs = [], [], []
    for d in range(n_dirs):
        wd, rd = w[d], r[d]  # [g*hidden, input], [g*hidden, hidden]
        if b is not None:
            wb, rb = _split(b[d], 2, 0)
        else:
            wb = rb = gconst.constant(np.zeros(g * hidden, x.dtype.np))
        f = acts[d]
        reverse = direction == "reverse" or d == 1
        xw = glin.matmul(gshape.reshape(x, [-1, x.shape[2]]), wd, transpose_b=True) + wb
        xw = gshape.reshape(xw, [-1, batch, g * hidden])  # [seq, batch, g*hidden]
        pd = _split(p[d], 3, 0) if p is not None else None

        def body(vs, rows, rd=rd, rb=rb, f=f, pd=pd):
            h = vs[0]
            xt = rows[0]
            if op == "RNN":
                hn = f[0](f_clip(xt + glin.matmul(h, rd, transpose_b=True) + rb))
                return [hn], [hn]
            if op == "GRU":
                xz, xr, xh = _split(xt, 3, 1)
                rz, rr, rh = _split(rd, 3, 0)
                bz, br, bh = _split(rb, 3, 0)
                z = f[0](f_clip(xz + glin.matmul(h, rz, transpose_b=True) + bz))
                rg = f[0](f_clip(xr + glin.matmul(h, rr, transpose_b=True) + br))
                if lbr:
                    hh = f[1](f_clip(xh + rg * (glin.matmul(h, rh, transpose_b=True) + bh)))
                else:
                    hh = f[1](f_clip(xh + glin.matmul(rg * h, rh, transpose_b=True) + bh))
                hn = (1 - z) * hh + z * h
                return [hn], [hn]
            c = vs[1]
            gates = xt + glin.matmul(h, rd, transpose_b=True) + rb
            gi, go, gf, gc = _split(gates, 4, 1)
            if pd is not None:
                gi = gi + pd[0] * c
                gf = gf + pd[2] * c
            i = f[0](f_clip(gi))
            fg = 1 - i if input_forget else f[0](f_clip(gf))
            cn = fg * c + i * f[1](f_clip(gc))
            if pd is not None:
                go = go + pd[1] * cn
            o = f[0](f_clip(go))
            hn = o * f[2](cn)
            return [hn, cn], [hn]

        init = [h0[d]] + ([c0[d]] if c0 is not None else [])
        try:
            final, stacked = build_loop(body, init, [xw], reverse=reverse, back_prop=False,
                                        what=op)  # fmt: skip
        except LoopError as exc:
            ctx.fail(str(exc), exc.kind)
        ys.append(stacked[0])  # in time order, reverse included
        hs.append(final[0])
        if op == "LSTM":
            cs.append(final[1])
    y = gshape.stack(ys, axis=1)  # [seq, dirs, batch, hidden]
    yh = gshape.stack(hs, axis=0)
    yc = gshape.stack(cs, axis=0) if cs else None
    if layout:
        y = gshape.transpose(y, [2, 0, 1, 3])
        yh = gshape.transpose(yh, [1, 0, 2])
        yc = None if yc is None else gshape.transpose(yc, [1, 0, 2])
    return [y, yh] + ([yc] if op == "LSTM" else [])
