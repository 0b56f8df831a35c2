"""Workload W12 of the benchmark (docs/benchmarks.md): compile time as the graph grows.

Two series of training steps (Adam), each built at several sizes through the public API:

- ``lstm``: the W11 character LSTM language model unrolled by hand in Python for T steps
  (one-hot input of the vocabulary, one fused gate matmul per step, a softmax
  cross-entropy per step, mean over steps);
- ``mlp``: an MLP of L layers of width 256, each ``h = h + relu(h @ W + b)`` (a residual
  term per layer), then a dense layer to the classes and sparse softmax cross-entropy.

Each size is compiled once, cold (no disk cache), on the fused cpu path; the runner records
the seconds of each compile stage from ``exe.stats["compile_seconds"]`` and divides the total
by the number of ops of the extracted program. The compiled step is then run once and
compared with the reference, like every other workload. The target is linear compile time:
seconds per op at the largest size at most 1.3x those at the smallest.

The peers that can be imported (``peers/``: JAX) compile the same step at each point, cold
(JAX: a new function traced, lowered and compiled), and their first step is checked too.
"""

from __future__ import annotations

import numpy as np

import graphc as gc

from .rnn import rnn_inputs
from .workloads import Case, Workload, mean_sparse_xent, train_step_case

ADAM_LR = 1e-3
#: the variables of the ``lstm`` series' step, in the order of its checked values
LSTM_PARAMS = ("w", "b", "wy", "by")


def mlp_param_names(layers: int) -> list:
    """The variables of the ``mlp`` series' step, in the order of its checked values."""
    return [f"{k}{i}" for i in range(layers) for k in "wb"] + ["wo", "bo"]


def _adam_step(loss):
    """The Adam training op of ``loss`` and the variables' initializer."""
    step = gc.train.AdamOptimizer(ADAM_LR).minimize(loss)
    return step, gc.global_variables_initializer()


