"""gc.layers behaviour beyond the numerics: variable names, reuse, layer objects, dropout, and
a training loop whose batch-norm statistics move through UPDATE_OPS."""

import numpy as np
import pytest

import graphc as gc


def test_variable_names_follow_tf1():
    x = gc.placeholder(gc.float32, (None, 8, 8, 3))
    h = gc.layers.conv2d(x, 4, 3)
    h = gc.layers.batch_normalization(h, training=True)
    h = gc.layers.max_pooling2d(h, 2, 2)
    h = gc.layers.conv2d(h, 4, 3, padding="same", use_bias=False)
    h = gc.layers.flatten(h)
    h = gc.layers.dense(h, 5)
    with gc.variable_scope("head"):
        y = gc.layers.dense(h, 2, name="logits")
    names = [v.op.name for v in gc.global_variables()]
    assert names == [
        "conv2d/kernel", "conv2d/bias", "batch_normalization/gamma", "batch_normalization/beta",
        "batch_normalization/moving_mean", "batch_normalization/moving_variance",
        "conv2d_1/kernel", "dense/kernel", "dense/bias", "head/logits/kernel",
        "head/logits/bias",
    ]  # fmt: skip
    trainable = {v.op.name for v in gc.trainable_variables()}
    assert "batch_normalization/moving_mean" not in trainable
    assert "batch_normalization/gamma" in trainable
    assert y.shape == (None, 2) and y.op.name.startswith("head/logits/")


def test_reuse_by_name_and_by_scope():
    x = gc.placeholder(gc.float32, (None, 4))
    a = gc.layers.dense(x, 3, name="shared")
    b = gc.layers.dense(x, 3, name="shared", reuse=True)
    with pytest.raises(ValueError, match="Variable shared/kernel already exists"):
        gc.layers.dense(x, 3, name="shared")
    with pytest.raises(ValueError, match="does not exist"):
        gc.layers.dense(x, 3, name="fresh", reuse=True)

    def tower(inputs):
        h = gc.layers.dense(inputs, 3, activation=gc.nn.relu)
        return gc.layers.dense(h, 1)

    with gc.variable_scope("tower"):
        t1 = tower(x)
    with gc.variable_scope("tower", reuse=True):
        t2 = tower(x)  # unnamed layers reuse too: dense, dense_1 again inside tower/
    with gc.variable_scope("auto", reuse=gc.AUTO_REUSE):
        u1 = gc.layers.dense(x, 2, name="d")
    with gc.variable_scope("auto", reuse=gc.AUTO_REUSE):
        u2 = gc.layers.dense(x, 2, name="d")
    names = [v.op.name for v in gc.global_variables()]
    assert names == ["shared/kernel", "shared/bias", "tower/dense/kernel", "tower/dense/bias",
                     "tower/dense_1/kernel", "tower/dense_1/bias", "auto/d/kernel",
                     "auto/d/bias"]  # fmt: skip
    xv = np.random.default_rng(0).normal(size=(3, 4))
    with gc.Session(target="reference") as sess:
        sess.run(gc.global_variables_initializer())
        out = sess.run([a, b, t1, t2, u1, u2], {x: xv})
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[2], out[3])
    np.testing.assert_array_equal(out[4], out[5])


def test_layer_objects_share_their_variables_across_calls():
    layer = gc.layers.Dense(3, activation=gc.nn.relu, name="proj")
    a = layer(gc.placeholder(gc.float32, (None, 4)))
    b = layer(gc.placeholder(gc.float32, (2, 4)))
    assert [v.op.name for v in layer.variables] == ["proj/kernel", "proj/bias"]
    assert len(gc.global_variables()) == 2 and a.shape == (None, 3) and b.shape == (2, 3)
    conv = gc.layers.Conv2D(2, 3)
    conv(gc.placeholder(gc.float32, (1, 5, 5, 1)))
    conv(gc.placeholder(gc.float32, (1, 6, 6, 1)))
    assert conv.name == "conv2d" and len(conv.trainable_variables) == 2
    bn = gc.layers.BatchNormalization()
    bn(gc.placeholder(gc.float32, (None, 3)), training=True)
    assert [v.op.name for v in bn.non_trainable_variables] == [
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
    ]
    assert len(bn.updates) == 2


