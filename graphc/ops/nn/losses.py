"""softmax, log_softmax and the losses (cross-entropies, ``l2_loss``): composites of
elementwise ops and reductions, so fusion sees through them and their gradients come from the
parts. Each subtracts the running maximum first, so large logits neither overflow nor lose the
gradient. ``CheckIndexRange`` guards class labels (and embedding rows) at run time."""

from __future__ import annotations

import numpy as np

from ...expr import Const, Math
from ...graph.core import Tensor
from ..constant import constant, ones_like
from ..control import identity, stop_gradient
from ..elementwise import Elementwise, cast, equal, exp, is_finite, log, where, zeros_like_
from ..reduce import cumsum, reduce_max, reduce_sum
from ..registry import Example, apply1, convert_to_tensor, register
from ..shape import expand_dims, shape
from ..shape_util import located
from .activations import softplus
from .common import _axis, _ew, _float_tensor


def _shifted(logits, axis):
    """logits minus their (gradient-stopped) max along ``axis``: every exp is <= 1."""
    m = stop_gradient(reduce_max(logits, axis, keepdims=True))
    # rows of -inf (or +inf) keep their IEEE meaning instead of becoming inf - inf = NaN
    m = where(is_finite(m), m, zeros_like_(m))
    return logits - m


@located("softmax")
def softmax(logits, axis=-1, name=None):
    """exp(logits) / sum(exp(logits)) along ``axis``, with the max subtracted first."""
    x = _float_tensor(logits, "softmax")
    axis = _axis(x, axis, "softmax")
    e = exp(_shifted(x, axis))
    out = e / reduce_sum(e, axis, keepdims=True)
    return identity(out, name=name) if name else out


@located("log_softmax")
def log_softmax(logits, axis=-1, name=None):
    """logits - logsumexp(logits) along ``axis``, computed stably."""
    x = _float_tensor(logits, "log_softmax")
    axis = _axis(x, axis, "log_softmax")
    z = _shifted(x, axis)
    out = z - log(reduce_sum(exp(z), axis, keepdims=True))
    return identity(out, name=name) if name else out


def _softmax_xent(labels, logits, axis, name, what, stop_labels):
    if labels is None or logits is None:
        raise ValueError(f"{what} needs labels= and logits=")
    x = _float_tensor(logits, what)
    z = convert_to_tensor(labels)
    if z.dtype != x.dtype:
        z = _ew().cast(z, x.dtype)
    _same_shape(z, x, what)
    axis = _axis(x, axis, what)
    if stop_labels:
        z = stop_gradient(z)
    # d/dlogits = softmax * sum(labels) - labels: right also for labels not summing to 1
    return reduce_sum(-(z * log_softmax(x, axis)), axis, name=name)


@located("softmax_cross_entropy_with_logits")
def softmax_cross_entropy_with_logits(labels=None, logits=None, axis=-1, name=None, dim=None):
    """-sum(labels * log_softmax(logits)) along ``axis`` (labels: a distribution per row).

    TF1's v1: no gradient flows into ``labels`` (use ``softmax_cross_entropy_with_logits_v2``
    for that). The gradient w.r.t. logits is ``softmax * sum(labels) - labels``. Stable for
    any finite logits. ``dim`` is TF1's spelling of ``axis``.
    """
    if dim is not None:
        axis = dim
    return _softmax_xent(labels, logits, axis, name, "softmax_cross_entropy_with_logits", True)


@located("softmax_cross_entropy_with_logits_v2")
def softmax_cross_entropy_with_logits_v2(labels=None, logits=None, axis=-1, name=None,
                                         dim=None):  # fmt: skip
    """As ``softmax_cross_entropy_with_logits``, with gradients flowing into ``labels`` too
    (``-log_softmax(logits)``), as TF's ``_v2``."""
    if dim is not None:
        axis = dim
    what = "softmax_cross_entropy_with_logits_v2"
    return _softmax_xent(labels, logits, axis, name, what, False)


def _compatible(s1, s2) -> bool:
    return len(s1) == len(s2) and all(p is None or q is None or p == q for p, q in zip(s1, s2))


def _same_shape(a, b, what):
    if a.shape is not None and b.shape is not None and not _compatible(a.shape, b.shape):
        raise ValueError(
            f"{what}: labels {a.name} of shape {a.shape} and logits {b.name} of shape {b.shape} "
            "must have the same shape"
        )


