"""``gc.losses``: TF1's ``tf.compat.v1.losses``.

Each loss computes per-element losses, weights them (``weights``: a scalar or a tensor that
broadcasts to them) and reduces them as ``reduction`` says, TF1's default being
``Reduction.SUM_BY_NONZERO_WEIGHTS``: the weighted sum divided by the number of non-zero
weights (0 when there are none). The result is added to ``GraphKeys.LOSSES`` (or
``loss_collection``), which ``get_total_loss()`` sums with ``REGULARIZATION_LOSSES``.

Layering: above the ops and graph collections; the layers and the optimizers do not need it.
"""

from __future__ import annotations

import functools

from . import dtypes as _dt
from .graph.collections import GraphKeys
from .graph.core import Tensor, get_default_graph, name_scope
from .ops.constant import constant, ones_like
from .ops.control import identity, stop_gradient
from .ops.elementwise import abs as _abs
from .ops.elementwise import (
    cast,
    greater,
    log,
    maximum,
    minimum,
    not_equal,
    square,
    where,
)
from .ops.nn import (
    sigmoid_cross_entropy_with_logits,
    softmax_cross_entropy_with_logits_v2,
    sparse_softmax_cross_entropy_with_logits,
)
from .ops.reduce import reduce_sum
from .ops.registry import convert_to_tensor
from .ops.shape import broadcast_to, shape, size, squeeze

__all__ = [
    "Reduction", "compute_weighted_loss", "add_loss", "get_losses", "get_regularization_losses",
    "get_regularization_loss", "get_total_loss", "mean_squared_error", "absolute_difference",
    "softmax_cross_entropy", "sparse_softmax_cross_entropy", "sigmoid_cross_entropy",
    "log_loss", "huber_loss", "hinge_loss",
]  # fmt: skip


class Reduction:
    """How a loss reduces its weighted per-element losses (TF1's ``tf.losses.Reduction``)."""

    NONE = "none"  #: no reduction: the weighted losses, shaped like the inputs
    SUM = "weighted_sum"  #: their sum
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"  #: sum / number of elements
    MEAN = "weighted_mean"  #: sum / sum of the weights
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"  #: sum / non-zero weights
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls):
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE,
                cls.SUM_OVER_NONZERO_WEIGHTS, cls.SUM_BY_NONZERO_WEIGHTS)  # fmt: skip

    @classmethod
    def validate(cls, key):
        if key not in cls.all():
            raise ValueError(f"Invalid Reduction Key {key!r}")


def _loss_dtype(t: Tensor):
    """Losses are computed in float32 (TF1), float64 inputs stay float64."""
    return t.dtype if t.dtype == _dt.float64 else _dt.float32


def _safe_div(total, count):
    """total / count, 0 where count is 0 (no NaN in the value or the gradient)."""
    positive = greater(count, 0)
    return where(positive, total / where(positive, count, ones_like(count)), 0.0)


def _check_weights(weights, losses):
    if losses.shape is None or weights.shape is None:
        return
    if len(weights.shape) > len(losses.shape):
        raise ValueError(f"weights of shape {weights.shape} have a higher rank than the losses "
                         f"of shape {losses.shape}")  # fmt: skip
    for w, n in zip(reversed(weights.shape), reversed(losses.shape)):
        if w not in (None, 1) and n is not None and w != n:
            raise ValueError(f"weights of shape {weights.shape} cannot be broadcast to losses "
                             f"of shape {losses.shape}")  # fmt: skip


def _broadcast_weights(weights, losses):
    if weights.shape is not None and losses.shape is not None and weights.shape == losses.shape:
        return weights
    if losses.shape is not None and None not in losses.shape:
        return broadcast_to(weights, losses.shape)
    return weights * ones_like(losses)


