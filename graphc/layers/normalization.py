"""Batch normalization (``tf.compat.v1.layers.batch_normalization``)."""

from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..model import initializers as _init
from ..ops.elementwise import cast, maximum, where
from ..ops.nn import batch_normalization as _nn_batch_normalization
from ..ops.nn import moments
from ..ops.shape import reshape, size
from ..ops.state import assign_sub
from .base import Layer
from .core import _training_tensor

__all__ = ["BatchNormalization", "batch_normalization"]

# TF's fused kernel raises smaller epsilons to this (a cuDNN requirement)
_FUSED_MIN_EPSILON = 1.001e-5

# initializers are stateless: one shared default instance each
_ZEROS = _init.Zeros()
_ONES = _init.Ones()


class BatchNormalization(Layer):
    """Normalizes over every axis but ``axis`` (the channels): ``gamma * (x - mean) /
    sqrt(var + epsilon) + beta``, with the batch's moments while ``training``, else the moving
    averages ``moving_mean``/``moving_variance``. While training, the update ops
    ``moving = moving - (moving - batch) * (1 - momentum)`` go to ``self.updates`` and
    ``GraphKeys.UPDATE_OPS``; run them with the training step (``gc.control_dependencies``).

    As TF1, the layer is "fused" for 4-D float16/float32 inputs whose channel axis is 1 or 3
    (unless ``fused=False``): then the moving variance is updated with the unbiased batch
    variance (n / (n - 1)) and epsilon is at least 1.001e-5; otherwise with the biased one.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer=_ZEROS, gamma_initializer=_ONES,
                 moving_mean_initializer=_ZEROS, moving_variance_initializer=_ONES,
                 beta_regularizer=None, gamma_regularizer=None, renorm=False, fused=None,
                 trainable=True, virtual_batch_size=None, adjustment=None, name=None,
                 **kwargs):  # fmt: skip
        for key in ("beta_constraint", "gamma_constraint", "renorm_clipping"):
            if kwargs.pop(key, None) is not None:
                raise NotImplementedError(f"batch_normalization: {key} is not supported")
        kwargs.pop("renorm_momentum", None)
        if renorm or virtual_batch_size is not None or adjustment is not None:
            raise NotImplementedError("batch_normalization: renorm, virtual_batch_size and "
                                      "adjustment are not supported")  # fmt: skip
        super().__init__(trainable=trainable, name=name, **kwargs)
        self.axis = list(axis) if isinstance(axis, list | tuple) else axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center, self.scale = center, scale
        self.beta_initializer = _init.get(beta_initializer)
        self.gamma_initializer = _init.get(gamma_initializer)
        self.moving_mean_initializer = _init.get(moving_mean_initializer)
        self.moving_variance_initializer = _init.get(moving_variance_initializer)
        self.beta_regularizer, self.gamma_regularizer = beta_regularizer, gamma_regularizer
        self.fused = fused
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape):
        if input_shape is None:
            raise ValueError("batch_normalization: the input's rank must be known")
        ndims = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        try:
            axes = sorted({a + ndims if a < 0 else a for a in axes})
        except TypeError:
            raise TypeError(f"batch_normalization: axis must be an int or a list of ints, got "
                            f"{self.axis!r}") from None  # fmt: skip
        if not axes or any(not 0 <= a < ndims for a in axes):
            raise ValueError(f"Invalid axis {self.axis!r} for input of rank {ndims}")
        for a in axes:
            if input_shape[a] is None:
                raise ValueError(f"batch_normalization: input has undefined channel dimension "
                                 f"{a}: shape {input_shape}")  # fmt: skip
        self._axes, self._ndims = axes, ndims
        if len(axes) == 1:
            param_shape = (input_shape[axes[0]],)
        else:
            param_shape = tuple(input_shape[i] if i in axes else 1 for i in range(ndims))
        dtype = self.dtype
        self._param_dtype = _dt.float32 if dtype == _dt.float16 else dtype
        fusable = ndims == 4 and axes in ([1], [3]) and dtype in (_dt.float16, _dt.float32)
        self._fused = fusable if self.fused is None else bool(self.fused) and fusable
        if self.fused and not fusable:
            raise ValueError(f"batch_normalization: fused=True needs a 4-D float16/float32 "
                             f"input with the channels on axis 1 or 3, got shape {input_shape} "
                             f"of {dtype.name} and axis {self.axis!r}")  # fmt: skip
        pd = self._param_dtype
        if self.scale:
            self.gamma = self.add_weight("gamma", param_shape, pd, self.gamma_initializer,
                                         self.gamma_regularizer)  # fmt: skip
        if self.center:
            self.beta = self.add_weight("beta", param_shape, pd, self.beta_initializer,
                                        self.beta_regularizer)  # fmt: skip
        self.moving_mean = self.add_weight(
            "moving_mean", param_shape, pd, self.moving_mean_initializer, trainable=False
        )
        self.moving_variance = self.add_weight("moving_variance", param_shape, pd,
                                               self.moving_variance_initializer,
                                               trainable=False)  # fmt: skip

    def _broadcast(self, t):
        """A parameter-shaped tensor shaped to broadcast against the input."""
        if t is None or len(self._axes) > 1 or self._axes[0] == self._ndims - 1:
            return t
        shape = [1] * self._ndims
        shape[self._axes[0]] = -1
        return reshape(t, tuple(shape))

    def _normalize(self, x, mean, variance, epsilon):
        b = self._broadcast
        out = _nn_batch_normalization(x, b(mean), b(variance), b(self.beta), b(self.gamma),
                                      epsilon)  # fmt: skip
        return out

    def call(self, inputs, training=False):
        flag = _training_tensor(training)
        x = inputs
        pd = self._param_dtype
        xp = cast(x, pd) if x.dtype != pd else x
        epsilon = max(self.epsilon, _FUSED_MIN_EPSILON) if self._fused else self.epsilon
        inference = self._normalize(xp, self.moving_mean, self.moving_variance, epsilon)
        if flag is None and not training:
            return cast(inference, x.dtype) if x.dtype != pd else inference
        reduction = [i for i in range(self._ndims) if i not in self._axes]
        mean, variance = moments(xp, reduction, keepdims=len(self._axes) > 1)
        out = self._normalize(xp, mean, variance, epsilon)
        if flag is not None:
            # TF1 picks the branch with tf.cond; a select computes both (the inference branch
            # is one fused elementwise pass) and gives the same values and gradients (the
            # unused branch gets a zero gradient). gc.cond would skip the batch moments when
            # not training, at the price of a branch the fused kernels cannot cross.
            out = where(flag, out, inference)
        if x.dtype != pd:
            out = cast(out, x.dtype)
        if self._fused:
            # the fused kernel hands the moving average the unbiased batch variance
            variance = variance * self._bessel(xp)
        decay = 1.0 - self.momentum
        if flag is not None:
            mean = where(flag, mean, self.moving_mean)
            variance = where(flag, variance, self.moving_variance)
            decay = cast(flag, pd) * decay
        for var, value, op_name in (
            (self.moving_mean, mean, "AssignMovingAvg"),
            (self.moving_variance, variance, "AssignMovingAvg_1"),
        ):
            update = assign_sub(var, (var - value) * decay, name=op_name)  # fmt: skip
            self.add_update(update.op)
        return out

    def _bessel(self, x):
        """n / (n - 1), n the number of values each channel's moments reduce over."""
        channels = int(np.prod([x.shape[a] for a in self._axes]))
        if x.shape is not None and None not in x.shape:
            n = float(np.prod(x.shape, dtype=np.int64)) / channels
            return n / max(n - 1.0, 1.0)
        n = cast(size(x), x.dtype) / float(channels)
        return n / maximum(n - 1.0, 1.0)


