"""Data-parallel training of an MLP on scikit-learn's digits over N processes (MPI).

    mpiexec -n 2 python -m mpi4py examples/distributed_mlp.py          # 2 processes
    mpiexec -n 2 python -m mpi4py examples/distributed_mlp.py --epochs 3
    python examples/distributed_mlp.py                                 # 1 process works too

Needs ``pip install graphc[mpi]`` (mpi4py and the mpich wheel, which installs ``mpiexec``
beside python). ``-m mpi4py`` makes an exception on any process abort the whole job instead
of leaving the others waiting.

Each process reads its shard of every epoch (gc.data: the same seeded shuffle everywhere,
then ``shard(size, rank)``), computes gradients on it, and DistributedOptimizer averages
them over the processes before Adam applies them, so every process holds the same weights
after every step: N processes with batch B train like one process with batch N*B.
Variables start equal through ``broadcast_global_variables``; only rank 0 logs and writes
the checkpoint.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import graphc as gc


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32, help="rows per process and step")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--checkpoint", default=None, help="checkpoint prefix (default: a temp dir)")
    return p.parse_args(argv)


def build(args, rank, size, x_train, y_train):
    """The input pipeline, the model and the distributed training op."""
    # Every process runs the same number of steps (each step is a collective): use a multiple
    # of size * batch rows, shuffled identically everywhere, then take this process's shard.
    usable = len(x_train) // (size * args.batch) * (size * args.batch)
    ds = (
        gc.data.Dataset.from_tensor_slices((x_train, y_train))
        .take(usable)
        .shuffle(usable, seed=0)
        .shard(size, rank)
        .batch(args.batch, drop_remainder=True)
        .repeat(args.epochs)
    )
    x, y = ds.make_one_shot_iterator().get_next()
    rng = np.random.default_rng(rank)  # different on every rank: the broadcast fixes that
    w1 = gc.Variable(rng.normal(0, np.sqrt(2 / 64), (64, args.hidden)).astype(np.float32),
                     name="w1")  # fmt: skip
    b1 = gc.Variable(np.zeros(args.hidden, np.float32), name="b1")
    w2 = gc.Variable(rng.normal(0, np.sqrt(1 / args.hidden), (args.hidden, 10)).astype(np.float32),
                     name="w2")  # fmt: skip
    b2 = gc.Variable(np.zeros(10, np.float32), name="b2")

    def logits_of(inputs):
        return gc.matmul(gc.nn.relu(gc.matmul(inputs, w1) + b1), w2) + b2

    loss = gc.reduce_mean(
        gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits_of(x))
    )
    step = gc.train.get_or_create_global_step()
    opt = gc.distribute.DistributedOptimizer(gc.train.AdamOptimizer(args.lr))
    train_op = opt.minimize(loss, global_step=step)
    x_eval = gc.placeholder(gc.float32, (None, 64), name="x_eval")
    predict = gc.argmax(logits_of(x_eval), axis=1)
    return loss, train_op, step, x_eval, predict, usable // (size * args.batch)


def main(argv=None) -> float:
    """Train; returns the test accuracy (the same on every rank)."""
    args = parse_args(argv)
    gc.distribute.init()  # also: this process's threads = cores / processes on this machine
    rank, size = gc.distribute.rank(), gc.distribute.size()
    log = gc.distribute.get_logger("distributed_mlp")  # rank 0 only
    digits = load_digits()
    x_all = (digits.data / 16.0).astype(np.float32)
    y_all = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x_all, y_all, test_size=0.25, random_state=0, stratify=y_all
    )
    loss, train_op, step, x_eval, predict, steps_per_epoch = build(
        args, rank, size, x_train, y_train
    )
    bcast = gc.distribute.broadcast_global_variables(root_rank=0)
    saver = gc.distribute.Saver()  # its save() writes on rank 0 only
    log.info(f"{size} process(es), batch {args.batch} each: {steps_per_epoch} steps an epoch")
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(bcast)
        for epoch in range(args.epochs):
            losses = [sess.run([loss, train_op])[0] for _ in range(steps_per_epoch)]
            acc = float(np.mean(sess.run(predict, {x_eval: x_test}) == y_test))
            log.info(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, test accuracy {acc:.2%}")
        gc.distribute.check_same_variables(sess)  # every process holds the same weights
        if rank == 0:
            prefix = args.checkpoint or f"{tempfile.mkdtemp(prefix='graphc-dist-')}/model"
            log.info(f"checkpoint: {saver.save(sess, prefix, global_step=step)}")
    return acc


if __name__ == "__main__":
    main()
