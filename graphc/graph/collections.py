"""TF1's graph collections: ``gc.GraphKeys`` and the default graph's collection functions.

A collection is a named list kept by the Graph (``Graph.add_to_collection``); the keys are
TF1's strings, so code written against ``tf.GraphKeys`` finds the same lists. The variables
(``ops/state.py``), optimizers (``train/``), layers, losses and metrics all name their
collections through ``GraphKeys``.
"""

from __future__ import annotations

from .core import get_default_graph

__all__ = [
    "GraphKeys", "get_collection", "get_collection_ref", "add_to_collection",
    "add_to_collections",
]  # fmt: skip


class GraphKeys:
    """Standard collection names (``tf.compat.v1.GraphKeys``; the strings are TF1's)."""

    #: every variable that a Saver saves and ``global_variables_initializer`` initialises
    GLOBAL_VARIABLES = "variables"
    #: variables local to a session (metric counters): ``local_variables_initializer``
    LOCAL_VARIABLES = "local_variables"
    #: variables the model uses (layers' weights and moving statistics)
    MODEL_VARIABLES = "model_variables"
    #: variables the optimizers train by default
    TRAINABLE_VARIABLES = "trainable_variables"
    #: ops to run with each training step (batch normalization's moving statistics)
    UPDATE_OPS = "update_ops"
    #: losses built by ``gc.losses`` (summed by ``gc.losses.get_total_loss``)
    LOSSES = "losses"
    #: penalties of the variables' regularizers
    REGULARIZATION_LOSSES = "regularization_losses"
    SUMMARIES = "summaries"
    TRAIN_OP = "train_op"
    GLOBAL_STEP = "global_step"
    METRIC_VARIABLES = "metric_variables"
    MOVING_AVERAGE_VARIABLES = "moving_average_variables"
    WEIGHTS = "weights"
    BIASES = "biases"
    ACTIVATIONS = "activations"
    INIT_OP = "init_op"
    LOCAL_INIT_OP = "local_init_op"
    SUMMARY_OP = "summary_op"
    SAVERS = "savers"
    EVAL_STEP = "eval_step"
    # TF1 spelling kept for old code
    VARIABLES = GLOBAL_VARIABLES


def get_collection(key: str, scope: str | None = None) -> list:
    """A copy of the default graph's collection ``key``; with ``scope``, the items whose
    name matches it from the start (a regular expression, as in TF1)."""
    return get_default_graph().get_collection(key, scope)


def get_collection_ref(key: str) -> list:
    """The default graph's list for ``key`` itself (changes to it stay in the graph)."""
    return get_default_graph().get_collection_ref(key)


def add_to_collection(key: str, value) -> None:
    """Append ``value`` to the default graph's collection ``key``."""
    get_default_graph().add_to_collection(key, value)


def add_to_collections(keys, value) -> None:
    """Append ``value`` to each of the default graph's collections ``keys``."""
    get_default_graph().add_to_collections(keys, value)
