"""``gc.math``: the usual TF aliases of the elementwise and reduction ops."""

from .ops.elementwise import *  # noqa: F403
from .ops.elementwise import __all__ as _ew
from .ops.reduce import *  # noqa: F403
from .ops.reduce import __all__ as _red

__all__ = list(_ew) + list(_red)
