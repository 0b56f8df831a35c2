"""``gc.nn``: activations, normalisation, convolution, pooling and losses."""

from .ops.elementwise import sigmoid, tanh  # noqa: F401
from .ops.nn import *  # noqa: F403
from .ops.nn import __all__ as _nn

__all__ = ["sigmoid", "tanh", *_nn]