def compute_weighted_loss(losses, weights=1.0, scope=None, loss_collection=GraphKeys.LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """``losses * weights`` reduced by ``reduction``, added to ``loss_collection``."""
    Reduction.validate(reduction)
    losses = convert_to_tensor(losses)
    input_dtype = losses.dtype
    with name_scope(scope or "weighted_loss"):
        dtype = _loss_dtype(losses)
        losses = cast(losses, dtype) if losses.dtype != dtype else losses
        scalar_weight = isinstance(weights, int | float) and not isinstance(weights, bool)
        w = convert_to_tensor(weights)
        w = cast(w, dtype) if w.dtype != dtype else w
        _check_weights(w, losses)
        weighted = losses * w
        if reduction == Reduction.NONE:
            loss = weighted
        else:
            loss = reduce_sum(weighted)
            if reduction == Reduction.MEAN:
                loss = _safe_div(loss, reduce_sum(_broadcast_weights(w, losses)))
            elif reduction == Reduction.SUM_BY_NONZERO_WEIGHTS:
                if scalar_weight and weights != 0.0:
                    present = cast(size(losses), dtype)
                else:
                    nonzero = cast(not_equal(w, 0.0), dtype)
                    present = reduce_sum(_broadcast_weights(nonzero, losses))
                loss = _safe_div(loss, present)
            elif reduction == Reduction.SUM_OVER_BATCH_SIZE:
                loss = _safe_div(loss, cast(size(losses), dtype))
        if loss.dtype != input_dtype and input_dtype.is_floating:
            loss = cast(loss, input_dtype)
    add_loss(loss, loss_collection)
    return loss


def add_loss(loss, loss_collection=GraphKeys.LOSSES) -> None:
    """Add ``loss`` to ``loss_collection`` (nothing when it is None)."""
    if loss_collection and loss is not None:
        get_default_graph().add_to_collection(loss_collection, loss)


def get_losses(scope=None, loss_collection=GraphKeys.LOSSES) -> list:
    """The losses of ``loss_collection`` (names matching ``scope``)."""
    return get_default_graph().get_collection(loss_collection, scope)


def get_regularization_losses(scope=None) -> list:
    """The regularization losses (of ``get_variable``'s and the layers' regularizers)."""
    return get_default_graph().get_collection(GraphKeys.REGULARIZATION_LOSSES, scope)


def _add_n(terms, name):
    total = functools.reduce(lambda a, b: a + b, terms)
    return identity(total, name=name)


def get_regularization_loss(scope=None, name="total_regularization_loss") -> Tensor:
    """The sum of the regularization losses (a float32 0 when there are none)."""
    terms = get_regularization_losses(scope)
    if not terms:
        return constant(0.0, name=name)
    return _add_n(terms, name)


def get_total_loss(add_regularization_losses=True, name="total_loss", scope=None) -> Tensor:
    """The sum of ``get_losses()`` and (by default) ``get_regularization_losses()``.

    ValueError when there is no loss at all, as TF1."""
    terms = get_losses(scope)
    if add_regularization_losses:
        terms = terms + get_regularization_losses(scope)
    if not terms:
        raise ValueError("No losses to sum: build a loss with gc.losses.* (or add one with "
                         "gc.losses.add_loss) first")  # fmt: skip
    return _add_n(terms, name)


def _pair(labels, predictions, what):
    predictions = convert_to_tensor(predictions)
    labels = convert_to_tensor(labels)
    dtype = _loss_dtype(predictions)
    predictions = cast(predictions, dtype) if predictions.dtype != dtype else predictions
    labels = cast(labels, dtype) if labels.dtype != dtype else labels
    if predictions.shape is not None and labels.shape is not None:
        ok = len(predictions.shape) == len(labels.shape) and all(
            a is None or b is None or a == b for a, b in zip(predictions.shape, labels.shape)
        )
        if not ok:
            raise ValueError(f"{what}: labels of shape {labels.shape} and predictions of shape "
                             f"{predictions.shape} are not compatible")  # fmt: skip
    return labels, predictions


def _weighted(per_element, weights, scope, loss_collection, reduction):
    return compute_weighted_loss(per_element, weights, scope, loss_collection, reduction)


def mean_squared_error(labels, predictions, weights=1.0, scope=None,
                       loss_collection=GraphKeys.LOSSES,
                       reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """Weighted mean of ``(predictions - labels) ** 2``."""
    with name_scope(scope or "mean_squared_error"):
        labels, predictions = _pair(labels, predictions, "mean_squared_error")
        losses = square(predictions - labels)
        return _weighted(losses, weights, None, loss_collection, reduction)


def absolute_difference(labels, predictions, weights=1.0, scope=None,
                        loss_collection=GraphKeys.LOSSES,
                        reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """Weighted mean of ``|predictions - labels|``."""
    with name_scope(scope or "absolute_difference"):
        labels, predictions = _pair(labels, predictions, "absolute_difference")
        losses = _abs(predictions - labels)
        return _weighted(losses, weights, None, loss_collection, reduction)


def huber_loss(labels, predictions, weights=1.0, delta=1.0, scope=None,
               loss_collection=GraphKeys.LOSSES,
               reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """0.5 e² where |e| <= delta, else delta (|e| - 0.5 delta); e = predictions - labels."""
    with name_scope(scope or "huber_loss"):
        labels, predictions = _pair(labels, predictions, "huber_loss")
        error = _abs(predictions - labels)
        quadratic = minimum(error, delta)
        linear = error - quadratic
        losses = 0.5 * quadratic * quadratic + delta * linear
        return _weighted(losses, weights, None, loss_collection, reduction)


def log_loss(labels, predictions, weights=1.0, epsilon=1e-7, scope=None,
             loss_collection=GraphKeys.LOSSES,
             reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """-labels log(p + eps) - (1 - labels) log(1 - p + eps): binary cross-entropy of
    probabilities."""
    with name_scope(scope or "log_loss"):
        labels, predictions = _pair(labels, predictions, "log_loss")
        losses = -labels * log(predictions + epsilon) - (1 - labels) * log(
            1 - predictions + epsilon
        )
        return _weighted(losses, weights, None, loss_collection, reduction)


def hinge_loss(labels, logits, weights=1.0, scope=None, loss_collection=GraphKeys.LOSSES,
               reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """max(0, 1 - (2 labels - 1) logits), labels in {0, 1}."""
    with name_scope(scope or "hinge_loss"):
        labels, logits = _pair(labels, logits, "hinge_loss")
        losses = maximum(1 - (2 * labels - 1) * logits, 0.0)
        return _weighted(losses, weights, None, loss_collection, reduction)


def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=GraphKeys.LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """Softmax cross-entropy of ``logits`` [batch, classes] against one-hot (or probability)
    labels; ``label_smoothing`` s moves them to ``labels (1 - s) + s / classes``. Weights are
    per example ([batch] or scalar)."""
    with name_scope(scope or "softmax_cross_entropy_loss"):
        logits = convert_to_tensor(logits)
        onehot = convert_to_tensor(onehot_labels)
        if logits.shape is not None and onehot.shape is not None:
            if len(logits.shape) != len(onehot.shape) or any(
                a is not None and b is not None and a != b
                for a, b in zip(logits.shape, onehot.shape)
            ):
                raise ValueError(f"softmax_cross_entropy: onehot_labels of shape "
                                 f"{onehot.shape} do not match logits of shape "
                                 f"{logits.shape}")  # fmt: skip
        onehot = cast(onehot, logits.dtype) if onehot.dtype != logits.dtype else onehot
        if label_smoothing > 0:
            classes = logits.shape[-1] if logits.shape is not None else None
            if classes is None:
                classes = cast(shape(logits)[-1], logits.dtype)
            onehot = onehot * (1.0 - label_smoothing) + label_smoothing / classes
        onehot = stop_gradient(onehot)
        losses = softmax_cross_entropy_with_logits_v2(labels=onehot, logits=logits)
        return _weighted(losses, weights, None, loss_collection, reduction)


def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None,
                                 loss_collection=GraphKeys.LOSSES,
                                 reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """Softmax cross-entropy of ``logits`` [batch, classes] against integer class ``labels``
    [batch] (a trailing dim of size 1 is squeezed, as TF1)."""
    with name_scope(scope or "sparse_softmax_cross_entropy_loss"):
        labels = convert_to_tensor(labels)
        logits = convert_to_tensor(logits)
        if (
            labels.shape is not None
            and logits.shape is not None
            and len(labels.shape) == len(logits.shape)
            and labels.shape[-1] == 1
        ):
            labels = squeeze(labels, [-1])  # fmt: skip
        losses = sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return _weighted(losses, weights, None, loss_collection, reduction)


def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, label_smoothing=0,
                          scope=None, loss_collection=GraphKeys.LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS) -> Tensor:  # fmt: skip
    """Sigmoid cross-entropy per element; ``label_smoothing`` s: labels (1 - s) + s / 2."""
    with name_scope(scope or "sigmoid_cross_entropy_loss"):
        logits = convert_to_tensor(logits)
        labels = convert_to_tensor(multi_class_labels)
        labels = cast(labels, logits.dtype) if labels.dtype != logits.dtype else labels
        if label_smoothing > 0:
            labels = labels * (1 - label_smoothing) + 0.5 * label_smoothing
        losses = sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        return _weighted(losses, weights, None, loss_collection, reduction)
