"""Neural-network ops (``gc.nn``): activations, softmax, normalisation, losses, dropout,
convolution and pooling.

* Activations are elementwise ``Unary`` OpDefs with a scalar body, so fusion treats them like
  ``exp``; their constants are typed by ``attrs["T"]`` (the input dtype, set by the builder).
* softmax, log_softmax, the cross-entropies, moments, layer_norm and batch_normalization are
  composites of elementwise ops and reductions: fusion sees through them and their gradients
  come from the parts. Each subtracts the running maximum first, so large logits neither
  overflow nor lose the gradient.
* conv2d and pooling are dedicated OpDefs (NHWC data, HWIO filters, TF's SAME/VALID or
  explicit padding)
  with dedicated backprop ops. The backprop ops are linear in their gradient input, so each
  one's gradient is another op of the same family: second-order gradients work.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgumentError
from ..expr import Const, Math
from ..graph.core import Tensor
from .elementwise import Elementwise, Unary
from .registry import (
    DTypeError,
    Example,
    OpDef,
    ShapeError,
    apply1,
    convert_to_tensor,
    normalize_axis,
    register,
)
from .shape import reshape as _reshape
from .shape import transpose as _transpose
from .shape_util import located

__all__ = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "softplus",
    "softsign", "softmax", "log_softmax", "bias_add", "dropout", "l2_normalize", "moments",
    "layer_norm", "batch_normalization", "conv2d", "conv2d_transpose", "max_pool2d",
    "avg_pool2d", "max_pool", "avg_pool", "sparse_softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits", "softmax_cross_entropy_with_logits_v2",
    "sigmoid_cross_entropy_with_logits", "l2_loss", "embedding_lookup",
]  # fmt: skip

_rng = np.random.default_rng(4)


def _sample(*shape, low=-2.0, high=2.0):
    return _rng.uniform(low, high, shape)


# == activations ===============================================================================


class _Activation(Unary):
    """An elementwise activation. ``attrs["T"]`` is the dtype of its scalar constants."""

    kinds = "f"
    #: attrs the registry examples build with (besides T)
    example_attrs: dict = {}

    def infer(self, specs, attrs):
        out = super().infer(specs, attrs)
        t = attrs.get("T")
        if t is not None and t != specs[0].dtype:
            raise DTypeError(f"attribute T={t.name} does not match input {specs[0].dtype.name}")
        return out

    def _builder(self, x):
        return _activation(self.type, x, None, **self.example_attrs)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None]
        return [self.grad(op.inputs[0], op.outputs[0], grads[0], op.attrs)]


def _c(value, attrs) -> Const:
    """A scalar constant of the op's dtype."""
    return Const(value, attrs["T"])


def _activation(type_name, features, name, **attrs):
    x = convert_to_tensor(features)
    return apply1(type_name, [x], {"T": x.dtype, **attrs}, name)


def _ew():
    from . import elementwise

    return elementwise


@register
class Relu(_Activation):
    kinds = "fi"

    def scalar(self, args, attrs):
        return Math.MAX(args[0], _c(0, attrs))

    def grad(self, x, y, g, attrs):
        return g * _ew().cast(x > 0, g.dtype)


@register
class Relu6(_Activation):
    kinds = "fi"
    domain = (-3.0, 9.0)

    def scalar(self, args, attrs):
        return Math.MIN(Math.MAX(args[0], _c(0, attrs)), _c(6, attrs))

    def grad(self, x, y, g, attrs):
        ew = _ew()
        return g * ew.cast(ew.logical_and(x > 0, x < 6), g.dtype)


@register
class LeakyRelu(_Activation):
    example_attrs = {"alpha": 0.2}

    def scalar(self, args, attrs):
        x = args[0]
        return Math.SELECT(Math.GT(x, _c(0, attrs)), x, Math.MUL(x, _c(attrs["alpha"], attrs)))

    def grad(self, x, y, g, attrs):
        return _ew().where(x > 0, g, g * attrs["alpha"])


@register
class Elu(_Activation):
    def scalar(self, args, attrs):
        x = args[0]
        return Math.SELECT(Math.GT(x, _c(0, attrs)), x, Math.EXPM1(x))

    def grad(self, x, y, g, attrs):
        return _ew().where(x > 0, g, g * (y + 1))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@register
class Selu(_Activation):
    def scalar(self, args, attrs):
        x = args[0]
        neg = Math.MUL(_c(_SELU_ALPHA, attrs), Math.EXPM1(x))
        return Math.MUL(_c(_SELU_SCALE, attrs), Math.SELECT(Math.GT(x, _c(0, attrs)), x, neg))

    def grad(self, x, y, g, attrs):
        return _ew().where(x > 0, g * _SELU_SCALE, g * (y + _SELU_SCALE * _SELU_ALPHA))


_GELU_C = math.sqrt(2.0 / math.pi)


@register
class Gelu(_Activation):
    """x * Phi(x); with ``approximate`` the tanh form of Hendrycks & Gimpel (as TF)."""

    example_attrs = {"approximate": False}

    def scalar(self, args, attrs):
        x = args[0]
        half_x = Math.MUL(_c(0.5, attrs), x)
        if attrs["approximate"]:
            cube = Math.MUL(Math.MUL(x, x), x)
            inner = Math.MUL(_c(_GELU_C, attrs), Math.ADD(x, Math.MUL(_c(0.044715, attrs), cube)))
            return Math.MUL(half_x, Math.ADD(_c(1, attrs), Math.TANH(inner)))
        return Math.MUL(
            half_x, Math.ADD(_c(1, attrs), Math.ERF(Math.MUL(x, _c(1 / math.sqrt(2.0), attrs))))
        )

    def grad(self, x, y, g, attrs):
        ew = _ew()
        if attrs["approximate"]:
            x2 = x * x
            t = ew.tanh(_GELU_C * (x + 0.044715 * x2 * x))
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (_GELU_C * (1 + 3 * 0.044715 * x2))
            return g * d
        cdf = 0.5 * (1 + ew.erf(x * (1 / math.sqrt(2.0))))
        pdf = ew.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return g * (cdf + x * pdf)

    def examples(self):
        x = _sample(3, 4, low=-3, high=3)
        approx = lambda t: gelu(t, approximate=True)  # noqa: E731
        return [*super().examples(), Example(approx, [x])]


@register
class Silu(_Activation):
    """x * sigmoid(x) (also called swish)."""

    def scalar(self, args, attrs):
        return Math.MUL(args[0], Math.SIGMOID(args[0]))

    def grad(self, x, y, g, attrs):
        s = _ew().sigmoid(x)
        return g * s * (1 + x * (1 - s))


