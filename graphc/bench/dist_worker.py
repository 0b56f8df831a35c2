"""One process of benchmark W14 (``mpiexec -n N python -m mpi4py dist_worker.py SPEC OUT``).

SPEC is a JSON file: ``{"sizes": W3's sizes, "steps": timed steps, "warmup": steps}``. The
process trains W3's MLP with ``DistributedOptimizer(GradientDescentOptimizer(LR))`` (the same
SGD step as W3) on its own ``batch`` rows of a global batch of N * batch rows, with one
thread (``CompileOptions(threads=1)``), and writes OUT.<rank>.json: per timed step its
seconds, the seconds inside the allreduce (packing, MPI, unpacking) and inside the check
before it (a 16-byte allreduce: mostly waiting for the other ranks to arrive), the median
time of an allreduce of the same bytes alone (after a barrier), the CPU time the process
got per step (``time.process_time``: less than the step's seconds when it waited for a
core), the largest
difference of the first step from numpy's SGD step on the whole global batch, and a digest
of the variables after the last step.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

import graphc as gc
from graphc.bench.workloads import LR, MLP_PARAMS, mlp_inputs, mlp_loss, mlp_numpy_step
from graphc.distribute import comm


def build(sizes, inputs):
    """W3's MLP (``mlp_loss``) with the data-parallel SGD step: (graph, x, labels, step,
    params, broadcast of the variables from rank 0, init)."""
    g = gc.Graph()
    with g.as_default():
        x, labels, loss, params = mlp_loss(sizes, inputs)
        opt = gc.distribute.DistributedOptimizer(gc.train.GradientDescentOptimizer(LR))
        step = opt.minimize(loss)
        bcast = gc.distribute.broadcast_global_variables(0)
        init = gc.global_variables_initializer()
    return g, x, labels, step, params, bcast, init


def main(spec_path, out_prefix):
    spec = json.loads(open(spec_path).read())
    gc.distribute.init()
    rank, n = gc.distribute.rank(), gc.distribute.size()
    sizes, batch = spec["sizes"], spec["sizes"]["batch"]
    inputs = mlp_inputs(sizes, np.random.default_rng(0), batch * n)
    rows = slice(rank * batch, (rank + 1) * batch)
    g, x, labels, step, params, bcast, init = build(sizes, inputs)
    feeds = {x: inputs["x"][rows], labels: inputs["labels"][rows]}
    opts = gc.CompileOptions(threads=1)
    out = {"rank": rank, "size": n}
    with gc.Session(graph=g, options=opts) as sess:
        sess.run(init)
        sess.run(bcast)
        t0 = time.perf_counter()
        sess.run(step, feeds)  # compiles, then the first step: checked against numpy
        out["first_step_s"] = time.perf_counter() - t0
        start = [inputs[k] for k in MLP_PARAMS]
        _, want = mlp_numpy_step(start, inputs["x"], inputs["labels"])
        got = sess.run(params)
        out["first_step_max_err"] = max(
            float(np.max(np.abs(a - b) / (1 + np.abs(b)))) for a, b in zip(got, want)
        )
        for _ in range(spec["warmup"]):
            sess.run(step, feeds)
        times, reduce_s, check_s, cpu_s = [], [], [], []
        for _ in range(spec["steps"]):
            before = gc.distribute.stats()
            c0, t0 = time.process_time(), time.perf_counter()
            sess.run(step, feeds)
            times.append(time.perf_counter() - t0)
            cpu_s.append(time.process_time() - c0)
            after = gc.distribute.stats()
            reduce_s.append(after["allreduce_seconds"] - before["allreduce_seconds"])
            check_s.append(after["check_seconds"] - before["check_seconds"])
        out.update(step_s=times, allreduce_s=reduce_s, check_s=check_s, cpu_s=cpu_s)
        stats, total = gc.distribute.stats(), 1 + spec["warmup"] + spec["steps"]
        out["allreduce_bytes_per_step"] = stats["allreduce_bytes"] / total
        out["allreduce_calls_per_step"] = stats["allreduce_calls"] / total
        if n > 1:  # the same bytes reduced alone (barrier first): MPI's own cost here
            out["bare_allreduce_s"] = comm.time_allreduce(int(out["allreduce_bytes_per_step"]))
        digest = hashlib.sha256()
        for v in sess.run(params):
            digest.update(np.ascontiguousarray(v).tobytes())
        out["digest"] = digest.hexdigest()
    with open(f"{out_prefix}.{rank}.json", "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
