"""The JAX peer: each workload's step written in JAX and run under ``jax.jit`` (W5, W12: traced
and compiled afresh, the compile timed). JAX is imported inside the builders: it is optional."""

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


def _mean_xent(jax, jnp, logits, labels):
    """Mean sparse softmax cross-entropy (the workloads' ``mean_sparse_xent``)."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def _jax_mlp_step(jax, jnp):
    def loss_fn(params, x, y):
        w1, b1, w2, b2, w3, b3 = params
        h = jax.nn.relu(x @ w1 + b1)
        h = jax.nn.relu(h @ w2 + b2)
        return _mean_xent(jax, jnp, h @ w3 + b3, y)

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


class _JaxColdCompile:
    """A step compiled cold by each ``run()``: ``make_step()`` gives a new function object,
    traced, lowered and compiled (no in-process jit cache can answer: what a user waits for
    on the first call, tracing included). ``values()`` runs the last compiled step once on
    ``args``: its loss, then the parameters it returns (``[loss, *params, ...]``)."""

    def __init__(self, jax, make_step, args):
        self.jax, self.make_step, self.args = jax, make_step, args
        self.compiled = None

    def run(self):
        fn = self.jax.jit(self.make_step())
        self.compiled = fn.lower(*self.args).compile()

    def values(self):
        loss, params, *_ = self.compiled(*self.args)
        return [loss, *params]


def _jax_compile(workload, sizes, inputs, device):
    """W5: the MLP's SGD step compiled afresh; values from running it once."""
    import jax
    import jax.numpy as jnp

    params = tuple(jax.device_put(inputs[n]) for n in MLP_PARAMS)
    x = jax.device_put(inputs["x"])
    y = jax.device_put(inputs["labels"].astype(np.int32))
    return _JaxColdCompile(jax, lambda: _jax_mlp_step(jax, jnp), (params, x, y))


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
        return _mean_xent(jax, jnp, h.reshape(h.shape[0], -1) @ wd + bd, y)

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


def _adam_step(jax, jnp, loss_fn, lr):
    """A new (not yet jitted) training step ``step(params, m, v, t, *data) -> (loss, params,
    m, v)``: ``loss_fn(params, *data)``'s gradients applied with TF1's Adam (``_adam_tf1``)."""

    def step(params, m, v, t, *data):
        loss, grads = jax.value_and_grad(loss_fn)(params, *data)
        params, m, v = _adam_tf1(jnp.sqrt, lr, t, params, grads, m, v)
        return loss, params, m, v

    return step


def _adam_steps(jax, jnp, loss_fn, lr, params, data):
    """run() of a training step under jit (``_adam_step``), the optimizer's state (m, v, step
    count) kept here. Each call is one step; it returns the loss and the updated parameters."""
    step = jax.jit(_adam_step(jax, jnp, loss_fn, lr))
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


def _lstm_cell(jax, jnp, kernel, bias, xt, c, h):
    """One step of TF1's LSTMCell (gates i, j, f, o of one matmul; forget bias 1): (c, h)."""
    z = jnp.concatenate([xt, h], axis=1) @ kernel + bias
    i, j, f, o = jnp.split(z, 4, axis=1)
    c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
    return c, jax.nn.sigmoid(o) * jnp.tanh(c)


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
            c, h = _lstm_cell(jax, jnp, kernel, bias, xt, *state)
            return (c, h), h

        _, hs = jax.lax.scan(cell, (zeros, zeros), x)
        logits = hs.transpose(1, 0, 2).reshape(-1, hidden) @ wy + by
        return _mean_xent(jax, jnp, logits, targets.reshape(-1))

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
        loss = _mean_xent(jax, jnp, pooled @ params["dense/kernel"] + params["dense/bias"], y)
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


def _scaling_loss(jax, jnp, sizes):
    """W12: the loss of one point's step (``scaling.py``), in Python loops as graphc's graph
    is built: the LSTM unrolled by hand (``_lstm_cell``, a cross-entropy per step, their mean)
    or the residual MLP of ``size`` layers."""
    n = sizes["size"]
    if sizes["series"] == "lstm":
        vocab, hidden = sizes["vocab"], sizes["hidden"]

        def lstm_loss(params, ids, targets):
            w, b, wy, by = params
            xs = jax.nn.one_hot(ids, vocab, dtype=jnp.float32)
            c = h = jnp.zeros((ids.shape[0], hidden), jnp.float32)
            total = 0.0
            for t in range(n):
                c, h = _lstm_cell(jax, jnp, w, b, xs[:, t], c, h)
                total = total + _mean_xent(jax, jnp, h @ wy + by, targets[:, t])
            return total / n

        return lstm_loss

    def mlp_loss(params, x, labels):
        h = x
        for i in range(n):
            h = h + jax.nn.relu(h @ params[2 * i] + params[2 * i + 1])
        return _mean_xent(jax, jnp, h @ params[-2] + params[-1], labels)

    return mlp_loss


def _jax_scaling(workload, sizes, inputs, device):
    """W12: one point's Adam step compiled cold (``_JaxColdCompile``); its values are those
    of the first step from the initial weights, as graphc's."""
    import jax
    import jax.numpy as jnp

    params = [
        jax.device_put(inputs[k]) for k in workload.param_names(sizes["series"], sizes["size"])
    ]
    keys = ("ids", "targets") if sizes["series"] == "lstm" else ("x", "labels")
    data = [inputs[k].astype(np.int32) if inputs[k].dtype == np.int64 else inputs[k] for k in keys]
    zeros = [jnp.zeros_like(p) for p in params]
    args = (params, zeros, zeros, jnp.float32(1), *map(jax.device_put, data))
    loss_fn = _scaling_loss(jax, jnp, sizes)
    return _JaxColdCompile(jax, lambda: _adam_step(jax, jnp, loss_fn, workload.adam_lr), args)


JAX = Peer(
    "jax jit",
    "jax",
    {
        "W1": _jax_fn(lambda jax, jnp, s, i: (lambda x: _jax_chain(jnp, x), [i["x"]])),
        "W2": _jax_fn(lambda jax, jnp, s, i: (lambda x: jax.nn.softmax(x, axis=-1), [i["x"]])),
        "W3": _jax_mlp,
        "W4": _jax_fn(lambda jax, jnp, s, i: (lambda x: x * 2 + 1, [i["x"]])),
        "W5": _jax_compile,
        "W6": _jax_fn(_jax_ln),
        "W7": _jax_cnn,
        "W8": _jax_mlp,
        "W9": _jax_transformer,
        "W10": _jax_resnet,
        "W11": _jax_rnn,
        "W12": _jax_scaling,
    },
)
