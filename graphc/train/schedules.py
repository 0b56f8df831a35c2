"""The global step and learning-rate schedules (TF1 ``tf.train.*_decay``).

A schedule is an ordinary tensor computed from the ``global_step`` variable, so it can be
passed as an optimizer's learning rate and changes as training advances.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..graph.core import Tensor, get_default_graph
from ..ops.elementwise import cast, ceil, floor, maximum, minimum, pow, where
from ..ops.registry import convert_to_tensor
from ..ops.state import GLOBAL_VARIABLES, Variable

__all__ = [
    "get_global_step",
    "get_or_create_global_step",
    "create_global_step",
    "exponential_decay",
    "inverse_time_decay",
    "polynomial_decay",
    "piecewise_constant",
]

GLOBAL_STEP = "global_step"


def get_global_step(graph=None) -> Variable | None:
    """The graph's global step variable, or None if it has none."""
    graph = graph or get_default_graph()
    steps = graph.get_collection(GLOBAL_STEP)
    if len(steps) > 1:
        raise ValueError(f"the graph has {len(steps)} global step variables, expected one")
    return steps[0] if steps else None


def create_global_step(graph=None) -> Variable:
    """Create the graph's global step: a scalar int64 Variable ``global_step`` starting at 0."""
    graph = graph or get_default_graph()
    if get_global_step(graph) is not None:
        raise ValueError("the graph already has a global step")
    with graph.as_default(), graph.control_dependencies(None), graph.name_scope(None):
        step = Variable(
            np.int64(0), trainable=False, name="global_step", dtype=_dt.int64,
            collections=[GLOBAL_VARIABLES, GLOBAL_STEP],
        )  # fmt: skip
    return step


def get_or_create_global_step(graph=None) -> Variable:
    """The graph's global step, created (at 0) if it does not exist yet."""
    graph = graph or get_default_graph()
    step = get_global_step(graph)
    return step if step is not None else create_global_step(graph)


def _step_and_rate(learning_rate, global_step, what):
    if global_step is None:
        raise ValueError(f"{what} requires global_step")
    lr = convert_to_tensor(learning_rate, dtype=_float_dtype(learning_rate))
    step = convert_to_tensor(global_step)
    if step.shape not in (None, ()):
        raise ValueError(f"{what}: global_step must be a scalar, got shape {step.shape}")
    return lr, cast(step, lr.dtype) if step.dtype != lr.dtype else step


def _float_dtype(value):
    if isinstance(value, Tensor) or hasattr(value, "_as_graph_tensor"):
        dt = convert_to_tensor(value).dtype
        if not dt.is_floating:
            raise TypeError(f"learning_rate must be floating, got {dt.name}")
        return dt
    return _dt.float32


def exponential_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                      name=None) -> Tensor:  # fmt: skip
    """``learning_rate * decay_rate ** (global_step / decay_steps)``; the exponent is floored
    when ``staircase``."""
    if not isinstance(decay_steps, Tensor) and decay_steps <= 0:
        raise ValueError(f"exponential_decay: decay_steps must be positive, got {decay_steps}")
    lr, step = _step_and_rate(learning_rate, global_step, "exponential_decay")
    graph = lr.graph
    with graph.as_default(), graph.name_scope(name or "ExponentialDecay"):
        p = step / _as(decay_steps, lr)
        if staircase:
            p = floor(p)
        return lr * pow(_as(decay_rate, lr), p)


def inverse_time_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                       name=None) -> Tensor:  # fmt: skip
    """``learning_rate / (1 + decay_rate * global_step / decay_steps)``."""
    lr, step = _step_and_rate(learning_rate, global_step, "inverse_time_decay")
    graph = lr.graph
    with graph.as_default(), graph.name_scope(name or "InverseTimeDecay"):
        p = step / _as(decay_steps, lr)
        if staircase:
            p = floor(p)
        return lr / (1 + _as(decay_rate, lr) * p)


def polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate=0.0001,
                     power=1.0, cycle=False, name=None) -> Tensor:  # fmt: skip
    """``(lr - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end`` (TF1; with
    ``cycle`` the horizon grows to the next multiple of decay_steps)."""
    lr, step = _step_and_rate(learning_rate, global_step, "polynomial_decay")
    graph = lr.graph
    with graph.as_default(), graph.name_scope(name or "PolynomialDecay"):
        steps = _as(decay_steps, lr)
        if cycle:
            steps = steps * maximum(ceil(step / steps), 1)
        else:
            step = minimum(step, steps)
        frac = 1 - step / steps
        end = _as(end_learning_rate, lr)
        return (lr - end) * pow(frac, _as(power, lr)) + end


def piecewise_constant(x, boundaries, values, name=None) -> Tensor:
    """``values[0]`` while ``x <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < x <= boundaries[i]``, ``values[-1]`` after the last boundary."""
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"piecewise_constant: {len(values)} values for {len(boundaries)} boundaries "
            "(expected one more value than boundaries)"
        )
    x = convert_to_tensor(x)
    vals = [convert_to_tensor(v, dtype=_float_dtype(v)) for v in values]
    graph = x.graph
    with graph.as_default(), graph.name_scope(name or "PiecewiseConstant"):
        out = vals[-1]
        # Build from the last interval back so that the first matching one wins.
        for b, v in reversed(list(zip(boundaries, vals[:-1]))):
            out = where(x <= convert_to_tensor(b, dtype=x.dtype), v, out)
        return out


def _as(value, like: Tensor) -> Tensor:
    if isinstance(value, Tensor) or hasattr(value, "_as_graph_tensor"):
        t = convert_to_tensor(value)
        return t if t.dtype == like.dtype else cast(t, like.dtype)
    return convert_to_tensor(value, dtype=like.dtype, graph=like.graph)
