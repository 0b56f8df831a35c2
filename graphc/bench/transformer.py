"""Workload W9 of the benchmark (docs/benchmarks.md): a transformer encoder layer train step.

Tokens [batch, seq, d_model] -> multi-head self-attention (query, key, value and output
projections; scores ``q k^T / sqrt(d_head)`` per head, softmax over the keys) -> residual +
layer norm -> feed-forward network (``d_model -> ff -> d_model`` with exact, erf, GELU) ->
residual + layer norm (post-LN, as in the original transformer) -> mean squared error against
a target -> one Adam step.

The key projection has no bias: softmax is invariant to a per-row constant, so that bias's
gradient is zero up to rounding and Adam's first step (about ``lr * sign(g)``) would follow
each implementation's rounding noise instead of the model. All weights come from the inputs,
so the peers (``peers/``: JAX ``jit``, TF1 graph mode with and without XLA) start from the
same ones; the values checked after the first step are the loss and every parameter, in the
order of :data:`TRANSFORMER_PARAMS`.
"""

from __future__ import annotations

import numpy as np

import graphc as gc

from .workloads import Workload, train_step_case

ADAM_LR = 1e-3
LN_EPSILON = 1e-5
#: the order of the values after the loss (and of the peers' parameters)
TRANSFORMER_PARAMS = ("wq", "bq", "wk", "wv", "bv", "wo", "bo", "ln1_gamma", "ln1_beta",
                      "w1", "b1", "w2", "b2", "ln2_gamma", "ln2_beta")  # fmt: skip


def transformer_inputs(sizes: dict, rng) -> dict:
    """Tokens, targets and every parameter's initial value (Glorot-scaled weights, small
    biases, layer-norm gains near 1)."""
    b, s, d, f = sizes["batch"], sizes["seq"], sizes["d_model"], sizes["ff"]

    def weight(fan_in, fan_out):
        return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / (fan_in + fan_out))).astype(
            np.float32
        )

    def small(n):
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    out = {
        "x": rng.standard_normal((b, s, d)).astype(np.float32),
        "y": rng.standard_normal((b, s, d)).astype(np.float32),
    }
    for k in ("wq", "wk", "wv", "wo"):
        out[k] = weight(d, d)
    out.update(bq=small(d), bv=small(d), bo=small(d), w1=weight(d, f), b1=small(f))
    out.update(w2=weight(f, d), b2=small(d))
    for ln in ("ln1", "ln2"):
        out[f"{ln}_gamma"] = (1 + small(d)).astype(np.float32)
        out[f"{ln}_beta"] = small(d)
    return out


def encoder_layer(x, p: dict, sizes: dict):
    """The encoder layer's output [batch, seq, d_model] for tokens ``x`` and parameters ``p``
    (name -> tensor), in graphc ops."""
    s, d, h = sizes["seq"], sizes["d_model"], sizes["heads"]
    dh = d // h
    x2 = gc.reshape(x, (-1, d))  # [batch * seq, d]

    def heads(t):  # [batch * seq, d] -> [batch, heads, seq, d_head]
        return gc.transpose(gc.reshape(t, (-1, s, h, dh)), (0, 2, 1, 3))

    q = heads(gc.matmul(x2, p["wq"]) + p["bq"])
    k = heads(gc.matmul(x2, p["wk"]))
    v = heads(gc.matmul(x2, p["wv"]) + p["bv"])
    scores = gc.matmul(q, k, transpose_b=True) * (1.0 / np.sqrt(dh))
    ctx = gc.matmul(gc.nn.softmax(scores, axis=-1), v)  # [batch, heads, seq, d_head]
    ctx = gc.reshape(gc.transpose(ctx, (0, 2, 1, 3)), (-1, d))
    attn = gc.matmul(ctx, p["wo"]) + p["bo"]
    h1 = gc.nn.layer_norm(x2 + attn, p["ln1_gamma"], p["ln1_beta"], epsilon=LN_EPSILON)
    ff = gc.nn.gelu(gc.matmul(h1, p["w1"]) + p["b1"])
    ff = gc.matmul(ff, p["w2"]) + p["b2"]
    out = gc.nn.layer_norm(h1 + ff, p["ln2_gamma"], p["ln2_beta"], epsilon=LN_EPSILON)
    return gc.reshape(out, (-1, s, d))


def build_transformer_step(sizes: dict, inputs: dict):
    """(graph, (x, y), loss, step, variables, init) of the W9 train step."""
    s, d = sizes["seq"], sizes["d_model"]
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, s, d), name="x")
        y = gc.placeholder(gc.float32, (None, s, d), name="y")
        params = [gc.Variable(inputs[k], name=k) for k in TRANSFORMER_PARAMS]
        out = encoder_layer(x, dict(zip(TRANSFORMER_PARAMS, params)), sizes)
        loss = gc.reduce_mean(gc.square(out - y))
        step = gc.train.AdamOptimizer(ADAM_LR).minimize(loss, var_list=params)
        init = gc.global_variables_initializer()
    return g, (x, y), loss, step, params, init


class TransformerStep(Workload):
    """W9: the train step above, timed per run (after a first, checked, step)."""

    id = "W9"
    title = "transformer encoder step"
    stresses = "batched GEMMs, softmax, layer norm, GELU, head transposes, Adam"
    requires = ("nn.softmax", "nn.layer_norm", "nn.gelu", "train.AdamOptimizer", "gradients")
    kind = "step"
    in_default_suite = False  # its reference run takes seconds at full size: --suite W9
    adam_lr, params, ln_epsilon = ADAM_LR, TRANSFORMER_PARAMS, LN_EPSILON  # for peers/
    rtol, atol = 1e-3, 1e-4  # Adam's first step is about lr * sign(g)

    def sizes(self, quick):
        if quick:
            return {"batch": 2, "seq": 8, "d_model": 16, "heads": 2, "ff": 32}
        return {"batch": 32, "seq": 128, "d_model": 256, "heads": 4, "ff": 1024}

    def describe(self, sizes):
        s = sizes
        return (
            f"transformer encoder layer: batch {s['batch']}, seq {s['seq']}, d_model "
            f"{s['d_model']}, {s['heads']} heads, ff {s['ff']}, GELU, layer norm; MSE, Adam"
        )

    def inputs(self, sizes, rng):
        return transformer_inputs(sizes, rng)

    def build(self, sizes, inputs):
        g, (x, y), loss, step, params, init = build_transformer_step(sizes, inputs)
        feeds = [{x: inputs["x"], y: inputs["y"]}]
        return train_step_case(g, loss, step, params, init, feeds)
