"""Convolution and pooling layers (``tf.compat.v1.layers``): conv2d, max_pooling2d,
average_pooling2d."""

from __future__ import annotations

from ..model import initializers as _init
from ..ops.nn import avg_pool2d, bias_add, max_pool2d
from ..ops.nn import conv2d as _nn_conv2d
from .base import Layer, normalize_data_format, normalize_padding, normalize_tuple

__all__ = [
    "Conv2D", "MaxPooling2D", "AveragePooling2D", "conv2d", "max_pooling2d",
    "average_pooling2d", "Convolution2D", "MaxPool2D", "AveragePool2D",
]  # fmt: skip

_NN_FORMAT = {"channels_last": "NHWC", "channels_first": "NCHW"}

# initializers are stateless: one shared default instance
_ZEROS = _init.Zeros()


class Conv2D(Layer):
    """2-D convolution layer: ``kernel`` [kh, kw, in_channels, filters] (glorot_uniform by
    default), ``bias`` [filters] (zeros)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format="channels_last", dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer=None, bias_initializer=_ZEROS,
                 kernel_regularizer=None, bias_regularizer=None, trainable=True, name=None,
                 **kwargs):  # fmt: skip
        for key in ("kernel_constraint", "bias_constraint"):
            if kwargs.pop(key, None) is not None:
                raise NotImplementedError(f"conv2d: {key} is not supported")
        super().__init__(trainable=trainable, name=name, **kwargs)
        self.filters = int(filters)
        if self.filters <= 0:
            raise ValueError(f"conv2d: filters must be positive, got {filters}")
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size")
        self.strides = normalize_tuple(strides, 2, "strides")
        self.padding = normalize_padding(padding)
        self.data_format = normalize_data_format(data_format)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("conv2d: strides > 1 not supported in conjunction with "
                             "dilation_rate > 1")  # fmt: skip
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.kernel = self.bias = None

    def _channel_axis(self):
        return 1 if self.data_format == "channels_first" else -1

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 4:
            raise ValueError(f"conv2d: inputs must be rank 4, got shape {input_shape}")
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError("The channel dimension of the inputs should be defined. Found "
                             "`None`.")  # fmt: skip
        self.kernel = self.add_weight("kernel", (*self.kernel_size, channels, self.filters),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)  # fmt: skip
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer)  # fmt: skip

    def call(self, inputs):
        fmt = _NN_FORMAT[self.data_format]
        out = _nn_conv2d(inputs, self.kernel, strides=self.strides,
                         padding=self.padding.upper(), dilations=self.dilation_rate,
                         data_format=fmt)  # fmt: skip
        if self.use_bias:
            out = bias_add(out, self.bias, data_format=fmt)
        if self.activation is not None:
            out = self.activation(out)
        return out


Convolution2D = Conv2D


def conv2d(inputs, filters, kernel_size, strides=(1, 1), padding="valid",
           data_format="channels_last", dilation_rate=(1, 1), activation=None, use_bias=True,
           kernel_initializer=None, bias_initializer=_ZEROS, kernel_regularizer=None,
           bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
           bias_constraint=None, trainable=True, name=None, reuse=None):  # fmt: skip
    """2-D convolution layer (``tf.compat.v1.layers.conv2d``).

    ``kernel_size``, ``strides``, ``dilation_rate``: int or pair; ``padding``: "valid" or
    "same"; ``data_format``: "channels_last" (NHWC) or "channels_first" (NCHW). Variables
    ``<scope>/kernel`` [kh, kw, in, filters] and ``<scope>/bias`` [filters], the scope being
    ``name`` or a fresh ``conv2d``, ``conv2d_1``, ...
    """
    layer = Conv2D(filters, kernel_size, strides=strides, padding=padding,
                   data_format=data_format, dilation_rate=dilation_rate, activation=activation,
                   use_bias=use_bias, kernel_initializer=kernel_initializer,
                   bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                   bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                   bias_constraint=bias_constraint, activity_regularizer=activity_regularizer,
                   trainable=trainable, name=name, _reuse=reuse)  # fmt: skip
    return layer(inputs)


class _Pooling2D(Layer):
    _pool = None

    def __init__(self, pool_size, strides, padding="valid", data_format="channels_last",
                 name=None, **kwargs):  # fmt: skip
        super().__init__(name=name, **kwargs)
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size")
        self.strides = normalize_tuple(self.pool_size if strides is None else strides, 2,
                                       "strides")  # fmt: skip
        self.padding = normalize_padding(padding)
        self.data_format = normalize_data_format(data_format)

    def call(self, inputs):
        if inputs.shape is None or len(inputs.shape) != 4:
            raise ValueError(f"{type(self).__name__}: inputs must be rank 4, got shape "
                             f"{inputs.shape}")  # fmt: skip
        return type(self)._pool(inputs, self.pool_size, self.strides, self.padding.upper(),
                                data_format=_NN_FORMAT[self.data_format])  # fmt: skip


class MaxPooling2D(_Pooling2D):
    """Max over ``pool_size`` windows."""

    _pool = staticmethod(max_pool2d)


class AveragePooling2D(_Pooling2D):
    """Mean over ``pool_size`` windows (SAME padding divides by the real inputs covered)."""

    _pool = staticmethod(avg_pool2d)


MaxPool2D = MaxPooling2D
AveragePool2D = AveragePooling2D


def max_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last",
                  name=None):  # fmt: skip
    """Max pooling (``tf.compat.v1.layers.max_pooling2d``): ``pool_size``, ``strides`` int or
    pair, ``padding`` "valid"/"same", ``data_format`` channels_last/channels_first."""
    return MaxPooling2D(pool_size, strides, padding=padding, data_format=data_format,
                        name=name)(inputs)  # fmt: skip


def average_pooling2d(inputs, pool_size, strides, padding="valid",
                      data_format="channels_last", name=None):  # fmt: skip
    """Average pooling (``tf.compat.v1.layers.average_pooling2d``)."""
    return AveragePooling2D(pool_size, strides, padding=padding, data_format=data_format,
                            name=name)(inputs)  # fmt: skip
