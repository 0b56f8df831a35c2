"""Train a small ResNet (the network of benchmark W10) on synthetic images, the TF1 way.

    python examples/resnet_synthetic.py                      # W10's network: ~100% in 2 epochs
    python examples/resnet_synthetic.py --image 16 --channels 8 16 --blocks 1 --epochs 2
    python examples/resnet_synthetic.py --steps 40 --logdir /tmp/resnet   # + TensorBoard

The data: ``--classes`` kinds of image, each a sine grating of its own orientation and
stripe width (its phase random, so position says nothing), under Gaussian noise; a network
must find the pattern, which a convolution followed by a global average pool can. It is
served by ``gc.data`` (``from_tensor_slices -> shuffle -> batch -> prefetch``, an
initializable iterator restarted each epoch); evaluation feeds the iterator's tensors instead.

The network, built with ``gc.layers``: conv 3x3 - batch norm - relu, then stages of residual
blocks (``relu(bn(conv(relu(bn(conv(x))))) + shortcut)``; each stage after the first starts
with a stride-2 block whose shortcut is a strided 1x1 convolution), global average pool, dense
to the classes. ``training`` is a bool placeholder (default False), so one graph trains and
evaluates: batch norm uses the batch's moments while training and the moving averages
otherwise; the moving averages are updated by the ops in ``GraphKeys.UPDATE_OPS``, which the
training step depends on. Trained with ``gc.train.MomentumOptimizer``. With ``--logdir`` and
the tensorboard package installed, loss and batch accuracy are written with
``gc.summary.FileWriter`` every ``--summary-every`` steps; a tqdm bar shows each epoch when
tqdm is installed. The epoch loop is the digits examples' (``digits_training.run_epochs``).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass, field

import numpy as np
from digits_training import gc, run_epochs  # the examples' epoch loop (and graphc)


@dataclass
class History:
    """What a training run measured: per-step losses, per-epoch losses and accuracies."""

    step_losses: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    summaries_written: int = 0
    moving_mean: np.ndarray | None = None  # the stem's batch-norm statistics after training
    moving_variance: np.ndarray | None = None

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1]


def make_data(n: int, args, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images [n, image, image, 3] and their labels: class k is a grating at angle
    pi * k / classes with 2 + k % 3 periods across the image (random phase, a colour tint per
    class drawn from a fixed seed), plus noise of standard deviation ``args.noise``."""
    size, classes = args.image, args.classes
    tints = 0.6 + 0.4 * np.random.default_rng(1234).random((classes, 3))
    labels = rng.integers(0, classes, n)
    angle = np.pi * labels / classes
    freq = 2 * np.pi * (2 + labels % 3) / size
    phase = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    proj = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
    wave = np.sin(freq[:, None, None] * proj + phase[:, None, None])
    images = wave[..., None] * tints[labels][:, None, None, :]
    images += args.noise * rng.standard_normal(images.shape)
    return images.astype(np.float32), labels.astype(np.int64)


def conv_bn(h, filters, stride, training, name, seed):
    """conv2d (no bias: batch norm adds one) and batch normalization, variables under name."""
    h = gc.layers.conv2d(h, filters, 3, strides=stride, padding="same", use_bias=False,
                         kernel_initializer=gc.initializers.he_normal(seed=seed),
                         name=f"{name}/conv")  # fmt: skip
    return gc.layers.batch_normalization(h, momentum=0.9, training=training, name=f"{name}/bn")


def resnet(images, args, training):
    """The logits of the ResNet of ``args`` (W10's at the defaults) on NHWC ``images``."""
    seed = args.seed
    h = gc.nn.relu(conv_bn(images, args.channels[0], 1, training, "stem", seed))
    for s, filters in enumerate(args.channels):
        for b in range(args.blocks):
            stride = 2 if s > 0 and b == 0 else 1
            name = f"stage{s}/block{b}"
            seed += 2
            r = gc.nn.relu(conv_bn(h, filters, stride, training, f"{name}/a", seed))
            r = conv_bn(r, filters, 1, training, f"{name}/b", seed + 1)
            if stride != 1 or h.shape[-1] != filters:  # projection shortcut
                h = gc.layers.conv2d(h, filters, 1, strides=stride, padding="same",
                                     use_bias=False, name=f"{name}/shortcut")  # fmt: skip
            h = gc.nn.relu(r + h)
    pooled = gc.reduce_mean(h, axis=[1, 2])  # global average pool
    return gc.layers.dense(pooled, args.classes, name="logits")


def build(args, x_train, y_train):
    """The input pipeline, model, training op, evaluation and summaries in the default graph."""
    dataset = (
        gc.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=args.seed)  # a new order each epoch, the same each run
        .batch(args.batch_size)
        .prefetch(2)  # a background thread keeps two batches ready
    )
    iterator = dataset.make_initializable_iterator()
    images, labels = iterator.get_next()
    training = gc.placeholder_with_default(False, (), name="training")
    logits = resnet(images, args, training)
    loss = gc.losses.sparse_softmax_cross_entropy(labels, logits)
    correct = gc.cast(gc.equal(gc.argmax(logits, axis=1), labels), gc.float32)
    accuracy = gc.reduce_mean(correct)
    step = gc.train.get_or_create_global_step()
    with gc.control_dependencies(gc.get_collection(gc.GraphKeys.UPDATE_OPS)):
        optimizer = gc.train.MomentumOptimizer(args.lr, momentum=args.momentum)
        train_op = optimizer.minimize(loss, global_step=step)
    gc.summary.scalar("loss", loss)
    gc.summary.scalar("batch_accuracy", accuracy)
    return {
        "iterator": iterator, "images": images, "labels": labels, "training": training,
        "loss": loss, "accuracy": accuracy, "train_op": train_op, "step": step,
        "summaries": gc.summary.merge_all(),
    }  # fmt: skip


