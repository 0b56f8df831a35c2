"""Train a multi-layer perceptron on scikit-learn's digits (8x8 images, 10 classes).

    python examples/mlp_digits.py                  # defaults: reaches >= 95% test accuracy
    python examples/mlp_digits.py --epochs 5 --target reference
    python examples/mlp_digits.py --target cuda     # on an NVIDIA GPU (pip install 'graphc[cuda]')

The whole training step (forward pass, gradients from gc.gradients, Adam updates) is one
graph run by gc.Session; the data set ships with scikit-learn (no download). The data,
dense layer and training loop shared with cnn_digits.py are in digits_training.py.
"""

from __future__ import annotations

import digits_training as dt
from digits_training import gc


def build_model(args):
    """Placeholders, logits, loss, accuracy and the Adam training op."""
    x = gc.placeholder(gc.float32, (None, 64), name="x")
    y = gc.placeholder(gc.int64, (None,), name="y")
    h, n_in = x, 64
    for i, n in enumerate(args.hidden):
        h = gc.nn.relu(dt.dense(h, n_in, n, f"hidden{i}", args.seed + i))
        n_in = n
    logits = dt.dense(h, n_in, 10, "logits", args.seed + len(args.hidden))
    loss, accuracy, train_op = dt.classifier_head(logits, y, args.lr)
    return x, y, loss, accuracy, train_op


def train(args) -> dt.History:
    """Train with the parsed ``args``; returns the History (prints one line per epoch)."""
    return dt.train(args, build_model)


def parse_args(argv=None):
    def model_args(p):
        p.add_argument("--hidden", type=int, nargs="*", default=[128], help="hidden layer sizes")

    return dt.parse_args(__doc__.split("\n")[0], argv, model_args)


def main(argv=None) -> float:
    """Train and return the final test accuracy (a fraction in [0, 1])."""
    args = parse_args(argv)
    print(f"MLP {64}-{'-'.join(map(str, args.hidden))}-10 on digits, target={args.target}")
    hist = train(args)
    print(f"final test accuracy: {hist.final_accuracy:.2%}")
    return hist.final_accuracy


if __name__ == "__main__":
    main()