@register
class Softplus(_Activation):
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|."""

    domain = (-6.0, 6.0)

    def scalar(self, args, attrs):
        x = args[0]
        return Math.ADD(Math.MAX(x, _c(0, attrs)), Math.LOG1P(Math.EXP(Math.NEG(Math.ABS(x)))))

    def grad(self, x, y, g, attrs):
        return g * _ew().sigmoid(x)


@register
class Softsign(_Activation):
    def scalar(self, args, attrs):
        x = args[0]
        return Math.DIV(x, Math.ADD(_c(1, attrs), Math.ABS(x)))

    def grad(self, x, y, g, attrs):
        d = 1 + _ew().abs(x)
        return g / (d * d)


@located("relu")
def relu(features, name=None):
    """max(features, 0)."""
    return _activation("Relu", features, name)


@located("relu6")
def relu6(features, name=None):
    """min(max(features, 0), 6)."""
    return _activation("Relu6", features, name)


@located("leaky_relu")
def leaky_relu(features, alpha=0.2, name=None):
    """features where positive, else alpha * features."""
    return _activation("LeakyRelu", features, name, alpha=float(alpha))


@located("elu")
def elu(features, name=None):
    """features where positive, else exp(features) - 1."""
    return _activation("Elu", features, name)


@located("selu")
def selu(features, name=None):
    """Scaled ELU with the self-normalising constants of Klambauer et al."""
    return _activation("Selu", features, name)


@located("gelu")
def gelu(features, approximate=False, name=None):
    """Gaussian error linear unit x * Phi(x) (tanh approximation with ``approximate``)."""
    return _activation("Gelu", features, name, approximate=bool(approximate))


@located("silu")
def silu(features, name=None):
    """x * sigmoid(x)."""
    return _activation("Silu", features, name)


swish = silu


@located("softplus")
def softplus(features, name=None):
    """log(1 + exp(features)), computed stably."""
    return _activation("Softplus", features, name)


@located("softsign")
def softsign(features, name=None):
    """features / (1 + |features|)."""
    return _activation("Softsign", features, name)


# == softmax and losses (composites) ===========================================================


def _float_tensor(x, what):
    x = convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"{what}: expected a floating tensor, got {x.name} of {x.dtype.name}")
    if x.shape is None:
        raise ValueError(f"{what}: {x.name} needs a known rank")
    return x


def _axis(x, axis, what):
    try:
        return normalize_axis(int(axis), len(x.shape))
    except ShapeError as exc:
        raise ValueError(f"{what}: {exc} (input {x.name} of shape {x.shape})") from None


def _shifted(logits, axis):
    """logits minus their (gradient-stopped) max along ``axis``: every exp is <= 1."""
    from .control import stop_gradient
    from .elementwise import is_finite, where, zeros_like_
    from .reduce import reduce_max

    m = stop_gradient(reduce_max(logits, axis, keepdims=True))
    # rows of -inf (or +inf) keep their IEEE meaning instead of becoming inf - inf = NaN
    m = where(is_finite(m), m, zeros_like_(m))
    return logits - m


@located("softmax")
def softmax(logits, axis=-1, name=None):
    """exp(logits) / sum(exp(logits)) along ``axis``, with the max subtracted first."""
    from .control import identity
    from .elementwise import exp
    from .reduce import reduce_sum

    x = _float_tensor(logits, "softmax")
    axis = _axis(x, axis, "softmax")
    e = exp(_shifted(x, axis))
    out = e / reduce_sum(e, axis, keepdims=True)
    return identity(out, name=name) if name else out


@located("log_softmax")
def log_softmax(logits, axis=-1, name=None):
    """logits - logsumexp(logits) along ``axis``, computed stably."""
    from .control import identity
    from .elementwise import exp, log
    from .reduce import reduce_sum

    x = _float_tensor(logits, "log_softmax")
    axis = _axis(x, axis, "log_softmax")
    z = _shifted(x, axis)
    out = z - log(reduce_sum(exp(z), axis, keepdims=True))
    return identity(out, name=name) if name else out


def _softmax_xent(labels, logits, axis, name, what, stop_labels):
    from .reduce import reduce_sum

    if labels is None or logits is None:
        raise ValueError(f"{what} needs labels= and logits=")
    x = _float_tensor(logits, what)
    z = convert_to_tensor(labels)
    if z.dtype != x.dtype:
        z = _ew().cast(z, x.dtype)
    _same_shape(z, x, what)
    axis = _axis(x, axis, what)
    if stop_labels:
        from .control import stop_gradient

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
    from .constant import constant, ones_like
    from .elementwise import cast, equal
    from .reduce import cumsum, reduce_sum
    from .shape import expand_dims, shape

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
    from .reduce import reduce_sum

    x = _float_tensor(t, "l2_loss")
    return _ew().multiply(reduce_sum(x * x), 0.5, name=name)


# == normalisation =============================================================================


def _axes_list(x, axes, what):
    if axes is None:
        return list(range(len(x.shape)))
    if isinstance(axes, int | np.integer):
        axes = [axes]
    out = sorted({_axis(x, a, what) for a in axes})
    return out


@located("l2_normalize")
def l2_normalize(x, axis=None, epsilon=1e-12, name=None):
    """x / sqrt(max(sum(x ** 2, axis), epsilon))."""
    from .elementwise import maximum, rsqrt
    from .reduce import reduce_sum

    x = _float_tensor(x, "l2_normalize")
    axes = _axes_list(x, axis, "l2_normalize")
    sq = reduce_sum(x * x, axes, keepdims=True)
    return _ew().multiply(x, rsqrt(maximum(sq, epsilon)), name=name)


@located("moments")
def moments(x, axes, shift=None, keepdims=False, name=None, keep_dims=None):
    """(mean, variance) of ``x`` over ``axes``; variance is the biased (1/n) estimate.

    ``shift`` is accepted for TF compatibility and ignored (the result is the same);
    ``keep_dims`` is TF1's spelling of ``keepdims``.
    """
    if keep_dims is not None:
        keepdims = keep_dims
    from .reduce import reduce_mean
    from .shape import squeeze

    x = _float_tensor(x, "moments")
    axes = _axes_list(x, axes, "moments")
    mean = reduce_mean(x, axes, keepdims=True)
    # The centre keeps its gradient (TF stops it): d var / d mean is zero only at the mean
    # itself, so stopping it would make second-order gradients wrong.
    d = x - mean
    var = reduce_mean(d * d, axes, keepdims=True)
    if not keepdims:
        mean, var = squeeze(mean, axes), squeeze(var, axes)
    return mean, var


@located("layer_norm")
def layer_norm(x, gamma=None, beta=None, axis=-1, epsilon=1e-5, name=None):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta, moments over ``axis`` (int or list)."""
    from .elementwise import rsqrt

    x = _float_tensor(x, "layer_norm")
    mean, var = moments(x, axis, keepdims=True)
    out = (x - mean) * rsqrt(var + epsilon)
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    if name:
        from .control import identity

        out = identity(out, name=name)
    return out


