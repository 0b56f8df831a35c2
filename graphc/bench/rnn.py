"""Workload W11 of the benchmark (docs/benchmarks.md): a character LSTM language model train
step built with ``gc.nn.dynamic_rnn``.

One-hot characters [batch, time, vocab] -> ``gc.nn.rnn_cell.LSTMCell`` over the time axis
(one native loop; its gradient a reverse loop) -> a dense layer to the vocabulary ->
sparse softmax cross-entropy averaged over every position -> one Adam step. The kernel
starts from the inputs (``initializer=``), the biases at zero, so every implementation
starts from the same weights. The peers (``peers/``) run the same model: JAX with
``lax.scan`` under ``jit``, TF1 with ``tf.compat.v1.nn.dynamic_rnn``.

The same model unrolled by hand in Python is W12's ``lstm`` series (``scaling.py``).
"""

from __future__ import annotations

import numpy as np

import graphc as gc

from .workloads import Workload, mean_sparse_xent, train_step_case

ADAM_LR = 1e-3
#: the order of the values after the loss (TF1's LSTMCell kernel and bias, the dense layer)
RNN_PARAMS = ("kernel", "bias", "wy", "by")


def rnn_inputs(sizes: dict, rng) -> dict:
    v, h, b, t = sizes["vocab"], sizes["hidden"], sizes["batch"], sizes["steps"]
    s = np.float32(1 / np.sqrt(v + h))
    return {
        "ids": rng.integers(0, v, (b, t)).astype(np.int32),
        "targets": rng.integers(0, v, (b, t)).astype(np.int32),
        "kernel": (rng.standard_normal((v + h, 4 * h)) * s).astype(np.float32),
        "bias": np.zeros(4 * h, np.float32),
        "wy": (rng.standard_normal((h, v)) / np.sqrt(h)).astype(np.float32),
        "by": np.zeros(v, np.float32),
    }


def build_rnn_step(sizes: dict, inputs: dict):
    """(graph, (ids, targets), loss, step, variables, init) of the W11 train step."""
    v, h = sizes["vocab"], sizes["hidden"]
    g = gc.Graph()
    with g.as_default():
        ids = gc.placeholder(gc.int32, (None, None), name="ids")
        targets = gc.placeholder(gc.int32, (None, None), name="targets")
        kernel = inputs["kernel"]
        cell = gc.nn.rnn_cell.LSTMCell(h, initializer=lambda shape, dtype: gc.constant(kernel))
        outputs, _ = gc.nn.dynamic_rnn(cell, gc.one_hot(ids, v), dtype=gc.float32)
        wy = gc.Variable(inputs["wy"], name="wy")
        by = gc.Variable(inputs["by"], name="by")
        logits = gc.matmul(gc.reshape(outputs, (-1, h)), wy) + by
        loss = mean_sparse_xent(gc.reshape(targets, (-1,)), logits)
        step = gc.train.AdamOptimizer(ADAM_LR).minimize(loss)
        init = gc.global_variables_initializer()
    return g, (ids, targets), loss, step, [*cell.variables, wy, by], init


class RNNStep(Workload):
    """W11: the train step above, timed per run (after a first, checked, step)."""

    id = "W11"
    title = "char LSTM step (dynamic_rnn)"
    stresses = "native loops, gradients through a while loop"
    requires = ("nn.dynamic_rnn", "nn.rnn_cell.LSTMCell", "one_hot", "gradients")
    kind = "step"
    in_default_suite = False  # its reference run takes a minute at full size: --suite W11
    adam_lr, params = ADAM_LR, RNN_PARAMS  # what the peers (peers/) need to match
    rtol, atol = 1e-3, 1e-4  # Adam's first step is lr * sign(g) where |g| is tiny

    def sizes(self, quick):
        if quick:
            return {"vocab": 11, "hidden": 16, "batch": 4, "steps": 5}
        return {"vocab": 65, "hidden": 256, "batch": 32, "steps": 64}

    def describe(self, sizes):
        s = sizes
        return (
            f"char LSTM LM: vocab {s['vocab']}, hidden {s['hidden']}, batch {s['batch']}, "
            f"{s['steps']} steps (gc.nn.dynamic_rnn), softmax CE, fwd+bwd+Adam"
        )

    def inputs(self, sizes, rng):
        return rnn_inputs(sizes, rng)

    def build(self, sizes, inputs):
        g, (ids, targets), loss, step, params, init = build_rnn_step(sizes, inputs)
        feeds = [{ids: inputs["ids"], targets: inputs["targets"]}]
        return train_step_case(g, loss, step, params, init, feeds)
