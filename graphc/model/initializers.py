"""``gc.initializers``: TF1's initializer objects (``tf.compat.v1.initializers``).

An initializer is an object called as ``init(shape, dtype=None, partition_info=None)`` that
builds the initial value of a variable as graph ops (``gc.get_variable`` calls it). The names
are the classes, as in TF1: ``gc.initializers.zeros()`` is an instance,
``gc.initializers.glorot_uniform(seed=1)(shape=(3, 4))`` a tensor.

Every scale is computed as a Python float, so an initializer of a float32 variable is float32
(a numpy float64 never widens it).
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..graph.core import Tensor
from ..ops.constant import constant as _constant
from ..ops.constant import fill as _fill
from ..ops.elementwise import cast as _cast
from ..ops.random import random_normal as _random_normal
from ..ops.random import random_uniform as _random_uniform
from ..ops.random import truncated_normal as _truncated_normal
from ..ops.state import global_variables_initializer as _global_init
from ..ops.state import local_variables_initializer as _local_init
from ..ops.state import variables_initializer as _variables_init

__all__ = [
    "Initializer", "zeros", "ones", "constant", "random_normal", "random_uniform",
    "truncated_normal", "variance_scaling", "glorot_uniform", "glorot_normal", "he_normal",
    "he_uniform", "lecun_normal", "lecun_uniform", "identity", "global_variables",
    "local_variables", "variables", "Zeros", "Ones", "Constant", "RandomNormal",
    "RandomUniform", "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal",
    "Identity",
]  # fmt: skip


def _shape(shape) -> tuple:
    if isinstance(shape, int | np.integer):
        return (int(shape),)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"an initializer needs a shape (tuple of ints), got {shape!r}") from None
    if any(d is None or int(d) < 0 for d in dims):
        raise ValueError(f"an initializer needs a fully known shape, got {tuple(shape)}")
    return tuple(int(d) for d in dims)


def _draw(fn, shape, *args, dtype, seed):
    """A random op of ``dtype``; float16 values are drawn in float32 and rounded (the cpu
    target cannot yet convert the generator's float64 draws to float16 directly)."""
    if dtype == _dt.float16:
        return _cast(fn(shape, *args, dtype=_dt.float32, seed=seed), _dt.float16)
    return fn(shape, *args, dtype=dtype, seed=seed)


def _float_dtype(dtype, what: str) -> _dt.DType:
    dtype = _dt.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(f"{what}: expected a floating point dtype, got {dtype.name}")
    return dtype


class Initializer:
    """Base class: ``init(shape, dtype=None, partition_info=None)`` returns a Tensor."""

    dtype: _dt.DType = _dt.float32

    def __init__(self, dtype=_dt.float32):
        self.dtype = _dt.as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None) -> Tensor:
        return self._build(_shape(shape), _dt.as_dtype(dtype or self.dtype))

    def _build(self, shape: tuple, dtype: _dt.DType) -> Tensor:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"gc.initializers.{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros (any dtype)."""

    def _build(self, shape, dtype):
        return _fill(shape, _constant(0, dtype=dtype))


class Ones(Initializer):
    """All ones (any dtype)."""

    def _build(self, shape, dtype):
        return _fill(shape, _constant(1, dtype=dtype))


class Constant(Initializer):
    """``value``: a scalar (every element), or a list/array of the variable's size (reshaped);
    a shorter list is padded with its last value, as TF1's ``constant_initializer``."""

    def __init__(self, value=0, dtype=_dt.float32, verify_shape=False):
        super().__init__(dtype)
        if isinstance(value, Tensor):
            raise TypeError("constant initializer: value must be a Python or numpy value")
        self.value = value
        self.verify_shape = verify_shape

    def _build(self, shape, dtype):
        arr = np.asarray(self.value)
        n = int(np.prod(shape, dtype=np.int64))
        if self.verify_shape and arr.shape != shape:
            raise TypeError(f"constant initializer: value of shape {arr.shape} verified "
                            f"against shape {shape}")  # fmt: skip
        if arr.size == 1:
            return _fill(shape, _constant(arr.reshape(()), dtype=dtype))
        flat = arr.reshape(-1)
        if flat.size > n:
            raise ValueError(f"constant initializer: {flat.size} values for shape {shape} "
                             f"({n} elements)")  # fmt: skip
        if flat.size < n:
            if flat.size == 0:
                raise ValueError(f"constant initializer: no value for shape {shape}")
            flat = np.concatenate([flat, np.repeat(flat[-1:], n - flat.size)])
        return _constant(flat.reshape(shape), dtype=dtype)

    def get_config(self):
        value = self.value.tolist() if isinstance(self.value, np.ndarray) else self.value
        return {"value": value, "dtype": self.dtype.name, "verify_shape": self.verify_shape}


class RandomNormal(Initializer):
    """Normal values (TF1 ``random_normal_initializer(mean=0.0, stddev=1.0, seed=None)``)."""

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=_dt.float32):
        super().__init__(_float_dtype(dtype, "random_normal"))
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def _build(self, shape, dtype):
        dtype = _float_dtype(dtype, "random_normal")
        return _draw(_random_normal, shape, self.mean, self.stddev, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed,
                "dtype": self.dtype.name}  # fmt: skip


class RandomUniform(Initializer):
    """Uniform values in [minval, maxval) (maxval None: 1)."""

    def __init__(self, minval=0.0, maxval=None, seed=None, dtype=_dt.float32):
        super().__init__(_float_dtype(dtype, "random_uniform"))
        self.minval = float(minval)
        self.maxval = 1.0 if maxval is None else float(maxval)
        self.seed = seed

    def _build(self, shape, dtype):
        dtype = _float_dtype(dtype, "random_uniform")
        return _draw(_random_uniform, shape, self.minval, self.maxval, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed,
                "dtype": self.dtype.name}  # fmt: skip


