"""Workload W10 of the benchmark (docs/benchmarks.md): a ResNet-style CNN train step built
from ``gc.layers``.

Images [batch, 32, 32, 3] -> a 3x3 stem convolution -> 3 stages of 2 residual blocks (16, 32
and 64 channels; the first block of stages 2 and 3 halves the image with stride 2 and its
shortcut is a strided 1x1 projection) -> global average pool -> dense 10 -> sparse softmax
cross-entropy -> one Momentum step. Every convolution is followed by batch normalization in
training mode (batch moments; the moving averages are updated through
``GraphKeys.UPDATE_OPS`` in the same step). A block is ``relu(bn(conv(relu(bn(conv(x))))) +
shortcut(x))``, ResNet v1 as in the CIFAR ResNets.

All weights come from the inputs (convolutions without bias, as before batch norm), so the
peers (``peers/``: JAX ``jit``, TF1 graph mode with ``fused_batch_norm``) start from the
same ones. The values checked after the first step are the loss, every trainable variable
and every moving statistic, in the order of :func:`resnet_layers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import graphc as gc

from .workloads import Workload, train_step_case

MOMENTUM_LR, MOMENTUM = 0.05, 0.9  # the optimizer's learning rate and momentum
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-3  # batch norm's moving-average momentum and epsilon


@dataclass(frozen=True)
class ConvBN:
    """One convolution (no bias) followed by batch normalization: variables ``<name>/kernel``
    and ``<name>_bn/{gamma,beta,moving_mean,moving_variance}``."""

    name: str
    cin: int
    cout: int
    size: int  # kernel height and width
    stride: int


@dataclass(frozen=True)
class Block:
    """A residual block: two ConvBN, and a 1x1 projection (kernel only) when the shape changes."""

    conv1: ConvBN
    conv2: ConvBN
    proj: ConvBN | None  # its batch-norm fields unused: the projection has no batch norm


def resnet_layers(sizes: dict) -> tuple[ConvBN, list[Block]]:
    """The stem and the residual blocks of the network of ``sizes`` (channels per stage,
    blocks per stage)."""
    c0 = sizes["channels"][0]
    stem = ConvBN("stem", sizes["image_channels"], c0, 3, 1)
    blocks, cin = [], c0
    for s, cout in enumerate(sizes["channels"]):
        for b in range(sizes["blocks"]):
            stride = 2 if s > 0 and b == 0 else 1
            name = f"s{s}b{b}"
            proj = None
            if stride != 1 or cin != cout:
                proj = ConvBN(f"{name}/proj", cin, cout, 1, stride)
            blocks.append(Block(ConvBN(f"{name}/conv1", cin, cout, 3, stride),
                                ConvBN(f"{name}/conv2", cout, cout, 3, 1), proj))  # fmt: skip
            cin = cout
    return stem, blocks


def resnet_convs(sizes: dict) -> list[ConvBN]:
    """Every convolution in the order the network applies them (projections after conv2)."""
    stem, blocks = resnet_layers(sizes)
    out = [stem]
    for blk in blocks:
        out += [blk.conv1, blk.conv2] + ([blk.proj] if blk.proj else [])
    return out


def param_names(sizes: dict) -> tuple[list[str], list[str]]:
    """(trainable variable names, moving statistic names), the order of the checked values."""
    trainable, moving = [], []
    for conv in resnet_convs(sizes):
        trainable.append(f"{conv.name}/kernel")
        if not conv.name.endswith("/proj"):
            trainable += [f"{conv.name}_bn/gamma", f"{conv.name}_bn/beta"]
            moving += [f"{conv.name}_bn/moving_mean", f"{conv.name}_bn/moving_variance"]
    trainable += ["dense/kernel", "dense/bias"]
    return trainable, moving


def resnet_inputs(sizes: dict, rng) -> dict:
    """Images, labels and every variable's initial value (He-normal kernels, gamma near 1)."""
    n, b = sizes["image"], sizes["batch"]
    out = {
        "x": rng.standard_normal((b, n, n, sizes["image_channels"])).astype(np.float32),
        "labels": rng.integers(0, sizes["classes"], b).astype(np.int64),
    }
    for conv in resnet_convs(sizes):
        fan_in = conv.size * conv.size * conv.cin
        shape = (conv.size, conv.size, conv.cin, conv.cout)
        out[f"{conv.name}/kernel"] = (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(
            np.float32
        )
        if not conv.name.endswith("/proj"):
            out[f"{conv.name}_bn/gamma"] = (1 + 0.1 * rng.standard_normal(conv.cout)).astype(
                np.float32
            )
            out[f"{conv.name}_bn/beta"] = (0.1 * rng.standard_normal(conv.cout)).astype(np.float32)
            out[f"{conv.name}_bn/moving_mean"] = np.zeros(conv.cout, np.float32)
            out[f"{conv.name}_bn/moving_variance"] = np.ones(conv.cout, np.float32)
    c = sizes["channels"][-1]
    out["dense/kernel"] = (rng.standard_normal((c, sizes["classes"])) / np.sqrt(c)).astype(
        np.float32
    )
    out["dense/bias"] = np.zeros(sizes["classes"], np.float32)
    return out


def _const(inputs: dict, name: str):
    """An initializer giving the variable ``name`` its value from ``inputs``."""
    return gc.constant_initializer(inputs[name])


def conv_bn(h, conv: ConvBN, training, inputs: dict):
    """``batch_normalization(conv2d(h))`` of one ConvBN, its variables' initial values from
    ``inputs``; ``training``: a Python bool or a scalar bool tensor."""
    h = gc.layers.conv2d(h, conv.cout, conv.size, strides=conv.stride, padding="same",
                         use_bias=False, kernel_initializer=_const(inputs, f"{conv.name}/kernel"),
                         name=conv.name)  # fmt: skip
    if conv.name.endswith("/proj"):
        return h
    bn = f"{conv.name}_bn"
    return gc.layers.batch_normalization(
        h, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, training=training, name=bn,
        gamma_initializer=_const(inputs, f"{bn}/gamma"),
        beta_initializer=_const(inputs, f"{bn}/beta"),
    )  # fmt: skip


def resnet_logits(x, sizes: dict, training, inputs: dict):
    """The logits of the W10 network on images ``x`` (NHWC), built with ``gc.layers`` from
    the initial values in ``inputs``; the batch-norm moving-average updates go to
    ``GraphKeys.UPDATE_OPS``."""
    stem, blocks = resnet_layers(sizes)
    h = gc.nn.relu(conv_bn(x, stem, training, inputs))
    for blk in blocks:
        r = gc.nn.relu(conv_bn(h, blk.conv1, training, inputs))
        r = conv_bn(r, blk.conv2, training, inputs)
        shortcut = conv_bn(h, blk.proj, training, inputs) if blk.proj else h
        h = gc.nn.relu(r + shortcut)
    pooled = gc.reduce_mean(h, axis=[1, 2])  # global average pool
    return gc.layers.dense(pooled, sizes["classes"], name="dense",
                           kernel_initializer=_const(inputs, "dense/kernel"),
                           bias_initializer=_const(inputs, "dense/bias"))  # fmt: skip


def build_resnet_step(sizes: dict, inputs: dict):
    """(graph, (x, labels), loss, step, values' variables, init) of the W10 train step."""
    n = sizes["image"]
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, n, n, sizes["image_channels"]), name="x")
        labels = gc.placeholder(gc.int64, (None,), name="labels")
        logits = resnet_logits(x, sizes, True, inputs)
        loss = gc.losses.sparse_softmax_cross_entropy(labels, logits)
        with gc.control_dependencies(gc.get_collection(gc.GraphKeys.UPDATE_OPS)):
            step = gc.train.MomentumOptimizer(MOMENTUM_LR, MOMENTUM).minimize(loss)
        by_name = {v.op.name: v for v in gc.global_variables()}
        trainable, moving = param_names(sizes)
        variables = [by_name[k] for k in trainable + moving]
        init = gc.global_variables_initializer()
    return g, (x, labels), loss, step, variables, init


