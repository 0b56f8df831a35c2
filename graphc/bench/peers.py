"""The peers graphc is compared with: numpy eager always; JAX jit, TensorFlow 1 graph mode
(with and without XLA), PyTorch eager and torch.compile when they can be imported.

None of them is a dependency of graphc. A peer is a name, the module that must be importable,
and one builder per workload id: ``builder(workload, sizes, inputs, device)`` returns either a
zero-argument function doing one run and returning the workload's values (see workloads.py),
or an object with ``run()`` and ``values()`` (W5, where what is timed is not a run).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

import numpy as np

from .resnet import ResNetStep, param_names, resnet_layers
from .rnn import RNNStep
from .transformer import TransformerStep
from .workloads import CNN_PARAMS, LN_EPS, LR, MLP_PARAMS

RNN_ADAM_LR, RNN_PARAMS = RNNStep.adam_lr, RNNStep.params
W10 = ResNetStep
W9 = TransformerStep


@dataclass
class Peer:
    """One framework configuration the benchmark compares against."""

    name: str
    module: str  # top-level module that must be importable
    builders: dict = field(default_factory=dict)  # workload id -> builder

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str | None:
        if not self.available():
            return None
        try:
            return str(importlib.import_module(self.module).__version__)
        except Exception:  # noqa: BLE001 - a broken install is reported as "not importable"
            return None


# -- numpy ------------------------------------------------------------------------------------


def _numpy(workload, sizes, inputs, device):
    return workload.numpy(sizes, inputs)


# -- JAX --------------------------------------------------------------------------------------


def _jax_chain(jnp, x):
    a = x * 1.702
    s = 1 / (1 + jnp.exp(-a))
    y = x * s
    return jnp.tanh(y * 0.5 + 0.1) * y + x


def _jax_fn(make):
    def builder(workload, sizes, inputs, device):
        import jax
        import jax.numpy as jnp

        fn, args = make(jax, jnp, sizes, inputs)
        fn = jax.jit(fn)
        args = [jax.device_put(a) for a in args]

        def run():
            out = fn(*args)
            out = out if isinstance(out, tuple | list) else (out,)
            jax.block_until_ready(out)
            return list(out)

        return run

    return builder


def _jax_ln(jax, jnp, sizes, inputs):
    def ln(x, g, b):
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        return xc * jax.lax.rsqrt(var + LN_EPS) * g + b

    def fwd_bwd(x, g, b, dy):
        y, vjp = jax.vjp(ln, x, g, b)
        return (y, *vjp(dy))

    return fwd_bwd, [inputs[k] for k in ("x", "gamma", "beta", "dy")]


def _jax_mlp_step(jax, jnp):
    def loss_fn(params, x, y):
        w1, b1, w2, b2, w3, b3 = params
        h = jax.nn.relu(x @ w1 + b1)
        h = jax.nn.relu(h @ w2 + b2)
        logp = jax.nn.log_softmax(h @ w3 + b3)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return loss, tuple(p - LR * g for p, g in zip(params, grads))

    return step


def _jax_mlp(workload, sizes, inputs, device):
    import jax
    import jax.numpy as jnp

    step = jax.jit(_jax_mlp_step(jax, jnp))
    params = [tuple(jax.device_put(inputs[n]) for n in MLP_PARAMS)]
    batches = sizes.get("batches", (sizes.get("batch"),))
    data = [
        (jax.device_put(inputs["x"][:b]), jax.device_put(inputs["labels"][:b].astype(np.int32)))
        for b in batches
    ]

    def run():
        losses = []
        for x, y in data:
            loss, params[0] = step(params[0], x, y)
            losses.append(loss)
        jax.block_until_ready(params[0])
        return [*losses, *params[0]]

    return run


class _JaxCompile:
    """W5 peer: trace and compile the MLP step afresh; values from running it once."""

    def __init__(self, workload, sizes, inputs, device):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.params = tuple(jax.device_put(inputs[n]) for n in MLP_PARAMS)
        self.x = jax.device_put(inputs["x"])
        self.y = jax.device_put(inputs["labels"].astype(np.int32))
        self.compiled = None

    def run(self):
        # A new function object each time, so no in-process jit cache can answer.
        fn = self.jax.jit(_jax_mlp_step(self.jax, self.jnp))
        self.compiled = fn.lower(self.params, self.x, self.y).compile()

    def values(self):
        loss, params = self.compiled(self.params, self.x, self.y)
        return [loss, *params]


def _jax_cnn(workload, sizes, inputs, device):
    import jax
    import jax.numpy as jnp

    def conv(x, k, b):
        dn = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn) + b

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def loss_fn(params, x, y):
        k1, c1, k2, c2, wd, bd = params
        h = pool(jax.nn.relu(conv(x, k1, c1)))
        h = pool(jax.nn.relu(conv(h, k2, c2)))
        logp = jax.nn.log_softmax(h.reshape(h.shape[0], -1) @ wd + bd)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return loss, tuple(p - LR * g for p, g in zip(params, grads))

    params = [tuple(jax.device_put(inputs[k]) for k in CNN_PARAMS)]
    x = jax.device_put(inputs["x"])
    y = jax.device_put(inputs["labels"].astype(np.int32))

    def run():
        loss, params[0] = step(params[0], x, y)
        jax.block_until_ready(params[0])
        return [loss, *params[0]]

    return run


def _adam_tf1(sqrt, lr, t, params, grads, m, v, beta1=0.9, beta2=0.999, eps=1e-8):
    """TF1's Adam step (graphc's AdamOptimizer): bias correction folded into the step size."""
    lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    m = [mi + (g - mi) * (1 - beta1) for mi, g in zip(m, grads)]
    v = [vi + (g * g - vi) * (1 - beta2) for vi, g in zip(v, grads)]
    params = [p - lr_t * mi / (sqrt(vi) + eps) for p, mi, vi in zip(params, m, v)]
    return params, m, v


def _jax_rnn(workload, sizes, inputs, device):
    """W11: the LSTM over time with lax.scan, the whole Adam step under jit."""
    import jax
    import jax.numpy as jnp

    vocab, hidden = sizes["vocab"], sizes["hidden"]

    def loss_fn(params, ids, targets):
        kernel, bias, wy, by = params
        x = jax.nn.one_hot(ids, vocab, dtype=jnp.float32).transpose(1, 0, 2)  # time major
        zeros = jnp.zeros((ids.shape[0], hidden), jnp.float32)

        def cell(state, xt):
            c, h = state
            z = jnp.concatenate([xt, h], axis=1) @ kernel + bias
            i, j, f, o = jnp.split(z, 4, axis=1)
            c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        _, hs = jax.lax.scan(cell, (zeros, zeros), x)
        logits = hs.transpose(1, 0, 2).reshape(-1, hidden) @ wy + by
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, targets.reshape(-1, 1), axis=1))

    @jax.jit
    def step(params, m, v, t):
        loss, grads = jax.value_and_grad(loss_fn)(params, ids, targets)
        params, m, v = _adam_tf1(jnp.sqrt, RNN_ADAM_LR, t, params, grads, m, v)
        return loss, params, m, v

    ids = jax.device_put(inputs["ids"])
    targets = jax.device_put(inputs["targets"])
    state = {"params": [jax.device_put(inputs[k]) for k in RNN_PARAMS], "t": 0}
    state["m"] = [jnp.zeros_like(p) for p in state["params"]]
    state["v"] = [jnp.zeros_like(p) for p in state["params"]]

    def run():
        state["t"] += 1
        loss, state["params"], state["m"], state["v"] = step(
            state["params"], state["m"], state["v"], jnp.float32(state["t"])
        )
        jax.block_until_ready(state["params"])
        return [loss, *state["params"]]

    return run


def _encoder_forward(p, x, mm, heads_to, attend, layer_norm, gelu):
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


def _jax_transformer(workload, sizes, inputs, device):
    """W9: the encoder layer step under jit: exact (erf) GELU, TF1's Adam by hand."""
    import jax
    import jax.numpy as jnp

    s, d, h = sizes["seq"], sizes["d_model"], sizes["heads"]
    dh = d // h

    def heads_to(t, to_heads):
        if to_heads:
            return t.reshape(-1, s, h, dh).transpose(0, 2, 1, 3)
        return t.transpose(0, 2, 1, 3).reshape(-1, d)

    def attend(q, k, v):
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k) * (1.0 / np.sqrt(dh))
        return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(scores, axis=-1), v)

    def loss_fn(params, x, y):
        p = dict(zip(W9.params, params))

        def layer_norm(t, name):
            mu = t.mean(axis=-1, keepdims=True)
            var = ((t - mu) ** 2).mean(axis=-1, keepdims=True)
            scale = jax.lax.rsqrt(var + W9.ln_epsilon) * p[f"{name}_gamma"]
            return (t - mu) * scale + p[f"{name}_beta"]

        gelu = lambda a: jax.nn.gelu(a, approximate=False)  # noqa: E731
        out = _encoder_forward(p, x.reshape(-1, d), jnp.matmul, heads_to, attend, layer_norm,
                               gelu)  # fmt: skip
        return jnp.mean((out - y.reshape(-1, d)) ** 2)

    @jax.jit
    def step(params, m, v, t, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        params, m, v = _adam_tf1(jnp.sqrt, W9.adam_lr, t, params, grads, m, v)
        return loss, params, m, v

    x, y = jax.device_put(inputs["x"]), jax.device_put(inputs["y"])
    state = {"params": [jax.device_put(inputs[k]) for k in W9.params], "t": 0}
    state["m"] = [jnp.zeros_like(p) for p in state["params"]]
    state["v"] = [jnp.zeros_like(p) for p in state["params"]]

    def run():
        state["t"] += 1
        loss, state["params"], state["m"], state["v"] = step(
            state["params"], state["m"], state["v"], jnp.float32(state["t"]), x, y
        )
        jax.block_until_ready(state["params"])
        return [loss, *state["params"]]

    return run


def _resnet_forward(sizes, conv, batch_norm, relu, mean_hw, x):
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


def _jax_resnet(workload, sizes, inputs, device):
    """W10: the ResNet step under jit: batch norm with batch moments (the moving averages with
    the unbiased variance, as TF's fused batch norm), Momentum (TF1's form)."""
    import jax
    import jax.numpy as jnp

    trainable, moving_names = param_names(sizes)

    def loss_fn(params, moving, x, y):
        new_moving = {}

        def conv(h, name, stride):
            dn = ("NHWC", "HWIO", "NHWC")
            return jax.lax.conv_general_dilated(h, params[name], (stride, stride), "SAME",
                                                dimension_numbers=dn)  # fmt: skip

        def batch_norm(h, bn):
            mean, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
            n = h.size // h.shape[-1]
            decay = 1.0 - W10.bn_momentum
            for key, value in (("moving_mean", mean), ("moving_variance", var * n / (n - 1))):
                old = moving[f"{bn}/{key}"]
                new_moving[f"{bn}/{key}"] = old - (old - value) * decay
            out = (h - mean) * jax.lax.rsqrt(var + W10.bn_epsilon)
            return out * params[f"{bn}/gamma"] + params[f"{bn}/beta"]

        pooled = _resnet_forward(sizes, conv, batch_norm, jax.nn.relu,
                                 lambda h: h.mean(axis=(1, 2)), x)  # fmt: skip
        logp = jax.nn.log_softmax(pooled @ params["dense/kernel"] + params["dense/bias"])
        loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return loss, jax.lax.stop_gradient(new_moving)

    @jax.jit
    def step(params, accum, moving, x, y):
        (loss, moving), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, moving, x, y)
        accum = {k: accum[k] * W10.momentum + grads[k] for k in params}
        params = {k: params[k] - W10.lr * accum[k] for k in params}
        return loss, params, accum, moving

    state = {
        "params": {k: jax.device_put(inputs[k]) for k in trainable},
        "moving": {k: jax.device_put(inputs[k]) for k in moving_names},
    }
    state["accum"] = {k: jnp.zeros_like(v) for k, v in state["params"].items()}
    x = jax.device_put(inputs["x"])
    y = jax.device_put(inputs["labels"].astype(np.int32))

    def run():
        loss, state["params"], state["accum"], state["moving"] = step(
            state["params"], state["accum"], state["moving"], x, y
        )
        jax.block_until_ready(state["params"])
        return [
            loss,
            *(state["params"][k] for k in trainable),
            *(state["moving"][k] for k in moving_names),
        ]

    return run


