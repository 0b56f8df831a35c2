"""The op library: one OpDef per op type (registry.py), grouped by family."""

from . import (  # noqa: F401 - importing registers the ops
    constant,
    control,
    elementwise,
    linalg,
    nn,
    random,
    reduce,
    shape,
    state,
)
from .registry import REGISTRY, OpDef, get_op_def, register  # noqa: F401
