"""The W3 MLP training step (784-512-512-10, batch 256, SGD) fed three ways: feed_dict from
pre-cut numpy batches, a gc.data pipeline without prefetch, and the same pipeline with
prefetch(2). Prints the median time per step of each (after warm-up), on the cpu target.

    python scripts/bench_input_pipeline.py [--steps 200] [--batches 16] [--map]

``--map`` adds a per-batch numpy map (scale by 1/255, as image input would) to every variant;
``--noise`` makes it also add Gaussian noise (an augmentation costing ~1 ms a batch).
Figures are reported in docs/api.md ("Input pipelines"); this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc as gc  # noqa: E402
from graphc.bench.workloads import LR, MLP_PARAMS, mlp_inputs  # noqa: E402

SIZES = {"inputs": 784, "hidden": 512, "classes": 10, "batch": 256}


def mlp_step(x, labels, init_values):
    """The W3 step of graphc.bench.workloads.build_mlp_step on the given input tensors."""
    params = [gc.Variable(init_values[n], name=n) for n in MLP_PARAMS]
    w1, b1, w2, b2, w3, b3 = params
    h = gc.nn.relu(gc.matmul(x, w1) + b1)
    h = gc.nn.relu(gc.matmul(h, w2) + b2)
    logits = gc.matmul(h, w3) + b3
    xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    loss = gc.reduce_mean(xent)
    grads = gc.gradients(loss, params)
    step = gc.group(*[gc.assign_sub(p, LR * gr) for p, gr in zip(params, grads)])
    return loss, step


def timed(runs: dict, steps: int) -> dict:
    """name -> (median seconds per step, losses). The variants take turns step by step, so
    a change of load on a shared machine hits them alike."""
    losses = {name: [run() for _ in range(10)] for name, run in runs.items()}  # warm-up
    times: dict = {name: [] for name in runs}
    for _ in range(steps):
        for name, run in runs.items():
            t0 = time.perf_counter()
            losses[name].append(run())
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(times[name]), losses[name]) for name in runs}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batches", type=int, default=16, help="distinct batches in the data")
    p.add_argument("--map", action="store_true", help="add a numpy map per batch")
    p.add_argument(
        "--noise", action="store_true", help="the map also adds Gaussian noise (augmentation)"
    )
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    init = mlp_inputs(SIZES, rng, SIZES["batch"])
    n = args.batches * SIZES["batch"]
    scale = 255.0 if (args.map or args.noise) else 1.0
    xs = (rng.random((n, SIZES["inputs"]), dtype=np.float32) * scale).astype(np.float32)
    ys = rng.integers(0, SIZES["classes"], n).astype(np.int64)
    noise_rng = np.random.default_rng(1)

    def prep(x, y):
        x = x * np.float32(1 / 255)
        if args.noise:
            x += noise_rng.standard_normal(x.shape, dtype=np.float32) * np.float32(0.01)
        return x, y

    if not (args.map or args.noise):
        prep = None
    runs = {}
    sessions = []

    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, SIZES["inputs"]), name="x")
        labels = gc.placeholder(gc.int64, (None,), name="labels")
        loss_f, step_f = mlp_step(x, labels, init)
        init_op = gc.global_variables_initializer()
    batches = [(xs[i : i + 256], ys[i : i + 256]) for i in range(0, n, 256)]
    sess_f = gc.Session(g)
    sess_f.run(init_op)
    sessions.append(sess_f)
    k = [0]

    def run_feed():
        bx, by = batches[k[0] % len(batches)]
        k[0] += 1
        if prep is not None:
            bx, by = prep(bx, by)
        return sess_f.run([loss_f, step_f], {x: bx, labels: by})[0]

    runs["feed_dict"] = run_feed
    for name, prefetch in (("dataset", None), ("dataset + prefetch(2)", 2)):
        g = gc.Graph()
        with g.as_default():
            ds = gc.data.Dataset.from_tensor_slices((xs, ys)).batch(256)
            if prep is not None:
                ds = ds.map(prep)
            ds = ds.repeat()
            if prefetch:
                ds = ds.prefetch(prefetch)
            bx, by = ds.make_one_shot_iterator().get_next()
            loss, step = mlp_step(bx, by, init)
            init_op = gc.global_variables_initializer()
        sess = gc.Session(g)
        sess.run(init_op)
        sessions.append(sess)
        runs[name] = lambda sess=sess, fetches=[loss, step]: sess.run(fetches)[0]
    results = timed(runs, args.steps)
    for sess in sessions:
        sess.close()
    ref = results["feed_dict"][1]
    for name, (median, losses) in results.items():
        same = np.allclose(losses, ref, rtol=1e-5) if not args.noise else "n/a (random noise)"
        print(f"{name:24s} {median * 1e3:7.2f} ms/step   losses match feed_dict: {same}")
    return {k: v[0] for k, v in results.items()}


if __name__ == "__main__":
    main()
