"""Inverse trigonometric and hyperbolic functions (``tf.math.asin``... ``atanh``).

Elementwise on floats, with their gradients. No native lowering yet (no Kernel IR math
function): on the cpu target they run on the host with their numpy reference, labelled
``host_fallback:`` (``graphc/backends/cpu/fallback.py``).
"""

from __future__ import annotations

import numpy as np

from . import elementwise as ew
from .registry import DTypeError, Example, OpDef, apply1, convert_to_tensor, register
from .shape_util import located

__all__ = ["asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh"]

_rng = np.random.default_rng(13)


class _Trig(OpDef):
    np_fn = None
    domain = (-2.0, 2.0)

    def infer(self, specs, attrs):
        (x,) = specs
        if not x.dtype.is_floating:
            raise DTypeError(f"x must be floating, got {x.dtype.name}")
        return [x]

    def ref(self, xs, attrs):
        with np.errstate(all="ignore"):
            return np.asarray(type(self).np_fn(xs[0]), dtype=xs[0].dtype)

    def examples(self):
        lo, hi = self.domain
        build = _BUILDERS[self.type]
        return [
            Example(build, [_rng.uniform(lo, hi, (3, 4))]),
            Example(build, [np.float32((lo + hi) / 2)]),
            Example(build, [np.zeros((0, 2), np.float32)], grad=False),
        ]


def _grad(op, g, fn):
    return [ew.multiply(g, fn(ew, op.inputs[0]))]


def _one(x):
    return np.asarray(1, x.dtype.np)


@register
class Asin(_Trig):
    """arcsin(x)."""

    np_fn, domain = np.arcsin, (-0.9, 0.9)

    def vjp(self, op, grads):
        return _grad(op, grads[0], lambda ew, x: ew.rsqrt(ew.subtract(_one(x), ew.square(x))))


@register
class Acos(_Trig):
    """arccos(x)."""

    np_fn, domain = np.arccos, (-0.9, 0.9)

    def vjp(self, op, grads):
        def d(ew, x):
            return ew.negative(ew.rsqrt(ew.subtract(_one(x), ew.square(x))))

        return _grad(op, grads[0], d)


@register
class Atan(_Trig):
    """arctan(x)."""

    np_fn = np.arctan

    def vjp(self, op, grads):
        return _grad(op, grads[0], lambda ew, x: ew.reciprocal(ew.add(_one(x), ew.square(x))))


@register
class Sinh(_Trig):
    """sinh(x)."""

    np_fn = np.sinh

    def vjp(self, op, grads):
        return _grad(op, grads[0], lambda ew, x: cosh(x))


@register
class Cosh(_Trig):
    """cosh(x)."""

    np_fn = np.cosh

    def vjp(self, op, grads):
        return _grad(op, grads[0], lambda ew, x: sinh(x))


@register
class Asinh(_Trig):
    """arsinh(x)."""

    np_fn = np.arcsinh

    def vjp(self, op, grads):
        return _grad(op, grads[0], lambda ew, x: ew.rsqrt(ew.add(ew.square(x), _one(x))))


@register
class Acosh(_Trig):
    """arcosh(x) (NaN below 1)."""

    np_fn, domain = np.arccosh, (1.1, 3.0)

    def vjp(self, op, grads):
        return _grad(op, grads[0], lambda ew, x: ew.rsqrt(ew.subtract(ew.square(x), _one(x))))


@register
class Atanh(_Trig):
    """artanh(x) (NaN outside [-1, 1])."""

    np_fn, domain = np.arctanh, (-0.9, 0.9)

    def vjp(self, op, grads):
        return _grad(op, grads[0], lambda ew, x: ew.reciprocal(ew.subtract(_one(x), ew.square(x))))


def _builder(type_name, doc):
    @located(type_name.lower())
    def build(x, name=None):
        return apply1(type_name, [convert_to_tensor(x)], None, name)

    build.__name__ = type_name.lower()
    build.__doc__ = doc
    return build


asin = _builder("Asin", "Elementwise arcsin of a float tensor.")
acos = _builder("Acos", "Elementwise arccos of a float tensor.")
atan = _builder("Atan", "Elementwise arctan of a float tensor.")
sinh = _builder("Sinh", "Elementwise hyperbolic sine of a float tensor.")
cosh = _builder("Cosh", "Elementwise hyperbolic cosine of a float tensor.")
asinh = _builder("Asinh", "Elementwise inverse hyperbolic sine of a float tensor.")
acosh = _builder("Acosh", "Elementwise inverse hyperbolic cosine of a float tensor.")
atanh = _builder("Atanh", "Elementwise inverse hyperbolic tangent of a float tensor.")

_BUILDERS = {"Asin": asin, "Acos": acos, "Atan": atan, "Sinh": sinh, "Cosh": cosh,
             "Asinh": asinh, "Acosh": acosh, "Atanh": atanh}  # fmt: skip
