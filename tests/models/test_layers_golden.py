"""gc.layers against tf.compat.v1.layers: outputs and gradients for the same weights.

The golden files were made once with TensorFlow by tests/models/make_golden.py (not run
here). Each case rebuilds the model with constant initializers holding TF's initial weights,
runs it on the reference and cpu targets, and compares the output, the gradients of
sum(output * cotangent) w.r.t. the input and the trainable variables, the variable names and
(batch normalization) every variable after one run of the UPDATE_OPS. NCHW (channels_first)
layers are checked against the NHWC golden data transposed.
"""

from pathlib import Path

import numpy as np
import pytest

import graphc as gc

GOLDEN = Path(__file__).resolve().parent / "golden"
TARGETS = ["reference", "cpu"]
NCHW = (0, 3, 1, 2)
NHWC = (0, 2, 3, 1)


def load(name):
    with np.load(GOLDEN / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def init(r, var):
    return gc.constant_initializer(r[f"init/{var}"])


def check(r, out, x, xv, target, update=False, layout=None, in_layout="same", rtol=2e-4,
          atol=2e-5):  # fmt: skip
    """Run ``out`` (and its gradients) fed ``x: xv``; compare with the golden case ``r``.
    ``layout``/``in_layout``: permutations taking graphc's output/input layout to the golden
    one (``in_layout`` defaults to ``layout``)."""
    in_layout = layout if in_layout == "same" else in_layout
    in_perm = (lambda a: a) if in_layout is None else (lambda a: np.transpose(a, in_layout))
    assert sorted(v.op.name for v in gc.global_variables()) == list(r["names"])
    perm = (lambda a: a) if layout is None else (lambda a: np.transpose(a, layout))
    inv = None if layout is None else tuple(np.argsort(layout))
    cot = r["cot"] if inv is None else np.transpose(r["cot"], inv)
    loss = gc.reduce_sum(out * gc.constant(cot))
    by_name = {v.op.name: v for v in gc.global_variables()}
    keys = [k for k in r if k.startswith("grad/")]
    wrt = [x if k == "grad/x" else by_name[k[len("grad/") :]] for k in keys]
    grads = gc.gradients(loss, wrt)
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        got_out, got_grads = sess.run([out, grads], {x: xv})
        after = {}
        if update:
            updates = gc.get_collection(gc.GraphKeys.UPDATE_OPS)
            assert len(updates) == 2
            sess.run(updates, {x: xv})
            after = {f"after/{v.op.name}": sess.run(v) for v in gc.global_variables()}
    np.testing.assert_allclose(perm(got_out), r["out"], rtol=rtol, atol=atol)
    for k, gr in zip(keys, got_grads):
        gr = in_perm(gr) if k == "grad/x" else gr
        np.testing.assert_allclose(gr, r[k], rtol=rtol, atol=atol, err_msg=k)
    if update:
        assert sorted(after) == sorted(k for k in r if k.startswith("after/"))
    for k, v in after.items():
        np.testing.assert_allclose(v, r[k], rtol=rtol, atol=atol, err_msg=k)


def placeholder(r, layout=None):
    xv = r["in/x"] if layout is None else np.transpose(r["in/x"], layout)
    x = gc.placeholder(gc.as_dtype(xv.dtype), (None, *xv.shape[1:]), name="x")
    return x, xv


@pytest.mark.parametrize("target", TARGETS)
def test_dense_names_and_numerics(target):
    r = load("dense_relu")
    x, xv = placeholder(r)
    y = gc.layers.dense(x, 3, activation=gc.nn.relu, kernel_initializer=init(r, "dense/kernel"),
                        bias_initializer=init(r, "dense/bias"))  # fmt: skip
    y2 = gc.layers.dense(y, 2, kernel_initializer=init(r, "dense_1/kernel"))
    assert y2.shape == (None, 2)
    check(r, y2, x, xv, target)


@pytest.mark.parametrize("target", TARGETS)
def test_dense_on_rank3_contracts_the_last_axis(target):
    r = load("dense_rank3")
    x, xv = placeholder(r)
    y = gc.layers.dense(x, 6, activation=gc.tanh, kernel_initializer=init(r, "dense/kernel"),
                        bias_initializer=init(r, "dense/bias"))  # fmt: skip
    assert y.shape == (None, 3, 6)
    check(r, y, x, xv, target)


CONVS = {
    "conv_same_stride2_relu": dict(filters=4, kernel_size=3, strides=2, padding="same",
                                   activation=gc.nn.relu),
    "conv_valid_dilated": dict(filters=3, kernel_size=(2, 3), dilation_rate=2),
    "conv_valid_rect_stride": dict(filters=2, kernel_size=(3, 2), strides=(2, 1)),
}  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(CONVS))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_conv2d(case, data_format, target):
    r = load(case)
    first = data_format == "channels_first"
    x, xv = placeholder(r, NCHW if first else None)
    y = gc.layers.conv2d(x, data_format=data_format, kernel_initializer=init(r, "conv2d/kernel"),
                         bias_initializer=init(r, "conv2d/bias"), **CONVS[case])  # fmt: skip
    check(r, y, x, xv, target, layout=NHWC if first else None)


