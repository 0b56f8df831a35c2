"""Debugging ops: ``gc.print`` and the ``gc.debugging.assert_*`` checks.

Both are stateful (never folded, merged or removed while something depends on them) and
have no Kernel-IR lowering: the cpu target runs them on the host between native segments
(``backends/cpu/fallback.py``, labelled ``host_fallback:<op>``), the reference target runs
them in program order like every other op. A failing assert raises ``InvalidArgumentError``
whose message names the op and the file and line of the user code that built it.
"""

from __future__ import annotations

import builtins
import sys

import numpy as np

from ..errors import InvalidArgumentError
from ..graph.core import Operation, Tensor, get_default_graph, user_location
from .registry import (
    DTypeError,
    OpDef,
    apply_op,
    broadcast_shapes,
    convert_args,
    convert_to_tensor,
    register,
)

__all__ = [
    "print_", "assert_equal", "assert_none_equal", "assert_less", "assert_less_equal",
    "assert_greater", "assert_greater_equal", "assert_non_negative", "assert_positive",
    "assert_negative", "assert_non_positive",
]  # fmt: skip


def _where(attrs) -> str:
    return f"'{attrs['op_name']}' (built at {attrs['file']}:{attrs['line']})"


def format_value(x: np.ndarray, summarize: int) -> str:
    """``x`` as tf.print shows it: numpy's text, each axis cut to its first and last
    ``summarize`` entries (``summarize < 0``: everything)."""
    x = np.asarray(x)
    if x.ndim == 0:
        return str(x.item())
    if summarize < 0:
        return np.array2string(x, threshold=sys.maxsize, separator=" ")
    return np.array2string(x, threshold=2 * summarize, edgeitems=summarize, separator=" ")


@register
class Print(OpDef):
    """Identity on its first input that writes ``message`` and every input to stderr when
    it runs (``gc.print``)."""

    kind = "host"
    host_reason = "writes to stderr: a host effect between native segments"
    static_shape_reason = "a host op (kind 'host'): never lowered"
    replayable = True

    stateful = True  # a visible effect: never folded away or merged with another print
    no_examples_reason = "prints to stderr when run: tested in tests/rnn/test_debugging.py"

    def infer(self, specs, attrs):
        return [specs[0]]

    def ref_stateful(self, xs, attrs, ctx):
        parts = [attrs["message"]] if attrs["message"] else []
        parts += [format_value(x, attrs["summarize"]) for x in xs]
        stream = sys.stderr  # looked up at run time, so a redirected stderr gets the text
        builtins.print(" ".join(parts), file=stream, flush=True)
        return xs[0]

    def vjp(self, op, grads):
        return [grads[0]] + [None] * (len(op.inputs) - 1)


def print_(*tensors, message="", summarize=3, name=None) -> Tensor:
    """``gc.print``: returns its first input unchanged; when that value is computed, writes
    ``message`` and the values of all ``tensors`` (separated by spaces) to stderr, like
    ``tf.print``. Each axis shows its first and last ``summarize`` entries (-1: all).

    Fetch (or depend on) the result: a print nothing needs does not run."""
    if not tensors:
        raise ValueError("gc.print needs at least one tensor (it returns the first)")
    if not isinstance(message, str):
        raise TypeError(f"gc.print: message must be a str, got {type(message).__name__}")
    xs = [convert_to_tensor(t) for t in tensors]
    attrs = {"message": message, "summarize": int(summarize)}
    return apply_op("Print", xs, attrs, name or "Print").outputs[0]


# -- asserts -------------------------------------------------------------------------------------

#: kind -> (numpy predicate, how the failed condition reads, number of operands)
_CONDITIONS = {
    "equal": (np.equal, "x == y", 2),
    "none_equal": (np.not_equal, "x != y", 2),
    "less": (np.less, "x < y", 2),
    "less_equal": (np.less_equal, "x <= y", 2),
    "greater": (np.greater, "x > y", 2),
    "greater_equal": (np.greater_equal, "x >= y", 2),
    "non_negative": (lambda x: x >= 0, "x >= 0", 1),
    "positive": (lambda x: x > 0, "x > 0", 1),
    "negative": (lambda x: x < 0, "x < 0", 1),
    "non_positive": (lambda x: x <= 0, "x <= 0", 1),
}


