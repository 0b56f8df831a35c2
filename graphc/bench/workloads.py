"""The workloads W1..W8 (W11 in ``rnn.py``, W12 in ``scaling.py``) of the benchmark
(docs/benchmarks.md): each builds a graphc graph through the public API and says what numpy
(eager, op by op) computes for the same inputs.

A workload's *values* are what the runner compares against the reference before timing:
for a function, its outputs; for a training step, the loss of one step followed by every
parameter after that step; for W8, the loss of each batch size in turn, then the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import graphc as gc

LR = 0.01  # SGD learning rate of the training-step workloads
LN_EPS = 1e-5


@dataclass
class Case:
    """One built instance of a workload: its graph and how to run and check it."""

    graph: object
    run_fetches: list  # what one timed sess.run fetches (tensors and ops)
    feeds: list  # list of feed dicts (placeholder -> array), used in turn by one "step"
    loss: object = None  # fetched with the step and checked (training steps)
    variables: list = field(default_factory=list)
    init: object = None  # initializer op (run once per session, before the check)


def train_step_case(graph, loss, step, variables, init, feeds: list) -> Case:
    """The Case of a training step: a timed run fetches the loss and runs ``step``; the loss
    and then ``variables`` (after the step) are checked."""
    return Case(graph, [loss, step], feeds, loss=loss, variables=variables, init=init)


def mean_sparse_xent(labels, logits):
    """The classification loss of the training workloads: mean sparse softmax cross-entropy."""
    xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return gc.reduce_mean(xent)


def sgd_step(loss, params):
    """One plain SGD step (learning rate ``LR``) on ``params``, as one grouped op."""
    grads = gc.gradients(loss, params)
    return gc.group(*[gc.assign_sub(p, LR * gr) for p, gr in zip(params, grads)])


def numpy_train_steps(numpy_step, inputs: dict, names, batches=(None,)):
    """The numpy peer of an SGD training step: each call runs ``numpy_step(params, x,
    labels) -> (loss, params)`` once per batch size (the first ``b`` rows; None: all), from
    the parameters the previous call left; returns the losses, then the parameters."""
    state = [inputs[n].copy() for n in names]

    def step():
        losses = []
        for b in batches:
            loss, state[:] = numpy_step(state, inputs["x"][:b], inputs["labels"][:b])
            losses.append(loss)
        return [*losses, *state]

    return step


class Workload:
    """Base class: id, title, the public names it needs, sizes, inputs, graph, numpy peer."""

    id = ""
    title = ""
    stresses = ""
    requires: tuple = ()  # public names ("nn.relu", "matmul") the graph is built from
    kind = "fn"  # fn | step | compile | scaling
    in_default_suite = True  # run by ``graphc bench`` without --suite
    unit = "ms"  # how the table shows a time ("us" for the dispatch-overhead workload)
    rtol, atol = 2e-4, 2e-5  # result check: |got - ref| <= atol * max(1, |ref|max) + rtol*|ref|

    def sizes(self, quick: bool) -> dict:
        raise NotImplementedError

    def inner_calls(self, sizes: dict) -> int:
        """Runs per timed sample (W4 averages many tiny runs); times are per run."""
        return 1

    def describe(self, sizes: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in sizes.items())

    def inputs(self, sizes: dict, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def build(self, sizes: dict, inputs: dict) -> Case:
        raise NotImplementedError

    def numpy(self, sizes: dict, inputs: dict):
        """A zero-argument function doing one run in numpy and returning the values."""
        raise NotImplementedError

    #: the name of a row timing what bounds the workload on this machine (W3: its GEMMs
    #: through numpy's BLAS), timed in turns with the others so that "within 1.1x of the
    #: limit" compares one machine state; None: no such row
    limit_name: str | None = None

    def limit(self, sizes: dict, inputs: dict):
        """A zero-argument function doing the bounding work of one run (see limit_name)."""
        raise NotImplementedError

    def missing(self) -> str | None:
        """The first required public name graphc does not have yet, or None."""
        for name in self.requires:
            obj = gc
            for part in name.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    return f"gc.{name} is not implemented yet"
        return None


# -- W1 ---------------------------------------------------------------------------------------


def w1_numpy(x):
    a = x * np.float32(1.702)
    s = np.float32(1) / (np.float32(1) + np.exp(-a))
    y = x * s
    return np.tanh(y * np.float32(0.5) + np.float32(0.1)) * y + x


class ElementwiseChain(Workload):
    id = "W1"
    title = "elementwise chain"
    stresses = "loop fusion, vector transcendental math, memory bandwidth"

    def sizes(self, quick):
        return {"n": 2**12 if quick else 2**24}

    def describe(self, sizes):
        return f"x*sigmoid(1.702x) -> tanh chain on {sizes['n']} float32"

    def inputs(self, sizes, rng):
        return {"x": (rng.standard_normal(sizes["n"]) * 2).astype(np.float32)}

    def build(self, sizes, inputs):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (None,), name="x")
            a = x * 1.702
            s = 1 / (1 + gc.exp(-a))
            y = x * s
            z = gc.tanh(y * 0.5 + 0.1) * y + x
        return Case(g, [z], [{x: inputs["x"]}])

    def numpy(self, sizes, inputs):
        x = inputs["x"]
        return lambda: [w1_numpy(x)]


# -- W2 ---------------------------------------------------------------------------------------


def softmax_numpy(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class RowSoftmax(Workload):
    id = "W2"
    title = "row softmax"
    stresses = "reduction input fusion"
    requires = ("nn.softmax",)

    def sizes(self, quick):
        return {"rows": 64, "cols": 128} if quick else {"rows": 4096, "cols": 1024}

    def describe(self, sizes):
        return f"softmax over rows of float32[{sizes['rows']}x{sizes['cols']}]"

    def inputs(self, sizes, rng):
        x = rng.standard_normal((sizes["rows"], sizes["cols"])) * 3
        return {"x": x.astype(np.float32)}

    def build(self, sizes, inputs):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (None, sizes["cols"]), name="x")
            y = gc.nn.softmax(x, axis=-1)
        return Case(g, [y], [{x: inputs["x"]}])

    def numpy(self, sizes, inputs):
        x = inputs["x"]
        return lambda: [softmax_numpy(x)]


# -- W3, W5, W8: the MLP training step --------------------------------------------------------

MLP_PARAMS = ("w1", "b1", "w2", "b2", "w3", "b3")


def mlp_inputs(sizes: dict, rng, batch: int) -> dict:
    d, h, c = sizes["inputs"], sizes["hidden"], sizes["classes"]
    out = {
        "x": rng.random((batch, d), dtype=np.float32),
        "labels": rng.integers(0, c, batch).astype(np.int64),
    }
    for i, (fan_in, fan_out) in enumerate([(d, h), (h, h), (h, c)], start=1):
        out[f"w{i}"] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(
            np.float32
        )
        out[f"b{i}"] = (rng.standard_normal(fan_out) * 0.1).astype(np.float32)
    return out


def mlp_loss(sizes: dict, inputs: dict):
    """The MLP and its loss in the default graph: (x, labels, loss, params). W3's step and
    W14's data-parallel step (``dist_worker.py``) put their optimizers on it."""
    x = gc.placeholder(gc.float32, (None, sizes["inputs"]), name="x")
    labels = gc.placeholder(gc.int64, (None,), name="labels")
    params = [gc.Variable(inputs[n], name=n) for n in MLP_PARAMS]
    w1, b1, w2, b2, w3, b3 = params
    h = gc.nn.relu(gc.matmul(x, w1) + b1)
    h = gc.nn.relu(gc.matmul(h, w2) + b2)
    logits = gc.matmul(h, w3) + b3
    return x, labels, mean_sparse_xent(labels, logits), params