def build_mlp_step(layers: int, width: int, classes: int, inputs: dict):
    """(graph, feeds-of-placeholders, loss, step, variables, init) of the residual MLP."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, width), name="x")
        labels = gc.placeholder(gc.int64, (None,), name="labels")
        h = x
        params = []
        for i in range(layers):
            w = gc.Variable(inputs[f"w{i}"], name=f"w{i}")
            b = gc.Variable(inputs[f"b{i}"], name=f"b{i}")
            params += [w, b]
            h = h + gc.nn.relu(gc.matmul(h, w) + b)
        wo = gc.Variable(inputs["wo"], name="wo")
        bo = gc.Variable(inputs["bo"], name="bo")
        params += [wo, bo]
        logits = gc.matmul(h, wo) + bo
        loss = mean_sparse_xent(labels, logits)
        step, init = _adam_step(loss)
    return g, (x, labels), loss, step, params, init


def mlp_inputs(layers: int, width: int, classes: int, batch: int, rng) -> dict:
    out = {
        "x": rng.standard_normal((batch, width)).astype(np.float32),
        "labels": rng.integers(0, classes, batch).astype(np.int64),
    }
    scale = np.float32(0.5 / np.sqrt(width * max(layers, 1)))
    for i in range(layers):
        out[f"w{i}"] = (rng.standard_normal((width, width)) * scale).astype(np.float32)
        out[f"b{i}"] = (rng.standard_normal(width) * 0.01).astype(np.float32)
    out["wo"] = (rng.standard_normal((width, classes)) / np.sqrt(width)).astype(np.float32)
    out["bo"] = np.zeros(classes, np.float32)
    return out


def build_lstm_step(steps: int, vocab: int, hidden: int, inputs: dict):
    """(graph, feeds-of-placeholders, loss, step, variables, init) of the unrolled LSTM."""
    g = gc.Graph()
    with g.as_default():
        ids = gc.placeholder(gc.int64, (None, steps), name="ids")
        targets = gc.placeholder(gc.int64, (None, steps), name="targets")
        w = gc.Variable(inputs["w"], name="w")  # (vocab + hidden, 4 * hidden)
        b = gc.Variable(inputs["b"], name="b")
        wy = gc.Variable(inputs["wy"], name="wy")
        by = gc.Variable(inputs["by"], name="by")
        xs = gc.unstack(gc.one_hot(ids, vocab, dtype=gc.float32), axis=1)
        ys = gc.unstack(targets, axis=1)
        batch_zeros = gc.zeros_like(xs[0][:, :1]) * gc.zeros((1, hidden))
        h, c = batch_zeros, batch_zeros
        losses = []
        for t in range(steps):
            z = gc.matmul(gc.concat([xs[t], h], axis=1), w) + b
            i, j, f, o = gc.split(z, 4, axis=1)  # TF1 LSTMCell's gate order, as W11
            c = gc.sigmoid(f + 1.0) * c + gc.sigmoid(i) * gc.tanh(j)
            h = gc.sigmoid(o) * gc.tanh(c)
            logits = gc.matmul(h, wy) + by
            losses.append(mean_sparse_xent(ys[t], logits))
        total = losses[0]
        for term in losses[1:]:
            total = total + term
        loss = total / steps
        step, init = _adam_step(loss)
    return g, (ids, targets), loss, step, [w, b, wy, by], init  # LSTM_PARAMS


def lstm_inputs(steps: int, vocab: int, hidden: int, batch: int, rng) -> dict:
    """W11's inputs (``rnn_inputs``: the same draws) for ``steps`` time steps, with int64 ids
    and this series' names for the cell's kernel and bias (``w``, ``b``)."""
    sizes = {"vocab": vocab, "hidden": hidden, "batch": batch, "steps": steps}
    d = rnn_inputs(sizes, rng)
    return {
        "ids": d["ids"].astype(np.int64), "targets": d["targets"].astype(np.int64),
        "w": d["kernel"], "b": d["bias"], "wy": d["wy"], "by": d["by"],
    }  # fmt: skip


class CompileScaling(Workload):
    """W12: each (series, size) point is compiled cold and its step run once and checked."""

    id = "W12"
    title = "compile scaling"
    stresses = "compile cost as the graph grows"
    requires = ("matmul", "nn.relu", "one_hot", "unstack", "split", "gradients")
    kind = "scaling"
    rtol, atol = 1e-3, 1e-4
    adam_lr = ADAM_LR  # what the peers (peers/) need to match

    def sizes(self, quick):
        if quick:
            return {"lstm_steps": (2, 4), "mlp_layers": (2, 4), "hidden": 16, "width": 16,
                    "vocab": 11, "classes": 10, "batch": 4}  # fmt: skip
        return {"lstm_steps": (8, 16, 32, 64), "mlp_layers": (8, 16, 32, 64), "hidden": 256,
                "width": 256, "vocab": 65, "classes": 10, "batch": 32}  # fmt: skip

    def describe(self, sizes):
        s = sizes
        return (
            f"cold compile of Adam train steps: LSTM (vocab {s['vocab']}, hidden {s['hidden']}, "
            f"batch {s['batch']}) unrolled T = {', '.join(map(str, s['lstm_steps']))}; residual "
            f"MLP of width {s['width']} with {', '.join(map(str, s['mlp_layers']))} layers"
        )

    in_default_suite = False  # minutes at full size: run when named (--suite W12)

    def scaled(self, sizes, scale) -> dict:
        """``sizes`` with both series at the sizes ``scale`` (None: unchanged)."""
        if scale is None:
            return sizes
        return {**sizes, "lstm_steps": tuple(scale), "mlp_layers": tuple(scale)}

    def point_name(self, series, n) -> str:
        return f"lstm T={n}" if series == "lstm" else f"mlp L={n}"

    def points(self, sizes) -> list:
        """(series, size) of every point, in the order they are compiled."""
        return [("lstm", t) for t in sizes["lstm_steps"]] + [
            ("mlp", n) for n in sizes["mlp_layers"]
        ]

    def point_sizes(self, sizes, series, n) -> dict:
        """``sizes`` of one point, as a peer's builder gets them: with its ``series`` and
        ``size`` (unrolled steps or layers)."""
        return {**sizes, "series": series, "size": n}

    @staticmethod
    def param_names(series, n) -> list:
        """The point's variables, in the order of the values checked after the loss."""
        return list(LSTM_PARAMS) if series == "lstm" else mlp_param_names(n)

    def point_inputs(self, sizes, series, n, rng) -> dict:
        if series == "lstm":
            return lstm_inputs(n, sizes["vocab"], sizes["hidden"], sizes["batch"], rng)
        return mlp_inputs(n, sizes["width"], sizes["classes"], sizes["batch"], rng)

    def build_point(self, sizes, series, n, inputs) -> Case:
        if series == "lstm":
            g, (a, b), loss, step, params, init = build_lstm_step(
                n, sizes["vocab"], sizes["hidden"], inputs
            )
            feeds = {a: inputs["ids"], b: inputs["targets"]}
        else:
            g, (a, b), loss, step, params, init = build_mlp_step(
                n, sizes["width"], sizes["classes"], inputs
            )
            feeds = {a: inputs["x"], b: inputs["labels"]}
        return train_step_case(g, loss, step, params, init, [feeds])
