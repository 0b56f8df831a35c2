"""Building models, TF1-style: variable scopes, ``get_variable`` and initializers.

Layering: ``model`` sits above ``graph`` and ``ops`` (it builds variables and random ops) and
below ``layers``, ``losses`` and ``metrics``, which name their variables through it::

    graph/ (Graph, collections, GraphKeys) -> ops/ (Variable, ops) -> model/ (scopes,
    get_variable, initializers) -> layers/, losses.py, metrics.py -> train/ (optimizers)
"""

from . import initializers
from .scope import (
    AUTO_REUSE,
    VariableScope,
    get_local_variable,
    get_variable,
    get_variable_scope,
    variable_scope,
)

__all__ = [
    "initializers", "AUTO_REUSE", "VariableScope", "get_local_variable", "get_variable",
    "get_variable_scope", "variable_scope",
]  # fmt: skip