class TruncatedNormal(Initializer):
    """Normal values redrawn beyond two standard deviations."""

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=_dt.float32):
        super().__init__(_float_dtype(dtype, "truncated_normal"))
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def _build(self, shape, dtype):
        dtype = _float_dtype(dtype, "truncated_normal")
        return _draw(_truncated_normal, shape, self.mean, self.stddev, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed,
                "dtype": self.dtype.name}  # fmt: skip


def compute_fans(shape) -> tuple[float, float]:
    """(fan_in, fan_out) as TF1: a matrix [in, out]; a conv kernel [..., in, out] times its
    receptive field; a vector [n] both n; a scalar 1."""
    shape = tuple(shape)
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = float(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


# stddev of a standard normal truncated to (-2, 2): dividing by it gives the scaled variance
_TRUNCATED_STDDEV = 0.87962566103423978


class VarianceScaling(Initializer):
    """Values of variance ``scale / n``, n = fan_in, fan_out or their mean (``mode``), from a
    truncated normal ("truncated_normal", TF1's "normal"), a normal ("untruncated_normal") or
    a uniform distribution ("uniform")."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 dtype=_dt.float32):  # fmt: skip
        if scale <= 0.0:
            raise ValueError(f"variance_scaling: scale must be positive, got {scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"variance_scaling: invalid mode {mode!r}")
        distribution = distribution.lower()
        if distribution not in ("normal", "uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError(f"variance_scaling: invalid distribution {distribution!r}")
        super().__init__(_float_dtype(dtype, "variance_scaling"))
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, seed

    def _build(self, shape, dtype):
        dtype = _float_dtype(dtype, "variance_scaling")
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        if self.distribution in ("normal", "truncated_normal"):
            stddev = math.sqrt(scale) / _TRUNCATED_STDDEV
            return _draw(_truncated_normal, shape, 0.0, stddev, dtype=dtype, seed=self.seed)
        if self.distribution == "untruncated_normal":
            return _draw(_random_normal, shape, 0.0, math.sqrt(scale), dtype=dtype, seed=self.seed)
        limit = math.sqrt(3.0 * scale)
        return _draw(_random_uniform, shape, -limit, limit, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed, "dtype": self.dtype.name}  # fmt: skip


class GlorotUniform(VarianceScaling):
    """Uniform in ±sqrt(6 / (fan_in + fan_out)) (Xavier); the default of ``get_variable``."""

    def __init__(self, seed=None, dtype=_dt.float32):
        super().__init__(1.0, "fan_avg", "uniform", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


class GlorotNormal(VarianceScaling):
    """Truncated normal of stddev sqrt(2 / (fan_in + fan_out)) (Xavier normal)."""

    def __init__(self, seed=None, dtype=_dt.float32):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


class Identity(Initializer):
    """The identity matrix times ``gain`` (2-D shapes only)."""

    def __init__(self, gain=1.0, dtype=_dt.float32):
        super().__init__(_float_dtype(dtype, "identity"))
        self.gain = float(gain)

    def _build(self, shape, dtype):
        if len(shape) != 2:
            raise ValueError(f"identity initializer needs a 2-D shape, got {shape}")
        return _constant(np.eye(*shape) * self.gain, dtype=dtype)

    def get_config(self):
        return {"gain": self.gain, "dtype": self.dtype.name}


def he_normal(seed=None) -> VarianceScaling:
    """Truncated normal of stddev sqrt(2 / fan_in) (He et al.)."""
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed=None) -> VarianceScaling:
    """Uniform in ±sqrt(6 / fan_in)."""
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def lecun_normal(seed=None) -> VarianceScaling:
    """Truncated normal of stddev sqrt(1 / fan_in)."""
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def lecun_uniform(seed=None) -> VarianceScaling:
    """Uniform in ±sqrt(3 / fan_in)."""
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


def global_variables():
    """``gc.global_variables_initializer()`` (TF1's ``tf.initializers.global_variables``)."""
    return _global_init()


def local_variables():
    """``gc.local_variables_initializer()``."""
    return _local_init()


def variables(var_list, name="init"):
    """``gc.variables_initializer(var_list)``."""
    return _variables_init(var_list, name=name)


# TF1's lower-case names are the classes themselves: ``zeros()`` makes the initializer.
zeros = Zeros
ones = Ones
constant = Constant  # the public name, as tf.initializers.constant
random_normal = RandomNormal
random_uniform = RandomUniform
truncated_normal = TruncatedNormal
variance_scaling = VarianceScaling
glorot_uniform = GlorotUniform
glorot_normal = GlorotNormal
identity = Identity

# tf.compat.v1 top-level spellings (gc.zeros_initializer() ...)
TOP_LEVEL = {
    "zeros_initializer": Zeros, "ones_initializer": Ones, "constant_initializer": Constant,
    "random_normal_initializer": RandomNormal, "random_uniform_initializer": RandomUniform,
    "truncated_normal_initializer": TruncatedNormal,
    "variance_scaling_initializer": VarianceScaling,
    "glorot_uniform_initializer": GlorotUniform, "glorot_normal_initializer": GlorotNormal,
}  # fmt: skip


def get(identifier):
    """An initializer from an initializer, a class (instantiated), a TF name ("zeros",
    "glorot_uniform", ...) or None (None)."""
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str):
        by_name = {name: obj for name, obj in globals().items() if name in __all__}
        obj = by_name.get(identifier) or by_name.get(identifier.lower())
        if obj is None or not callable(obj):
            raise ValueError(f"unknown initializer {identifier!r}")
        return obj()
    if callable(identifier):
        return identifier
    raise TypeError(f"cannot interpret {identifier!r} as an initializer")