@located("batch_normalization")
def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """(x - mean) * scale / sqrt(variance + eps) + offset (offset/scale may be None), as TF."""
    from .elementwise import rsqrt

    x = _float_tensor(x, "batch_normalization")
    inv = rsqrt(variance + variance_epsilon)
    if scale is not None:
        inv = inv * scale
    shift = -mean * inv if offset is None else offset - mean * inv
    return _ew().add(x * inv, shift, name=name)


@located("bias_add")
def bias_add(value, bias, data_format=None, name=None):
    """value + bias, bias a vector matching the channel dim of value: the last one (NHWC, the
    default), or dim 1 with ``data_format="NCHW"`` (value of rank >= 2: [N, C, ...])."""
    channels_first = data_format in ("NCHW", "NCW", "NCDHW", "NC...")
    if data_format not in (None, "NHWC", "NWC", "NDHWC", "NC", "N...C") and not channels_first:
        raise ValueError(f"bias_add: data_format {data_format!r} is not supported (NHWC or "
                         "NCHW)")  # fmt: skip
    v = convert_to_tensor(value)
    b = _like_input(v, bias)
    if b.shape is not None and len(b.shape) != 1:
        raise ValueError(f"bias_add: bias {b.name} must be rank 1, got shape {b.shape}")
    min_rank = 2 if channels_first else 1
    if v.shape is not None and len(v.shape) < min_rank:
        raise ValueError(f"bias_add: value {v.name} must have rank >= {min_rank}")
    axis = 1 if channels_first else -1
    if v.shape is not None and b.shape is not None:
        if None not in (v.shape[axis], b.shape[0]) and v.shape[axis] != b.shape[0]:
            raise ValueError(
                f"bias_add: bias {b.name} of shape {b.shape} does not match the channel dim "
                f"({data_format or 'NHWC'}) of value {v.name} of shape {v.shape}"
            )
    if channels_first:
        if v.shape is None:
            raise ValueError(f"bias_add: NCHW needs the rank of value {v.name}")
        b = _reshape(b, (-1,) + (1,) * (len(v.shape) - 2))
    return _ew().add(v, b, name=name)


# == dropout and embeddings ====================================================================


@located("dropout")
def dropout(x, rate=None, noise_shape=None, seed=None, name=None, keep_prob=None):
    """Zero each element with probability ``rate``, scale the rest by 1 / (1 - rate) (as TF).

    ``rate`` may be a tensor (e.g. a placeholder that is 0 at evaluation). ``noise_shape``
    (static) broadcasts one keep/drop decision over dims of size 1. ``keep_prob`` is the TF1
    spelling of ``1 - rate``.
    """
    from .control import identity
    from .elementwise import cast, greater_equal
    from .random import random_uniform

    x = _float_tensor(x, "dropout")
    if (rate is None) == (keep_prob is None):
        raise ValueError("dropout: give exactly one of rate and keep_prob")
    if rate is None:
        rate = 1 - keep_prob
    if isinstance(rate, int | float | np.number):
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout: rate must be in [0, 1), got {rate}")
        if rate == 0.0:
            return identity(x, name=name) if name else x
    else:
        rate = convert_to_tensor(rate)
        if rate.dtype != x.dtype:
            rate = cast(rate, x.dtype)
    if noise_shape is None:
        u = random_uniform(x, dtype=x.dtype, seed=seed)
    else:
        shape = tuple(int(d) for d in noise_shape)
        if x.shape is not None:
            from .registry import broadcast_shapes

            try:
                broadcast_shapes(x.shape, shape)
            except ShapeError:
                raise ValueError(
                    f"dropout: noise_shape {shape} does not broadcast to {x.name} of shape "
                    f"{x.shape}"
                ) from None
        u = random_uniform(shape, dtype=x.dtype, seed=seed)
    keep = cast(greater_equal(u, rate), x.dtype)
    return _ew().multiply(x * (1 / (1 - rate)), keep, name=name)