def test_layer_argument_errors():
    x = gc.placeholder(gc.float32, (None, None))
    with pytest.raises(ValueError, match="last dimension of the inputs to `Dense`"):
        gc.layers.dense(x, 3)
    img = gc.placeholder(gc.float32, (None, 4, 4, 2))
    with pytest.raises(ValueError, match="padding"):
        gc.layers.conv2d(img, 2, 3, padding="full")
    with pytest.raises(ValueError, match="data_format"):
        gc.layers.max_pooling2d(img, 2, 2, data_format="channels_middle")
    with pytest.raises(ValueError, match="rate"):
        gc.layers.dropout(img, rate=1.0, training=True)
    with pytest.raises(TypeError, match="bool"):
        gc.layers.dropout(img, training=gc.placeholder(gc.float32, ()))
    with pytest.raises(ValueError, match="axis"):
        gc.layers.batch_normalization(img, axis=4)


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_dropout_training_switch(target):
    x = gc.placeholder(gc.float32, (None, 1000))
    flag = gc.placeholder_with_default(False, ())
    by_tensor = gc.layers.dropout(x, rate=0.25, training=flag, seed=3)
    by_bool = gc.layers.dropout(x, rate=0.25, training=True, seed=4)
    off = gc.layers.dropout(x, rate=0.25)  # training=False by default: the identity
    xv = np.ones((4, 1000), np.float32)
    with gc.Session(target=target) as sess:
        eval_out, off_out = sess.run([by_tensor, off], {x: xv})
        train_out, bool_out = sess.run([by_tensor, by_bool], {x: xv, flag: True})
    np.testing.assert_array_equal(eval_out, xv)
    np.testing.assert_array_equal(off_out, xv)
    for out in (train_out, bool_out):
        kept = out != 0
        assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
        assert 0.7 < kept.mean() < 0.8  # keep probability 0.75


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_training_loop_updates_moving_statistics_through_update_ops(target):
    """The TF1 idiom: run the UPDATE_OPS with each step (control_dependencies on the train
    op); the moving mean/variance approach the data's statistics, and inference
    (training=False) then normalizes with them."""
    gc.set_random_seed(0)  # the dense kernel's glorot_uniform draw
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(256, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 0.5]).astype(np.float32)
    x = gc.placeholder(gc.float32, (None, 3))
    training = gc.placeholder_with_default(True, ())
    h = gc.layers.batch_normalization(x, momentum=0.8, training=training)
    y = gc.layers.dense(h, 1, name="out")
    loss = gc.losses.mean_squared_error(gc.reduce_sum(x, axis=1, keepdims=True), y)
    update_ops = gc.get_collection(gc.GraphKeys.UPDATE_OPS)
    assert len(update_ops) == 2
    with gc.control_dependencies(update_ops):
        train = gc.train.AdamOptimizer(0.05).minimize(loss)
    mm, mv = [v for v in gc.global_variables() if "moving" in v.op.name]
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        losses = [sess.run([loss, train], {x: data[i % 8 * 32:(i % 8 + 1) * 32]})[0]
                  for i in range(60)]  # fmt: skip
        mean, var = sess.run([mm, mv])
        # evaluation leaves the statistics alone even when the update ops run
        sess.run(update_ops, {x: data[:32], training: False})
        np.testing.assert_array_equal(sess.run(mm), mean)
        normalized = sess.run(h, {x: data, training: False})
        gamma, beta = sess.run(["batch_normalization/gamma:0", "batch_normalization/beta:0"])
    np.testing.assert_allclose(mean, data.mean(0), atol=0.25)
    np.testing.assert_allclose(var, data.var(0), rtol=0.25)
    assert losses[-1] < 0.2 * losses[0]
    want = (data - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(normalized, want, rtol=1e-4, atol=1e-4)


def test_without_update_ops_the_statistics_stay():
    x = gc.placeholder(gc.float32, (None, 2))
    h = gc.layers.batch_normalization(x, training=True)
    train = gc.train.GradientDescentOptimizer(0.1).minimize(gc.reduce_sum(h * h))
    with gc.Session(target="reference") as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(train, {x: np.arange(8.0).reshape(4, 2)})
        mm = [v for v in gc.global_variables() if v.op.name.endswith("moving_mean")][0]
        np.testing.assert_array_equal(sess.run(mm), [0.0, 0.0])


def test_layers_in_a_while_loop_body_keep_their_variables_outside():
    """A layer called in a gc.while_loop body (traced once) makes its variables in the outer
    graph under the scope's names, shared with the same layer outside by reuse."""
    x = gc.placeholder(gc.float32, (None, 3))

    def body(i, h):
        with gc.variable_scope("cell", reuse=gc.AUTO_REUSE):
            return i + 1, gc.layers.dense(h, 3, activation=gc.tanh, name="proj")

    with gc.name_scope("loop"):
        _, out = gc.while_loop(lambda i, h: i < 3, body, [gc.constant(0), x])
    assert [v.op.name for v in gc.global_variables()] == ["cell/proj/kernel", "cell/proj/bias"]
    unrolled = x
    with gc.variable_scope("cell", reuse=True):
        for _ in range(3):
            unrolled = gc.layers.dense(unrolled, 3, activation=gc.tanh, name="proj")
    grads = gc.gradients(gc.reduce_sum(out), gc.trainable_variables())
    want = gc.gradients(gc.reduce_sum(unrolled), gc.trainable_variables())
    xv = np.random.default_rng(0).normal(size=(2, 3))
    with gc.Session(target="reference") as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run([out, grads], {x: xv})
        ref = sess.run([unrolled, want], {x: xv})
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    for a, b in zip(got[1], ref[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_float16_layers(target):
    """float16 inputs: float16 kernels (random initializers drawn in float32 and rounded),
    float32 batch-norm parameters as TF1, float16 outputs close to a float32 model's."""
    gc.set_random_seed(1)
    x = gc.placeholder(gc.float16, (None, 4, 4, 3))
    h = gc.layers.conv2d(x, 2, 3, padding="same", kernel_initializer=gc.initializers.he_normal(1))
    h = gc.layers.batch_normalization(h, training=True)
    y = gc.layers.dense(
        gc.layers.flatten(h), 2, kernel_initializer=gc.glorot_uniform_initializer(2)
    )
    dtypes = {v.op.name: v.dtype for v in gc.global_variables()}
    assert dtypes["conv2d/kernel"] == gc.float16 and dtypes["dense/kernel"] == gc.float16
    assert dtypes["batch_normalization/gamma"] == gc.float32 and y.dtype == gc.float16
    xv = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float16)
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run(y, {x: xv})
        weights = {k: sess.run(k + ":0").astype(np.float32) for k in dtypes}
    assert got.dtype == np.float16 and np.all(np.isfinite(got))
    k = weights["conv2d/kernel"]
    assert 0.2 < k.std() < 0.7  # he_normal: sqrt(2 / 27) ~ 0.27, truncated and scaled