class ResNetStep(Workload):
    """W10: the train step above, timed per run (after a first, checked, step)."""

    id = "W10"
    title = "ResNet CNN step (gc.layers)"
    stresses = "conv + batch norm fwd/bwd, residual adds, strided convs, optimizer slots"
    requires = ("layers.conv2d", "layers.batch_normalization", "layers.dense",
                "train.MomentumOptimizer", "gradients")  # fmt: skip
    kind = "step"
    in_default_suite = False  # its reference run takes tens of seconds: --suite W10
    # float32 batch-norm gradients through 13 normalizations: sums over 64K values each
    rtol, atol = 1e-3, 1e-4
    lr, momentum, bn_momentum, bn_epsilon = MOMENTUM_LR, MOMENTUM, BN_MOMENTUM, BN_EPSILON

    def sizes(self, quick):
        if quick:
            return {"image": 8, "image_channels": 3, "batch": 4, "channels": (4, 8),
                    "blocks": 1, "classes": 10}  # fmt: skip
        return {"image": 32, "image_channels": 3, "batch": 64, "channels": (16, 32, 64),
                "blocks": 2, "classes": 10}  # fmt: skip

    def describe(self, sizes):
        s = sizes
        chans = "/".join(str(c) for c in s["channels"])
        return (
            f"ResNet on {s['image']}x{s['image']}x{s['image_channels']} batch {s['batch']}: "
            f"{len(s['channels'])} stages of {s['blocks']} residual blocks ({chans} channels), "
            f"batch norm (training), global average pool, dense {s['classes']}; Momentum step"
        )

    def inputs(self, sizes, rng):
        return resnet_inputs(sizes, rng)

    def build(self, sizes, inputs):
        g, (x, labels), loss, step, variables, init = build_resnet_step(sizes, inputs)
        feeds = [{x: inputs["x"], labels: inputs["labels"]}]
        return train_step_case(g, loss, step, variables, init, feeds)
