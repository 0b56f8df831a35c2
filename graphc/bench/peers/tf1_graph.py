"""The TensorFlow 1 peers: each workload built as a ``tf.Graph`` and run by a
``tf.compat.v1.Session``, once as it is and once with XLA auto-clustering (``tf_peer``);
W12 with XLA only (``_ColdStep``: the first step's cost above a step).
TensorFlow is imported inside the builders: it is optional."""

from __future__ import annotations

import time

import numpy as np

from ... import config
from ..resnet import ResNetStep, param_names
from ..rnn import RNNStep
from ..scaling import CompileScaling
from ..transformer import TransformerStep
from ..workloads import LN_EPS, LR, MLP_PARAMS
from .base import Peer
from .models import encoder_forward, resnet_forward

W9, W10, W11, W12 = TransformerStep, ResNetStep, RNNStep, CompileScaling


def _import_tf():
    # XLA auto-clustering on CPU is off unless this flag is set before TensorFlow loads; it only
    # takes effect in sessions that ask for a global JIT level (the "+ XLA" peer).
    config.enable_tf_xla_cpu_jit()
    import tensorflow as tf

    return tf


def _tf_open(build, xla: bool):
    """build(tf) in a new tf.Graph; returns (tf session, what build returned)."""
    tf = _import_tf()
    g = tf.Graph()
    with g.as_default():
        built = build(tf)
        init = tf.compat.v1.global_variables_initializer()
    proto = tf.compat.v1.ConfigProto()
    if xla:
        proto.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
    sess = tf.compat.v1.Session(graph=g, config=proto)
    sess.run(init)
    return sess, built


def _tf_fn(make):
    """make(tf, ph, sizes, inputs) -> outputs, ``ph(name)`` making a fed placeholder."""

    def builder_for(xla):
        def builder(workload, sizes, inputs, device):
            def build(tf):
                phs = {}

                def ph(name):
                    phs[name] = tf.compat.v1.placeholder(tf.float32, inputs[name].shape, name)
                    return phs[name]

                outs = list(make(tf, ph, sizes, inputs))
                return outs, {phs[k]: inputs[k] for k in phs}

            sess, (outs, feed) = _tf_open(build, xla)
            return lambda: sess.run(outs, feed)

        return builder

    return builder_for


class _TrainSteps:
    """A TF1 training step as a peer object: ``run()`` runs the step once per feed dict,
    ``values()`` gives the loss of each and then the values the workload checks."""

    def __init__(self, sess, loss, step, values, feeds):
        self.sess, self.loss, self.step, self.fetch, self.feeds = sess, loss, step, values, feeds
        self.losses: list = []

    def run(self):
        self.losses = [self.sess.run([self.loss, self.step], f)[0] for f in self.feeds]

    def values(self):
        return [*self.losses, *self.sess.run(self.fetch)]


def _tf_train(make):
    """make(tf, sizes, inputs) -> (loss, train op, values, feed dicts): the step built in a
    new graph, the peer a ``_TrainSteps`` over it; returns a builder per ``xla``."""

    def builder_for(xla):
        def builder(workload, sizes, inputs, device):
            sess, built = _tf_open(lambda tf: make(tf, sizes, inputs), xla)
            return _TrainSteps(sess, *built)

        return builder

    return builder_for