@located("embedding_lookup")
def embedding_lookup(params, ids, partition_strategy="mod", name=None, validate_indices=True,
                     max_norm=None):  # fmt: skip
    """Rows of ``params`` at ``ids``: shape ``ids.shape + params.shape[1:]`` (TF1).

    ``params`` is a tensor or a list of shards of one table (same dtype and row shape). With
    n shards, ``partition_strategy="mod"`` (TF1's default) keeps id i in shard ``i % n`` at
    row ``i // n``; ``"div"`` splits the ids in contiguous blocks, the first
    ``total % n`` shards one row longer. An id whose row is not in its shard raises
    InvalidArgumentError when run. Gradients flow to each shard.
    """
    from .shape import concat, gather, shape, stack

    del validate_indices  # TF1 compatibility: ids are always validated
    if max_norm is not None:
        raise ValueError("embedding_lookup: max_norm is not supported")
    if partition_strategy not in ("mod", "div"):
        raise ValueError(f"embedding_lookup: partition_strategy must be 'mod' or 'div', got "
                         f"{partition_strategy!r}")  # fmt: skip
    shards = list(params) if isinstance(params, list | tuple) else [params]
    if not shards:
        raise ValueError("embedding_lookup: params is an empty list")
    shards = [convert_to_tensor(p) for p in shards]
    if len(shards) == 1:
        return gather(shards[0], ids, name=name)
    i = convert_to_tensor(ids)
    if not i.dtype.is_integer:
        raise TypeError(f"embedding_lookup: ids {i.name} must be integers, got {i.dtype.name}")
    for p in shards:
        if p.dtype != shards[0].dtype:
            raise TypeError(f"embedding_lookup: shards {shards[0].name} and {p.name} have "
                            f"dtypes {shards[0].dtype.name} and {p.dtype.name}")  # fmt: skip
        if p.shape is not None and len(p.shape) < 1:
            raise ValueError(f"embedding_lookup: shard {p.name} must have rank >= 1")
    ew = _ew()
    n = len(shards)
    static = [None if p.shape is None else p.shape[0] for p in shards]
    if None in static:
        from .reduce import cumsum

        sizes = stack([shape(p, out_type=i.dtype)[0] for p in shards])
        starts = cumsum(sizes, exclusive=True)
    else:
        sizes = convert_to_tensor(np.asarray(static, dtype=i.dtype.np))
        starts = convert_to_tensor(np.cumsum([0, *static[:-1]]).astype(i.dtype.np))
    if partition_strategy == "mod":
        shard = ew.mod(i, n)
        row = ew.floordiv(i, n)
    else:
        from .reduce import reduce_sum

        total = reduce_sum(sizes) if None in static else sum(static)
        per, extras = total // n, total % n
        shard = ew.maximum(i // (per + 1), (i - extras) // per)
        row = ew.where(shard < extras, i % (per + 1), (i - extras) % per)
    # the row must exist in its shard (TF's gather from that shard checks it); then one
    # gather from the shards laid end to end
    row = _in_range(row, gather(sizes, shard), "embedding_lookup", "row_in_shard")
    flat = gather(starts, shard) + row
    return gather(concat(shards, 0), flat, name=name)


# == convolution and pooling ===================================================================


def _pair(value, what, allow4=True, data_format="NHWC"):
    """(h, w) from an int, a pair, or a 4-list in ``data_format`` order: [1, h, w, 1] (NHWC)
    or [1, 1, h, w] (NCHW)."""
    if isinstance(value, int | np.integer):
        v = (int(value), int(value))
    else:
        v = tuple(int(d) for d in value)
        if len(v) == 4 and allow4:
            spatial = (2, 3) if data_format == "NCHW" else (1, 2)
            others = [d for i, d in enumerate(v) if i not in spatial]
            if any(d != 1 for d in others):
                raise ValueError(f"{what} {list(value)} must be 1 in the batch and channel dims "
                                 f"({data_format})")  # fmt: skip
            v = (v[spatial[0]], v[spatial[1]])
        elif len(v) == 1:
            v = (v[0], v[0])
        elif len(v) != 2:
            raise ValueError(f"{what} must be an int or a list of 1, 2 or 4 ints, got {value!r}")
    if any(d < 1 for d in v):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return v


def _padding(padding, data_format="NHWC"):
    """ "SAME", "VALID", or TF's explicit list, [[0, 0], [top, bottom], [left, right], [0, 0]]
    in NHWC ([[0, 0], [0, 0], [top, bottom], [left, right]] in NCHW), as
    ((top, bottom), (left, right)) (all zero: "VALID")."""
    if data_format == "NCHW" and not isinstance(padding, str):
        try:
            pads = np.asarray(padding)
        except (TypeError, ValueError):
            pads = None
        if pads is not None and pads.shape == (4, 2):
            padding = pads[[0, 2, 3, 1]]  # to NHWC order
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or an explicit list, got "
                             f"{padding!r}")  # fmt: skip
        return padding.upper()
    try:
        pads = np.asarray(padding)
        ok = pads.shape == (4, 2) and pads.dtype.kind in "iu"
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"explicit padding must be 4 [before, after] pairs of ints (NHWC), got "
                         f"{padding!r}")  # fmt: skip
    if pads[0].any() or pads[3].any():
        raise ValueError(f"explicit padding {pads.tolist()} must be [0, 0] for the batch and "
                         "channel dimensions")  # fmt: skip
    if (pads < 0).any():
        raise ValueError(f"explicit padding {pads.tolist()} must not be negative")
    if not pads.any():
        return "VALID"
    return tuple((int(a), int(b)) for a, b in pads[1:3])


def _axis_padding(padding, axis):
    """The padding along spatial ``axis`` (0: height, 1: width): "SAME", "VALID" or a pair."""
    return padding if isinstance(padding, str) else tuple(padding[axis])