def build_mlp_step(sizes: dict, inputs: dict):
    """graph, x, labels, loss, step op, params, init: MLP + sparse CE + one SGD step."""
    g = gc.Graph()
    with g.as_default():
        x, labels, loss, params = mlp_loss(sizes, inputs)
        step = sgd_step(loss, params)
        init = gc.global_variables_initializer()
    return g, x, labels, loss, step, params, init


def mlp_numpy_step(params: list, x, labels):
    """One SGD step in numpy, eager; returns (loss, new params)."""
    w1, b1, w2, b2, w3, b3 = params
    h1 = x @ w1 + b1
    a1 = np.maximum(h1, 0)
    h2 = a1 @ w2 + b2
    a2 = np.maximum(h2, 0)
    logits = a2 @ w3 + b3
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    ssum = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = np.mean(np.log(ssum[:, 0]) + m[:, 0] - logits[rows, labels])
    d = e / ssum
    d[rows, labels] -= 1
    d /= np.float32(len(labels))
    dw3, db3 = a2.T @ d, d.sum(0)
    d = (d @ w3.T) * (h2 > 0)
    dw2, db2 = a1.T @ d, d.sum(0)
    d = (d @ w2.T) * (h1 > 0)
    dw1, db1 = x.T @ d, d.sum(0)
    lr = np.float32(LR)
    grads = (dw1, db1, dw2, db2, dw3, db3)
    return np.float32(loss), [p - lr * gr for p, gr in zip(params, grads)]


