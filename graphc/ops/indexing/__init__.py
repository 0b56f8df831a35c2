"""Indexing ops: numpy-style ``t[...]`` (strided slices), slice, gather, gather_nd, one_hot and
the scatter-adds that are their gradients (also public: scatter_nd, unsorted_segment_sum), one
module per family; this package gathers their public builders.

* ``slicing.py``: ``t[...]`` (``getitem``), ``slice``, ``strided_slice`` (the index-key format
  is described there).
* ``gather.py``: gather, gather_nd and their scatter-add gradients.
* ``scatter.py``: scatter_nd, unsorted_segment_sum; ``one_hot.py``: one_hot.
"""

from .gather import gather, gather_nd
from .one_hot import one_hot
from .scatter import scatter_nd, unsorted_segment_sum
from .slicing import getitem, slice, strided_slice

__all__ = [
    "slice", "strided_slice", "gather", "gather_nd", "one_hot", "scatter_nd",
    "unsorted_segment_sum",
]  # fmt: skip
