"""Normalisation (``l2_normalize``, ``moments``, ``layer_norm``, ``batch_normalization``):
composites of elementwise ops and reductions, whose gradients come from the parts."""

from __future__ import annotations

import numpy as np

from ..control import identity
from ..elementwise import maximum, rsqrt
from ..reduce import reduce_mean, reduce_sum
from ..shape import squeeze
from ..shape_util import located
from .common import _axis, _ew, _float_tensor


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
    x = _float_tensor(x, "layer_norm")
    mean, var = moments(x, axis, keepdims=True)
    out = (x - mean) * rsqrt(var + epsilon)
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    if name:
        out = identity(out, name=name)
    return out


@located("batch_normalization")
def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """(x - mean) * scale / sqrt(variance + eps) + offset (offset/scale may be None), as TF."""
    x = _float_tensor(x, "batch_normalization")
    inv = rsqrt(variance + variance_epsilon)
    if scale is not None:
        inv = inv * scale
    shift = -mean * inv if offset is None else offset - mean * inv
    return _ew().add(x * inv, shift, name=name)
