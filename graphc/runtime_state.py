"""The state one run sees: feeds, variables (copy-on-write) and random-stream counters.

Writes go to ``pending`` and become visible to the session only by ``commit()``, so a run
that fails leaves the session's variables as they were.
"""

from __future__ import annotations

import numpy as np


class RunContext:
    # (slots: one is made per sess.run, the tiny-run path's ~5 us included)
    __slots__ = ("variables", "rng_counters", "feeds", "pending", "pending_rng", "owned")

    def __init__(self, variables: dict, rng_counters: dict, feeds: list):
        self.variables = variables
        self.rng_counters = rng_counters
        self.feeds = feeds
        self.pending: dict = {}
        self.pending_rng: dict = {}
        self.owned: set = set()  # pending values commit may keep without a copy

    def read_variable(self, name: str):
        if name in self.pending:
            return self.pending[name]
        return self.variables.get(name)

    def write_variable(self, name: str, value: np.ndarray, owned: bool = False) -> None:
        """Stage a variable's new value (committed only if the whole run succeeds).
        ``owned``: ``value`` is an array made for this run that nothing else references or
        will write to again, so commit keeps it (read-only) instead of copying it."""
        self.pending[name] = value
        if owned:
            self.owned.add(name)
        else:
            self.owned.discard(name)

    def rng_counter(self, op_name: str) -> int:
        """This run's counter for a random op (each run of the op draws fresh values)."""
        if op_name not in self.pending_rng:
            self.pending_rng[op_name] = self.rng_counters.get(op_name, 0)
        return self.pending_rng[op_name]

    def commit(self) -> None:
        for name, value in self.pending.items():
            # A device-resident value (cuda target) is immutable already: keeping it, not a
            # host copy, is what keeps variables on the GPU between runs.
            if not getattr(value, "__graphc_device__", False):
                if name not in self.owned:
                    value = np.array(value, copy=True)
                value.setflags(write=False)
            self.variables[name] = value
        for name, value in self.pending_rng.items():
            self.rng_counters[name] = value + 1


_MASK64 = (1 << 64) - 1


def iteration_counter(counter: int, iteration: int) -> int:
    """The random-stream counter of iteration ``iteration`` of a loop body whose run
    counter is ``counter``: a splitmix64 step, so that each iteration draws its own numbers
    (a dropout mask per step of an RNN), the same on every target, without advancing any
    counter the session keeps."""
    z = (counter + (iteration + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class SubContext:
    """The context a sub-program runs in (a control-flow body): its own feeds, and the
    run's variables and random streams, so that its writes are the run's writes (committed,
    or not, with the whole run). ``iteration``: the loop iteration it runs (None outside a
    loop), which gives its random ops a stream of their own. ``into``: {output index:
    array} a runner may write those outputs into (and return), e.g. rows of a loop's
    stacked outputs; None: none."""

    __slots__ = ("feeds", "_ctx", "iteration", "into")

    def __init__(self, ctx, feeds: list, iteration: int | None = None):
        self.feeds = feeds
        self._ctx = ctx
        self.iteration = iteration
        self.into = None

    def read_variable(self, name: str):
        return self._ctx.read_variable(name)

    def write_variable(self, name: str, value, owned: bool = False) -> None:
        self._ctx.write_variable(name, value, owned)

    def rng_counter(self, op_name: str) -> int:
        counter = self._ctx.rng_counter(op_name)
        if self.iteration is None:
            return counter
        return iteration_counter(counter, self.iteration)
