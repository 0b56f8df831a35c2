"""Shape ops: reshape, transpose, broadcast_to, concat/stack/split, pad, tile, reverse..., one
module per family; this package gathers their public builders.

* ``reshape.py``: reshape, expand_dims, squeeze and the shape queries shape, size, rank.
* ``transpose.py``: transpose and broadcast_to.
* ``concat.py``: concat, stack and their inverses split, unstack.
* ``pad.py``: pad; ``tile.py``: tile and reverse.

Indexing ops (slicing, ``t[...]``, gather, scatter, one_hot) are the package
``graphc.ops.indexing``.
"""

from .concat import concat, split, stack, unstack
from .pad import pad
from .reshape import expand_dims, rank, reshape, reshape_like, shape, size, squeeze
from .tile import reverse, tile
from .transpose import broadcast_to, transpose

__all__ = [
    "reshape", "expand_dims", "squeeze", "shape", "size", "rank", "transpose", "broadcast_to",
    "concat", "stack", "unstack", "split", "pad", "tile", "reverse",
]  # fmt: skip