def _out_size(n, k, s, d, padding):
    """Output length of a window op along one dim (None if unknown); TF's rule.
    ``padding`` is this dim's: "SAME", "VALID" or (before, after)."""
    if n is None or k is None:
        return None
    eff = (k - 1) * d + 1
    if padding == "SAME":
        return -(-n // s)
    if padding == "VALID":
        if n < eff:
            raise ShapeError(f"VALID window of size {eff} does not fit an input of size {n}")
        return (n - eff) // s + 1
    padded = n + padding[0] + padding[1]
    if padded < eff:
        raise ShapeError(f"window of size {eff} does not fit an input of size {n} padded by "
                         f"{padding} to {padded}")  # fmt: skip
    return (padded - eff) // s + 1


def _pads(n, k, s, d, padding):
    """(before, after) padding along one dim: TF's SAME puts the odd element after."""
    if padding == "VALID":
        return 0, 0
    if padding != "SAME":
        return padding
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


class _Window:
    """Geometry of a 2-D window op on NHWC data: padding, output size, strided views."""

    def __init__(self, h, w, kh, kw, attrs):
        sh, sw = attrs["strides"]
        dh, dw = attrs.get("dilations", (1, 1))
        pad = attrs["padding"]
        ph, pw = _axis_padding(pad, 0), _axis_padding(pad, 1)
        try:
            self.oh = _out_size(h, kh, sh, dh, ph)
            self.ow = _out_size(w, kw, sw, dw, pw)
        except ShapeError as exc:
            raise InvalidArgumentError(f"input {h}x{w}, window {kh}x{kw}: {exc}") from None
        self.pt, self.pb = _pads(h, kh, sh, dh, ph)
        self.pl, self.pr = _pads(w, kw, sw, dw, pw)
        self.h, self.w, self.kh, self.kw = h, w, kh, kw
        self.s, self.d = (sh, sw), (dh, dw)

    def pad(self, x, value=0.0):
        widths = ((0, 0), (self.pt, self.pb), (self.pl, self.pr), (0, 0))
        return np.pad(x, widths, constant_values=value)

    def views(self):
        """(i, j, index) for every kernel tap: index selects its inputs in the padded array."""
        (sh, sw), (dh, dw) = self.s, self.d
        for i in range(self.kh):
            for j in range(self.kw):
                rows = slice(i * dh, i * dh + max((self.oh - 1) * sh + 1, 0), sh)
                cols = slice(j * dw, j * dw + max((self.ow - 1) * sw + 1, 0), sw)
                yield i, j, (slice(None), rows, cols, slice(None))

    def patches(self, xp):
        """[N, OH, OW, KH*KW, C]: the inputs each output position sees (im2col)."""
        return np.stack([xp[idx] for _, _, idx in self.views()], axis=3)

    def scatter(self, cols, n, c, dtype):
        """Adjoint of ``patches``: sum [N, OH, OW, KH*KW, C] back into an unpadded input."""
        xp = np.zeros((n, self.h + self.pt + self.pb, self.w + self.pl + self.pr, c), dtype)
        for k, (_, _, idx) in enumerate(self.views()):
            xp[idx] += cols[:, :, :, k, :]
        return xp[:, self.pt : self.pt + self.h, self.pl : self.pl + self.w, :]


def _rank4(spec, what):
    if spec.shape is not None and len(spec.shape) != 4:
        raise ShapeError(f"{what} must be rank 4, got shape {spec.shape}")
    return spec.shape if spec.shape is not None else (None,) * 4


def _float_same(specs):
    dtypes = {s.dtype for s in specs}
    if len(dtypes) != 1:
        raise DTypeError("operands must have one dtype, got "
                         + " and ".join(s.dtype.name for s in specs))  # fmt: skip
    if not specs[0].dtype.is_floating:
        raise DTypeError(f"{specs[0].dtype.name} is not supported (floating types only)")
    return specs[0].dtype


def _merge(a, b, what):
    if a is not None and b is not None and a != b:
        raise ShapeError(f"{what}: {a} vs {b}")
    return a if a is not None else b


def _window_out(n_h, n_w, kh, kw, attrs):
    for k in (kh, kw):
        if k is not None and k < 1:  # TF: "filter must not have zero elements"
            raise ShapeError(f"window sizes must be at least 1, got {(kh, kw)}")
    sh, sw = attrs["strides"]
    dh, dw = attrs.get("dilations", (1, 1))
    p = attrs["padding"]
    return (_out_size(n_h, kh, sh, dh, _axis_padding(p, 0)),
            _out_size(n_w, kw, sw, dw, _axis_padding(p, 1)))  # fmt: skip


def _conv_attrs_doc(attrs):
    return f"strides={attrs['strides']}, padding={attrs['padding']}"


@register
class Conv2D(OpDef):
    """2-D convolution (cross-correlation, as TF): NHWC input, HWIO filters."""

    def infer(self, specs, attrs):
        dtype = _float_same(specs)
        n, h, w, c = _rank4(specs[0], "input")
        kh, kw, ci, co = _rank4(specs[1], "filters")
        _merge(c, ci, "input channels do not match the filters' input channels")
        oh, ow = _window_out(h, w, kh, kw, attrs)
        return [((n, oh, ow, co), dtype)]

    def ref(self, xs, attrs):
        x, f = xs
        n, h, w, c = x.shape
        kh, kw, ci, co = f.shape
        if c != ci:
            raise InvalidArgumentError(
                f"Conv2D: input {x.shape} has {c} channels, filters {f.shape}"
            )
        win = _Window(h, w, kh, kw, attrs)
        cols = win.patches(win.pad(x))
        out = np.tensordot(cols, f.reshape(kh * kw, ci, co), axes=([3, 4], [0, 1]))
        return np.ascontiguousarray(out, dtype=x.dtype)

    def vjp(self, op, grads):
        g = grads[0]
        if g is None:
            return [None, None]
        x, f = op.inputs
        a = _window_attrs(op.attrs)
        return [_backprop_input(g, f, a, like=x), apply1("Conv2DBackpropFilter", [x, g, f], a)]

    def examples(self):
        def conv(strides=1, padding="SAME", dilations=1):
            return lambda x, f: conv2d(x, f, strides, padding, dilations)

        x = _sample(2, 5, 6, 3)
        f = _sample(3, 3, 3, 4)
        return [
            Example(conv(), [x, f]),
            Example(conv(padding="VALID"), [x, f]),
            Example(conv(strides=2), [x, f]),
            Example(conv(strides=(2, 1), padding="VALID"), [x, _sample(2, 3, 3, 2)]),
            Example(conv(dilations=2), [_sample(1, 6, 6, 2), _sample(2, 2, 2, 3)]),
            Example(conv(strides=2, padding="SAME"), [_sample(1, 4, 4, 1), _sample(2, 2, 1, 2)]),
            # KH*KW*C = 45: im2col + GEMM (the ones above are short enough to run directly)
            Example(conv(), [_sample(1, 4, 5, 5), _sample(3, 3, 5, 2)]),
            # explicit (asymmetric) padding: direct, im2col + GEMM, strided, dilated, 1x1
            Example(conv(padding=[[0, 0], [1, 0], [2, 1], [0, 0]]), [x, f]),
            Example(conv(padding=[[0, 0], [0, 2], [1, 1], [0, 0]]),
                    [_sample(1, 4, 5, 5), _sample(3, 3, 5, 2)]),
            Example(conv(strides=2, padding=[[0, 0], [2, 1], [0, 3], [0, 0]]), [x, f]),
            Example(conv(dilations=2, padding=[[0, 0], [1, 2], [2, 0], [0, 0]]),
                    [_sample(1, 5, 5, 2), _sample(2, 2, 2, 3)]),
            Example(conv(padding=[[0, 0], [0, 1], [1, 0], [0, 0]]),
                    [_sample(2, 3, 4, 3), _sample(1, 1, 3, 2)]),
        ]  # fmt: skip


def _window_attrs(attrs):
    return {k: attrs[k] for k in ("strides", "padding", "dilations")}


def _backprop_input(g, f, attrs, like):
    """Conv2DBackpropInput to the shape of ``like``: a static attr when its H, W are known."""
    if like.shape is not None and None not in tuple(like.shape)[1:3]:
        return apply1("Conv2DBackpropInput", [g, f], dict(attrs, input_hw=tuple(like.shape[1:3])))
    return apply1("Conv2DBackpropInput", [g, f, like], dict(attrs, input_hw=None))


@register
class Conv2DBackpropInput(OpDef):
    """Gradient of Conv2D w.r.t. its input: inputs (out_backprop, filters[, like]).

    The input's spatial size comes from ``attrs['input_hw']`` or, when that is None, from the
    runtime shape of a third input (the forward input; only its shape is read).
    """

    def infer(self, specs, attrs):
        dtype = _float_same(specs[:2])
        n, oh, ow, o = _rank4(specs[0], "out_backprop")
        kh, kw, c, fo = _rank4(specs[1], "filters")
        _merge(o, fo, "out_backprop channels do not match the filters' output channels")
        if attrs["input_hw"] is not None:
            h, w = attrs["input_hw"]
        elif len(specs) == 3:
            ln, h, w, lc = _rank4(specs[2], "like")
            n = _merge(n, ln, "batch sizes differ")
            c = _merge(c, lc, "input channels differ")
        else:
            raise ShapeError("needs input_hw or a third input giving the input shape")
        eh, ew = _window_out(h, w, kh, kw, attrs)
        _merge(oh, eh, f"out_backprop height does not fit the input ({_conv_attrs_doc(attrs)})")
        _merge(ow, ew, f"out_backprop width does not fit the input ({_conv_attrs_doc(attrs)})")
        return [((n, h, w, c), dtype)]

    def ref(self, xs, attrs):
        g, f = xs[:2]
        h, w = attrs["input_hw"] if attrs["input_hw"] is not None else xs[2].shape[1:3]
        kh, kw, c, o = f.shape
        win = _Window(h, w, kh, kw, attrs)
        if (win.oh, win.ow) != g.shape[1:3]:
            raise InvalidArgumentError(
                f"Conv2DBackpropInput: out_backprop {g.shape} does not fit an input of "
                f"{h}x{w} ({_conv_attrs_doc(attrs)})"
            )
        cols = np.tensordot(g, f.reshape(kh * kw, c, o), axes=([3], [2]))
        return np.ascontiguousarray(win.scatter(cols, g.shape[0], c, g.dtype), dtype=g.dtype)

    def vjp(self, op, grads):
        dy = grads[0]
        if dy is None:
            return [None] * len(op.inputs)
        g, f = op.inputs[:2]
        a = _window_attrs(op.attrs)
        # y = BI(g, f) is bilinear: <dy, BI(g, f)> = <conv2d(dy, f), g>
        dg = apply1("Conv2D", [dy, f], a)
        df = apply1("Conv2DBackpropFilter", [dy, g, f], a)
        return [dg, df] + [None] * (len(op.inputs) - 2)

    def examples(self):
        def bi(strides, padding, hw, dil=1):
            a = {"strides": _pair(strides, "strides"), "padding": padding,
                 "dilations": _pair(dil, "dilations"), "input_hw": hw}  # fmt: skip
            return lambda g, f: apply1("Conv2DBackpropInput", [g, f], a)

        def bi_like(strides, padding):
            a = {"strides": (strides, strides), "padding": padding, "dilations": (1, 1),
                 "input_hw": None}  # fmt: skip
            return lambda g, f, x: apply1("Conv2DBackpropInput", [g, f, x], a)

        return [
            Example(bi(1, "SAME", (4, 5)), [_sample(2, 4, 5, 3), _sample(3, 3, 2, 3)]),
            Example(bi(2, "VALID", (5, 6)), [_sample(1, 2, 2, 3), _sample(3, 3, 2, 3)]),
            Example(bi(2, "SAME", (5, 5), 1), [_sample(1, 3, 3, 2), _sample(2, 2, 1, 2)]),
            Example(bi(1, "SAME", (5, 5), 2), [_sample(1, 5, 5, 2), _sample(2, 2, 1, 2)]),
            Example(
                bi_like(2, "SAME"), [_sample(2, 3, 2, 2), _sample(3, 3, 1, 2), _sample(2, 5, 4, 1)]
            ),  # fmt: skip
            Example(bi(1, ((1, 0), (2, 1)), (5, 6)), [_sample(2, 4, 7, 4), _sample(3, 3, 3, 4)]),
            Example(bi(2, ((2, 1), (0, 3)), (5, 6)), [_sample(1, 3, 4, 2), _sample(3, 3, 3, 2)]),
            Example(
                bi_like(2, ((0, 1), (1, 1))),
                [_sample(1, 3, 3, 2), _sample(2, 2, 1, 2), _sample(1, 5, 4, 1)],
            ),
        ]


@register
class Conv2DBackpropFilter(OpDef):
    """Gradient of Conv2D w.r.t. its filters: inputs (input, out_backprop, like_filters).

    Only the shape of the third input (the forward filters) is read.
    """

    def infer(self, specs, attrs):
        dtype = _float_same(specs[:2])
        n, h, w, c = _rank4(specs[0], "input")
        gn, oh, ow, o = _rank4(specs[1], "out_backprop")
        kh, kw, fc, fo = _rank4(specs[2], "like")
        _merge(n, gn, "batch sizes of input and out_backprop differ")
        c = _merge(c, fc, "input channels differ from the filters'")
        o = _merge(o, fo, "out_backprop channels differ from the filters'")
        eh, ew = _window_out(h, w, kh, kw, attrs)
        _merge(oh, eh, f"out_backprop height does not fit the input ({_conv_attrs_doc(attrs)})")
        _merge(ow, ew, f"out_backprop width does not fit the input ({_conv_attrs_doc(attrs)})")
        return [((kh, kw, c, o), dtype)]

    def ref(self, xs, attrs):
        x, g, like = xs
        kh, kw = like.shape[:2]
        n, h, w, c = x.shape
        win = _Window(h, w, kh, kw, attrs)
        if (win.oh, win.ow) != g.shape[1:3] or n != g.shape[0]:
            raise InvalidArgumentError(
                f"Conv2DBackpropFilter: out_backprop {g.shape} does not fit input {x.shape} "
                f"({_conv_attrs_doc(attrs)})"
            )
        cols = win.patches(win.pad(x))  # [N, OH, OW, KH*KW, C]
        out = np.tensordot(cols, g, axes=([0, 1, 2], [0, 1, 2]))
        return np.ascontiguousarray(out.reshape(kh, kw, c, g.shape[3]), dtype=x.dtype)

    def vjp(self, op, grads):
        dy = grads[0]
        if dy is None:
            return [None, None, None]
        x, g, like = op.inputs
        a = _window_attrs(op.attrs)
        # y = BF(x, g) is bilinear: <dy, BF(x, g)> = <conv2d(x, dy), g>
        return [_backprop_input(g, dy, a, like=x), apply1("Conv2D", [x, dy], a), None]

    def examples(self):
        def bf(strides, padding, dil=1):
            a = {"strides": _pair(strides, "strides"), "padding": padding,
                 "dilations": _pair(dil, "dilations")}  # fmt: skip
            return lambda x, g, f: apply1("Conv2DBackpropFilter", [x, g, f], a)

        return [
            Example(bf(1, "SAME"), [_sample(2, 4, 5, 2), _sample(2, 4, 5, 3), _sample(3, 3, 2, 3)]),
            Example(
                bf(2, "VALID"), [_sample(1, 5, 6, 2), _sample(1, 2, 2, 3), _sample(3, 3, 2, 3)]
            ),
            Example(
                bf(1, "SAME", 2), [_sample(1, 5, 5, 1), _sample(1, 5, 5, 2), _sample(2, 2, 1, 2)]
            ),
            Example(
                bf(1, ((1, 0), (2, 1))),
                [_sample(2, 5, 6, 3), _sample(2, 4, 7, 4), _sample(3, 3, 3, 4)],
            ),
            Example(
                bf(2, ((0, 2), (1, 0))),
                [_sample(1, 5, 6, 4), _sample(1, 3, 3, 3), _sample(3, 3, 4, 3)],
            ),
        ]


def _like_input(x, value):
    """``value`` as a tensor; a non-tensor (numpy array, list) takes the dtype of tensor ``x``,
    as TF converts the later inputs of an op whose inputs share one type attribute."""
    if hasattr(value, "_as_graph_tensor") or isinstance(value, Tensor):
        return convert_to_tensor(value)
    if x.dtype.is_floating and np.asarray(value).dtype.kind in "fiub":
        return convert_to_tensor(np.asarray(value), dtype=x.dtype)
    return convert_to_tensor(value)


def _conv_window_attrs(strides, padding, dilations, data_format="NHWC"):
    return {
        "strides": _pair(strides, "strides", data_format=data_format),
        "padding": _padding(padding, data_format),
        "dilations": _pair(dilations, "dilations", data_format=data_format),
    }


def _data_format(data_format, what):
    """``"NHWC"`` or ``"NCHW"`` (None: NHWC). The window ops work on NHWC; NCHW data is transposed
    to NHWC around them (transposes that the compiler folds into the neighbouring kernels)."""
    if data_format is None:
        return "NHWC"
    if data_format not in ("NHWC", "NCHW"):
        raise ValueError(f"{what}: data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    return data_format


def _to_nhwc(x, data_format, what):
    if data_format == "NHWC":
        return x
    if x.shape is not None and len(x.shape) != 4:
        raise ValueError(f"{what}: NCHW input {x.name} must be rank 4, got shape {x.shape}")
    return _transpose(x, (0, 2, 3, 1))


def _from_nhwc(y, data_format, name):
    if data_format == "NHWC":
        return y
    return _transpose(y, (0, 3, 1, 2), name=name)


@located("conv2d")
def conv2d(input, filters, strides, padding, dilations=1, data_format="NHWC", name=None):  # noqa: A002
    """2-D convolution of ``input`` (NHWC, or NCHW with ``data_format="NCHW"``) with HWIO
    ``filters`` ([height, width, in_channels, out_channels] in both formats).

    ``strides``/``dilations``: int, [h, w] or a 4-list in the data format's order
    ([1, h, w, 1] / [1, 1, h, w]); ``padding``: "SAME" (TF's split: the odd padding element
    goes after), "VALID", or TF's explicit list ``[[0, 0], [top, bottom], [left, right],
    [0, 0]]`` (NCHW: ``[[0, 0], [0, 0], [top, bottom], [left, right]]``).
    """
    data_format = _data_format(data_format, "conv2d")
    x = convert_to_tensor(input)
    f = _like_input(x, filters)
    attrs = _conv_window_attrs(strides, padding, dilations, data_format)
    if data_format == "NHWC":
        return apply1("Conv2D", [x, f], attrs, name)
    y = apply1("Conv2D", [_to_nhwc(x, data_format, "conv2d"), f], attrs)
    return _from_nhwc(y, data_format, name)


@located("conv2d_transpose")
def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", dilations=1,  # noqa: A002
                     data_format="NHWC", name=None):  # fmt: skip
    """Transpose (gradient) of conv2d: ``filters`` are [KH, KW, out_channels, in_channels] and
    ``output_shape`` is the NHWC shape of the result (its batch entry may be None)."""
    if data_format != "NHWC":
        raise ValueError(f"conv2d_transpose: data_format {data_format!r} is not supported")
    x = convert_to_tensor(input)
    f = _like_input(x, filters)
    if hasattr(output_shape, "op"):
        raise TypeError("conv2d_transpose: output_shape must be static (a list of 4 ints)")
    shape = tuple(None if d is None or int(d) < 0 else int(d) for d in output_shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(f"conv2d_transpose: output_shape must be [N, H, W, C] with known H, W, "
                         f"C, got {output_shape!r}")  # fmt: skip
    if f.shape is not None and f.shape[2] is not None and f.shape[2] != shape[3]:
        raise ValueError(f"conv2d_transpose: output_shape channels {shape[3]} do not match "
                         f"filters {f.name} of shape {f.shape}")  # fmt: skip
    if x.shape is not None and None not in (shape[0], x.shape[0]) and shape[0] != x.shape[0]:
        raise ValueError(f"conv2d_transpose: output_shape batch {shape[0]} does not match "
                         f"input {x.name} of shape {x.shape}")  # fmt: skip
    a = _conv_window_attrs(strides, padding, dilations)
    return apply1("Conv2DBackpropInput", [x, f], dict(a, input_hw=shape[1:3]), name)


class _Pool(OpDef):
    def infer(self, specs, attrs):
        x = specs[0]
        if not x.dtype.is_floating:
            raise DTypeError(f"{x.dtype.name} is not supported (floating types only)")
        n, h, w, c = _rank4(x, "input")
        oh, ow = _window_out(h, w, *attrs["ksize"], attrs)
        return [((n, oh, ow, c), x.dtype)]

    def window(self, x, attrs):
        return _Window(x.shape[1], x.shape[2], *attrs["ksize"], attrs)


def _pool_examples(build):
    x = _sample(2, 5, 6, 3)
    return [
        Example(lambda t: build(t, 2, 2, "VALID"), [x]),
        Example(lambda t: build(t, 3, 2, "SAME"), [x]),
        Example(lambda t: build(t, (2, 3), (1, 2), "SAME"), [x]),
        Example(lambda t: build(t, 3, 1, "VALID"), [_sample(1, 4, 4, 2)]),
        Example(lambda t: build(t, 3, 2, [[0, 0], [1, 0], [2, 1], [0, 0]]), [x]),
        Example(lambda t: build(t, 2, 2, [[0, 0], [0, 1], [1, 0], [0, 0]]), [x]),
    ]


def _max_mask(win, x):
    """One-hot [N, OH, OW, KH*KW, C] of the first maximum in each window (TF's choice)."""
    cols = win.patches(win.pad(x, -np.inf))
    first = np.argmax(cols, axis=3)
    return np.arange(cols.shape[3])[None, None, None, :, None] == first[:, :, :, None, :]


@register
class MaxPool(_Pool):
    """Maximum over each window; SAME padding never wins (it is -inf)."""

    def ref(self, xs, attrs):
        x = xs[0]
        win = self.window(x, attrs)
        return np.ascontiguousarray(win.patches(win.pad(x, -np.inf)).max(axis=3), dtype=x.dtype)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None]
        return [apply1("MaxPoolGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        return _pool_examples(max_pool2d)


class _PoolGrad(_Pool):
    """Inputs (x or a tensor shaped like it, g pooled-shaped): the output has x's shape."""

    def infer(self, specs, attrs):
        (pooled, dtype), = _Pool.infer(self, specs[:1], attrs)  # fmt: skip
        _float_same(specs)
        _check_pooled(specs[1].shape, pooled)
        return [(specs[0].shape, dtype)]


@register
class MaxPoolGrad(_PoolGrad):
    """Inputs (x, g): g routed to the first maximum of each window of x, summed."""

    def ref(self, xs, attrs):
        x, g = xs
        win = self.window(x, attrs)
        cols = _max_mask(win, x) * g[:, :, :, None, :]
        return np.ascontiguousarray(win.scatter(cols, x.shape[0], x.shape[3], x.dtype))

    def vjp(self, op, grads):
        # linear in g, piecewise constant in x
        if grads[0] is None:
            return [None, None]
        return [None, apply1("MaxPoolGradGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        def mpg(ksize, strides, padding):
            a = _pool_attrs(ksize, strides, padding)
            return lambda x, g: apply1("MaxPoolGrad", [x, g], a)

        x = _distinct(2, 5, 6, 3)
        return [
            Example(mpg(2, 2, "VALID"), [x, _sample(2, 2, 3, 3)]),
            Example(mpg(3, 2, "SAME"), [x, _sample(2, 3, 3, 3)]),
            Example(mpg(3, 2, [[0, 0], [1, 0], [2, 1], [0, 0]]), [x, _sample(2, 2, 4, 3)]),
            Example(mpg(2, 2, [[0, 0], [0, 1], [1, 0], [0, 0]]), [x, _sample(2, 3, 3, 3)]),
        ]


@register
class MaxPoolGradGrad(_Pool):
    """Inputs (x, d): d picked at the first maximum of each window of x (adjoint of
    MaxPoolGrad in its gradient input)."""

    def infer(self, specs, attrs):
        out = _Pool.infer(self, specs[:1], attrs)
        _float_same(specs)
        if specs[0].shape is not None and specs[1].shape is not None:
            for a, b in zip(specs[0].shape, specs[1].shape):
                _merge(a, b, f"d must have the shape of x {specs[0].shape}, got {specs[1].shape}")
        return out

    def ref(self, xs, attrs):
        x, d = xs
        win = self.window(x, attrs)
        picked = np.where(_max_mask(win, x), win.patches(win.pad(d)), 0).sum(axis=3)
        return np.ascontiguousarray(picked, dtype=x.dtype)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None, None]
        return [None, apply1("MaxPoolGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        def mpgg(padding):
            a = _pool_attrs(3, 2, padding)
            return lambda x, d: apply1("MaxPoolGradGrad", [x, d], a)

        x = _distinct(2, 5, 6, 3)
        return [
            Example(mpgg("SAME"), [x, _sample(2, 5, 6, 3)]),
            Example(mpgg([[0, 0], [1, 0], [2, 1], [0, 0]]), [x, _sample(2, 5, 6, 3)]),
        ]


def _distinct(*shape):
    """Values with no ties (central differences of max pooling need a unique maximum)."""
    n = int(np.prod(shape))
    return (_rng.permutation(n).reshape(shape) / n * 4 - 2).astype(np.float64)


def _check_pooled(gshape, pooled):
    if gshape is None or pooled is None:
        return
    if len(gshape) != 4:
        raise ShapeError(f"gradient must be rank 4, got {gshape}")
    for a, b in zip(gshape, pooled):
        _merge(a, b, f"gradient shape {gshape} does not fit the pooled shape {pooled}")


def _avg_counts(win):
    """[OH, OW]: how many real (unpadded) inputs each window covers (TF's SAME divisor)."""
    ones = win.pad(np.ones((1, win.h, win.w, 1)))
    return win.patches(ones).sum(axis=3)[0, :, :, 0]


@register
class AvgPool(_Pool):
    """Mean over each window; SAME divides by the number of real inputs, as TF."""

    def ref(self, xs, attrs):
        x = xs[0]
        win = self.window(x, attrs)
        s = win.patches(win.pad(x)).sum(axis=3)
        return np.ascontiguousarray(s / _avg_counts(win)[None, :, :, None], dtype=x.dtype)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None]
        return [apply1("AvgPoolGrad", [op.inputs[0], grads[0]], op.attrs)]

    def examples(self):
        return _pool_examples(avg_pool2d)


@register
class AvgPoolGrad(_PoolGrad):
    """Inputs (like, g): each g spread evenly over its window; only like's shape is read."""

    def ref(self, xs, attrs):
        like, g = xs
        win = self.window(like, attrs)
        share = g / _avg_counts(win)[None, :, :, None]
        cols = np.broadcast_to(share[:, :, :, None, :], (*g.shape[:3], win.kh * win.kw, g.shape[3]))
        return np.ascontiguousarray(win.scatter(cols, g.shape[0], g.shape[3], g.dtype))

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None, None]
        return [None, apply1("AvgPool", [grads[0]], op.attrs)]

    def examples(self):
        def apg(ksize, strides, padding):
            a = _pool_attrs(ksize, strides, padding)
            return lambda x, g: apply1("AvgPoolGrad", [x, g], a)

        x = _sample(2, 5, 6, 3)
        return [
            Example(apg(2, 2, "VALID"), [x, _sample(2, 2, 3, 3)]),
            Example(apg(3, 2, "SAME"), [x, _sample(2, 3, 3, 3)]),
            Example(apg(3, 2, [[0, 0], [1, 0], [2, 1], [0, 0]]), [x, _sample(2, 2, 4, 3)]),
        ]


def _pool_attrs(ksize, strides, padding, data_format="NHWC"):
    return {
        "ksize": _pair(ksize, "ksize", data_format=data_format),
        "strides": _pair(strides, "strides", data_format=data_format),
        "padding": _padding(padding, data_format),
    }


def _pool(type_name, what, input, ksize, strides, padding, data_format, name):  # noqa: A002
    data_format = _data_format(data_format, what)
    x = convert_to_tensor(input)
    attrs = _pool_attrs(ksize, strides, padding, data_format)
    if data_format == "NHWC":
        return apply1(type_name, [x], attrs, name)
    y = apply1(type_name, [_to_nhwc(x, data_format, what)], attrs)
    return _from_nhwc(y, data_format, name)


@located("max_pool2d")
def max_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):  # noqa: A002
    """Max over ksize windows of ``input`` (NHWC, or NCHW with ``data_format="NCHW"``;
    ksize/strides: int, [h, w] or a 4-list in the data format's order); ``padding`` as
    conv2d's (explicit padding never wins: it reads as -inf)."""
    return _pool("MaxPool", "max_pool2d", input, ksize, strides, padding, data_format, name)


@located("avg_pool2d")
def avg_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):  # noqa: A002
    """Mean over ksize windows of ``input`` (NHWC or NCHW); SAME and explicit padding divide
    by the real inputs covered."""
    return _pool("AvgPool", "avg_pool2d", input, ksize, strides, padding, data_format, name)


max_pool = max_pool2d
avg_pool = avg_pool2d
