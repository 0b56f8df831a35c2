"""Seeded random ops with a counter-based generator (splitmix64).

Element i of run n of a random op is a pure function of (seed, seed2, n, i), so every
backend computes the same stream, run after run, with no generator state but a counter.
"""

from __future__ import annotations

import secrets

import numpy as np

from .. import dtypes as _dt
from ..graph.core import get_default_graph
from .constant import _as_shape, shape_argument
from .registry import DTypeError, OpDef, apply1, convert_to_tensor, register
from .shape_util import located

__all__ = ["random_normal", "random_uniform", "truncated_normal", "set_random_seed"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def mix64(z):
    """The splitmix64 finaliser (wrapping uint64 arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, seed2: int, counter: int) -> np.uint64:
    with np.errstate(over="ignore"):
        k = mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
        k = mix64(k + np.uint64(seed2 & 0xFFFFFFFFFFFFFFFF))
        return mix64(k + np.uint64(counter))


def random_bits(key, n: int, offset: int = 0) -> np.ndarray:
    """n uint64 words: mix64(key + (offset + i + 1) * GOLDEN)."""
    i = np.arange(offset + 1, offset + n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(np.uint64(key) + i * GOLDEN)


def uniform01(key, n: int, dtype: np.dtype, offset: int = 0) -> np.ndarray:
    bits = random_bits(key, n, offset)
    if np.dtype(dtype) == np.float64:
        return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return ((bits >> np.uint64(40)).astype(np.float64) * 2.0**-24).astype(dtype)


def standard_normal(key, n: int) -> np.ndarray:
    """Box-Muller on words (2i, 2i+1), in float64."""
    u = uniform01(key, 2 * n, np.float64)
    u1, u2 = u[0::2], u[1::2]
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def truncated_standard_normal(key, n: int, rounds: int = 16) -> np.ndarray:
    """Normal values with |z| < 2: each element takes the first of ``rounds`` draws that fits."""
    out = np.full(n, np.nan)
    for r in range(rounds):
        z = standard_normal(mix64(np.uint64(key) + np.uint64(r + 1)), n)
        take = np.isnan(out) & (np.abs(z) < 2.0)
        out[take] = z[take]
    return np.where(np.isnan(out), 0.0, out)


class _RandomOp(OpDef):
    kind = "elementwise"
    expensive = True

    no_examples_reason = "stateful or internal: tested through the Session tests"
    stateful = True
    differentiable = False

    def infer(self, specs, attrs):
        dtype = attrs["dtype"]
        if not dtype.is_floating:
            raise DTypeError(f"{self.type} makes floating values, not {dtype.name}")
        shape = specs[0].shape if specs else attrs["shape"]
        return [(shape, dtype)]

    def ref_stateful(self, xs, attrs, ctx):
        shape = xs[0].shape if xs else tuple(attrs["shape"])
        key = stream_key(attrs["seed"], attrs["seed2"], ctx.rng_counter(attrs["stream"]))
        n = int(np.prod(shape, dtype=np.int64))
        return self.draw(key, n, attrs["dtype"].np).reshape(shape)

    def examples(self):
        return []


@register
class RandomUniform(_RandomOp):
    """Uniform in [0, 1)."""

    def draw(self, key, n, dtype):
        return uniform01(key, n, dtype)


@register
class RandomStandardNormal(_RandomOp):
    def draw(self, key, n, dtype):
        return standard_normal(key, n).astype(dtype)


@register
class TruncatedNormal(_RandomOp):
    def draw(self, key, n, dtype):
        return truncated_standard_normal(key, n).astype(dtype)


def set_random_seed(seed: int) -> None:
    """Set the graph-level seed of the default graph (as tf.compat.v1.set_random_seed)."""
    get_default_graph().seed = int(seed)


def _seeds(graph, seed):
    count = len(graph.get_collection("_random_ops"))
    graph.add_to_collection("_random_ops", None)
    if seed is None and graph.seed is None:
        return secrets.randbits(63), count
    if seed is None:
        return graph.seed, count + 1
    return (graph.seed if graph.seed is not None else 87654321), int(seed)


def _random(type_name, shape, dtype, seed, name):
    graph = get_default_graph()
    dtype = _dt.as_dtype(dtype)
    seed, seed2 = _seeds(graph, seed)
    inputs = []
    if hasattr(shape, "dtype") or hasattr(shape, "_as_graph_tensor"):
        shape = convert_to_tensor(shape)
        if shape.dtype.is_integer:
            # TF: an integer tensor holds the shape - gc.shape(t) (t's runtime shape, None
            # dims included) or a constant; anything else would be data-dependent.
            shape, like = shape_argument(shape, type_name)
            shape = like if like is not None else shape
    if hasattr(shape, "dtype"):
        # a tensor whose runtime shape the values take (e.g. dropout on a None batch dim)
        inputs = [shape]
        static = None
    else:
        static = _as_shape(shape)
        if static is None or any(d is None for d in static):
            raise ValueError(f"{type_name}: shape must be fully known, got {shape}")
    attrs = {"shape": static, "dtype": dtype, "seed": int(seed), "seed2": int(seed2)}
    out = apply1(type_name, inputs, attrs, name)
    # The key of its run counter in the session. Part of the program text (and so of the
    # compile-cache key): two random ops with different streams never share an executable.
    out.op.attrs["stream"] = out.op.name
    return out


@located("random_uniform")
def random_uniform(shape, minval=0, maxval=1, dtype=_dt.float32, seed=None, name=None):
    """Uniform values in [minval, maxval). ``shape`` may be a tuple or a tensor to shape like."""
    u = _random("RandomUniform", shape, dtype, seed, name)
    if minval == 0 and maxval == 1:
        return u
    return u * (maxval - minval) + minval


@located("random_normal")
def random_normal(shape, mean=0.0, stddev=1.0, dtype=_dt.float32, seed=None, name=None):
    """Normal values with the given mean and standard deviation."""
    z = _random("RandomStandardNormal", shape, dtype, seed, name)
    if mean == 0 and stddev == 1:
        return z
    return z * stddev + mean


@located("truncated_normal")
def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=_dt.float32, seed=None, name=None):
    """Normal values redrawn when more than two standard deviations from the mean."""
    z = _random("TruncatedNormal", shape, dtype, seed, name)
    if mean == 0 and stddev == 1:
        return z
    return z * stddev + mean
