"""Generate tests/rnn/golden_tf1.npz: TF1's RNN cells and dynamic_rnn on fixed weights.

Run with a Python that has TensorFlow (tf.compat.v1) and tf-keras installed, never graphc's
own environment:

    TF_USE_LEGACY_KERAS=1 python tests/rnn/make_golden.py

For each case it records the cell spec (JSON), the variable names TF1 created (in order)
with the values given them, the inputs and initial states, and TF1's outputs and states.
tests/rnn/test_cells.py and tests/rnn/test_dynamic_rnn.py rebuild the same cells in graphc,
load the same weights and compare.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()
rnn_cell = tf1.nn.rnn_cell

OUT = Path(__file__).resolve().parent / "golden_tf1.npz"

# name -> (cell spec, input depth, batch); a spec is [class name, kwargs] or
# ["MultiRNNCell", [spec, ...]]
CELL_CASES = {
    "basic_rnn": (["BasicRNNCell", {"num_units": 5}], 3, 2),
    "lstm": (["LSTMCell", {"num_units": 5, "forget_bias": 0.7}], 3, 2),
    "lstm_flat": (["LSTMCell", {"num_units": 4, "state_is_tuple": False}], 3, 2),
    "basic_lstm": (["BasicLSTMCell", {"num_units": 4}], 2, 3),
    "gru": (["GRUCell", {"num_units": 5}], 3, 2),
    "multi": (
        ["MultiRNNCell", [["LSTMCell", {"num_units": 4}], ["GRUCell", {"num_units": 3}]]],
        3,
        2,
    ),
}

# name -> (cell spec, batch, time, depth, sequence_length or None, time_major, random initial
# state or zero state). (No case with zero time steps: TF's own dynamic_rnn fails to stack
# an empty output list; the graphc tests check that case by itself.)
DYNAMIC_CASES = {
    "dyn_lstm": (["LSTMCell", {"num_units": 4}], 3, 5, 3, [5, 2, 0], False, False),
    "dyn_gru_time_major": (["GRUCell", {"num_units": 4}], 2, 4, 3, None, True, True),
    "dyn_multi": (
        ["MultiRNNCell", [["LSTMCell", {"num_units": 3}], ["BasicRNNCell", {"num_units": 2}]]],
        3,
        4,
        2,
        [1, 4, 3],
        False,
        True,
    ),
}


def make_cell(spec):
    name, args = spec
    if name == "MultiRNNCell":
        return rnn_cell.MultiRNNCell([make_cell(s) for s in args])
    return getattr(rnn_cell, name)(**args)


def state_leaves(cell):
    return tf.nest.flatten(cell.state_size)


def random_state(rng, cell, batch):
    return [rng.normal(0, 0.5, (batch, n)).astype(np.float32) for n in state_leaves(cell)]


def set_weights(sess, rng, out, prefix):
    names = []
    for v in tf1.global_variables():
        value = rng.normal(0, 0.5, v.shape.as_list()).astype(np.float32)
        v.load(value, sess)
        out[f"{prefix}/var/{v.op.name}"] = value
        names.append(v.op.name)
    out[f"{prefix}/var_names"] = np.array(names)


def cell_case(name, spec, depth, batch, out):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    g = tf1.Graph()
    with g.as_default():
        cell = make_cell(spec)
        x1 = tf1.placeholder(tf.float32, (None, depth))
        x2 = tf1.placeholder(tf.float32, (None, depth))
        leaves = [tf1.placeholder(tf.float32, (None, n)) for n in state_leaves(cell)]
        state = tf.nest.pack_sequence_as(cell.state_size, leaves)
        o1, s1 = cell(x1, state)
        o2, s2 = cell(x2, s1)
        with tf1.Session(graph=g) as sess:
            set_weights(sess, rng, out, name)
            feed = {
                x1: rng.normal(0, 1, (batch, depth)).astype(np.float32),
                x2: rng.normal(0, 1, (batch, depth)).astype(np.float32),
            }
            feed.update(zip(leaves, random_state(rng, cell, batch)))
            got = sess.run([o1, o2, tf.nest.flatten(s2)], feed)
    out[f"{name}/spec"] = np.array(json.dumps(spec))
    out[f"{name}/x1"], out[f"{name}/x2"] = feed[x1], feed[x2]
    for i, leaf in enumerate(leaves):
        out[f"{name}/state0_{i}"] = feed[leaf]
    out[f"{name}/o1"], out[f"{name}/o2"] = got[0], got[1]
    for i, s in enumerate(got[2]):
        out[f"{name}/state2_{i}"] = s


def dynamic_case(name, spec, batch, time, depth, seq_len, time_major, init, out):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    g = tf1.Graph()
    with g.as_default():
        cell = make_cell(spec)
        shape = (None, None, depth)
        x = tf1.placeholder(tf.float32, shape)
        kwargs = {"time_major": time_major, "dtype": tf.float32}
        if seq_len is not None:
            kwargs["sequence_length"] = tf1.placeholder(tf.int32, (None,))
        leaves = []
        if init:
            leaves = [tf1.placeholder(tf.float32, (None, n)) for n in state_leaves(cell)]
            kwargs["initial_state"] = tf.nest.pack_sequence_as(cell.state_size, leaves)
        outputs, final = tf1.nn.dynamic_rnn(cell, x, **kwargs)
        with tf1.Session(graph=g) as sess:
            set_weights(sess, rng, out, name)
            xs = rng.normal(0, 1, (batch, time, depth)).astype(np.float32)
            if time_major:
                xs = xs.transpose(1, 0, 2).copy()
            feed = {x: xs}
            if seq_len is not None:
                feed[kwargs["sequence_length"]] = np.array(seq_len, np.int32)
            feed.update(zip(leaves, random_state(rng, cell, batch)))
            got = sess.run([outputs, tf.nest.flatten(final)], feed)
    meta = {"time_major": time_major, "sequence_length": seq_len, "initial_state": init}
    out[f"{name}/spec"] = np.array(json.dumps(spec))
    out[f"{name}/meta"] = np.array(json.dumps(meta))
    out[f"{name}/inputs"] = xs
    if seq_len is not None:
        out[f"{name}/sequence_length"] = np.array(seq_len, np.int32)
    for i, leaf in enumerate(leaves):
        out[f"{name}/state0_{i}"] = feed[leaf]
    out[f"{name}/outputs"] = got[0]
    for i, s in enumerate(got[1]):
        out[f"{name}/final_{i}"] = s


def main():
    out = {}
    for name, (spec, depth, batch) in CELL_CASES.items():
        cell_case(name, spec, depth, batch, out)
    for name, args in DYNAMIC_CASES.items():
        dynamic_case(name, *args, out)
    out["cell_cases"] = np.array(list(CELL_CASES))
    out["dynamic_cases"] = np.array(list(DYNAMIC_CASES))
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(out)} arrays)")


if __name__ == "__main__":
    main()
