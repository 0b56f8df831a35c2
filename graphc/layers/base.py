"""The base of ``gc.layers``: a layer owns a variable scope and the variables made in it.

As in TF1's ``tf.compat.v1.layers``, the first call opens ``variable_scope(name)`` (or, with
no name, a fresh ``dense``, ``dense_1``, ... scope named after the class) and makes the
variables with ``get_variable``; later calls of the same object re-enter that scope with
``reuse=True``, so they share the variables. The functional forms (``gc.layers.dense``) build
one layer object per call, so each call makes new variables unless ``reuse`` says otherwise.
"""

from __future__ import annotations

import re

from .. import dtypes as _dt
from ..graph.collections import GraphKeys
from ..graph.core import Tensor
from ..model.scope import get_variable, variable_scope
from ..ops.registry import convert_to_tensor


def _snake_case(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def normalize_data_format(data_format) -> str:
    """ "channels_last" (default) or "channels_first" (as tf.layers; "NHWC"/"NCHW" accepted)."""
    value = (data_format or "channels_last").lower()
    value = {"nhwc": "channels_last", "nchw": "channels_first"}.get(value, value)
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got "
                         f"{data_format!r}")  # fmt: skip
    return value


def normalize_padding(padding) -> str:
    value = str(padding).lower()
    if value not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return value


def normalize_tuple(value, n: int, what: str) -> tuple:
    if isinstance(value, int):
        return (value,) * n
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"{what} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(out) != n:
        raise ValueError(f"{what} must be an int or a tuple of {n} ints, got {value!r}")
    return out


class Layer:
    """Base class of the layers: ``build`` makes the variables, ``call`` the ops.

    Attributes after the first call: ``variables``, ``trainable_variables``,
    ``non_trainable_variables`` (alias ``weights``), ``updates`` (ops to run each training
    step, also added to ``GraphKeys.UPDATE_OPS``), ``built``, ``scope_name``.
    """

    def __init__(self, trainable: bool = True, name: str | None = None, dtype=None,
                 _reuse=None, **kwargs):  # fmt: skip
        unknown = set(kwargs) - {"_scope", "activity_regularizer", "input_shape"}
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        if kwargs.get("activity_regularizer") is not None:
            raise NotImplementedError("activity_regularizer is not supported")
        self.trainable = bool(trainable)
        self.name = name
        self.dtype = None if dtype is None else _dt.as_dtype(dtype)
        self._reuse = _reuse
        self._scope = None
        self.built = False
        self._variables: list = []
        self.updates: list = []
        self.losses: list = []

    # -- variables ---------------------------------------------------------------------------
    def add_weight(self, name, shape, dtype=None, initializer=None, regularizer=None,
                   trainable=True, **kwargs):  # fmt: skip
        """``get_variable(name, ...)`` in the layer's scope, remembered by the layer."""
        var = get_variable(
            name, shape=tuple(shape), dtype=dtype or self.dtype, initializer=initializer,
            regularizer=regularizer, trainable=trainable and self.trainable,
        )  # fmt: skip
        if all(v is not var for v in self._variables):
            self._variables.append(var)
        return var

    add_variable = add_weight

    @property
    def variables(self) -> list:
        return list(self._variables)

    weights = variables

    @property
    def trainable_variables(self) -> list:
        return [v for v in self._variables if v.trainable]

    trainable_weights = trainable_variables

    @property
    def non_trainable_variables(self) -> list:
        return [v for v in self._variables if not v.trainable]

    non_trainable_weights = non_trainable_variables

    @property
    def scope_name(self) -> str:
        return self._scope.name if self._scope is not None else ""

    def add_update(self, op) -> None:
        self.updates.append(op)
        graph = op.graph
        graph.add_to_collection(GraphKeys.UPDATE_OPS, op)

    # -- calling -----------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        pass

    def call(self, inputs, **kwargs):
        raise NotImplementedError

    def __call__(self, inputs, *args, **kwargs):
        if not isinstance(inputs, Tensor):
            inputs = convert_to_tensor(inputs, dtype=self.dtype or None)
        if self.dtype is None:
            self.dtype = inputs.dtype
        base = _snake_case(type(self).__name__)
        if self._scope is None:
            if self._reuse:
                scope = variable_scope(self.name or base, reuse=self._reuse)
            else:
                scope = variable_scope(self.name, default_name=base)
        else:
            scope = variable_scope(self._scope, reuse=True if self.built else self._reuse)
        with scope as captured:
            self._scope = captured
            if self.name is None:
                self.name = captured.name.split("/")[-1]
            if not self.built:
                self.build(inputs.shape)
                self.built = True
            return self.call(inputs, *args, **kwargs)

    apply = __call__

    def __repr__(self) -> str:
        return f"<gc.layers.{type(self).__name__} '{self.name}'>"