def evaluate(sess, m, xs, ys, batch=256) -> float:
    """Accuracy on (xs, ys), fed in place of the iterator's tensors (no element taken)."""
    correct = 0.0
    for i in range(0, len(xs), batch):
        acc = sess.run(
            m["accuracy"], {m["images"]: xs[i : i + batch], m["labels"]: ys[i : i + batch]}
        )
        correct += float(acc) * len(xs[i : i + batch])
    return correct / len(xs)


def open_writer(args, graph):
    """A FileWriter on ``--logdir`` when asked for and tensorboard is installed, else None."""
    if not args.logdir:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        print("--logdir: the tensorboard package is not installed; no summaries written")
        return None
    return gc.summary.FileWriter(args.logdir, graph)


def train(args) -> History:
    """Train with the parsed ``args``; returns the History (prints one line per epoch)."""
    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_data(args.train_size, args, rng)
    x_test, y_test = make_data(args.test_size, args, rng)
    graph = gc.Graph()
    with graph.as_default():
        gc.set_random_seed(args.seed)
        m = build(args, x_train, y_train)
        init = gc.global_variables_initializer()
    hist = History()
    n_batches = int(np.ceil(args.train_size / args.batch_size))
    writer = open_writer(args, graph)
    with gc.Session(graph=graph, target=args.target) as sess:
        sess.run(init)

        def begin_epoch(epoch):
            sess.run(m["iterator"].initializer)  # a new pass over the (reshuffled) data

        def step(b):
            fetches = [m["train_op"], m["loss"], m["step"]]
            want_summary = writer is not None and len(hist.step_losses) % args.summary_every == 0
            if want_summary:
                fetches.append(m["summaries"])
            try:  # the run takes the next batch from the iterator by itself
                out = sess.run(fetches, {m["training"]: True})
            except gc.errors.OutOfRangeError:
                return None
            hist.step_losses.append(float(out[1]))
            if want_summary:
                writer.add_summary(out[3], global_step=int(out[2]))
                hist.summaries_written += 1
            return out[1]

        def end_epoch(epoch, losses, started):
            hist.epoch_losses.append(float(np.mean(losses)))
            hist.test_accuracy.append(evaluate(sess, m, x_test, y_test))
            print(
                f"epoch {epoch}/{args.epochs}  steps {len(losses)}  loss "
                f"{hist.epoch_losses[-1]:.4f}  test acc {hist.test_accuracy[-1]:.2%}  "
                f"({time.perf_counter() - started:.2f}s)",
                flush=True,
            )

        run_epochs(args.epochs, n_batches, args.steps, step, end_epoch, begin_epoch)
        stats = ["stem/bn/moving_mean:0", "stem/bn/moving_variance:0"]
        hist.moving_mean, hist.moving_variance = sess.run(stats)
    if writer is not None:
        writer.close()
    return hist


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="passes over the training set")
    p.add_argument("--steps", type=int, default=0,
                   help="stop after this many training steps in total (0: no limit)")  # fmt: skip
    p.add_argument("--target", choices=["cpu", "cuda", "reference"], default="cpu",
                   help="gc.Session target")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-size", type=int, default=4096, help="training images")
    p.add_argument("--test-size", type=int, default=512, help="test images")
    p.add_argument("--image", type=int, default=32, help="image height and width")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.7, help="noise standard deviation")
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64],
                   help="channels of each stage")  # fmt: skip
    p.add_argument("--blocks", type=int, default=2, help="residual blocks per stage")
    p.add_argument("--lr", type=float, default=0.05, help="Momentum learning rate")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", default=None, help="write TensorBoard summaries here")
    p.add_argument("--summary-every", type=int, default=10, help="steps between summaries")
    args = p.parse_args(argv)
    positive = ("epochs", "batch_size", "train_size", "test_size", "image", "classes", "blocks",
                "summary_every")  # fmt: skip
    if any(getattr(args, k) < 1 for k in positive) or args.steps < 0:
        p.error(f"{', '.join('--' + k.replace('_', '-') for k in positive)} must be positive, "
                "--steps non-negative")  # fmt: skip
    return args


def main(argv=None) -> float:
    """Train and return the final test accuracy (a fraction in [0, 1])."""
    args = parse_args(argv)
    print(f"ResNet {args.channels} x {args.blocks} blocks on {args.image}x{args.image}x3 "
          f"synthetic gratings ({args.classes} classes), target={args.target}")  # fmt: skip
    hist = train(args)
    print(f"final test accuracy: {hist.final_accuracy:.2%} (chance {1 / args.classes:.0%})")
    return hist.final_accuracy


if __name__ == "__main__":
    main()