def batch_normalization(inputs, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                        beta_initializer=_ZEROS, gamma_initializer=_ONES,
                        moving_mean_initializer=_ZEROS,
                        moving_variance_initializer=_ONES, beta_regularizer=None,
                        gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                        training=False, trainable=True, name=None, reuse=None, renorm=False,
                        renorm_clipping=None, renorm_momentum=0.99, fused=None,
                        virtual_batch_size=None, adjustment=None):  # fmt: skip
    """Batch normalization layer (``tf.compat.v1.layers.batch_normalization``).

    ``axis``: the channel axis (-1 for NHWC, 1 for NCHW). ``training``: a Python bool or a
    scalar bool tensor; while training the batch's moments normalize, and the ops updating
    ``moving_mean``/``moving_variance`` are added to ``GraphKeys.UPDATE_OPS``::

        update_ops = gc.get_collection(gc.GraphKeys.UPDATE_OPS)
        with gc.control_dependencies(update_ops):
            train_op = optimizer.minimize(loss)

    Variables ``<scope>/gamma``, ``beta``, ``moving_mean``, ``moving_variance``, the scope being
    ``name`` or a fresh ``batch_normalization``, ``batch_normalization_1``, ...
    """
    layer = BatchNormalization(
        axis=axis, momentum=momentum, epsilon=epsilon, center=center, scale=scale,
        beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
        moving_mean_initializer=moving_mean_initializer,
        moving_variance_initializer=moving_variance_initializer,
        beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
        beta_constraint=beta_constraint, gamma_constraint=gamma_constraint, renorm=renorm,
        renorm_clipping=renorm_clipping, renorm_momentum=renorm_momentum, fused=fused,
        trainable=trainable, virtual_batch_size=virtual_batch_size, adjustment=adjustment,
        name=name, _reuse=reuse,
    )  # fmt: skip
    return layer(inputs, training=training)


BatchNorm = BatchNormalization