class _ColdStep:
    """W12: ``run()`` builds the step (``make``) in a new graph, opens a session, initialises
    and runs the first step (with XLA, auto-clustering compiles its clusters then), reading
    the loss and the parameters after it; then runs a second step. ``compile_s``: the first
    step's wall time, graph building included, less the second's (what a step costs);
    ``compile_cpu_s`` the same in the process's CPU seconds."""

    def __init__(self, make, xla, sizes, inputs):
        _import_tf()  # loading TensorFlow is not the step's compile
        self.make, self.xla, self.sizes, self.inputs = make, xla, sizes, inputs
        self.compile_s = self.compile_cpu_s = None
        self.out = []

    def run(self):
        t0, c0 = time.perf_counter(), time.process_time()
        sess, (loss, step, params, feeds) = _tf_open(
            lambda tf: self.make(tf, self.sizes, self.inputs), self.xla
        )
        first = sess.run([loss, step], feeds[0])[0]
        t1, c1 = time.perf_counter(), time.process_time()
        self.out = [first, *sess.run(params)]
        t2, c2 = time.perf_counter(), time.process_time()
        sess.run([loss, step], feeds[0])
        self.compile_s = (t1 - t0) - (time.perf_counter() - t2)
        self.compile_cpu_s = (c1 - c0) - (time.process_time() - c2)
        sess.close()

    def values(self):
        return self.out


def _tf_chain(tf, ph, s, i):
    x = ph("x")
    a = x * 1.702
    y = x * (1 / (1 + tf.exp(-a)))
    return [tf.tanh(y * 0.5 + 0.1) * y + x]


def _tf_ln(tf, ph, s, i):
    x, g, b, dy = ph("x"), ph("gamma"), ph("beta"), ph("dy")
    mu = tf.reduce_mean(x, axis=-1, keepdims=True)
    xc = x - mu
    var = tf.reduce_mean(xc * xc, axis=-1, keepdims=True)
    y = xc * tf.math.rsqrt(var + LN_EPS) * g + b
    return [y, *tf.compat.v1.gradients(y, [x, g, b], grad_ys=dy)]


def _mean_xent(tf, labels, logits):
    """Mean sparse softmax cross-entropy (the workloads' ``mean_sparse_xent``)."""
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def _lstm_cell(tf, kernel, bias, xt, c, h):
    """One step of TF1's LSTMCell (gates i, j, f, o of one matmul; forget bias 1): (c, h)."""
    z = tf.matmul(tf.concat([xt, h], 1), kernel) + bias
    i, j, f, o = tf.split(z, 4, axis=1)
    c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(j)
    return c, tf.sigmoid(o) * tf.tanh(c)


def _tf_mlp(tf, sizes, inputs):
    """W3, W8: the MLP's SGD step, once per batch size."""
    batches = sizes.get("batches", (sizes.get("batch"),))
    x = tf.compat.v1.placeholder(tf.float32, (None, sizes["inputs"]), "x")
    y = tf.compat.v1.placeholder(tf.int32, (None,), "labels")
    params = [tf.compat.v1.Variable(inputs[n], name=n) for n in MLP_PARAMS]
    w1, b1, w2, b2, w3, b3 = params
    h = tf.nn.relu(tf.matmul(x, w1) + b1)
    h = tf.nn.relu(tf.matmul(h, w2) + b2)
    loss = _mean_xent(tf, y, tf.matmul(h, w3) + b3)
    grads = tf.compat.v1.gradients(loss, params)
    step = tf.group(*[p.assign_sub(LR * g) for p, g in zip(params, grads)])
    feeds = [{x: inputs["x"][:b], y: inputs["labels"][:b].astype(np.int32)} for b in batches]
    return loss, step, params, feeds


