"""Converters from ONNX ops to graphc ops, one module per family (registered on import)."""

# importing registers the handlers
from . import control, elementwise, nn, reduce, resize, rnn, tensor  # noqa: F401
from .base import HANDLERS, handler  # noqa: F401
