"""Converters from ONNX ops to graphc ops, one module per family (registered on import)."""

from . import elementwise, nn, reduce, tensor  # noqa: F401 - importing registers the handlers
from .base import HANDLERS, handler  # noqa: F401