def _tf_rnn(tf, sizes, inputs):
    """W11: the same step in TF1 graph mode: tf.compat.v1.nn.dynamic_rnn (a while loop) over
    a minimal LSTM cell with TF1 LSTMCell's math (so no Keras package is needed)."""
    vocab, hidden = sizes["vocab"], sizes["hidden"]
    v1 = tf.compat.v1
    kernel = v1.Variable(inputs["kernel"], name="kernel")
    bias = v1.Variable(inputs["bias"], name="bias")
    wy = v1.Variable(inputs["wy"], name="wy")
    by = v1.Variable(inputs["by"], name="by")

    class Cell:
        state_size = (hidden, hidden)
        output_size = hidden

        def zero_state(self, batch_size, dtype):
            z = tf.zeros(tf.stack([batch_size, hidden]), dtype)
            return (z, z)

        def __call__(self, xt, state, scope=None):
            c, h = _lstm_cell(tf, kernel, bias, xt, *state)
            return h, (c, h)

    ids = v1.placeholder(tf.int32, (None, None), "ids")
    targets = v1.placeholder(tf.int32, (None, None), "targets")
    outputs, _ = v1.nn.dynamic_rnn(Cell(), tf.one_hot(ids, vocab), dtype=tf.float32)
    logits = tf.matmul(tf.reshape(outputs, (-1, hidden)), wy) + by
    loss = _mean_xent(tf, tf.reshape(targets, (-1,)), logits)
    params = [kernel, bias, wy, by]
    step = v1.train.AdamOptimizer(W11.adam_lr).minimize(loss, var_list=params)
    return loss, step, params, [{ids: inputs["ids"], targets: inputs["targets"]}]


def _tf_transformer(tf, sizes, inputs):
    """W9: the encoder layer step in TF1 graph mode: ``tf.matmul`` over the heads,
    ``tf.nn.gelu(approximate=False)``, ``tf.compat.v1.train.AdamOptimizer``."""
    s, d, h = sizes["seq"], sizes["d_model"], sizes["heads"]
    dh = d // h
    v1 = tf.compat.v1
    p = {k: v1.Variable(inputs[k], name=k) for k in W9.params}

    def heads_to(t, to_heads):
        if to_heads:
            return tf.transpose(tf.reshape(t, (-1, s, h, dh)), (0, 2, 1, 3))
        return tf.reshape(tf.transpose(t, (0, 2, 1, 3)), (-1, d))

    def attend(q, k, v):
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / np.sqrt(dh))
        return tf.matmul(tf.nn.softmax(scores, axis=-1), v)

    def layer_norm(t, name):
        mu = tf.reduce_mean(t, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(t - mu), axis=-1, keepdims=True)
        scale = tf.math.rsqrt(var + W9.ln_epsilon) * p[f"{name}_gamma"]
        return (t - mu) * scale + p[f"{name}_beta"]

    x = v1.placeholder(tf.float32, (None, s, d), "x")
    y = v1.placeholder(tf.float32, (None, s, d), "y")
    gelu = lambda a: tf.nn.gelu(a, approximate=False)  # noqa: E731
    out = encoder_forward(p, tf.reshape(x, (-1, d)), tf.matmul, heads_to, attend, layer_norm,
                          gelu)  # fmt: skip
    loss = tf.reduce_mean(tf.square(out - tf.reshape(y, (-1, d))))
    params = [p[k] for k in W9.params]
    step = v1.train.AdamOptimizer(W9.adam_lr).minimize(loss, var_list=params)
    return loss, step, params, [{x: inputs["x"], y: inputs["y"]}]


def _tf_resnet(tf, sizes, inputs):
    """W10: the ResNet step in TF1 graph mode: ``tf.nn.conv2d``, ``fused_batch_norm`` in
    training mode with the moving-average updates as control dependencies of
    ``MomentumOptimizer.minimize`` (what ``tf.compat.v1.layers`` builds, without Keras)."""
    trainable, moving_names = param_names(sizes)
    v1 = tf.compat.v1
    var = {k: v1.Variable(inputs[k], name=k.replace("/", "_")) for k in inputs
           if k in trainable or k in moving_names}  # fmt: skip
    updates = []

    def conv(h, name, stride):
        return tf.nn.conv2d(h, var[name], stride, "SAME")

    def batch_norm(h, bn):
        out, mean, variance = v1.nn.fused_batch_norm(
            h, var[f"{bn}/gamma"], var[f"{bn}/beta"], epsilon=W10.bn_epsilon, is_training=True
        )
        decay = 1.0 - W10.bn_momentum
        for key, value in (("moving_mean", mean), ("moving_variance", variance)):
            moving = var[f"{bn}/{key}"]
            updates.append(v1.assign_sub(moving, (moving - value) * decay))
        return out

    x = v1.placeholder(tf.float32, (None, *inputs["x"].shape[1:]), "x")
    y = v1.placeholder(tf.int32, (None,), "labels")
    pooled = resnet_forward(sizes, conv, batch_norm, tf.nn.relu,
                            lambda h: tf.reduce_mean(h, [1, 2]), x)  # fmt: skip
    loss = _mean_xent(tf, y, tf.matmul(pooled, var["dense/kernel"]) + var["dense/bias"])
    params = [var[k] for k in trainable]
    with tf.control_dependencies(updates):
        step = v1.train.MomentumOptimizer(W10.lr, W10.momentum).minimize(loss, var_list=params)
    values = params + [var[k] for k in moving_names]
    return loss, step, values, [{x: inputs["x"], y: inputs["labels"].astype(np.int32)}]


