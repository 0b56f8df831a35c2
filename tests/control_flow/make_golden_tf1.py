"""Writes golden_tf1.npz: TF1's control flow (tf.compat.v1 graph mode, float64) on fixed
inputs: the program of tf1_program.py (while_loop, case, scan, map_fn, foldl and gradients
through them), which tests/control_flow/test_tf1_golden.py builds in graphc and compares.

Run with a Python that has TensorFlow installed (never graphc's own environment):
    python tests/control_flow/make_golden_tf1.py
"""

from pathlib import Path

import numpy as np
import tensorflow as tf
from tf1_program import RUNS, build  # beside this script

tf1 = tf.compat.v1
tf1.disable_eager_execution()

rng = np.random.default_rng(2026)
X = rng.uniform(-1, 1, (4, 3))
W = rng.uniform(0.5, 1.5, (3,))
out = {"x": X, "w": W}

g = tf1.Graph()
with g.as_default():
    (x, w, n, limit), fetches = build(tf1)
    with tf1.Session() as sess:
        for tag, (nv, lv) in RUNS.items():
            got = sess.run(fetches, {x: X, w: W, n: nv, limit: lv})
            out.update({f"{tag}_{k}": np.asarray(v) for k, v in got.items()})

np.savez(Path(__file__).with_name("golden_tf1.npz"), **out)
print("wrote", len(out), "arrays")
