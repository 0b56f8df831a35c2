"""``gc.math``: the usual TF aliases of the elementwise and reduction ops."""

from .ops.elementwise import *  # noqa: F403
from .ops.elementwise import __all__ as _ew
from .ops.elementwise import mod
from .ops.indexing import unsorted_segment_sum  # noqa: F401 - re-exported (tf.math name)
from .ops.nn import l2_normalize, log_softmax, softmax, softplus, softsign  # noqa: F401
from .ops.reduce import *  # noqa: F403
from .ops.reduce import __all__ as _red

# tf.math spellings of functions that live elsewhere in graphc
floormod = mod
_TF_ALIASES = [
    "floormod", "softplus", "softsign", "softmax", "log_softmax", "l2_normalize",
    "unsorted_segment_sum",
]  # fmt: skip

__all__ = list(_ew) + list(_red) + _TF_ALIASES