JAX = Peer(
    "jax jit",
    "jax",
    {
        "W1": _jax_fn(lambda jax, jnp, s, i: (lambda x: _jax_chain(jnp, x), [i["x"]])),
        "W2": _jax_fn(lambda jax, jnp, s, i: (lambda x: jax.nn.softmax(x, axis=-1), [i["x"]])),
        "W3": _jax_mlp,
        "W4": _jax_fn(lambda jax, jnp, s, i: (lambda x: x * 2 + 1, [i["x"]])),
        "W5": _JaxCompile,
        "W6": _jax_fn(_jax_ln),
        "W7": _jax_cnn,
        "W8": _jax_mlp,
        "W9": _jax_transformer,
        "W10": _jax_resnet,
        "W11": _jax_rnn,
    },
)


# -- TensorFlow 1 graph mode ------------------------------------------------------------------


def _import_tf():
    # XLA auto-clustering on CPU is off unless this flag is set before TensorFlow loads; it only
    # takes effect in sessions that ask for a global JIT level (the "+ XLA" peer).
    from .. import config

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
    config = tf.compat.v1.ConfigProto()
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
    sess = tf.compat.v1.Session(graph=g, config=config)
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


def _tf_mlp(xla):
    def builder(workload, sizes, inputs, device):
        batches = sizes.get("batches", (sizes.get("batch"),))

        def build(tf):
            x = tf.compat.v1.placeholder(tf.float32, (None, sizes["inputs"]), "x")
            y = tf.compat.v1.placeholder(tf.int32, (None,), "labels")
            params = [tf.compat.v1.Variable(inputs[n], name=n) for n in MLP_PARAMS]
            w1, b1, w2, b2, w3, b3 = params
            h = tf.nn.relu(tf.matmul(x, w1) + b1)
            h = tf.nn.relu(tf.matmul(h, w2) + b2)
            logits = tf.matmul(h, w3) + b3
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            )
            grads = tf.compat.v1.gradients(loss, params)
            step = tf.group(*[p.assign_sub(LR * g) for p, g in zip(params, grads)])
            feeds = [
                {x: inputs["x"][:b], y: inputs["labels"][:b].astype(np.int32)} for b in batches
            ]
            return loss, step, params, feeds

        sess, (loss, step, params, feeds) = _tf_open(build, xla)

        class Stepper:
            losses: list = []

            def run(self):
                self.losses = [sess.run([loss, step], f)[0] for f in feeds]

            def values(self):
                return [*self.losses, *sess.run(params)]

        return Stepper()

    return builder


