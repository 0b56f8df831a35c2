"""Helpers every runtime of a KernelProgram uses to honour the contract of ``ir.py``.

They run in Python before/after the kernels: runtime dims from the feeds, shape checks,
variable binding (FailedPreconditionError for uninitialised ones), per-run random keys and
the status flags that turn into InvalidArgumentError.
"""

from __future__ import annotations

import numpy as np

from ..errors import FailedPreconditionError, InvalidArgumentError
from ..ops import random as _random
from .expr import NUMPY_MATH, Call, Const, Dim
from .ir import Check, KernelProgram


def dim_values(kp: KernelProgram, feeds) -> dict:
    """name -> int: the runtime size of every Dim, read from the feeds' shapes."""
    return {name: int(np.shape(feeds[k])[axis]) for name, (k, axis) in kp.dims.items()}


def eval_int(e, dims: dict):
    """Value of an int64 (or bool) expression over Dims and Consts (a Python int/bool)."""
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Dim):
        return dims[e.name]
    if isinstance(e, Call):
        args = [np.asarray(eval_int(a, dims)) for a in e.args]
        return np.asarray(NUMPY_MATH[e.fn](*args)).item()
    raise TypeError(f"not a size expression: {e!r}")


def shape_of(kp: KernelProgram, name: str, dims: dict) -> tuple:
    """Concrete shape of a buffer."""
    return tuple(eval_int(d, dims) for d in kp.buffers[name].shape)


def check_dims(kp: KernelProgram, dims: dict) -> None:
    """Raise InvalidArgumentError for the first failing shape check (before any kernel)."""
    for cond, message in kp.dim_checks:
        if not eval_int(cond, dims):
            raise InvalidArgumentError(message)


def bind_variables(kp: KernelProgram, ctx) -> dict:
    """buffer name -> the variable's current value (FailedPreconditionError if unset)."""
    out = {}
    for buf, var in kp.var_reads.items():
        value = ctx.read_variable(var)
        if value is None:
            raise FailedPreconditionError(
                f"Attempting to use uninitialized value {var}: run its initializer "
                f"(e.g. sess.run(gc.global_variables_initializer())) first"
            )
        out[buf] = value
    return out


def rng_keys(kp: KernelProgram, ctx) -> np.ndarray:
    """The int64 key of every random op for this run (advances nothing until commit)."""
    keys = [
        _random.stream_key(seed, seed2, ctx.rng_counter(op_name)) for op_name, seed, seed2 in kp.rng
    ]
    return np.array(keys, dtype=np.uint64).view(np.int64)


def raise_status(kp: KernelProgram, status) -> None:
    """Raise InvalidArgumentError for the first failed check in slot order.

    A CheckNumerics op owns two slots, "nan" then "inf": NaN is reported first, like the
    reference interpreter.
    """
    status = np.asarray(status)
    for c in sorted(kp.checks, key=lambda c: c.slot):
        if status[c.slot]:
            if c.kind == "nan":
                raise InvalidArgumentError(f"{c.message} : Tensor had NaN values")
            if c.kind == "inf":
                raise InvalidArgumentError(f"{c.message} : Tensor had Inf values")
            raise InvalidArgumentError(c.message)


_ = Check
