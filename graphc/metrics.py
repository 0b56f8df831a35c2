"""``gc.metrics``: TF1's streaming metrics (``tf.compat.v1.metrics``).

A metric returns ``(value, update_op)``: running ``update_op`` adds a batch to the metric's
local variables (``total``, ``count``, in ``GraphKeys.LOCAL_VARIABLES`` and
``METRIC_VARIABLES``) and returns the updated value; ``value`` reads the current one.
Initialise the counters with ``gc.local_variables_initializer()`` (that also resets them).

Layering: above the ops, graph collections and model scopes, like ``gc.losses``.
"""

from __future__ import annotations

from . import dtypes as _dt
from .graph.collections import GraphKeys
from .graph.core import control_dependencies, get_default_graph
from .model.scope import variable_scope
from .ops.constant import ones_like, zeros
from .ops.control import identity
from .ops.elementwise import abs as _abs
from .ops.elementwise import cast, equal, greater, maximum, square, where
from .ops.reduce import reduce_sum
from .ops.registry import convert_to_tensor
from .ops.shape import broadcast_to, size, squeeze
from .ops.state import Variable, assign_add

__all__ = ["accuracy", "mean", "mean_absolute_error", "mean_squared_error", "metric_variable"]


def metric_variable(shape, dtype, validate_shape=True, name=None) -> Variable:
    """A zero-initialised local, non-trainable variable (a metric's counter)."""
    return Variable(
        lambda: zeros(shape, dtype), trainable=False, name=name, dtype=dtype,
        collections=[GraphKeys.LOCAL_VARIABLES, GraphKeys.METRIC_VARIABLES],
    )  # fmt: skip


def _div_no_nan(total, count, name=None):
    positive = greater(count, 0)
    out = where(positive, total / where(positive, count, ones_like(count)), 0.0)
    if name:
        out = identity(out, name=name)
    return out


def _squeezable(labels, predictions):
    """Drop a trailing size-1 dim of one side when it is the other's rank + 1 (TF1)."""
    if labels.shape is not None and predictions.shape is not None:
        lr, pr = len(labels.shape), len(predictions.shape)
        if pr == lr + 1 and predictions.shape[-1] == 1:
            predictions = squeeze(predictions, [-1])
        elif lr == pr + 1 and labels.shape[-1] == 1:
            labels = squeeze(labels, [-1])
    return labels, predictions


def _check_compatible(a, b, what):
    if a.shape is None or b.shape is None:
        return
    if len(a.shape) != len(b.shape) or any(
        x is not None and y is not None and x != y for x, y in zip(a.shape, b.shape)
    ):
        raise ValueError(f"{what}: shapes {a.shape} and {b.shape} are not compatible")


def _add_to(collections, value):
    graph = get_default_graph()
    for key in collections or []:
        graph.add_to_collection(key, value)


def mean(values, weights=None, metrics_collections=None, updates_collections=None,
         name=None):  # fmt: skip
    """The (weighted) mean of ``values`` over every batch the update op has seen."""
    with variable_scope(name, "mean"):
        values = convert_to_tensor(values)
        values = cast(values, _dt.float32) if values.dtype != _dt.float32 else values
        total = metric_variable((), _dt.float32, name="total")
        count = metric_variable((), _dt.float32, name="count")
        if weights is None:
            num_values = cast(size(values), _dt.float32)
        else:
            w = convert_to_tensor(weights)
            w = cast(w, _dt.float32) if w.dtype != _dt.float32 else w
            if values.shape is not None and None not in values.shape:
                w = broadcast_to(w, values.shape)
            else:
                w = w * ones_like(values)
            values = values * w
            num_values = reduce_sum(w)
        update_total = assign_add(total, reduce_sum(values))
        with control_dependencies([values]):
            update_count = assign_add(count, num_values)
        value = _div_no_nan(total, maximum(count, 0.0), name="value")
        update_op = _div_no_nan(update_total, maximum(update_count, 0.0), name="update_op")
    _add_to(metrics_collections, value)
    _add_to(updates_collections, update_op)
    return value, update_op


def accuracy(labels, predictions, weights=None, metrics_collections=None,
             updates_collections=None, name=None):  # fmt: skip
    """How often ``predictions`` equal ``labels`` (e.g. class ids from ``gc.argmax``):
    ``(accuracy, update_op)`` over all batches the update op has seen; variables
    ``accuracy/total`` and ``accuracy/count``."""
    labels = convert_to_tensor(labels)
    predictions = convert_to_tensor(predictions)
    labels, predictions = _squeezable(labels, predictions)
    _check_compatible(predictions, labels, "accuracy")
    if labels.dtype != predictions.dtype:
        predictions = cast(predictions, labels.dtype)
    is_correct = cast(equal(predictions, labels), _dt.float32)
    return mean(is_correct, weights, metrics_collections, updates_collections,
                name or "accuracy")  # fmt: skip


def mean_absolute_error(labels, predictions, weights=None, metrics_collections=None,
                        updates_collections=None, name=None):  # fmt: skip
    """Streaming mean of ``|predictions - labels|``."""
    labels, predictions = _squeezable(convert_to_tensor(labels), convert_to_tensor(predictions))
    _check_compatible(predictions, labels, "mean_absolute_error")
    err = _abs(cast(predictions, _dt.float32) - cast(labels, _dt.float32))
    return mean(err, weights, metrics_collections, updates_collections,
                name or "mean_absolute_error")  # fmt: skip


def mean_squared_error(labels, predictions, weights=None, metrics_collections=None,
                       updates_collections=None, name=None):  # fmt: skip
    """Streaming mean of ``(predictions - labels) ** 2``."""
    labels, predictions = _squeezable(convert_to_tensor(labels), convert_to_tensor(predictions))
    _check_compatible(predictions, labels, "mean_squared_error")
    err = square(cast(predictions, _dt.float32) - cast(labels, _dt.float32))
    return mean(err, weights, metrics_collections, updates_collections,
                name or "mean_squared_error")  # fmt: skip