POOLS = {
    "max_pool_same": (gc.layers.max_pooling2d, dict(pool_size=3, strides=2, padding="same")),
    "max_pool_valid": (gc.layers.max_pooling2d, dict(pool_size=2, strides=2)),
    "avg_pool_same": (gc.layers.average_pooling2d,
                      dict(pool_size=(3, 2), strides=(2, 2), padding="SAME")),
    "avg_pool_valid": (gc.layers.average_pooling2d, dict(pool_size=2, strides=1)),
}  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(POOLS))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_pooling(case, data_format, target):
    r = load(case)
    first = data_format == "channels_first"
    x, xv = placeholder(r, NCHW if first else None)
    fn, kwargs = POOLS[case]
    y = fn(x, data_format=data_format, **kwargs)
    check(r, y, x, xv, target, layout=NHWC if first else None)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_flatten(data_format, target):
    r = load("flatten_nhwc")
    first = data_format == "channels_first"
    x, xv = placeholder(r, NCHW if first else None)
    y = gc.layers.flatten(x, data_format=data_format)
    assert y.shape == (None, 7 * 6 * 3)
    # channels_first flattens in channels-last order, as TF
    check(r, y, x, xv, target, in_layout=NHWC if first else None)


BNS = {
    "bn_nhwc_train": dict(axis=-1, training=True),
    "bn_nhwc_infer": dict(axis=3, training=False),
    "bn_dense_train": dict(axis=-1, training=True, momentum=0.9, epsilon=1e-2),
    "bn_dense_infer": dict(axis=-1, training=False),
    "bn_nhwc_train_unfused": dict(axis=-1, training=True, fused=False),
    "bn_nhwc_train_f64": dict(axis=-1, training=True),
}  # fmt: skip


def _bn(x, r, **kwargs):
    p = "batch_normalization/"
    return gc.layers.batch_normalization(
        x, gamma_initializer=init(r, p + "gamma"), beta_initializer=init(r, p + "beta"),
        moving_mean_initializer=init(r, p + "moving_mean"),
        moving_variance_initializer=init(r, p + "moving_variance"), **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(BNS))
def test_batch_normalization(case, target):
    """Training normalizes with the batch's moments and updates the moving statistics (with
    the unbiased variance where TF1 is fused: 4-D float32); inference uses the moving ones."""
    r = load(case)
    x, xv = placeholder(r)
    kwargs = BNS[case]
    y = _bn(x, r, **kwargs)
    check(r, y, x, xv, target, update=kwargs["training"])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("training", [True, False])
def test_batch_normalization_channels_first(training, target):
    r = load("bn_nhwc_train" if training else "bn_nhwc_infer")
    x, xv = placeholder(r, NCHW)
    y = _bn(x, r, axis=1, training=training)
    check(r, y, x, xv, target, update=training, layout=NHWC)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("training", [True, False])
def test_batch_normalization_with_a_bool_tensor(training, target):
    """training=<bool placeholder> gives the Python-bool results for either value, and the
    update ops leave the moving statistics alone when it is False."""
    r = load("bn_nhwc_train" if training else "bn_nhwc_infer")
    x, xv = placeholder(r)
    flag = gc.placeholder(gc.bool, (), name="training")
    y = _bn(x, r, axis=-1, training=flag)
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run(y, {x: xv, flag: training})
        sess.run(gc.get_collection(gc.GraphKeys.UPDATE_OPS), {x: xv, flag: training})
        moving = {v.op.name: sess.run(v) for v in gc.global_variables()}
    np.testing.assert_allclose(got, r["out"], rtol=2e-4, atol=2e-5)
    for name, value in moving.items():
        want = r[f"after/{name}"] if training else r[f"init/{name}"]
        np.testing.assert_allclose(value, want, rtol=2e-4, atol=2e-5, err_msg=name)
