"""Writes golden_tf1.npz: TF1's control flow (tf.compat.v1 graph mode, float64) on fixed
inputs: while_loop with maximum_iterations and nested loop variables, case (first true,
default, the last pair as default), scan with and without an initializer in both
directions, map_fn with a tuple result, foldl, and gradients through them. tests/control_flow
/test_tf1_golden.py builds the same graphs in graphc and compares.

Run with a Python that has TensorFlow installed (never graphc's own environment):
    python tests/control_flow/make_golden_tf1.py
"""

import collections
from pathlib import Path

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()

rng = np.random.default_rng(2026)
X = rng.uniform(-1, 1, (4, 3))
W = rng.uniform(0.5, 1.5, (3,))
out = {"x": X, "w": W}
Pair = collections.namedtuple("Pair", ["a", "b"])

g = tf1.Graph()
with g.as_default():
    x = tf1.placeholder(tf.float64, (None, 3))
    w = tf1.placeholder(tf.float64, (3,))
    n = tf1.placeholder(tf.int32, ())
    limit = tf1.placeholder(tf.int32, ())

    # while_loop over (counter, Pair(a, b)) with maximum_iterations
    def body(i, p):
        return i + 1, Pair(tf.sin(p.a * w) + p.b, p.b * 0.9 + tf.reduce_sum(p.a))

    i_end, p_end = tf1.while_loop(lambda i, p: i < n, body, (tf.constant(0), Pair(x, x[0])),
                                  maximum_iterations=limit)  # fmt: skip
    loss_w = tf.reduce_sum(p_end.a**2) + tf.reduce_sum(p_end.b)
    gw_x, gw_w = tf1.gradients(loss_w, [x, w])

    # case
    s = tf.reduce_sum(x)
    case_first = tf1.case([(s < -100.0, lambda: x * 2.0), (s > -100.0, lambda: x * 3.0)],
                          default=lambda: x)  # fmt: skip
    case_last = tf1.case([(s > 100.0, lambda: x * 2.0), (s > -100.0, lambda: x * 5.0)])
    (g_case,) = tf1.gradients(tf.reduce_sum(case_first * w), [x])

    # scan / map_fn / foldl
    scan_init = tf1.scan(lambda a, e: tf.tanh(a * w + e), x, initializer=tf.zeros_like(w))
    scan_none_rev = tf1.scan(lambda a, e: a * e + w, x, reverse=True)
    mapped = tf1.map_fn(lambda e: (tf.reduce_sum(e * w), e * e), x,
                        dtype=(tf.float64, tf.float64))  # fmt: skip
    folded = tf1.foldl(lambda a, e: a * tf.cos(e) + w, x)
    total = (
        tf.reduce_sum(scan_init**2)
        + tf.reduce_sum(scan_none_rev)
        + tf.reduce_sum(mapped[0] ** 2)
        + tf.reduce_sum(mapped[1])
        + tf.reduce_sum(folded)
    )
    g_sx, g_sw = tf1.gradients(total, [x, w])

    fetches = {
        "while_i": i_end, "while_a": p_end.a, "while_b": p_end.b, "while_gx": gw_x,
        "while_gw": gw_w, "case_first": case_first, "case_last": case_last, "case_gx": g_case,
        "scan_init": scan_init, "scan_none_rev": scan_none_rev, "map_0": mapped[0],
        "map_1": mapped[1], "foldl": folded, "seq_gx": g_sx, "seq_gw": g_sw,
    }  # fmt: skip
    with tf1.Session() as sess:
        for tag, (nv, lv) in {"short": (2, 10), "capped": (9, 3)}.items():
            got = sess.run(fetches, {x: X, w: W, n: nv, limit: lv})
            out.update({f"{tag}_{k}": np.asarray(v) for k, v in got.items()})

np.savez(Path(__file__).with_name("golden_tf1.npz"), **out)
print("wrote", len(out), "arrays")
