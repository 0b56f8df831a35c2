"""The W9 and W10 models written once over framework primitives, so that the JAX and TF1 peers
run the same network as graphc's workload by construction: each peer passes in its own
matmul, attention, layer norm, convolution and batch norm."""

from __future__ import annotations

from ..resnet import resnet_layers


def encoder_forward(p, x, mm, heads_to, attend, layer_norm, gelu):
    """The W9 encoder layer's output [batch * seq, d_model] from framework primitives:
    ``mm(a, b)`` 2-D product, ``heads_to(t, to_heads)`` the reshape + transpose between
    [batch * seq, d] and [batch, heads, seq, d_head], ``attend(q, k, v)`` softmax attention per
    head (scaled), ``layer_norm(t, name)`` with ``name_gamma`` and ``name_beta``, ``gelu``."""
    q = heads_to(mm(x, p["wq"]) + p["bq"], True)
    k = heads_to(mm(x, p["wk"]), True)
    v = heads_to(mm(x, p["wv"]) + p["bv"], True)
    ctx = heads_to(attend(q, k, v), False)
    h1 = layer_norm(x + mm(ctx, p["wo"]) + p["bo"], "ln1")
    ff = mm(gelu(mm(h1, p["w1"]) + p["b1"]), p["w2"]) + p["b2"]
    return layer_norm(h1 + ff, "ln2")


def resnet_forward(sizes, conv, batch_norm, relu, mean_hw, x):
    """The W10 network's logits from framework primitives: ``conv(h, name, stride)``,
    ``batch_norm(h, bn_name)`` (training mode; records its moving-average update),
    ``relu(h)``, ``mean_hw(h)`` (global average pool); the dense layer is left to the caller."""

    def conv_bn(h, c):
        h = conv(h, f"{c.name}/kernel", c.stride)
        return h if c.name.endswith("/proj") else batch_norm(h, f"{c.name}_bn")

    stem, blocks = resnet_layers(sizes)
    h = relu(conv_bn(x, stem))
    for blk in blocks:
        r = conv_bn(relu(conv_bn(h, blk.conv1)), blk.conv2)
        h = relu(r + (conv_bn(h, blk.proj) if blk.proj else h))
    return mean_hw(h)
