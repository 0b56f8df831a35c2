"""Neural-network ops (``gc.nn``): activations, softmax, normalisation, losses, dropout,
convolution and pooling, one module per family; this package gathers their public builders.

* ``activations.py``: elementwise ``Unary`` OpDefs with a scalar body, so fusion treats them
  like ``exp``; their constants are typed by ``attrs["T"]`` (the input dtype, set by the
  builder).
* ``losses.py`` (softmax, log_softmax, the cross-entropies) and ``normalization.py`` (moments,
  layer_norm, batch_normalization) are composites of elementwise ops and reductions: fusion
  sees through them and their gradients come from the parts. Each subtracts the running
  maximum first, so large logits neither overflow nor lose the gradient.
* ``dense.py``: bias_add, dropout, embedding_lookup.
* ``conv.py`` and ``pooling.py`` are dedicated OpDefs (NHWC data, HWIO filters, TF's
  SAME/VALID or explicit padding: ``window.py``) with dedicated backprop ops. The backprop ops
  are linear in their gradient input, so each one's gradient is another op of the same family:
  second-order gradients work.
"""

from .activations import (
    elu,
    gelu,
    leaky_relu,
    relu,
    relu6,
    selu,
    silu,
    softplus,
    softsign,
    swish,
)
from .conv import conv2d, conv2d_transpose
from .dense import bias_add, dropout, embedding_lookup
from .losses import (
    l2_loss,
    log_softmax,
    sigmoid_cross_entropy_with_logits,
    softmax,
    softmax_cross_entropy_with_logits,
    softmax_cross_entropy_with_logits_v2,
    sparse_softmax_cross_entropy_with_logits,
)
from .normalization import batch_normalization, l2_normalize, layer_norm, moments
from .pooling import avg_pool, avg_pool2d, max_pool, max_pool2d

__all__ = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "softplus",
    "softsign", "softmax", "log_softmax", "bias_add", "dropout", "l2_normalize", "moments",
    "layer_norm", "batch_normalization", "conv2d", "conv2d_transpose", "max_pool2d",
    "avg_pool2d", "max_pool", "avg_pool", "sparse_softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits", "softmax_cross_entropy_with_logits_v2",
    "sigmoid_cross_entropy_with_logits", "l2_loss", "embedding_lookup",
]  # fmt: skip
