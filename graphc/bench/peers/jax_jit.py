"""The JAX peer: each workload's step written in JAX and run under ``jax.jit`` (W5: traced and
compiled afresh, the compile timed). JAX is imported inside the builders: it is optional."""

from __future__ import annotations

import numpy as np

from ..resnet import ResNetStep, param_names
from ..rnn import RNNStep
from ..transformer import TransformerStep
from ..workloads import CNN_PARAMS, LN_EPS, LR, MLP_PARAMS
from .base import Peer
from .models import encoder_forward, resnet_forward

W9, W10, W11 = TransformerStep, ResNetStep, RNNStep


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


def _adam_steps(jax, jnp, loss_fn, lr, params, data):
    """run() of a training step under jit: ``loss_fn(params, *data)``'s gradients applied
    with TF1's Adam (``_adam_tf1``), the optimizer's state (m, v, step count) kept here. Each
    call is one step; it returns the loss and the updated parameters."""

    @jax.jit
    def step(params, m, v, t, *data):
        loss, grads = jax.value_and_grad(loss_fn)(params, *data)
        params, m, v = _adam_tf1(jnp.sqrt, lr, t, params, grads, m, v)
        return loss, params, m, v

    state = {"params": [jax.device_put(p) for p in params], "t": 0}
    state["m"] = [jnp.zeros_like(p) for p in state["params"]]
    state["v"] = [jnp.zeros_like(p) for p in state["params"]]

    def run():
        state["t"] += 1
        loss, state["params"], state["m"], state["v"] = step(
            state["params"], state["m"], state["v"], jnp.float32(state["t"]), *data
        )
        jax.block_until_ready(state["params"])
        return [loss, *state["params"]]

    return run


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

    data = [jax.device_put(inputs["ids"]), jax.device_put(inputs["targets"])]
    return _adam_steps(jax, jnp, loss_fn, W11.adam_lr, [inputs[k] for k in W11.params], data)


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
        out = encoder_forward(p, x.reshape(-1, d), jnp.matmul, heads_to, attend, layer_norm,
                               gelu)  # fmt: skip
        return jnp.mean((out - y.reshape(-1, d)) ** 2)

    data = [jax.device_put(inputs["x"]), jax.device_put(inputs["y"])]
    return _adam_steps(jax, jnp, loss_fn, W9.adam_lr, [inputs[k] for k in W9.params], data)


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

        pooled = resnet_forward(sizes, conv, batch_norm, jax.nn.relu,
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
