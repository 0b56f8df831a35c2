"""Train a convolutional network with batch normalization and dropout on scikit-learn's
digits (8x8 images, 10 classes), built with ``gc.layers`` the TF1 way.

    python examples/cnn_bn_digits.py                  # about 98% test accuracy (15 epochs)
    python examples/cnn_bn_digits.py --epochs 5 --target reference

conv 3x3x16 (no bias) - batch norm - relu - max pool 2 - conv 3x3x32 - batch norm - relu -
max pool 2 - flatten - dense 64 relu - dropout - dense 10, trained with Adam. One graph serves
training and evaluation: ``training`` is a bool placeholder (default False) that switches
batch normalization between batch and moving statistics and turns dropout on. The moving
statistics are updated by the ops in ``GraphKeys.UPDATE_OPS``, which the training step runs
through ``gc.control_dependencies``. Test accuracy is a streaming ``gc.metrics.accuracy``
(its local counters reset by ``gc.local_variables_initializer()`` before each evaluation).
"""

from __future__ import annotations

import time

import digits_training as dt
import numpy as np
from digits_training import gc


def build_model(args):
    """Placeholders, logits, loss, the training op and the streaming accuracy."""
    x = gc.placeholder(gc.float32, (None, 64), name="x")
    y = gc.placeholder(gc.int64, (None,), name="y")
    training = gc.placeholder_with_default(False, (), name="training")
    h = gc.reshape(x, (-1, 8, 8, 1))  # NHWC
    init = gc.initializers.glorot_uniform(seed=args.seed)
    for filters in args.channels:
        h = gc.layers.conv2d(h, filters, 3, padding="same", use_bias=False,
                             kernel_initializer=init)  # fmt: skip
        h = gc.layers.batch_normalization(h, momentum=0.9, training=training)
        h = gc.layers.max_pooling2d(gc.nn.relu(h), pool_size=2, strides=2, padding="same")
    h = gc.layers.flatten(h)
    h = gc.layers.dense(h, args.dense, activation=gc.nn.relu, kernel_initializer=init)
    h = gc.layers.dropout(h, rate=args.dropout, training=training, seed=args.seed)
    logits = gc.layers.dense(h, 10, kernel_initializer=init, name="logits")
    loss = gc.losses.sparse_softmax_cross_entropy(y, logits)
    step = gc.train.get_or_create_global_step()
    with gc.control_dependencies(gc.get_collection(gc.GraphKeys.UPDATE_OPS)):
        train_op = gc.train.AdamOptimizer(args.lr).minimize(loss, global_step=step)
    accuracy, accuracy_update = gc.metrics.accuracy(y, gc.argmax(logits, axis=1))
    return x, y, training, loss, train_op, accuracy, accuracy_update


def train(args) -> dt.History:
    """Train with the parsed ``args``; returns the History (prints one line per epoch)."""
    x_train, x_test, y_train, y_test = dt.load_data(args.seed)
    graph = gc.Graph()
    with graph.as_default():
        x, y, training, loss, train_op, accuracy, accuracy_update = build_model(args)
        init = gc.global_variables_initializer()
        reset_metrics = gc.local_variables_initializer()
    rng = np.random.default_rng(args.seed)
    hist = dt.History()
    steps_left = args.steps if args.steps else None
    n_batches = int(np.ceil(len(x_train) / args.batch_size))

    def evaluate(sess, xs, ys):
        sess.run(reset_metrics)
        for i in range(0, len(xs), 256):
            sess.run(accuracy_update, {x: xs[i : i + 256], y: ys[i : i + 256]})
        return float(sess.run(accuracy))

    with gc.Session(graph=graph, target=args.target) as sess:
        sess.run(init)
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            order = rng.permutation(len(x_train))
            losses = []
            for b in range(n_batches):
                if steps_left is not None and steps_left <= 0:
                    break
                idx = order[b * args.batch_size : (b + 1) * args.batch_size]
                feed = {x: x_train[idx], y: y_train[idx], training: True}
                _, batch_loss = sess.run([train_op, loss], feed)
                losses.append(float(batch_loss))
                if steps_left is not None:
                    steps_left -= 1
            if not losses:
                break
            hist.step_losses.extend(losses)
            hist.epoch_losses.append(float(np.mean(losses)))
            hist.train_accuracy.append(evaluate(sess, x_train, y_train))
            hist.test_accuracy.append(evaluate(sess, x_test, y_test))
            print(
                f"epoch {epoch}/{args.epochs}  loss {hist.epoch_losses[-1]:.4f}  "
                f"train acc {hist.train_accuracy[-1]:.2%}  "
                f"test acc {hist.test_accuracy[-1]:.2%}  ({time.perf_counter() - t0:.2f}s)",
                flush=True,
            )
        hist.moving_mean = sess.run("batch_normalization/moving_mean:0")
    return hist


def parse_args(argv=None):
    def model_args(p):
        p.add_argument("--channels", type=int, nargs="+", default=[16, 32],
                       help="output channels of each conv + batch norm + pool block")  # fmt: skip
        p.add_argument("--dense", type=int, default=64, help="units of the hidden dense layer")
        p.add_argument("--dropout", type=float, default=0.3, help="dropout rate while training")

    return dt.parse_args(__doc__.split("\n")[0], argv, model_args, epochs=15)


def main(argv=None) -> float:
    """Train and return the final test accuracy (a fraction in [0, 1])."""
    args = parse_args(argv)
    print(f"CNN + batch norm, channels {args.channels}, dense {args.dense}, dropout "
          f"{args.dropout} on digits, target={args.target}")  # fmt: skip
    hist = train(args)
    print(f"final test accuracy: {hist.final_accuracy:.2%}")
    return hist.final_accuracy


if __name__ == "__main__":
    main()