class MLPStep(Workload):
    id = "W3"
    title = "MLP train step"
    stresses = "GEMM through BLAS, epilogue fusion, whole-step compile"
    requires = ("matmul", "nn.relu", "nn.sparse_softmax_cross_entropy_with_logits", "gradients")
    kind = "step"

    def sizes(self, quick):
        if quick:
            return {"inputs": 784, "hidden": 32, "classes": 10, "batch": 16}
        return {"inputs": 784, "hidden": 512, "classes": 10, "batch": 256}

    def describe(self, sizes):
        s = sizes
        return (
            f"MLP {s['inputs']}-{s['hidden']}-{s['hidden']}-{s['classes']}, batch "
            f"{s.get('batch', s.get('batches'))}, relu, sparse softmax CE, fwd+bwd+SGD"
        )

    def inputs(self, sizes, rng):
        return mlp_inputs(sizes, rng, sizes["batch"])

    def build(self, sizes, inputs):
        g, x, labels, loss, step, params, init = build_mlp_step(sizes, inputs)
        feeds = [{x: inputs["x"], labels: inputs["labels"]}]
        return train_step_case(g, loss, step, params, init, feeds)

    def numpy(self, sizes, inputs):
        return numpy_train_steps(mlp_numpy_step, inputs, MLP_PARAMS)

    limit_name = "gemm limit"

    def limit(self, sizes, inputs):
        """The step's eight matrix products (three forward, then each weight's gradient and
        the two hidden layers' input gradients) through numpy's BLAS into arrays made once:
        the GEMM work no implementation of the step avoids, at this moment's speed of the
        machine's SGEMM."""
        b, h, c = sizes["batch"], sizes["hidden"], sizes["classes"]
        x, w1, w2, w3 = inputs["x"], inputs["w1"], inputs["w2"], inputs["w3"]
        f32 = np.float32
        h1, h2, dh1, dh2 = (np.empty((b, h), f32) for _ in range(4))
        lg = np.empty((b, c), f32)  # the logits, standing in for their gradient too
        dw1, dw2, dw3 = np.empty_like(w1), np.empty_like(w2), np.empty_like(w3)

        def run():
            np.matmul(x, w1, out=h1)
            np.matmul(h1, w2, out=h2)
            np.matmul(h2, w3, out=lg)
            np.matmul(h2.T, lg, out=dw3)
            np.matmul(lg, w3.T, out=dh2)
            np.matmul(h1.T, dh2, out=dw2)
            np.matmul(dh2, w2.T, out=dh1)
            np.matmul(x.T, dh1, out=dw1)

        return run


class MLPCompile(MLPStep):
    id = "W5"
    title = "MLP step compile"
    stresses = "compile speed, on-disk cache"
    kind = "compile"
    limit_name = None


class MLPBatches(MLPStep):
    id = "W8"
    title = "MLP step, 4 batch sizes"
    limit_name = None
    stresses = "no recompilation on a new None dim size"

    def sizes(self, quick):
        s = super().sizes(quick)
        del s["batch"]
        s["batches"] = (2, 3, 5, 8) if quick else (32, 64, 128, 256)
        return s

    def inputs(self, sizes, rng):
        return mlp_inputs(sizes, rng, max(sizes["batches"]))

    def build(self, sizes, inputs):
        g, x, labels, loss, step, params, init = build_mlp_step(sizes, inputs)
        feeds = [{x: inputs["x"][:b], labels: inputs["labels"][:b]} for b in sizes["batches"]]
        return train_step_case(g, loss, step, params, init, feeds)

    def numpy(self, sizes, inputs):
        return numpy_train_steps(mlp_numpy_step, inputs, MLP_PARAMS, sizes["batches"])


# -- W4 ---------------------------------------------------------------------------------------


