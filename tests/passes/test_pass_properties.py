"""Property-based tests: random graphs keep their values through every pass.

Hypothesis builds random graphs over elementwise, reduction and shape ops on inputs of random
shapes (size-1 dims, broadcasting, dims unknown until run time), deliberately sprinkled with
the patterns the rewrite rules look for (x * 1, double negation, exp(log x), reshape chains,
transposes into matmul, ones_like, sum_to_shape, repeated subexpressions...). The reference
interpreter evaluates the program before and after each pass and after the whole pipeline;
the results must agree (same dtype and shape, values within rounding).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.ops.shape import reshape_like
from graphc.options import CompileOptions
from graphc.passes.manager import PIPELINE, optimize
from graphc.program import extract
from tests.passes.program_util import assert_same_values, evaluate

SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip


class Builder:
    """Grows a pool of (tensor, runtime shape) pairs with random ops drawn by hypothesis."""

    def __init__(self, data):
        self.data = data
        self.pool: list = []

    def draw(self, strategy):
        return self.data.draw(strategy)

    def pick(self, where=None):
        cands = [e for e in self.pool if where is None or where(e)]
        return self.draw(st.sampled_from(cands)) if cands else None

    def fitting_shape(self, shape):
        """A shape that broadcasts into ``shape`` (a suffix, some dims made 1)."""
        k = self.draw(st.integers(0, len(shape)))
        tail = shape[len(shape) - k :]
        return tuple(d if self.draw(st.booleans()) else 1 for d in tail)

    def constant(self, shape):
        kind = self.draw(st.sampled_from(["zero", "one", "minus_one", "two", "half", "random"]))
        if kind == "random":
            value = self.draw(st.integers(0, 2**31)) % 1000 / 250.0 - 2.0
            arr = np.random.default_rng(int(value * 1000) % 97).uniform(-2, 2, shape)
        else:
            v = {"zero": 0.0, "one": 1.0, "minus_one": -1.0, "two": 2.0, "half": 0.5}[kind]
            arr = np.full(shape, v)
        return gc.constant(arr, dtype=gc.float64)

    # -- steps -------------------------------------------------------------------------------
    def step(self):
        kind = self.draw(st.sampled_from(STEPS))
        x, sx = self.pick()
        out = getattr(self, "op_" + kind)(x, sx)
        if out is not None:
            self.pool.append(out)

    def op_unary(self, x, sx):
        f = self.draw(st.sampled_from(UNARY))
        return f(x), sx

    def op_binary(self, x, sx):
        y, sy = self.pick(lambda e: _broadcastable(sx, e[1]))
        f = self.draw(st.sampled_from(BINARY))
        return f(x, y), np.broadcast_shapes(sx, sy)

    def op_constant(self, x, sx):
        widen = self.draw(st.sampled_from(["no", "rank", "dims"]))
        if widen == "rank" and len(sx) < 3:
            shape = (2,) + tuple(sx)  # a constant that widens x by a leading dim
        elif widen == "dims" and 1 in sx:
            shape = tuple(2 if d == 1 else d for d in sx)  # ... or along its size-1 dims
        else:
            shape = self.fitting_shape(sx)
        c = self.constant(shape)
        f = self.draw(st.sampled_from(WITH_CONST))
        a, b = (x, c) if self.draw(st.booleans()) else (c, x)
        if f is _safe_div:
            a, b = x, c
        return f(a, b), np.broadcast_shapes(sx, shape)

    def op_like(self, x, sx):
        y, sy = self.pick(lambda e: _broadcastable(sx, e[1]))
        like = self.draw(st.sampled_from(["ones", "zeros"]))
        if like == "ones":
            return gc.ones_like(x) * y, np.broadcast_shapes(sx, sy)
        return y + gc.zeros_like(x), np.broadcast_shapes(sx, sy)

    def op_reduce(self, x, sx):
        axes = self.draw(st.lists(st.integers(0, max(len(sx) - 1, 0)), max_size=len(sx)))
        axes = sorted(set(axes)) if sx else []
        keep = self.draw(st.booleans())
        f = self.draw(
            st.sampled_from([gc.reduce_sum, gc.reduce_mean, gc.reduce_max, gc.reduce_min])
        )
        if self.draw(st.booleans()) and sx:
            out = f(x, axis=None, keepdims=keep)
            return out, tuple(1 for _ in sx) if keep else ()
        out = f(x, axis=axes, keepdims=keep)
        shape = (
            tuple(1 if i in axes else d for i, d in enumerate(sx))
            if keep
            else tuple(d for i, d in enumerate(sx) if i not in axes)
        )
        return out, shape

    def op_reshape(self, x, sx):
        n = int(np.prod(sx, dtype=np.int64))
        choice = self.draw(st.sampled_from(["flat", "expand", "chain", "same", "squeeze"]))
        if choice == "flat":
            return gc.reshape(x, (-1,)), (n,)
        if choice == "expand":
            axis = self.draw(st.integers(0, len(sx)))
            return gc.expand_dims(x, axis), sx[:axis] + (1,) + sx[axis:]
        if choice == "chain":
            y = gc.expand_dims(gc.reshape(x, (-1,)), 0)
            ones = (1,) * self.draw(st.integers(0, 1))
            return gc.reshape(y, (-1,) + ones), (n,) + ones
        if choice == "squeeze":
            axes = [i for i, d in enumerate(x.shape) if d == 1]
            if not axes:
                return None
            return gc.squeeze(x, axis=axes), tuple(d for i, d in enumerate(sx) if i not in axes)
        return reshape_like(gc.identity(x), x), sx

    def op_transpose(self, x, sx):
        if len(sx) < 2:
            return None
        perm = tuple(self.draw(st.permutations(range(len(sx)))))
        y = gc.transpose(x, perm)
        if self.draw(st.booleans()):
            perm2 = tuple(self.draw(st.permutations(range(len(sx)))))
            return gc.transpose(y, perm2), tuple(sx[perm[q]] for q in perm2)
        return y, tuple(sx[p] for p in perm)

    def op_matmul(self, x, sx):
        if len(sx) != 2:
            return None
        b = gc.constant(np.linspace(-1, 1, sx[0] * 2).reshape(sx[0], 2))
        return gc.matmul(gc.transpose(x), b), (sx[1], 2)

    def op_gradient_helpers(self, x, sx):
        y, sy = self.pick(lambda e: _fits(e[1], sx))
        if self.draw(st.booleans()):
            return gc.sum_to_shape(x, y), sy
        return gc.broadcast_like(y, x) * self.draw(st.sampled_from([1.0, 3.0])), sx

    def op_duplicate(self, x, sx):
        # the same computation twice: CSE merges them
        f = self.draw(st.sampled_from(UNARY))
        return f(x) + f(x), sx


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _fits(small, big):
    return len(small) <= len(big) and all(
        s in (1, b) for s, b in zip(small, big[len(big) - len(small) :])
    )


def _safe_div(a, b):
    return a / (gc.abs(b) + 0.5) if not _is_const(b) else a / (b if _nonzero(b) else b + 3.0)


def _is_const(t):
    return t.op.type == "Const"


def _nonzero(t):
    return np.all(t.op.attrs["value"] != 0)


UNARY = [
    gc.negative, gc.abs, gc.tanh, gc.sigmoid, gc.sin, gc.identity, gc.stop_gradient,
    lambda x: gc.square(gc.tanh(x)),
    lambda x: gc.exp(gc.tanh(x)),
    lambda x: gc.log(x * x + 0.5),
    lambda x: gc.sqrt(x * x + 0.1),
    lambda x: gc.negative(gc.negative(x)),
    lambda x: gc.exp(gc.log(x * x + 0.5)),
    lambda x: gc.log(gc.exp(gc.tanh(x))),
    lambda x: gc.cast(gc.cast(x, gc.float32), gc.float64),
    lambda x: x**2.0,
]  # fmt: skip
BINARY = [
    gc.add, gc.subtract, gc.multiply, gc.maximum, gc.minimum, _safe_div,
    lambda a, b: gc.where(a > b, a, b),
    lambda a, b: a + gc.negative(b),
    lambda a, b: a - gc.negative(b),
]  # fmt: skip
WITH_CONST = [gc.add, gc.subtract, gc.multiply, _safe_div, gc.maximum]
STEPS = ["unary", "binary", "constant", "like", "reduce", "reshape", "transpose", "matmul",
         "gradient_helpers", "duplicate"]  # fmt: skip


def _random_program(data):
    b = Builder(data)
    base = tuple(data.draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
    feeds, values = [], []
    for i in range(data.draw(st.integers(1, 3))):
        shape = b.fitting_shape(base) if i else base
        static = tuple(None if data.draw(st.booleans()) else d for d in shape)
        ph = gc.placeholder(gc.float64, static, name=f"in{i}")
        feeds.append(ph)
        values.append(np.random.default_rng(i).normal(size=shape))
        b.pool.append((ph, shape))
    for _ in range(data.draw(st.integers(4, 14))):
        b.step()
    # fetch the last value and maybe a few others
    outs = [b.pool[-1][0]] + [
        e[0] for e in data.draw(st.lists(st.sampled_from(b.pool), max_size=2))
    ]
    fetches = list(dict.fromkeys(outs))
    return extract(fetches, [], feeds), values


@SETTINGS
@given(st.data())
def test_every_pass_keeps_the_values(data):
    gc.reset_default_graph()
    program, values = _random_program(data)
    program.verify()
    expected, _ = evaluate(program, values)
    current = program
    for name, fn, _level in PIPELINE * 2:
        alone = fn(program)  # each pass on the original program
        alone.verify()
        assert_same_values(expected, evaluate(alone, values)[0])
        current = fn(current)  # and chained, as the pipeline runs them
        current.verify()
        assert_same_values(expected, evaluate(current, values)[0])
        assert name


@SETTINGS
@given(st.data())
def test_the_whole_pipeline_keeps_the_values_and_is_idempotent(data):
    gc.reset_default_graph()
    program, values = _random_program(data)
    expected, _ = evaluate(program, values)
    opts = CompileOptions(verify=True, cache_dir=None)
    result = optimize(program, opts)
    assert_same_values(expected, evaluate(result.program, values)[0])
    assert len(result.program.nodes) <= len(program.nodes) + 2
    # a fixpoint: optimising again changes nothing
    assert optimize(result.program, opts).program.text() == result.program.text()
