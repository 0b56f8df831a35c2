"""Generates golden_tf_histogram.npz: TensorFlow's own histogram summary of fixed values.

Run with a Python that has tensorflow (only to regenerate the file; the tests read the .npz):
    python tests/summary/make_golden.py
"""

from pathlib import Path

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_eager_execution()


def values() -> dict:
    rng = np.random.default_rng(2024)
    return {
        "normal": rng.standard_normal(1000).astype(np.float32),
        "wide": (rng.standard_normal(300) * 1e6).astype(np.float64),
        "mixed": np.array([0.0, 0.0, -1e-13, 1e-13, 1.0, 1.0000001, -3.5, 7e10, 0.5]),
        "ints": np.arange(-5, 20).astype(np.float32),
    }


def main():
    out = {}
    with tf.Graph().as_default(), tf.Session() as sess:
        for name, v in values().items():
            proto = tf.Summary.FromString(sess.run(tf.summary.histogram(name, tf.constant(v))))
            h = proto.value[0].histo
            out[f"{name}/values"] = v
            out[f"{name}/stats"] = np.array([h.min, h.max, h.num, h.sum, h.sum_squares])
            out[f"{name}/bucket_limit"] = np.array(h.bucket_limit)
            out[f"{name}/bucket"] = np.array(h.bucket)
    np.savez(Path(__file__).with_name("golden_tf_histogram.npz"), **out)


if __name__ == "__main__":
    main()
