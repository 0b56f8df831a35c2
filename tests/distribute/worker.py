"""One process of the MPI jobs of tests/distribute (``mpiexec -n N python -m mpi4py worker.py``).

    worker.py MODE OUT_DIR BATCH

MODE ``train``: trains the small models of ``models.py`` (MLP with each gc.train optimizer,
clipping and a global step; CNN with Adam) for STEPS steps on this rank's shard of each
global batch of N*BATCH rows, and checks the collective ops; each rank writes
``OUT_DIR/rank<r>.npz``. MODE ``train3``: the MLP with Adam only. Run as one
process with BATCH = N*B it is the baseline of a job of N processes with batch B (plain
``python worker.py train OUT N*B``: a job of one).

Failure modes (the job must end, non-zero, naming the rank): ``raise`` (rank 1 raises at
its second step), ``kill`` (rank 1 is killed by SIGKILL), ``mismatch`` (rank 1 builds a
wider hidden layer), ``hang`` (rank 1 sleeps instead of stepping), ``noinit`` (rank 1
never calls init), ``diverge`` (each rank its own learning rate: check_same_variables
raises).
"""

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import OPTIMIZERS, STEPS, build_cnn, build_mlp  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import config  # noqa: E402


def train(build, opt_name, out, prefix, batch, rank, n, target="cpu", clip=None, hidden=32):
    """Train one model; record its variables after the broadcast and after STEPS steps
    (checked equal on every rank: check_same_variables)."""
    g = gc.Graph()
    with g.as_default():
        x, labels, loss, params, data = build(rank, hidden=hidden)
        step = gc.train.get_or_create_global_step()
        if opt_name == "sgd_per_rank":  # a learning rate of each rank's own: diverges
            inner = gc.train.GradientDescentOptimizer(0.1 * (rank + 1))
        else:
            inner = OPTIMIZERS[opt_name]()
        opt = gc.distribute.DistributedOptimizer(inner)
        pairs = opt.compute_gradients(loss)
        if clip is not None:
            clipped, _ = gc.clip_by_global_norm([gr for gr, _ in pairs], clip)
            pairs = list(zip(clipped, [v for _, v in pairs]))
        train_op = opt.apply_gradients(pairs, global_step=step)
        bcast = gc.distribute.broadcast_global_variables(0)
        init = gc.global_variables_initializer()
    with gc.Session(graph=g, target=target) as sess:
        sess.run(init)
        sess.run(bcast)
        for i, v in enumerate(sess.run(params)):
            out[f"{prefix}/start/{i}"] = v
        xs, ys = data
        for s in range(STEPS):
            rows = slice(s * n * batch + rank * batch, s * n * batch + (rank + 1) * batch)
            sess.run(train_op, {x: xs[rows], labels: ys[rows]})
            if mode_hook is not None:
                mode_hook(s, rank)
        gc.distribute.check_same_variables(sess)
        for i, v in enumerate(sess.run(params)):
            out[f"{prefix}/end/{i}"] = v
        out[f"{prefix}/global_step"] = np.array(sess.run(step))
        if target == "cpu":
            exe = sess.compile(train_op, [x, labels])
            out[f"{prefix}/host_ops"] = np.array(exe.stats.get("host_fallback_ops", []))