def _tf_rnn(xla):
    """W11: the same step in TF1 graph mode: tf.compat.v1.nn.dynamic_rnn (a while loop) over
    a minimal LSTM cell with TF1 LSTMCell's math (so no Keras package is needed)."""

    def builder(workload, sizes, inputs, device):
        vocab, hidden = sizes["vocab"], sizes["hidden"]

        def build(tf):
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
                    c, h = state
                    z = tf.matmul(tf.concat([xt, h], 1), kernel) + bias
                    i, j, f, o = tf.split(z, 4, axis=1)
                    c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(j)
                    h = tf.sigmoid(o) * tf.tanh(c)
                    return h, (c, h)

            ids = v1.placeholder(tf.int32, (None, None), "ids")
            targets = v1.placeholder(tf.int32, (None, None), "targets")
            outputs, _ = v1.nn.dynamic_rnn(Cell(), tf.one_hot(ids, vocab), dtype=tf.float32)
            logits = tf.matmul(tf.reshape(outputs, (-1, hidden)), wy) + by
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.reshape(targets, (-1,)), logits=logits
                )
            )
            params = [kernel, bias, wy, by]
            step = v1.train.AdamOptimizer(RNN_ADAM_LR).minimize(loss, var_list=params)
            return loss, step, params, {ids: inputs["ids"], targets: inputs["targets"]}

        sess, (loss, step, params, feed) = _tf_open(build, xla)

        class Stepper:
            last = None

            def run(self):
                self.last = sess.run([loss, step], feed)[0]

            def values(self):
                return [self.last, *sess.run(params)]

        return Stepper()

    return builder


