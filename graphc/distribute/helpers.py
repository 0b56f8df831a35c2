"""Rank-0 conveniences (checkpoints written by one process, logging from one process) and
a check that every process holds the same variables.

Every process holds the same variables after each step, so one copy of a checkpoint is
enough, and N processes writing the same files would race. Likewise a log line printed by
every process is N times the same line.
"""

from __future__ import annotations

import logging

from ..ops.state import GLOBAL_VARIABLES, Variable
from ..train.saver import Saver as _TrainSaver
from . import comm


class Saver(_TrainSaver):
    """``gc.train.Saver`` whose ``save`` writes on rank ``root_rank`` only (default 0) and
    returns None on the other ranks; ``restore`` reads on every rank."""

    def __init__(self, *args, root_rank: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self._root_rank = root_rank

    def save(self, sess, save_path, global_step=None, latest_filename=None, write_state=True):
        if comm.rank() != self._root_rank:
            return None
        return super().save(sess, save_path, global_step=global_step,
                            latest_filename=latest_filename, write_state=write_state)  # fmt: skip


def check_same_variables(sess, var_list=None) -> None:
    """Raise FailedPreconditionError naming the first variable whose value in ``sess``
    differs between the processes (default: every global variable of the session's graph).
    Data-parallel training keeps them equal; a difference means the processes do not run
    the same step (another learning rate, a variable updated outside the optimizer...).
    Every process must call it."""
    if var_list is None:
        var_list = sess.graph.get_collection(GLOBAL_VARIABLES)
    var_list = list(var_list)
    for v in var_list:
        if not isinstance(v, Variable):
            raise TypeError(f"check_same_variables takes gc.Variable objects, got {v!r}")
    values = sess.run(var_list) if var_list else []
    comm.check_same_values("check_same_variables", [v.op.name for v in var_list], values)


class _RankFilter(logging.Filter):
    def __init__(self, all_ranks: bool):
        super().__init__()
        self.all_ranks = all_ranks

    def filter(self, record) -> bool:
        r = comm.rank() if comm.is_initialized() else 0
        record.rank = r
        return self.all_ranks or r == 0


def get_logger(name: str = "graphc.distribute", all_ranks: bool = False,
               level: int = logging.INFO) -> logging.Logger:  # fmt: skip
    """A logger whose records are shown on rank 0 only (``all_ranks=True``: on every rank),
    each line prefixed with its rank."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    for f in list(logger.filters):
        if isinstance(f, _RankFilter):
            logger.removeFilter(f)
    logger.addFilter(_RankFilter(all_ranks))
    if not any(getattr(h, "_graphc_rank", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[rank %(rank)s] %(message)s"))
        handler._graphc_rank = True
        logger.addHandler(handler)
        logger.propagate = False
    return logger
