"""Helpers every runtime of a KernelProgram uses to honour the contract of ``ir.py``.

They run in Python before/after the kernels: runtime dims from the feeds, shape checks,
variable binding (FailedPreconditionError for uninitialised ones), per-run random keys and
the status flags that turn into InvalidArgumentError.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..errors import FailedPreconditionError, InvalidArgumentError, ResourceExhaustedError
from ..expr import NUMPY_MATH, Call, Const, Dim, Math
from ..ops import random as _random
from .ir import KernelProgram


def dim_values(kp: KernelProgram, feeds) -> dict:
    """name -> int: the runtime size of every Dim, read from the feeds' shapes."""
    return {name: int(np.shape(feeds[k])[axis]) for name, (k, axis) in kp.dims.items()}


#: exact Python-int meaning of the Math functions size expressions use: sizes are computed
#: with unbounded ints, so an int64 overflow is seen (and refused) instead of wrapping
_INT_MATH = {
    Math.ADD: lambda a, b: a + b,
    Math.SUB: lambda a, b: a - b,
    Math.MUL: lambda a, b: a * b,
    Math.FLOORDIV: lambda a, b: a // b if b else 0,
    Math.MOD: lambda a, b: a % b if b else 0,
    Math.MAX: max,
    Math.MIN: min,
    Math.NEG: lambda a: -a,
    Math.ABS: abs,
    Math.EQ: lambda a, b: a == b,
    Math.NE: lambda a, b: a != b,
    Math.LT: lambda a, b: a < b,
    Math.LE: lambda a, b: a <= b,
    Math.GT: lambda a, b: a > b,
    Math.GE: lambda a, b: a >= b,
    Math.AND: lambda a, b: bool(a) and bool(b),
    Math.OR: lambda a, b: bool(a) or bool(b),
    Math.NOT: lambda a: not a,
    Math.SELECT: lambda c, a, b: a if c else b,
}


def eval_int(e, dims: dict):
    """Value of an int64 (or bool) expression over Dims and Consts (a Python int/bool).

    Integer arithmetic is exact (Python ints): a size that overflows int64 comes out too
    large, and ``check_sizes`` refuses it, where int64 arithmetic would wrap to a small one.
    """
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Dim):
        return dims[e.name]
    if isinstance(e, Call):
        args = [eval_int(a, dims) for a in e.args]
        fn = _INT_MATH.get(e.fn)
        if fn is not None and all(isinstance(a, int) for a in args):
            return fn(*args)
        return np.asarray(NUMPY_MATH[e.fn](*(np.asarray(a) for a in args))).item()
    raise TypeError(f"not a size expression: {e!r}")


def shape_of(kp: KernelProgram, name: str, dims: dict) -> tuple:
    """Concrete shape of a buffer."""
    return tuple(eval_int(d, dims) for d in kp.buffers[name].shape)


def check_dims(kp: KernelProgram, dims: dict) -> None:
    """Raise InvalidArgumentError for the first failing shape check (before any kernel).

    A check's message may hold ``{0}``, ``{1}``... fields: the values of its size
    expressions (``args``) for this run, so the error names the sizes that disagree.
    """
    for check in kp.dim_checks:
        cond, message = check[0], check[1]
        if not eval_int(cond, dims):
            args = check[2] if len(check) > 2 else ()
            raise InvalidArgumentError(check_message(message, args, dims))


def check_message(message: str, args, dims: dict) -> str:
    """``message`` with its ``{k}`` fields replaced by the values of ``args`` for ``dims``."""
    if not args:
        return message
    try:
        return message.format(*(eval_int(a, dims) for a in args))
    except (IndexError, KeyError, ValueError):
        return message


def check_sizes(shapes: dict, itemsizes: dict) -> dict:
    """name -> bytes of each buffer of ``shapes`` (name -> concrete shape), refused past the
    limit.

    Every size is an exact Python int (see ``eval_int``): a negative dimension raises
    InvalidArgumentError; a buffer past ``config.max_buffer_bytes()`` (which also catches
    what would overflow int64) raises ResourceExhaustedError naming it, so no native code
    ever sees a size computed by wrapping arithmetic.
    """
    limit = config.max_buffer_bytes()
    out = {}
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            if s < 0:
                raise InvalidArgumentError(f"buffer {name}: negative size in shape {shape}")
            n *= s
        nbytes = n * itemsizes[name]
        if nbytes > limit:
            raise ResourceExhaustedError(
                f"this run needs a buffer of shape {tuple(shape)} ({nbytes:,} bytes, for "
                f"{name}): more than the limit of {limit:,} bytes "
                "(GRAPHC_MAX_BUFFER_BYTES; default: the machine's physical memory)"
            )
        out[name] = nbytes
    return out


def check_total(nbytes: int) -> None:
    """ResourceExhaustedError when one run's buffers together pass the limit."""
    limit = config.max_buffer_bytes()
    if nbytes > limit:
        raise ResourceExhaustedError(
            f"this run needs {nbytes:,} bytes of buffers: more than the limit of {limit:,} "
            "bytes (GRAPHC_MAX_BUFFER_BYTES; default: the machine's physical memory)"
        )


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
