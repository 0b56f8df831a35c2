"""Train a small convolutional network on scikit-learn's digits (8x8 images, 10 classes).

    python examples/cnn_digits.py                  # defaults: reaches >= 97% test accuracy
    python examples/cnn_digits.py --epochs 5 --target reference
    python examples/cnn_digits.py --target cuda     # on an NVIDIA GPU (pip install 'graphc[cuda]')

conv 3x3x16 - relu - max pool 2 - conv 3x3x32 - relu - max pool 2 - dense 64 - relu - dense
10, trained with Adam. The whole training step (forward pass, conv/pool gradients, Adam
updates) is one graph run by gc.Session; the data set ships with scikit-learn (no download).
The data, dense layer and training loop shared with mlp_digits.py are in digits_training.py.
"""

from __future__ import annotations

import digits_training as dt
import numpy as np
from digits_training import gc


def conv(x, k, c_in, c_out, name, seed):
    """3x3-style SAME convolution + bias + relu, Glorot-uniform filters (HWIO)."""
    fan_in, fan_out = k * k * c_in, k * k * c_out
    limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
    with gc.name_scope(name):
        w = gc.Variable(
            gc.random_uniform((k, k, c_in, c_out), -limit, limit, seed=seed), name="filters"
        )
        b = gc.Variable(np.zeros(c_out, np.float32), name="b")
        return gc.nn.relu(gc.nn.bias_add(gc.nn.conv2d(x, w, strides=1, padding="SAME"), b))


def build_model(args):
    """Placeholders, logits, loss, accuracy and the Adam training op."""
    x = gc.placeholder(gc.float32, (None, 64), name="x")
    y = gc.placeholder(gc.int64, (None,), name="y")
    h = gc.reshape(x, (-1, 8, 8, 1))  # NHWC
    c_in, size = 1, 8
    for i, c in enumerate(args.channels):
        h = conv(h, 3, c_in, c, f"conv{i}", args.seed + i)
        h = gc.nn.max_pool2d(h, ksize=2, strides=2, padding="SAME")
        c_in, size = c, (size + 1) // 2
    flat = size * size * c_in
    h = gc.reshape(h, (-1, flat))
    h = gc.nn.relu(dt.dense(h, flat, args.dense, "dense", args.seed + 10))
    logits = dt.dense(h, args.dense, 10, "logits", args.seed + 11)
    loss, accuracy, train_op = dt.classifier_head(logits, y, args.lr)
    return x, y, loss, accuracy, train_op


def train(args) -> dt.History:
    """Train with the parsed ``args``; returns the History (prints one line per epoch)."""
    return dt.train(args, build_model)


def parse_args(argv=None):
    def model_args(p):
        p.add_argument("--channels", type=int, nargs="+", default=[16, 32],
                       help="output channels of each conv + pool block")  # fmt: skip
        p.add_argument("--dense", type=int, default=64, help="units of the hidden dense layer")

    return dt.parse_args(__doc__.split("\n")[0], argv, model_args)


def main(argv=None) -> float:
    """Train and return the final test accuracy (a fraction in [0, 1])."""
    args = parse_args(argv)
    print(f"CNN channels {args.channels}, dense {args.dense} on digits, target={args.target}")
    hist = train(args)
    print(f"final test accuracy: {hist.final_accuracy:.2%}")
    return hist.final_accuracy


if __name__ == "__main__":
    main()
