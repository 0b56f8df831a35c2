"""W10 (ResNet step from gc.layers) at its quick sizes: it builds, the fused cpu step matches
the reference interpreter, and the forward quantities it checks (the loss and the batch-norm
moving statistics after one step) match an independent numpy forward pass."""

import numpy as np

import graphc as gc
from graphc.bench.measure import compare
from graphc.bench.resnet import (
    BN_EPSILON,
    BN_MOMENTUM,
    ResNetStep,
    param_names,
    resnet_convs,
    resnet_layers,
)

WORKLOAD = "W10"  # the workload of the `quick` fixture (conftest.py)


def _conv_same(x, k, stride):
    """TF "SAME" convolution, NHWC x HWIO, by explicit patches."""
    kh, kw = k.shape[:2]
    n = x.shape[1]
    out = -(-n // stride)
    total = max((out - 1) * stride + kh - n, 0)
    top = total // 2
    xp = np.pad(x, ((0, 0), (top, total - top), (top, total - top), (0, 0)))
    y = np.zeros((x.shape[0], out, out, k.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + stride * out : stride, j : j + stride * out : stride, :]
            y += patch @ k[i, j]
    return y


def _numpy_forward(sizes, p, x, labels):
    """(loss, {moving statistic name: value after one step}) in float64 numpy."""
    moving = {}

    def conv_bn(h, conv):
        y = _conv_same(h, p[f"{conv.name}/kernel"].astype(np.float64), conv.stride)
        if conv.name.endswith("/proj"):
            return y
        bn = f"{conv.name}_bn"
        mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
        n = y.size / y.shape[-1]
        decay = 1 - BN_MOMENTUM
        moving[f"{bn}/moving_mean"] = p[f"{bn}/moving_mean"] * (1 - decay) + mean * decay
        moving[f"{bn}/moving_variance"] = (
            p[f"{bn}/moving_variance"] * (1 - decay) + var * n / (n - 1) * decay
        )
        return (y - mean) / np.sqrt(var + BN_EPSILON) * p[f"{bn}/gamma"] + p[f"{bn}/beta"]

    stem, blocks = resnet_layers(sizes)
    h = np.maximum(conv_bn(x.astype(np.float64), stem), 0)
    for blk in blocks:
        r = np.maximum(conv_bn(h, blk.conv1), 0)
        r = conv_bn(r, blk.conv2)
        h = np.maximum(r + (conv_bn(h, blk.proj) if blk.proj else h), 0)
    logits = h.mean(axis=(1, 2)) @ p["dense/kernel"] + p["dense/bias"]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean(), moving


def test_w10_is_registered_and_names_every_variable(quick):
    w, sizes, inputs, case = quick
    assert isinstance(w, ResNetStep) and w.kind == "step" and w.missing() is None
    trainable, moving = param_names(sizes)
    assert [v.op.name for v in case.variables] == trainable + moving
    with case.graph.as_default():
        assert sorted(v.op.name for v in gc.trainable_variables()) == sorted(trainable)
        assert len(gc.get_collection(gc.GraphKeys.UPDATE_OPS)) == len(moving)
    # a strided stage with a projection shortcut is part of even the quick network
    assert any(c.stride == 2 and c.name.endswith("/proj") for c in resnet_convs(sizes))


def test_w10_fused_step_matches_reference_and_numpy(quick, one_step):
    w, sizes, inputs, case = quick
    expected = one_step(case, "reference")
    got = one_step(case, "cpu")
    err, problem = compare(got, expected, w.rtol, w.atol)
    assert problem is None, problem

    # independent check of the forward quantities: loss and moving statistics
    loss, moving = _numpy_forward(sizes, inputs, inputs["x"], inputs["labels"])
    np.testing.assert_allclose(got[0], loss, rtol=1e-4)
    trainable, moving_names = param_names(sizes)
    for name, value in zip(moving_names, got[1 + len(trainable) :]):
        np.testing.assert_allclose(value, moving[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # the step moved every trainable variable (the first Momentum step is var - lr * grad)
    for name, value in zip(trainable, got[1 : 1 + len(trainable)]):
        assert not np.array_equal(value, inputs[name]), name
        assert np.all(np.isfinite(value)), name
