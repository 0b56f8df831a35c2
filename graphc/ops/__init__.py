"""The op library: one OpDef per op type (registry.py), grouped by family."""

from ..graph.core import install_operators as _install_operators
from . import (  # noqa: F401 - importing registers the ops
    bitwise,
    constant,
    control,
    cumulative,
    debug,
    elementwise,
    gather_scatter,
    indexing,
    linalg,
    nn,
    random,
    reduce,
    shape,
    sorting,
    state,
    trig,
)
from .registry import REGISTRY, OpDef, get_op_def, register  # noqa: F401

_install_operators(
    {
        "add": elementwise.add, "sub": elementwise.subtract, "mul": elementwise.multiply,
        "truediv": elementwise.divide, "floordiv": elementwise.floordiv,
        "mod": elementwise.mod, "pow": elementwise.pow, "matmul": linalg.matmul,
        "and": elementwise.logical_and, "or": elementwise.logical_or,
        "xor": elementwise.logical_xor, "lt": elementwise.less, "le": elementwise.less_equal,
        "gt": elementwise.greater, "ge": elementwise.greater_equal,
    },
    {"neg": elementwise.negative, "abs": elementwise.abs, "invert": elementwise.logical_not},
    indexing.getitem,
)  # fmt: skip
