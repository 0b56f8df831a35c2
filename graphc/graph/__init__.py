"""TF1-style graphs: Graph, Operation, Tensor, name scopes and control dependencies."""

from .core import (
    Graph,
    Operation,
    Tensor,
    TensorSpec,
    control_dependencies,
    get_default_graph,
    name_scope,
    reset_default_graph,
)

__all__ = [
    "Graph",
    "Operation",
    "Tensor",
    "TensorSpec",
    "control_dependencies",
    "get_default_graph",
    "name_scope",
    "reset_default_graph",
]