def _tf_transformer(xla):
    """W9: the encoder layer step in TF1 graph mode: ``tf.matmul`` over the heads,
    ``tf.nn.gelu(approximate=False)``, ``tf.compat.v1.train.AdamOptimizer``."""

    def builder(workload, sizes, inputs, device):
        s, d, h = sizes["seq"], sizes["d_model"], sizes["heads"]
        dh = d // h

        def build(tf):
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
            out = _encoder_forward(p, tf.reshape(x, (-1, d)), tf.matmul, heads_to, attend,
                                   layer_norm, gelu)  # fmt: skip
            loss = tf.reduce_mean(tf.square(out - tf.reshape(y, (-1, d))))
            params = [p[k] for k in W9.params]
            step = v1.train.AdamOptimizer(W9.adam_lr).minimize(loss, var_list=params)
            return loss, step, params, {x: inputs["x"], y: inputs["y"]}

        sess, (loss, step, params, feed) = _tf_open(build, xla)

        class Stepper:
            last = None

            def run(self):
                self.last = sess.run([loss, step], feed)[0]

            def values(self):
                return [self.last, *sess.run(params)]

        return Stepper()

    return builder


def _tf_resnet(xla):
    """W10: the ResNet step in TF1 graph mode: ``tf.nn.conv2d``, ``fused_batch_norm`` in
    training mode with the moving-average updates as control dependencies of
    ``MomentumOptimizer.minimize`` (what ``tf.compat.v1.layers`` builds, without Keras)."""

    def builder(workload, sizes, inputs, device):
        trainable, moving_names = param_names(sizes)

        def build(tf):
            v1 = tf.compat.v1
            var = {k: v1.Variable(inputs[k], name=k.replace("/", "_")) for k in inputs
                   if k in trainable or k in moving_names}  # fmt: skip
            updates = []

            def conv(h, name, stride):
                return tf.nn.conv2d(h, var[name], stride, "SAME")

            def batch_norm(h, bn):
                out, mean, variance = v1.nn.fused_batch_norm(
                    h, var[f"{bn}/gamma"], var[f"{bn}/beta"], epsilon=W10.bn_epsilon,
                    is_training=True,
                )  # fmt: skip
                decay = 1.0 - W10.bn_momentum
                for key, value in (("moving_mean", mean), ("moving_variance", variance)):
                    moving = var[f"{bn}/{key}"]
                    updates.append(v1.assign_sub(moving, (moving - value) * decay))
                return out

            x = v1.placeholder(tf.float32, (None, *inputs["x"].shape[1:]), "x")
            y = v1.placeholder(tf.int32, (None,), "labels")
            pooled = _resnet_forward(sizes, conv, batch_norm, tf.nn.relu,
                                     lambda h: tf.reduce_mean(h, [1, 2]), x)  # fmt: skip
            logits = tf.matmul(pooled, var["dense/kernel"]) + var["dense/bias"]
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            )
            params = [var[k] for k in trainable]
            with tf.control_dependencies(updates):
                opt = v1.train.MomentumOptimizer(W10.lr, W10.momentum)
                step = opt.minimize(loss, var_list=params)
            values = params + [var[k] for k in moving_names]
            return loss, step, values, {x: inputs["x"], y: inputs["labels"].astype(np.int32)}

        sess, (loss, step, values, feed) = _tf_open(build, xla)

        class Stepper:
            last = None

            def run(self):
                self.last = sess.run([loss, step], feed)[0]

            def values(self):
                return [self.last, *sess.run(values)]

        return Stepper()

    return builder


