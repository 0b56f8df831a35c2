"""Dense, flatten and dropout layers (``tf.compat.v1.layers``)."""

from __future__ import annotations

import numpy as np

from ..model import initializers as _init
from ..ops.control import identity
from ..ops.elementwise import cast
from ..ops.linalg import matmul, tensordot
from ..ops.nn import bias_add
from ..ops.nn import dropout as _nn_dropout
from ..ops.registry import convert_to_tensor
from ..ops.shape import reshape, transpose
from .base import Layer, normalize_data_format

__all__ = ["Dense", "Flatten", "Dropout", "dense", "flatten", "dropout"]

# initializers are stateless: one shared default instance
_ZEROS = _init.Zeros()


class Dense(Layer):
    """``activation(inputs @ kernel + bias)``: ``kernel`` [last dim, units] (glorot_uniform by
    default), ``bias`` [units] (zeros). Inputs of rank > 2 contract their last dim."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=_ZEROS, kernel_regularizer=None, bias_regularizer=None,
                 trainable=True, name=None, **kwargs):  # fmt: skip
        for key in ("kernel_constraint", "bias_constraint"):
            if kwargs.pop(key, None) is not None:
                raise NotImplementedError(f"dense: {key} is not supported")
        super().__init__(trainable=trainable, name=name, **kwargs)
        self.units = int(units)
        if self.units <= 0:
            raise ValueError(f"dense: units must be positive, got {units}")
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel = self.bias = None

    def build(self, input_shape):
        if input_shape is None or len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"The last dimension of the inputs to `Dense` should be defined "
                             f"(rank >= 2). Found shape {input_shape}.")  # fmt: skip
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)  # fmt: skip
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer)  # fmt: skip

    def call(self, inputs):
        rank = len(inputs.shape)
        if rank == 2:
            out = matmul(inputs, self.kernel)
        else:
            out = tensordot(inputs, self.kernel, [[rank - 1], [0]])
        if self.use_bias:
            out = bias_add(out, self.bias)
        if self.activation is not None:
            out = self.activation(out)
        return out


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=_ZEROS, kernel_regularizer=None, bias_regularizer=None,
          activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
          trainable=True, name=None, reuse=None):  # fmt: skip
    """A fully connected layer: ``activation(inputs @ kernel + bias)``.

    Variables ``<scope>/kernel`` [in, units] and ``<scope>/bias`` [units], the scope being
    ``name`` or a fresh ``dense``, ``dense_1``, ... ``reuse=True`` (with a name) shares the
    variables of an earlier layer of that name.
    """
    layer = Dense(units, activation=activation, use_bias=use_bias,
                  kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                  kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                  kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                  activity_regularizer=activity_regularizer, trainable=trainable, name=name,
                  _reuse=reuse)  # fmt: skip
    return layer(inputs)


class Flatten(Layer):
    """[batch, ...] -> [batch, prod(...)]; channels_first data is first moved to
    channels-last order, as tf.layers.flatten."""

    def __init__(self, data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.data_format = normalize_data_format(data_format)

    def call(self, inputs):
        shape = inputs.shape
        if shape is None:
            raise ValueError("flatten: the input's rank must be known")
        if len(shape) == 0:
            raise ValueError(f"flatten: input {inputs.name} must have a batch dimension")
        if self.data_format == "channels_first" and len(shape) > 2:
            inputs = transpose(inputs, (0, *range(2, len(shape)), 1))
            shape = inputs.shape
        rest = shape[1:]
        if None not in rest:
            return reshape(inputs, (-1, int(np.prod(rest, dtype=np.int64))))
        if shape[0] is not None:
            return reshape(inputs, (shape[0], -1))
        raise ValueError(f"flatten: input {inputs.name} of shape {shape} has unknown dims "
                         "besides the batch")  # fmt: skip


def flatten(inputs, name=None, data_format="channels_last"):
    """Flattens all but the first (batch) dimension: [N, ...] -> [N, prod(...)]."""
    return Flatten(data_format=data_format, name=name)(inputs)


def _training_tensor(training):
    """``training`` as a Python bool, or a scalar bool tensor (None when it is a Python
    value)."""
    if isinstance(training, bool | np.bool_) or training is None:
        return None
    if isinstance(training, int):
        return None
    t = convert_to_tensor(training)
    if not t.dtype.is_bool:
        raise TypeError(f"training must be a Python bool or a bool tensor, got {t.name} of "
                        f"{t.dtype.name}")  # fmt: skip
    if t.shape not in (None, ()):
        raise ValueError(f"training must be a scalar, got {t.name} of shape {t.shape}")
    return t


class Dropout(Layer):
    """Zeroes each input with probability ``rate`` and scales the rest by 1 / (1 - rate)
    while ``training`` (a Python bool or a scalar bool tensor); the identity otherwise."""

    def __init__(self, rate=0.5, noise_shape=None, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.rate = float(rate)
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"dropout: rate must be in [0, 1), got {rate}")
        self.noise_shape = noise_shape
        self.seed = seed

    def call(self, inputs, training=False):
        flag = _training_tensor(training)
        if flag is None:
            if not training or self.rate == 0.0:
                return identity(inputs)
            return _nn_dropout(inputs, rate=self.rate, noise_shape=self.noise_shape,
                               seed=self.seed)  # fmt: skip
        # A bool tensor: the rate is `rate` while training and 0 otherwise, and dropout at
        # rate 0 keeps every element unscaled (u >= 0 always holds), so one graph serves both
        # modes with no branch (TF1 uses tf.cond here; the values are the same, and the
        # elementwise form fuses into the neighbouring kernels where a gc.cond would not).
        rate = cast(flag, inputs.dtype) * self.rate
        return _nn_dropout(inputs, rate=rate, noise_shape=self.noise_shape, seed=self.seed)


def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False, name=None):
    """Dropout while ``training`` (Python bool or scalar bool tensor, e.g. a placeholder), the
    identity otherwise. Kept values are scaled by 1 / (1 - rate), as TF1."""
    return Dropout(rate=rate, noise_shape=noise_shape, seed=seed, name=name)(
        inputs, training=training
    )