def _tf_scaling(tf, sizes, inputs):
    """W12: one point's Adam step in TF1 graph mode, built in Python loops as graphc's graph
    (``scaling.py``): the LSTM unrolled by hand (``_lstm_cell``, a cross-entropy per step,
    their mean) or the residual MLP of ``size`` layers."""
    v1, n = tf.compat.v1, sizes["size"]
    names = W12.param_names(sizes["series"], n)
    p = [v1.Variable(inputs[k], name=k) for k in names]
    if sizes["series"] == "lstm":
        w, b, wy, by = p
        ids = v1.placeholder(tf.int32, (None, n), "ids")
        targets = v1.placeholder(tf.int32, (None, n), "targets")
        xs = tf.one_hot(ids, sizes["vocab"])
        c = h = tf.zeros(tf.stack([tf.shape(ids)[0], sizes["hidden"]]))
        total = 0.0
        for t in range(n):
            c, h = _lstm_cell(tf, w, b, xs[:, t], c, h)
            total = total + _mean_xent(tf, targets[:, t], tf.matmul(h, wy) + by)
        loss, fed = total / n, {ids: "ids", targets: "targets"}
    else:
        x = v1.placeholder(tf.float32, (None, sizes["width"]), "x")
        labels = v1.placeholder(tf.int32, (None,), "labels")
        h = x
        for i in range(n):
            h = h + tf.nn.relu(tf.matmul(h, p[2 * i]) + p[2 * i + 1])
        loss, fed = _mean_xent(tf, labels, tf.matmul(h, p[-2]) + p[-1]), {x: "x", labels: "labels"}
    step = v1.train.AdamOptimizer(W12.adam_lr).minimize(loss, var_list=p)
    feeds = {ph: inputs[k].astype(np.int32) if inputs[k].dtype == np.int64 else inputs[k]
             for ph, k in fed.items()}  # fmt: skip
    return loss, step, p, [feeds]


def tf_peer(name: str, xla: bool) -> Peer:
    """The TF1 graph-mode peer, with XLA auto-clustering (global JIT level ON_1) or without."""
    return Peer(
        name,
        "tensorflow",
        {
            "W1": _tf_fn(_tf_chain)(xla),
            "W2": _tf_fn(lambda tf, ph, s, i: [tf.nn.softmax(ph("x"), axis=-1)])(xla),
            "W3": _tf_train(_tf_mlp)(xla),
            "W4": _tf_fn(lambda tf, ph, s, i: [ph("x") * 2 + 1])(xla),
            "W6": _tf_fn(_tf_ln)(xla),
            "W8": _tf_train(_tf_mlp)(xla),
            "W9": _tf_train(_tf_transformer)(xla),
            "W10": _tf_train(_tf_resnet)(xla),
            "W11": _tf_train(_tf_rnn)(xla),
            # W12 (compile scaling): with XLA only, the compiler its JAX column compares with
            **({"W12": lambda w, s, i, d: _ColdStep(_tf_scaling, xla, s, i)} if xla else {}),
        },
    )
