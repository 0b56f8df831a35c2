"""``gc.nn``: activations, normalisation, convolution, pooling and losses."""

from .ops.elementwise import sigmoid, tanh  # noqa: F401
from .ops.nn import *  # noqa: F403
from .ops.nn import __all__ as _nn
from .rnn import cell as rnn_cell  # noqa: F401 - gc.nn.rnn_cell, as tf.nn.rnn_cell
from .rnn import dynamic_rnn

__all__ = ["sigmoid", "tanh", "dynamic_rnn", *_nn]  # (gc.nn.rnn_cell: a namespace)