def collectives(out, rank, n):
    """allreduce / grouped_allreduce / broadcast values and gradients, and the rank-0 Saver."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (3,), name="x")
        w = gc.constant(np.array([1.0, 2.0, 3.0], np.float32) * (rank + 1))
        s = gc.distribute.allreduce(x, op="sum")
        a = gc.distribute.allreduce(x)
        ints = gc.distribute.grouped_allreduce(
            [gc.constant(np.arange(4, dtype=np.int64) * (rank + 1)), x * 2.0], op="sum"
        )
        b = gc.distribute.broadcast(x, root_rank=n - 1)
        half = gc.distribute.allreduce(gc.cast(x, gc.float16), op="sum")  # summed in float32
        (ds,) = gc.gradients(gc.reduce_sum(s * w), [x])
        (da,) = gc.gradients(gc.reduce_sum(a * w), [x])
        (db,) = gc.gradients(gc.reduce_sum(b * w), [x])
        v = gc.Variable(np.zeros(2, np.float32), name="v")
        init = gc.global_variables_initializer()
    feed = {x: np.full(3, rank + 1, np.float32)}
    for target in ("cpu", "reference"):
        with gc.Session(graph=g, target=target) as sess:
            got = sess.run([s, a, ints[0], ints[1], b, ds, da, db, half], feed)
            names = ["sum", "avg", "ints", "floats", "bcast", "ds", "da", "db", "half"]
            for name, val in zip(names, got):
                out[f"ops/{target}/{name}"] = val
    with gc.Session(graph=g) as sess:
        sess.run(init)
        path = gc.distribute.Saver([v]).save(sess, str(Path(out["_dir"]) / "ckpt"))
        out["saver_path"] = np.array("" if path is None else path)
    # variables of three dtypes broadcast from the last rank (one op, byte buckets); an
    # optimizer step where one variable has no gradient (None: left alone)
    g = gc.Graph()
    with g.as_default():
        vi = gc.Variable(np.arange(3, dtype=np.int64) * (rank + 1), name="vi")
        vh = gc.Variable(np.full(5, rank + 1, np.float16), name="vh")
        vf = gc.Variable(np.full((2, 2), rank + 1, np.float32), name="vf")
        bcast = gc.distribute.broadcast_variables([vi, vh, vf], root_rank=n - 1)
        u = gc.Variable(1.0, name="u")
        unused = gc.Variable(2.0, name="unused")
        step = gc.distribute.DistributedOptimizer(gc.train.GradientDescentOptimizer(0.1)).minimize(
            u * u * float(rank + 1), var_list=[u, unused]
        )
        init = gc.global_variables_initializer()
    with gc.Session(graph=g) as sess:
        sess.run(init)
        sess.run(bcast)
        sess.run(step)
        for name, val in zip(["vi", "vh", "vf", "u", "unused"], sess.run([vi, vh, vf, u, unused])):
            out[f"misc/{name}"] = val


mode_hook = None


def main():
    global mode_hook
    mode, out_dir, batch = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if mode == "noinit":  # rank 1 never joins: rank 0 must give up in init, not hang
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_rank() == 1:
            time.sleep(60)
            return
    gc.distribute.init()
    rank, n = gc.distribute.rank(), gc.distribute.size()
    out = {"_dir": str(out_dir)}
    if mode == "train":
        collectives(out, rank, n)
        for name in OPTIMIZERS:
            clip = 0.05 if name == "momentum" else None
            train(build_mlp, name, out, f"mlp_{name}", batch, rank, n, clip=clip)
        train(build_cnn, "adam", out, "cnn_adam", batch, rank, n)
        if n == 1:  # the oracle: the reference interpreter runs the same step
            train(build_mlp, "adam", out, "ref_mlp_adam", batch, rank, n, target="reference")
        out["threads"] = np.array([config.default_threads(), gc.distribute.local_size()])
        out["stats"] = np.array(
            [gc.distribute.stats()["allreduce_calls"], gc.distribute.stats()["check_calls"]]
        )
    elif mode == "train3":
        train(build_mlp, "adam", out, "mlp_adam", batch, rank, n)
        out["stats"] = np.array([gc.distribute.stats()["allreduce_calls"]])
    elif mode in ("raise", "kill", "hang"):

        def hook(step, r):
            if r == 1 and step == 1:
                if mode == "raise":
                    raise RuntimeError("boom on purpose")
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(120)

        mode_hook = hook
        train(build_mlp, "adam", out, "mlp", batch, rank, n)
    elif mode == "mismatch":
        train(build_mlp, "adam", out, "mlp", batch, rank, n, hidden=32 + rank)
    elif mode == "diverge":
        train(build_mlp, "sgd_per_rank", out, "mlp", batch, rank, n)
    else:
        raise SystemExit(f"unknown mode {mode}")
    del out["_dir"]
    np.savez(out_dir / f"rank{rank}.npz", **out)


if __name__ == "__main__":
    main()
