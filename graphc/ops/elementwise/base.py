"""Base classes of the elementwise ops (``Elementwise``, ``Unary``, ``Binary``: the output is
the op's ``Math`` scalar body applied to the broadcast inputs, which gives the reference, the
fused kernels and both backends one definition), their registry examples, and the
``zeros_like``/``ones_like`` the gradients use."""

from __future__ import annotations

import numpy as np

from ... import dtypes as _dt
from ...expr import Arg, Math, eval_expr
from ..constant import ones_like, zeros_like
from ..registry import DTypeError, Example, OpDef, apply1, broadcast_shapes

_rng = np.random.default_rng(0)


def _sample(shape, low=-2.0, high=2.0, dtype="f8"):
    return _rng.uniform(low, high, size=shape).astype(dtype)


# -- base classes ------------------------------------------------------------------------------


class Elementwise(OpDef):
    """Output = scalar body applied to the broadcast inputs."""

    elementwise = True
    #: The one scalar function the body applies to the operands (``scalar`` is
    #: ``math(*args)``): the simplifier's algebraic rules read it (``x * RECIP(d)`` ->
    #: ``x / d``) rather than the op's name.
    math: Math | None = None
    #: allowed input kinds: "f" float, "i" int, "b" bool
    kinds = "fi"
    out_bool = False

    def scalar(self, args, attrs):
        return self.math(*args)

    def integer_error(self, args, dtype):
        """For integer operands of ``dtype``: ``(bad, message)``, ``bad`` a bool Expr over the
        operand Exprs ``args`` true for an element TF refuses (division by zero...), or None.
        The reference raises; the kernels report it through the status buffer."""
        return None

    def ref(self, xs, attrs):
        if xs and xs[0].dtype.kind in "iu":
            error = self.integer_error([Arg(i) for i in range(len(xs))], _dt.as_dtype(xs[0].dtype))
            if error is not None and np.any(eval_expr(error[0], list(xs))):
                raise ArithmeticError(error[1])
        out = eval_expr(self.scalar([Arg(i) for i in range(len(xs))], attrs), list(xs))
        dtype = _dt.bool_.np if self.out_bool else xs[0].dtype
        return np.asarray(out).astype(dtype, copy=False)

    def infer(self, specs, attrs):
        dtypes = {s.dtype for s in specs}
        if len(dtypes) != 1:
            names = " and ".join(s.dtype.name for s in specs)
            raise DTypeError(f"operands must have one dtype, got {names}")
        dtype = specs[0].dtype
        if dtype.np.kind.replace("u", "i") not in self.kinds:
            raise DTypeError(f"{dtype.name} is not supported (operands must be {self._kinds()})")
        shape = broadcast_shapes(*[s.shape for s in specs])
        return [(shape, _dt.bool_ if self.out_bool else dtype)]

    def _kinds(self):
        return " or ".join({"f": "floating", "i": "integer", "b": "bool"}[k] for k in self.kinds)


class Unary(Elementwise):
    domain = (-2.0, 2.0)

    def examples(self):
        lo, hi = self.domain
        grad = self.differentiable
        return [
            Example(self._builder, [_sample((3, 4), lo, hi)], grad=grad),
            Example(self._builder, [_sample((), lo, hi)], grad=grad),
            Example(self._builder, [_sample((0, 3), lo, hi)], grad=False),
        ]

    def _builder(self, x):
        return apply1(self.type, [x])


class Binary(Elementwise):
    domain = ((-2.0, 2.0), (-2.0, 2.0))

    def examples(self):
        (la, ha), (lb, hb) = self.domain
        grad = self.differentiable
        build = self._builder
        return [
            Example(build, [_sample((3, 4), la, ha), _sample((3, 4), lb, hb)], grad=grad),
            Example(build, [_sample((2, 1, 3), la, ha), _sample((4, 1), lb, hb)], grad=grad),
            Example(build, [_sample((), la, ha), _sample((5,), lb, hb)], grad=grad),
        ]

    def _builder(self, a, b):
        return apply1(self.type, [a, b])


def _integer_examples(build, nonzero):
    """int32/int64 cases (negative operands included) for ops with an integer error check:
    divisors are non-zero (``nonzero``) or exponents small and non-negative."""
    a = np.array([[7, -7, 0], [13, -1, 5]])
    b = np.array([2, -3, 4]) if nonzero else np.array([0, 3, 2])
    return [
        Example(build, [a.astype(np.int32), b.astype(np.int32)], grad=False),
        Example(build, [a.astype(np.int64), b[:1].astype(np.int64)], grad=False),
    ]


def zeros_like_(x):
    return zeros_like(x)


def ones_like_(x):
    return ones_like(x)