def _tf_peer(name, xla):
    return Peer(
        name,
        "tensorflow",
        {
            "W1": _tf_fn(_tf_chain)(xla),
            "W2": _tf_fn(lambda tf, ph, s, i: [tf.nn.softmax(ph("x"), axis=-1)])(xla),
            "W3": _tf_mlp(xla),
            "W4": _tf_fn(lambda tf, ph, s, i: [ph("x") * 2 + 1])(xla),
            "W6": _tf_fn(_tf_ln)(xla),
            "W8": _tf_mlp(xla),
            "W9": _tf_transformer(xla),
            "W10": _tf_resnet(xla),
            "W11": _tf_rnn(xla),
        },
    )


# -- PyTorch ----------------------------------------------------------------------------------


def _torch_sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def _torch_device(device):
    return "cuda" if device == "cuda" else "cpu"


def _torch_fn(make, compiled=False):
    def builder(workload, sizes, inputs, device):
        import torch

        dev = _torch_device(device)
        fn, names = make(torch)
        if compiled:
            fn = torch.compile(fn)
        args = [torch.from_numpy(inputs[n]).to(dev) for n in names]

        def run():
            with torch.no_grad():
                out = fn(*args)
            _torch_sync(torch, dev)
            return list(out) if isinstance(out, tuple | list) else [out]

        return run

    return builder


