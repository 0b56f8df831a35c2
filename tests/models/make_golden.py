"""Generate tests/models/golden/*.npz with TensorFlow's tf.compat.v1 (not run by the tests).

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf-keras
    TF_USE_LEGACY_KERAS=1 /tmp/tfvenv/bin/python tests/models/make_golden.py

Every case builds a tf.compat.v1.layers / tf.compat.v1.losses / tf.compat.v1.metrics graph
with fixed weights (constant initializers), and saves its inputs, weights, outputs and the
gradients of sum(output * cotangent) with respect to the inputs and weights. The graphc tests
rebuild the same model with the same weights and compare. NCHW cases are the NHWC results
transposed (TF's CPU kernels run NHWC only).
"""

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_eager_execution()
OUT = Path(__file__).resolve().parent / "golden"
rng = np.random.default_rng(2024)


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_case(build, inputs, weights_of=None):
    """build(placeholders) -> (output tensor, {name: variable}); returns arrays."""
    g = tf.Graph()
    with g.as_default():
        tf.set_random_seed(0)
        phs = {k: tf.placeholder(tf.as_dtype(v.dtype), v.shape, name=k) for k, v in inputs.items()}
        out, variables = build(phs)
        cot = f32(*out.shape.as_list())
        loss = tf.reduce_sum(out * cot)
        keys = list(phs) + list(variables)
        wrt = [phs[k] for k in phs] + [variables[k] for k in variables]
        grads = tf.gradients(loss, wrt)
        update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        names = sorted(v.op.name for v in tf.global_variables())
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            init = {f"init/{v.op.name}": sess.run(v) for v in tf.global_variables()}
            feed = {phs[k]: v for k, v in inputs.items()}
            res = sess.run([out] + grads, feed)
            after = {}
            if update_ops:
                sess.run(update_ops, feed)
                after = {f"after/{v.op.name}": sess.run(v) for v in tf.global_variables()}
    result = {f"in/{k}": v for k, v in inputs.items()}
    result["out"] = res[0]
    result["cot"] = cot
    for k, gr in zip(keys, res[1:]):
        if gr is not None:
            result[f"grad/{k}"] = gr
    result.update(init)
    result.update(after)
    result["names"] = np.array(names)
    return result


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def const(v):
    return tf.constant_initializer(v)


@case
def dense_relu():
    x = f32(4, 5)
    k, b = f32(5, 3), f32(3)

    def build(p):
        y = tf.layers.dense(
            p["x"], 3, activation=tf.nn.relu, kernel_initializer=const(k), bias_initializer=const(b)
        )
        y2 = tf.layers.dense(y, 2, kernel_initializer=const(f32(3, 2)))  # dense_1, zero bias
        vs = {v.op.name: v for v in tf.trainable_variables()}
        return y2, vs

    return run_case(build, {"x": x})


@case
def dense_rank3():
    x = f32(2, 3, 4)
    k, b = f32(4, 6), f32(6)

    def build(p):
        y = tf.layers.dense(
            p["x"], 6, activation=tf.nn.tanh, kernel_initializer=const(k), bias_initializer=const(b)
        )
        return y, {v.op.name: v for v in tf.trainable_variables()}

    return run_case(build, {"x": x})


def _conv_case(kwargs, x_shape, filters, ksize):
    x = f32(*x_shape)
    k = f32(*ksize, x_shape[-1], filters, scale=0.5)
    b = f32(filters)

    def build(p):
        y = tf.layers.conv2d(
            p["x"], filters, ksize, kernel_initializer=const(k), bias_initializer=const(b), **kwargs
        )
        return y, {v.op.name: v for v in tf.trainable_variables()}

    return run_case(build, {"x": x})


@case
def conv_same_stride2_relu():
    return _conv_case(
        dict(strides=2, padding="same", activation=tf.nn.relu), (2, 7, 6, 3), 4, (3, 3)
    )


@case
def conv_valid_dilated():
    return _conv_case(dict(dilation_rate=2, padding="valid"), (2, 8, 7, 2), 3, (2, 3))


@case
def conv_valid_rect_stride():
    return _conv_case(dict(strides=(2, 1), padding="valid", use_bias=True), (1, 9, 6, 3), 2, (3, 2))


def _pool_case(fn, kwargs):
    x = f32(2, 7, 6, 3)

    def build(p):
        return fn(p["x"], **kwargs), {}

    return run_case(build, {"x": x})


@case
def max_pool_same():
    return _pool_case(tf.layers.max_pooling2d, dict(pool_size=3, strides=2, padding="same"))


@case
def max_pool_valid():
    return _pool_case(tf.layers.max_pooling2d, dict(pool_size=2, strides=2))


@case
def avg_pool_same():
    return _pool_case(
        tf.layers.average_pooling2d, dict(pool_size=(3, 2), strides=(2, 2), padding="same")
    )


@case
def avg_pool_valid():
    return _pool_case(tf.layers.average_pooling2d, dict(pool_size=2, strides=1))


def _bn_case(x, axis, training, dtype=np.float32, **kwargs):
    c = x.shape[axis]
    gamma, beta = (1 + 0.3 * f32(c)).astype(dtype), f32(c).astype(dtype)
    mm, mv = f32(c).astype(dtype), (1 + np.abs(f32(c))).astype(dtype)

    def build(p):
        y = tf.layers.batch_normalization(
            p["x"],
            axis=axis,
            training=training,
            gamma_initializer=const(gamma),
            beta_initializer=const(beta),
            moving_mean_initializer=const(mm),
            moving_variance_initializer=const(mv),
            **kwargs,
        )
        return y, {v.op.name: v for v in tf.trainable_variables()}

    return run_case(build, {"x": x.astype(dtype)})