class TinyRun(Workload):
    id = "W4"
    title = "tiny run (dispatch)"
    stresses = "per-run dispatch overhead"
    unit = "us"

    def sizes(self, quick):
        return {"n": 4, "calls": 200 if quick else 2000}

    def inner_calls(self, sizes):
        return sizes["calls"]

    def describe(self, sizes):
        return f"y = x*2+1 on {sizes['n']} floats, time per sess.run ({sizes['calls']} a sample)"

    def inputs(self, sizes, rng):
        return {"x": rng.standard_normal(sizes["n"]).astype(np.float32)}

    def build(self, sizes, inputs):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (sizes["n"],), name="x")
            y = x * 2 + 1
        return Case(g, [y], [{x: inputs["x"]}])

    def numpy(self, sizes, inputs):
        x = inputs["x"]
        return lambda: [x * np.float32(2) + np.float32(1)]


# -- W6 ---------------------------------------------------------------------------------------


def layer_norm_numpy(x, gamma, beta, dy):
    """Forward and backward of layer norm over the last axis: [y, dx, dgamma, dbeta]."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = np.float32(1) / np.sqrt(var + np.float32(LN_EPS))
    xhat = xc * rstd
    y = xhat * gamma + beta
    dxhat = dy * gamma
    dx = rstd * (
        dxhat
        - dxhat.mean(axis=-1, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
    )
    return [y, dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)]


class LayerNorm(Workload):
    id = "W6"
    title = "layer norm fwd+bwd"
    stresses = "multi-output / reduction fusion"
    requires = ("nn.layer_norm", "gradients")
    atol = 1e-4

    def sizes(self, quick):
        return {"rows": 64, "cols": 128} if quick else {"rows": 8192, "cols": 1024}

    def describe(self, sizes):
        return f"layer norm over rows of float32[{sizes['rows']}x{sizes['cols']}], y and grads"

    def inputs(self, sizes, rng):
        r, c = sizes["rows"], sizes["cols"]
        return {
            "x": (rng.standard_normal((r, c)) * 2 + 0.5).astype(np.float32),
            "gamma": (1 + 0.1 * rng.standard_normal(c)).astype(np.float32),
            "beta": (0.1 * rng.standard_normal(c)).astype(np.float32),
            "dy": rng.standard_normal((r, c)).astype(np.float32),
        }

    def build(self, sizes, inputs):
        c = sizes["cols"]
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (None, c), name="x")
            gamma = gc.placeholder(gc.float32, (c,), name="gamma")
            beta = gc.placeholder(gc.float32, (c,), name="beta")
            dy = gc.placeholder(gc.float32, (None, c), name="dy")
            y = gc.nn.layer_norm(x, gamma, beta, axis=-1, epsilon=LN_EPS)
            dx, dgamma, dbeta = gc.gradients(y, [x, gamma, beta], grad_ys=dy)
        feeds = {x: inputs["x"], gamma: inputs["gamma"], beta: inputs["beta"], dy: inputs["dy"]}
        return Case(g, [y, dx, dgamma, dbeta], [feeds])

    def numpy(self, sizes, inputs):
        args = [inputs[k] for k in ("x", "gamma", "beta", "dy")]
        return lambda: layer_norm_numpy(*args)


# -- W7 ---------------------------------------------------------------------------------------

CNN_PARAMS = ("k1", "c1", "k2", "c2", "wd", "bd")


def _im2col3(xp, h, w):
    """(B, h+2, w+2, C) padded input -> (B*h*w, 9*C) patches ordered (kh, kw, c) like HWIO."""
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # B,h,w,C,3,3
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 9 * xp.shape[3])


def _conv3_same(x, k, b):
    bsz, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = _im2col3(xp, h, w)
    out = cols @ k.reshape(9 * c, -1) + b
    return out.reshape(bsz, h, w, -1), cols


def _conv3_same_grad(dout, cols, k, x_shape, need_dx):
    bsz, h, w, c = x_shape
    d2 = dout.reshape(-1, dout.shape[-1])
    dk = (cols.T @ d2).reshape(k.shape)
    db = d2.sum(0)
    if not need_dx:
        return None, dk, db
    dcols = (d2 @ k.reshape(9 * c, -1).T).reshape(bsz, h, w, 3, 3, c)
    dxp = np.zeros((bsz, h + 2, w + 2, c), np.float32)
    for i in range(3):
        for j in range(3):
            dxp[:, i : i + h, j : j + w, :] += dcols[:, :, :, i, j, :]
    return dxp[:, 1:-1, 1:-1, :], dk, db


def _pool2(x):
    bsz, h, w, c = x.shape
    r = x.reshape(bsz, h // 2, 2, w // 2, 2, c)
    return r.max(axis=(2, 4)), r


def _pool2_grad(dp, r, p):
    # Ties only occur among relu zeros, whose gradient the relu mask removes anyway.
    mask = r == p[:, :, None, :, None, :]
    return (mask * dp[:, :, None, :, None, :]).reshape(
        r.shape[0], r.shape[1] * 2, r.shape[3] * 2, r.shape[5]
    )


def cnn_numpy_step(params, x, labels):
    k1, c1, k2, c2, wd, bd = params
    z1, cols1 = _conv3_same(x, k1, c1)
    a1 = np.maximum(z1, 0)
    p1, r1 = _pool2(a1)
    z2, cols2 = _conv3_same(p1, k2, c2)
    a2 = np.maximum(z2, 0)
    p2, r2 = _pool2(a2)
    flat = p2.reshape(len(x), -1)
    logits = flat @ wd + bd
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    ssum = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = np.mean(np.log(ssum[:, 0]) + m[:, 0] - logits[rows, labels])
    d = e / ssum
    d[rows, labels] -= 1
    d /= np.float32(len(labels))
    dwd, dbd = flat.T @ d, d.sum(0)
    d = (d @ wd.T).reshape(p2.shape)
    d = _pool2_grad(d, r2, p2) * (z2 > 0)
    d, dk2, dc2 = _conv3_same_grad(d, cols2, k2, p1.shape, True)
    d = _pool2_grad(d, r1, p1) * (z1 > 0)
    _, dk1, dc1 = _conv3_same_grad(d, cols1, k1, x.shape, False)
    lr = np.float32(LR)
    grads = (dk1, dc1, dk2, dc2, dwd, dbd)
    return np.float32(loss), [p - lr * g for p, g in zip(params, grads)]


class CNNStep(Workload):
    id = "W7"
    title = "CNN train step"
    stresses = "conv via im2col+GEMM, pooling"
    requires = (
        "nn.conv2d", "nn.max_pool2d", "nn.relu", "matmul", "reshape",
        "nn.sparse_softmax_cross_entropy_with_logits", "gradients",
    )  # fmt: skip
    kind = "step"

    def sizes(self, quick):
        if quick:
            return {"image": 8, "batch": 4, "c1": 4, "c2": 8, "classes": 10}
        return {"image": 28, "batch": 64, "c1": 32, "c2": 64, "classes": 10}

    def describe(self, sizes):
        s = sizes
        return (
            f"CNN on {s['image']}x{s['image']}x1 batch {s['batch']}: conv3x3x{s['c1']}, relu, "
            f"maxpool, conv3x3x{s['c2']}, relu, maxpool, dense {s['classes']}; SGD step"
        )

    def _shapes(self, s):
        flat = (s["image"] // 4) ** 2 * s["c2"]
        return {
            "k1": (3, 3, 1, s["c1"]), "c1": (s["c1"],), "k2": (3, 3, s["c1"], s["c2"]),
            "c2": (s["c2"],), "wd": (flat, s["classes"]), "bd": (s["classes"],),
        }  # fmt: skip

    def inputs(self, sizes, rng):
        n, b = sizes["image"], sizes["batch"]
        out = {
            "x": rng.random((b, n, n, 1), dtype=np.float32),
            "labels": rng.integers(0, sizes["classes"], b).astype(np.int64),
        }
        for name, shape in self._shapes(sizes).items():
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
            scale = np.sqrt(2 / fan_in) if len(shape) > 1 else 0.1
            out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
        return out

    def build(self, sizes, inputs):
        n = sizes["image"]
        shapes = self._shapes(sizes)
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (None, n, n, 1), name="x")
            labels = gc.placeholder(gc.int64, (None,), name="labels")
            params = [gc.Variable(inputs[k], name=k) for k in CNN_PARAMS]
            k1, c1, k2, c2, wd, bd = params
            h = gc.nn.relu(gc.nn.conv2d(x, k1, strides=1, padding="SAME") + c1)
            h = gc.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
            h = gc.nn.relu(gc.nn.conv2d(h, k2, strides=1, padding="SAME") + c2)
            h = gc.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
            logits = gc.matmul(gc.reshape(h, (-1, shapes["wd"][0])), wd) + bd
            loss = mean_sparse_xent(labels, logits)
            step = sgd_step(loss, params)
            init = gc.global_variables_initializer()
        feeds = [{x: inputs["x"], labels: inputs["labels"]}]
        return train_step_case(g, loss, step, params, init, feeds)

    def numpy(self, sizes, inputs):
        return numpy_train_steps(cnn_numpy_step, inputs, CNN_PARAMS)
