"""gc.nn.conv2d / max_pool2d / avg_pool2d / bias_add with data_format="NCHW", and conv2d's
explicit padding lists: NCHW equals the NHWC op on transposed data, gradients match central
differences, and the cpu target matches the reference."""

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Example
from tests.ops.test_gradients_registry import check_gradients

rng = np.random.default_rng(5)
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def nchw_to_nhwc_list(v):
    """A 4-list in NCHW order to NHWC order."""
    return [v[0], v[2], v[3], v[1]]


CONV = [
    dict(strides=1, padding="SAME"),
    dict(strides=[1, 1, 2, 1], padding="VALID"),
    dict(strides=2, padding=[[0, 0], [0, 0], [1, 2], [0, 1]]),
    dict(strides=1, padding="VALID", dilations=[1, 1, 2, 2]),
]


def _nhwc_kwargs(kw):
    out = dict(kw)
    for key in ("strides", "dilations"):
        if isinstance(out.get(key), list):
            out[key] = nchw_to_nhwc_list(out[key])
    if isinstance(out["padding"], list):
        out["padding"] = nchw_to_nhwc_list(out["padding"])
    return out


def _conv(kw):
    return lambda x, f: gc.nn.conv2d(x, f, data_format="NCHW", **kw)


def _pool(fn, ksize, strides, padding):
    return lambda x: fn(x, ksize, strides, padding, data_format="NCHW")


CASES = [
    (f"conv{i}", _conv(kw), lambda x, f, kw=kw: gc.transpose(
        gc.nn.conv2d(gc.transpose(x, TO_NHWC), f, **_nhwc_kwargs(kw)), TO_NCHW), 2)
    for i, kw in enumerate(CONV)
] + [
    ("max_pool", _pool(gc.nn.max_pool2d, [1, 1, 3, 2], [1, 1, 2, 2], "SAME"),
     lambda x: gc.transpose(gc.nn.max_pool2d(gc.transpose(x, TO_NHWC), (3, 2), 2, "SAME"),
                            TO_NCHW), 1),
    ("avg_pool", _pool(gc.nn.avg_pool2d, 2, 1, "VALID"),
     lambda x: gc.transpose(gc.nn.avg_pool2d(gc.transpose(x, TO_NHWC), 2, 1, "VALID"),
                            TO_NCHW), 1),
    ("avg_pool_same", _pool(gc.nn.avg_pool2d, 3, 2, "SAME"),
     lambda x: gc.transpose(gc.nn.avg_pool2d(gc.transpose(x, TO_NHWC), 3, 2, "SAME"),
                            TO_NCHW), 1),
    ("bias_add", lambda x, b: gc.nn.bias_add(x, b, data_format="NCHW"),
     lambda x, b: x + gc.reshape(b, (3, 1, 1)), "bias"),
]  # fmt: skip


def _inputs(arity):
    x = rng.uniform(-2, 2, (2, 3, 7, 6))
    # distinct values: max pooling's gradient needs a unique maximum in each window
    x = rng.permutation(x.size).reshape(x.shape) / x.size * 4 - 2
    if arity == 1:
        return [x]
    if arity == "bias":
        return [x, rng.uniform(-1, 1, (3,))]
    return [x, rng.uniform(-1, 1, (3, 3, 3, 4))]


@pytest.mark.parametrize("name,build,nhwc,arity", CASES, ids=[c[0] for c in CASES])
def test_nchw_matches_transposed_nhwc_on_reference_and_cpu(name, build, nhwc, arity):
    inputs = [a.astype(np.float32) for a in _inputs(arity)]
    phs = [gc.placeholder(gc.float32, (None, *a.shape[1:]) if i == 0 else a.shape)
           for i, a in enumerate(inputs)]  # fmt: skip
    got, want = build(*phs), nhwc(*phs)
    assert got.shape[0] is None and got.shape[1] == (4 if name.startswith("conv") else 3)
    cot = gc.placeholder(gc.float32, got.shape)
    grads = gc.gradients(gc.reduce_sum(got * cot), phs)
    feed = dict(zip(phs, inputs))
    results = {}
    for target in ("reference", "cpu"):
        with gc.Session(target=target) as sess:
            shape = sess.run(got, feed).shape
            feed[cot] = np.random.default_rng(1).normal(size=shape).astype(np.float32)
            results[target] = sess.run([got, want, grads], feed)
    ref_out, ref_want, ref_grads = results["reference"]
    np.testing.assert_allclose(ref_out, ref_want, rtol=1e-6, atol=1e-6)
    cpu_out, _, cpu_grads = results["cpu"]
    np.testing.assert_allclose(cpu_out, ref_out, rtol=1e-5, atol=1e-5)
    for a, b in zip(cpu_grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,build,nhwc,arity", CASES, ids=[c[0] for c in CASES])
def test_nchw_gradients_match_central_differences(name, build, nhwc, arity):
    inputs = _inputs(arity)
    if arity != 1 and arity != "bias":
        inputs = [inputs[0][:1, :, :6, :5], inputs[1]]  # fewer probes
    check_gradients(Example(build, inputs))


def test_explicit_padding_nhwc_matches_padded_valid():
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    f = rng.normal(size=(3, 2, 3, 4)).astype(np.float32)
    pads = [[0, 0], [2, 1], [0, 3], [0, 0]]
    got = gc.nn.conv2d(x, f, strides=[1, 2, 1, 1], padding=pads)
    want = gc.nn.conv2d(gc.pad(x, pads), f, strides=(2, 1), padding="VALID")
    (dx,) = gc.gradients(gc.reduce_sum(got * got), [got.op.inputs[0]])
    (dw,) = gc.gradients(gc.reduce_sum(want * want), [want.op.inputs[0].op.inputs[0]])
    for target in ("reference", "cpu"):
        with gc.Session(target=target) as sess:
            a, b, ga, gb = sess.run([got, want, dx, dw])
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-4)


def test_data_format_errors():
    x = gc.placeholder(gc.float32, (1, 3, 4, 4))
    f = gc.constant(np.ones((2, 2, 3, 1), np.float32))
    with pytest.raises(ValueError, match="data_format"):
        gc.nn.conv2d(x, f, 1, "SAME", data_format="NWHC")
    with pytest.raises(ValueError, match="batch and channel"):
        gc.nn.conv2d(x, f, [1, 2, 1, 1], "SAME", data_format="NCHW")
    with pytest.raises(ValueError, match="batch and channel"):
        gc.nn.max_pool2d(x, [1, 2, 2, 1], 1, "SAME", data_format="NCHW")
    with pytest.raises(ValueError, match="channel dim"):
        gc.nn.bias_add(x, np.ones(4, np.float32), data_format="NCHW")
    assert gc.nn.bias_add(x, np.ones(3, np.float32), data_format="NCHW").shape == (1, 3, 4, 4)
    y = gc.nn.conv2d(x, f, 1, "SAME", data_format="NCHW", name="conv_out")
    assert y.shape == (1, 1, 4, 4) and y.name == "conv_out:0"
