"""``gc.layers``: TF1's ``tf.compat.v1.layers`` (dense, conv2d, pooling, flatten, dropout,
batch_normalization), functions and layer classes.

Each layer names its variables through ``gc.variable_scope``/``gc.get_variable`` exactly as
TF1 does (``dense/kernel``, ``dense_1/kernel``, ``conv2d/bias``,
``batch_normalization/moving_mean``, ...), so checkpoints and ``reuse`` work the TF1 way.
Layering: layers sit on graphc/model (scopes, initializers) and the ops; nothing below
imports them.
"""

from .base import Layer
from .conv import (
    AveragePool2D,
    AveragePooling2D,
    Conv2D,
    Convolution2D,
    MaxPool2D,
    MaxPooling2D,
    average_pooling2d,
    conv2d,
    max_pooling2d,
)
from .core import Dense, Dropout, Flatten, dense, dropout, flatten
from .normalization import BatchNormalization, batch_normalization

__all__ = [
    "Layer", "Dense", "Dropout", "Flatten", "Conv2D", "Convolution2D", "MaxPooling2D",
    "MaxPool2D", "AveragePooling2D", "AveragePool2D", "BatchNormalization", "dense", "dropout",
    "flatten", "conv2d", "max_pooling2d", "average_pooling2d", "batch_normalization",
]  # fmt: skip