@register
class Assert(OpDef):
    """Fails the run with InvalidArgumentError unless ``attrs['kind']``'s condition holds
    for every element of its (broadcast) inputs. No outputs: use it as a control
    dependency, as TF1's asserts."""

    kind = "host"
    host_reason = "a check with a formatted message that fails the run: evaluated on the host"
    static_shape_reason = "a host op (kind 'host'): never lowered"
    replayable = True

    stateful = True
    differentiable = False
    no_examples_reason = "no output; raises when run: tested in tests/rnn/test_debugging.py"

    def infer(self, specs, attrs):
        _, text, arity = _CONDITIONS[attrs["kind"]]
        if len(specs) != arity:
            raise DTypeError(f"{text} takes {arity} tensor(s), got {len(specs)}")
        if arity == 2 and specs[0].dtype != specs[1].dtype:
            raise DTypeError(
                f"x and y must have one dtype, got {specs[0].dtype.name} and {specs[1].dtype.name}"
            )
        if specs[0].dtype.is_bool and attrs["kind"] not in ("equal", "none_equal"):
            raise DTypeError(f"{text} needs numbers, got bool")
        broadcast_shapes(*[s.shape for s in specs])
        return []

    def ref_stateful(self, xs, attrs, ctx):
        predicate, text, _ = _CONDITIONS[attrs["kind"]]
        xs = [np.asarray(x) for x in xs]
        ok = np.broadcast_to(predicate(*xs), np.broadcast_shapes(*[x.shape for x in xs]))
        if ok.all():
            return []
        bad = tuple(int(i) for i in np.argwhere(~ok)[0])
        summarize = attrs["summarize"]
        at = [np.broadcast_to(x, ok.shape)[bad] for x in xs]
        names = ["x", "y"][: len(xs)]
        first = ", ".join(f"{n} = {v}" for n, v in zip(names, at))
        shown = "; ".join(
            f"{n} (shape {x.shape}) = {format_value(x, summarize)}" for n, x in zip(names, xs)
        )
        head = f"{attrs['message']}: " if attrs["message"] else ""
        raise InvalidArgumentError(
            f"{head}assert {_where(attrs)}: condition {text} did not hold element-wise "
            f"({int((~ok).sum())} of {ok.size} elements); first at index {bad}: {first}; "
            f"{shown}"
        )


def _assert(kind, tensors, message, summarize, name) -> Operation:
    file, line = user_location()
    if message is not None and not isinstance(message, str):
        raise TypeError(f"assert_{kind}: message must be a str, got {type(message).__name__}")
    xs = convert_args(tensors)
    attrs = {
        "kind": kind,
        "message": message or "",
        "summarize": 3 if summarize is None else int(summarize),
        "file": file,
        "line": line,
        "op_name": "",
    }
    graph = xs[0].graph if xs else get_default_graph()
    op = apply_op("Assert", xs, attrs, name or f"assert_{kind}", graph=graph)
    op.attrs["op_name"] = op.name  # the final (unique) name, for the run-time message
    return op


def assert_equal(x, y, data=None, summarize=None, message=None, name=None) -> Operation:
    """An op that fails the run (InvalidArgumentError) unless ``x == y`` everywhere
    (broadcasting as numpy). Run it, or make other ops depend on it with
    ``gc.control_dependencies``. ``data`` is accepted for TF1 compatibility; the message
    always shows x and y."""
    return _assert("equal", [x, y], message, summarize, name)


def assert_none_equal(x, y, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x != y`` everywhere."""
    return _assert("none_equal", [x, y], message, summarize, name)


def assert_less(x, y, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x < y`` everywhere."""
    return _assert("less", [x, y], message, summarize, name)


def assert_less_equal(x, y, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x <= y`` everywhere."""
    return _assert("less_equal", [x, y], message, summarize, name)


def assert_greater(x, y, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x > y`` everywhere."""
    return _assert("greater", [x, y], message, summarize, name)


def assert_greater_equal(x, y, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x >= y`` everywhere."""
    return _assert("greater_equal", [x, y], message, summarize, name)


def assert_non_negative(x, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x >= 0`` everywhere."""
    return _assert("non_negative", [x], message, summarize, name)


def assert_positive(x, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x > 0`` everywhere."""
    return _assert("positive", [x], message, summarize, name)


def assert_negative(x, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x < 0`` everywhere."""
    return _assert("negative", [x], message, summarize, name)


def assert_non_positive(x, data=None, summarize=None, message=None, name=None) -> Operation:
    """Fails the run unless ``x <= 0`` everywhere."""
    return _assert("non_positive", [x], message, summarize, name)