@case
def bn_nhwc_train():
    return _bn_case(f32(4, 3, 3, 5) * 2 + 1, -1, True)


@case
def bn_nhwc_infer():
    return _bn_case(f32(4, 3, 3, 5) * 2 + 1, 3, False)


@case
def bn_dense_train():
    return _bn_case(f32(6, 4) * 3 - 1, -1, True, momentum=0.9, epsilon=1e-2)


@case
def bn_dense_infer():
    return _bn_case(f32(6, 4), -1, False)


@case
def bn_nhwc_train_unfused():
    return _bn_case(f32(4, 3, 3, 5), -1, True, fused=False)


@case
def bn_nhwc_train_f64():
    return _bn_case(f32(4, 3, 3, 5), -1, True, dtype=np.float64)


@case
def flatten_nhwc():
    return _pool_case(tf.layers.flatten, {})


def _loss_case(build_loss, inputs):
    g = tf.Graph()
    with g.as_default():
        phs = {k: tf.placeholder(tf.as_dtype(v.dtype), v.shape, name=k) for k, v in inputs.items()}
        loss = build_loss(phs)
        total = tf.losses.get_total_loss()
        diff = [k for k, v in inputs.items() if v.dtype.kind == "f" and k != "weights"]
        grads = tf.gradients(loss, [phs[k] for k in diff])
        diff = [k for k, gr in zip(diff, grads) if gr is not None]
        grads = [gr for gr in grads if gr is not None]
        with tf.Session() as sess:
            res = sess.run([loss, total] + grads, {phs[k]: v for k, v in inputs.items()})
    r = {f"in/{k}": v for k, v in inputs.items()}
    r["out"], r["total"] = res[0], res[1]
    for k, gr in zip(diff, res[2:]):
        r[f"grad/{k}"] = gr
    return r


@case
def loss_mse():
    return _loss_case(
        lambda p: tf.losses.mean_squared_error(p["labels"], p["predictions"]),
        {"labels": f32(4, 3), "predictions": f32(4, 3)},
    )


@case
def loss_mse_weighted():
    w = np.array([[1.0], [0.0], [2.0], [0.5]], np.float32)
    return _loss_case(
        lambda p: tf.losses.mean_squared_error(p["labels"], p["predictions"], p["weights"]),
        {"labels": f32(4, 3), "predictions": f32(4, 3), "weights": w},
    )


@case
def loss_absolute_difference():
    return _loss_case(
        lambda p: tf.losses.absolute_difference(p["labels"], p["predictions"]),
        {"labels": f32(5, 2), "predictions": f32(5, 2)},
    )


@case
def loss_softmax_ce_smoothing():
    onehot = np.eye(4, dtype=np.float32)[[0, 3, 1, 1, 2]]
    w = np.array([1.0, 0.0, 2.0, 1.0, 0.0], np.float32)
    return _loss_case(
        lambda p: tf.losses.softmax_cross_entropy(
            p["onehot"], p["logits"], p["weights"], label_smoothing=0.1
        ),
        {"onehot": onehot, "logits": f32(5, 4) * 2, "weights": w},
    )


@case
def loss_sparse_softmax_ce():
    return _loss_case(
        lambda p: tf.losses.sparse_softmax_cross_entropy(p["labels"], p["logits"]),
        {"labels": np.array([0, 3, 1, 2, 2, 0], np.int64), "logits": f32(6, 4) * 3},
    )


@case
def loss_sparse_softmax_ce_weighted():
    return _loss_case(
        lambda p: tf.losses.sparse_softmax_cross_entropy(p["labels"], p["logits"], p["weights"]),
        {
            "labels": np.array([0, 3, 1, 2], np.int32),
            "logits": f32(4, 4),
            "weights": np.array([0.5, 0.0, 1.5, 1.0], np.float32),
        },
    )


@case
def loss_sigmoid_ce():
    return _loss_case(
        lambda p: tf.losses.sigmoid_cross_entropy(p["labels"], p["logits"], label_smoothing=0.2),
        {"labels": (rng.random((3, 4)) > 0.5).astype(np.float32), "logits": f32(3, 4) * 2},
    )


@case
def loss_huber():
    return _loss_case(
        lambda p: tf.losses.huber_loss(p["labels"], p["predictions"], delta=0.7),
        {"labels": f32(4, 3), "predictions": f32(4, 3)},
    )


@case
def metric_accuracy():
    batches = [(rng.integers(0, 3, 5), rng.integers(0, 3, 5)) for _ in range(3)]
    g = tf.Graph()
    with g.as_default():
        lab = tf.placeholder(tf.int64, (None,))
        pred = tf.placeholder(tf.int64, (None,))
        acc, upd = tf.metrics.accuracy(lab, pred)
        names = sorted(v.op.name for v in tf.local_variables())
        with tf.Session() as sess:
            sess.run(tf.local_variables_initializer())
            updates, values = [], []
            for lv, pv in batches:
                updates.append(sess.run(upd, {lab: lv, pred: pv}))
                values.append(sess.run(acc))
    return {
        "labels": np.stack([b[0] for b in batches]),
        "predictions": np.stack([b[1] for b in batches]),
        "updates": np.array(updates),
        "values": np.array(values),
        "names": np.array(names),
    }


def main():
    OUT.mkdir(exist_ok=True)
    for name, fn in CASES.items():
        np.savez_compressed(OUT / f"{name}.npz", **fn())
        print("wrote", name)


if __name__ == "__main__":
    main()