@register
class CheckIndexRange(Elementwise):
    """``x`` itself (integers), where every element is in ``[0, limit)``; an element outside
    raises InvalidArgumentError at run time on every target (the compiled ones through the
    status flags). Guards class labels and shard rows, as TF's kernels do."""

    kinds = "i"
    differentiable = False
    message = "a value (label, id) is outside its valid range [0, limit)"

    def scalar(self, args, attrs):
        return args[0]

    def integer_error(self, args, dtype):
        bad = Math.OR(Math.LT(args[0], Const(0, dtype)), Math.GE(args[0], args[1]))
        return bad, self.message

    def ref(self, xs, attrs):
        x, limit = xs
        bad = (x < 0) | (x >= limit)
        if np.any(bad):
            pos = tuple(int(p) for p in np.argwhere(bad)[0])
            lim = np.broadcast_to(limit, bad.shape)[pos]
            raise ArithmeticError(
                f"value {np.broadcast_to(x, bad.shape)[pos]} at {list(pos)} is outside the "
                f"valid range [0, {lim})"
            )
        return np.asarray(np.broadcast_to(x, bad.shape)).copy()

    def examples(self):
        def build(x, n):
            return apply1("CheckIndexRange", [x, n])

        return [
            Example(build, [np.array([[0, 2], [1, 0]], np.int32), np.array(3, np.int32)],
                    grad=False),
            Example(build, [np.array([4, 0, 1], np.int64), np.array([5, 1, 2], np.int64)],
                    grad=False),
            Example(build, [np.zeros((0, 2), np.int32), np.array(1, np.int32)], grad=False),
        ]  # fmt: skip


def _in_range(x, limit, scope, name):
    """``x`` checked to lie in ``[0, limit)`` when run (``limit`` broadcasts against x); the
    check op is named ``scope/name``, so that a failure names the op that asked for it."""
    if isinstance(limit, Tensor):
        if limit.dtype != x.dtype:
            limit = _ew().cast(limit, x.dtype)
    else:
        limit = convert_to_tensor(np.asarray(limit, dtype=x.dtype.np))
    with x.graph.name_scope(scope):
        return apply1("CheckIndexRange", [x, limit], None, name)


@located("sparse_softmax_cross_entropy_with_logits")
def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """-log_softmax(logits)[..., labels]: labels are class indices (int), logits [..., C].

    A label outside [0, C) raises InvalidArgumentError at run time on every target (as TF on
    CPU).
    """
    what = "sparse_softmax_cross_entropy_with_logits"
    if labels is None or logits is None:
        raise ValueError(f"{what} needs labels= and logits=")
    x = _float_tensor(logits, what)
    y = convert_to_tensor(labels)
    if not y.dtype.is_integer:
        raise TypeError(f"{what}: labels must be integer class ids, got {y.name} of {y.dtype.name}")
    if len(x.shape) < 1:
        raise ValueError(f"{what}: logits {x.name} must have rank >= 1")
    if y.shape is not None and not _compatible(y.shape, x.shape[:-1]):
        raise ValueError(
            f"{what}: labels {y.name} of shape {y.shape} must have the shape of logits "
            f"{x.name} {x.shape} without its last (class) dim"
        )
    n_classes = x.shape[-1]
    if n_classes is not None:
        y = _in_range(y, n_classes, what, "labels_in_range")
        classes = constant(np.arange(n_classes), dtype=y.dtype)
        mask = cast(equal(expand_dims(y, -1), classes), x.dtype)
    else:
        y = _in_range(y, shape(x, out_type=y.dtype)[-1], what, "labels_in_range")
        # class index of each logit, of the logits' runtime shape
        ids = cumsum(ones_like(x), axis=-1, exclusive=True)
        mask = cast(equal(ids, cast(expand_dims(y, -1), x.dtype)), x.dtype)
    return reduce_sum(-(mask * log_softmax(x, -1)), -1, name=name)


@located("sigmoid_cross_entropy_with_logits")
def sigmoid_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Elementwise logistic loss max(x, 0) - x * z + log(1 + exp(-|x|)), stable for any x."""
    what = "sigmoid_cross_entropy_with_logits"
    if labels is None or logits is None:
        raise ValueError(f"{what} needs labels= and logits=")
    x = _float_tensor(logits, what)
    z = convert_to_tensor(labels)
    if z.dtype != x.dtype:
        z = _ew().cast(z, x.dtype)
    _same_shape(z, x, what)
    # softplus(x) has the exact derivative sigmoid(x), also at x == 0
    return _ew().subtract(softplus(x), x * z, name=name)


@located("l2_loss")
def l2_loss(t, name=None):
    """sum(t ** 2) / 2."""
    x = _float_tensor(t, "l2_loss")
    return _ew().multiply(reduce_sum(x * x), 0.5, name=name)