def _torch_chain(torch):
    def chain(x):
        a = x * 1.702
        y = x * (1 / (1 + torch.exp(-a)))
        return torch.tanh(y * 0.5 + 0.1) * y + x

    return chain, ["x"]


def _torch_ln(workload, sizes, inputs, device):
    import torch

    dev = _torch_device(device)
    x, g, b, dy = (torch.from_numpy(inputs[k]).to(dev) for k in ("x", "gamma", "beta", "dy"))
    x.requires_grad_(True)
    g.requires_grad_(True)
    b.requires_grad_(True)

    def run():
        y = torch.nn.functional.layer_norm(x, (x.shape[-1],), g, b, LN_EPS)
        grads = torch.autograd.grad(y, [x, g, b], dy)
        _torch_sync(torch, dev)
        return [y, *grads]

    return run


def _torch_mlp(workload, sizes, inputs, device):
    import torch

    dev = _torch_device(device)
    params = [torch.tensor(inputs[n], device=dev, requires_grad=True) for n in MLP_PARAMS]
    batches = sizes.get("batches", (sizes.get("batch"),))
    data = [
        (torch.from_numpy(inputs["x"][:b]).to(dev), torch.from_numpy(inputs["labels"][:b]).to(dev))
        for b in batches
    ]

    def run():
        losses = []
        for x, y in data:
            w1, b1, w2, b2, w3, b3 = params
            h = torch.relu(x @ w1 + b1)
            h = torch.relu(h @ w2 + b2)
            loss = torch.nn.functional.cross_entropy(h @ w3 + b3, y)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, gr in zip(params, grads):
                    p.sub_(LR * gr)
            losses.append(loss)
        _torch_sync(torch, dev)
        return [*losses, *params]

    return run


def _torch_cnn(workload, sizes, inputs, device):
    import torch

    dev = _torch_device(device)
    params = [torch.tensor(inputs[k], device=dev, requires_grad=True) for k in CNN_PARAMS]
    x = torch.from_numpy(inputs["x"]).to(dev).permute(0, 3, 1, 2).contiguous()  # NCHW
    y = torch.from_numpy(inputs["labels"]).to(dev)
    F = torch.nn.functional

    def run():
        k1, c1, k2, c2, wd, bd = params
        # graphc's filters are HWIO, torch's OIHW; flatten in NHWC order like graphc.
        h = F.max_pool2d(F.relu(F.conv2d(x, k1.permute(3, 2, 0, 1), c1, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, k2.permute(3, 2, 0, 1), c2, padding=1)), 2)
        logits = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1) @ wd + bd
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, gr in zip(params, grads):
                p.sub_(LR * gr)
        _torch_sync(torch, dev)
        return [loss, *params]

    return run


TORCH = Peer(
    "torch eager",
    "torch",
    {
        "W1": _torch_fn(_torch_chain),
        "W2": _torch_fn(lambda torch: (lambda x: torch.softmax(x, dim=-1), ["x"])),
        "W3": _torch_mlp,
        "W4": _torch_fn(lambda torch: (lambda x: x * 2 + 1, ["x"])),
        "W6": _torch_ln,
        "W7": _torch_cnn,
        "W8": _torch_mlp,
    },
)

TORCH_COMPILE = Peer(
    "torch.compile",
    "torch",
    {
        "W1": _torch_fn(_torch_chain, compiled=True),
        "W2": _torch_fn(lambda torch: (lambda x: torch.softmax(x, dim=-1), ["x"]), compiled=True),
        "W4": _torch_fn(lambda torch: (lambda x: x * 2 + 1, ["x"]), compiled=True),
    },
)

NUMPY = Peer(
    "numpy eager",
    "numpy",
    {w: _numpy for w in ("W1", "W2", "W3", "W4", "W6", "W7", "W8")},
)

PEERS = [
    NUMPY,
    JAX,
    _tf_peer("tf1 session", xla=False),
    _tf_peer("tf1 + xla", xla=True),
    TORCH,
    TORCH_COMPILE,
]


def to_numpy(value) -> np.ndarray:
    """A peer's output as a numpy array (torch tensors, jax arrays, numpy scalars...)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
