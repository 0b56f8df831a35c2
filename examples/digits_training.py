"""What the digits examples share: the data, a dense layer, the training loop and its flags.

``mlp_digits.py`` and ``cnn_digits.py`` differ only in the model they build; both hand
``train`` a ``build(args)`` function returning ``(x, y, loss, accuracy, train_op)``. The
epoch loop itself (``run_epochs``: step budget, progress bar, per-epoch report) also drives
``resnet_synthetic.py``, whose batches come from a ``gc.data`` iterator instead of feeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np

try:  # optional: a progress bar per epoch (pip install 'graphc[examples]')
    from tqdm import tqdm
except ImportError:
    tqdm = None

try:
    import graphc as gc
except ImportError:  # run from a source checkout without installing: use the checkout
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import graphc as gc


@dataclass
class History:
    """What a training run measured: per-step losses, per-epoch losses and accuracies."""

    step_losses: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1]


def load_data(seed: int):
    """Digits scaled to [0, 1], split 75/25 (stratified, fixed seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def dense(x, n_in, n_out, name, seed):
    """A fully connected layer with Glorot-uniform weights and zero bias."""
    limit = float(np.sqrt(6.0 / (n_in + n_out)))
    with gc.name_scope(name):
        w = gc.Variable(gc.random_uniform((n_in, n_out), -limit, limit, seed=seed), name="w")
        b = gc.Variable(np.zeros(n_out, np.float32), name="b")
        return gc.matmul(x, w) + b


def classifier_head(logits, y, lr: float):
    """Mean sparse softmax cross-entropy, accuracy and the Adam training op."""
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    correct = gc.equal(gc.argmax(logits, axis=1), y)
    accuracy = gc.reduce_mean(gc.cast(correct, gc.float32))
    step = gc.train.get_or_create_global_step()
    train_op = gc.train.AdamOptimizer(lr).minimize(loss, global_step=step)
    return loss, accuracy, train_op


def progress(epoch, epochs, done, total, loss, width=20):
    """One-line progress bar, redrawn in place on a terminal (when tqdm is not installed)."""
    if not sys.stdout.isatty():
        return
    filled = int(width * done / max(total, 1))
    bar = "#" * filled + "." * (width - filled)
    print(f"\repoch {epoch}/{epochs} [{bar}] loss {loss:.4f}", end="", flush=True)


def run_epochs(epochs: int, n_batches: int, max_steps: int, step, end_epoch, begin_epoch=None):
    """The epoch loop of the examples. Each of ``epochs`` passes calls ``begin_epoch(epoch)``,
    then ``step(b)`` for batches ``b = 0 .. n_batches - 1``: it trains on one batch and returns
    its loss, or None when the data ran out first. ``max_steps`` (0: no limit) caps the steps
    of all passes together; training stops at a pass that runs no step. After each pass,
    ``end_epoch(epoch, losses, started)`` reports it (``started``: the pass's
    ``time.perf_counter()`` at its start). A tqdm bar shows each pass when tqdm is
    installed, else a one-line bar on a terminal."""
    steps_left = max_steps if max_steps else None
    for epoch in range(1, epochs + 1):
        if steps_left is not None and steps_left <= 0:
            break
        t0 = time.perf_counter()
        if begin_epoch is not None:
            begin_epoch(epoch)
        losses = []
        bar = None
        if tqdm is not None:  # disable=None: shown on a terminal only
            bar = tqdm(range(n_batches), desc=f"epoch {epoch}/{epochs}", unit="step",
                       leave=False, disable=None)  # fmt: skip
        for b in bar if bar is not None else range(n_batches):
            if steps_left is not None and steps_left <= 0:
                break
            loss = step(b)
            if loss is None:
                break
            losses.append(float(loss))
            if bar is not None:
                bar.set_postfix(loss=f"{np.mean(losses):.4f}", refresh=False)
            else:
                progress(epoch, epochs, b + 1, n_batches, np.mean(losses))
            if steps_left is not None:
                steps_left -= 1
        if bar is not None:
            bar.close()
        elif sys.stdout.isatty():
            print("\r", end="")  # the report overwrites the one-line bar
        if not losses:
            break
        end_epoch(epoch, losses, t0)


def train(args, build) -> History:
    """Train the model ``build(args)`` makes with the parsed ``args``; returns the History
    (prints one line per epoch)."""
    x_train, x_test, y_train, y_test = load_data(args.seed)
    graph = gc.Graph()
    with graph.as_default():
        x, y, loss, accuracy, train_op = build(args)
        init = gc.global_variables_initializer()
    rng = np.random.default_rng(args.seed)
    hist = History()
    n_batches = int(np.ceil(len(x_train) / args.batch_size))
    with gc.Session(graph=graph, target=args.target) as sess:
        sess.run(init)
        order = None

        def begin_epoch(epoch):
            nonlocal order
            order = rng.permutation(len(x_train))

        def step(b):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            return sess.run([train_op, loss], {x: x_train[idx], y: y_train[idx]})[1]

        def end_epoch(epoch, losses, started):
            hist.step_losses.extend(losses)
            hist.epoch_losses.append(float(np.mean(losses)))
            hist.train_accuracy.append(float(sess.run(accuracy, {x: x_train, y: y_train})))
            test_loss, test_acc = sess.run([loss, accuracy], {x: x_test, y: y_test})
            hist.test_accuracy.append(float(test_acc))
            print(
                f"epoch {epoch}/{args.epochs}  loss {hist.epoch_losses[-1]:.4f}  "
                f"train acc {hist.train_accuracy[-1]:.2%}  test loss {float(test_loss):.4f}  "
                f"test acc {test_acc:.2%}  ({time.perf_counter() - started:.2f}s)",
                flush=True,
            )

        run_epochs(args.epochs, n_batches, args.steps, step, end_epoch, begin_epoch)
    return hist


def parse_args(description: str, argv=None, add_model_args=None, epochs: int = 30):
    """The flags both examples take; ``add_model_args(parser)`` adds the model's own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs, help="passes over the training set")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="stop after this many training steps in total (0: no limit; for tests)",
    )
    p.add_argument("--target", choices=["cpu", "cuda", "reference"], default="cpu",
                   help="gc.Session target (cuda: an NVIDIA GPU and pycuda)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0)
    if add_model_args is not None:
        add_model_args(p)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.steps < 0:
        p.error("--epochs and --batch-size must be positive, --steps non-negative")
    return args
