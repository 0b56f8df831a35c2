"""Linear algebra: matmul (batch broadcasting, transposes), tensordot and einsum, one module per
family; this package gathers their builders.

``MatMul`` is the one GEMM op backends map to BLAS. ``einsum`` rewrites equations without
'...' into ``reduce_sum``, ``transpose``, ``reshape`` and ``MatMul`` ops (operands contracted
left to right; a contraction of nothing is a broadcast multiply), so backends see only ops they
already have; their gradients come from those ops. The rest ('...' other than a plain batched
matmul, or merged dims of unknown size) becomes one ``Einsum`` op, whose reference is
``np.einsum`` and whose gradient is again an einsum with the operand's and the output's
subscripts swapped. ``tensordot`` is built on ``einsum``.

* ``matmul.py``: ``MatMul``; ``einsum.py``: the ``Einsum`` op, ``einsum`` and ``tensordot``;
  ``einsum_rewrite.py``: equations as basic ops.
"""

from .einsum import einsum, tensordot
from .matmul import matmul

__all__ = ["matmul", "tensordot", "einsum"]
