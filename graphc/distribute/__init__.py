"""``gc.distribute``: data-parallel training across processes over MPI, Horovod-style.

Launch N processes (``mpiexec -n N python -m mpi4py train.py``); in each::

    gc.distribute.init()
    opt = gc.distribute.DistributedOptimizer(gc.train.AdamOptimizer(1e-3))
    train_op = opt.minimize(loss)
    bcast = gc.distribute.broadcast_global_variables(0)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(bcast)
        for batch in my_shard_of_the_data:  # rank() of size() parts
            sess.run(train_op, feeds)

Needs the ``graphc[mpi]`` extra (mpi4py and an MPI library, e.g. the mpich wheel);
without it every call raises UnavailableError saying what to install. See
docs/distributed.md.
"""

from .comm import (
    abort,
    available,
    init,
    is_initialized,
    local_rank,
    local_size,
    rank,
    reset_stats,
    size,
    stats,
)
from .helpers import Saver, check_same_variables, get_logger
from .ops import (
    allreduce,
    broadcast,
    broadcast_global_variables,
    broadcast_variables,
    grouped_allreduce,
)
from .optimizer import DistributedOptimizer

__all__ = [
    "init", "is_initialized", "available", "rank", "size", "local_rank", "local_size",
    "allreduce", "grouped_allreduce", "broadcast", "broadcast_variables",
    "broadcast_global_variables", "DistributedOptimizer", "Saver", "get_logger", "abort",
    "check_same_variables",
    "stats", "reset_stats",
]  # fmt: skip
