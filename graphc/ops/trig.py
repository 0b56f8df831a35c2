"""Inverse trigonometric and hyperbolic functions (``tf.math.asin``... ``atanh``).

Elementwise on floats, with their gradients. Each body is a Kernel IR expression of
existing ``Math`` functions (``scalar``), so they lower natively and fuse on every target:

* ``atan``: Cephes' range reduction (|x| > tan(3pi/8): pi/2 - atan(1/|x|); above tan(pi/8)
  (float32) or 0.66 (float64): pi/4 + atan((|x|-1)/(|x|+1))) and its polynomial (float32) or
  rational function (float64) on the reduced argument; ``asin(x) = atan(x / sqrt((1-x)(1+x)))``,
  ``acos(x) = 2 atan(sqrt((1-x)/(1+x)))``;
* ``sinh``/``cosh``: from expm1/exp of |x|, and ``(h/2) h`` with h = exp(|x|/2) beyond 20 (no
  overflow before the result does); ``asinh``/``acosh``: log1p forms accurate near 0 / 1,
  ``log(|x|) + ln 2`` beyond 1e8; ``atanh(x) = log1p(2|x|/(1-|x|)) / 2``.

Outside the domains they give NaN as numpy does (the square roots and log1p of the forms
above do it). float16 is computed in float32 and rounded, as numpy does. ``ref`` keeps numpy's
functions (the oracle of the tests).
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..expr import Cast, Const, Math
from . import elementwise as ew
from .registry import DTypeError, Example, OpDef, apply1, convert_to_tensor, register
from .shape_util import located

__all__ = ["asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh"]

_rng = np.random.default_rng(13)


class _Trig(OpDef):
    """One of these functions: ``np_fn`` its numpy oracle, ``body(x, dtype)`` its Kernel IR
    expression, ``derivative(x)`` its derivative as a graph of ``x`` (the gradient is the
    incoming one times it), ``domain`` where its examples draw inputs."""

    elementwise = True
    np_fn = None
    body = None
    derivative = None
    domain = (-2.0, 2.0)

    def scalar(self, args, attrs):
        (x,) = args
        dtype = attrs["T"]
        if dtype == _dt.float16:  # computed in float32, rounded once (as numpy)
            return Cast(type(self).body(Cast(x, _dt.float32), _dt.float32), dtype)
        return type(self).body(x, dtype)

    def infer(self, specs, attrs):
        (x,) = specs
        if not x.dtype.is_floating:
            raise DTypeError(f"x must be floating, got {x.dtype.name}")
        return [x]

    def ref(self, xs, attrs):
        with np.errstate(all="ignore"):
            return np.asarray(type(self).np_fn(xs[0]), dtype=xs[0].dtype)

    def vjp(self, op, grads):
        return [ew.multiply(grads[0], type(self).derivative(op.inputs[0]))]

    def examples(self):
        lo, hi = self.domain
        build = _BUILDERS[self.type]
        return [
            Example(build, [_rng.uniform(lo, hi, (3, 4))]),
            Example(build, [np.float32((lo + hi) / 2)]),
            Example(build, [np.zeros((0, 2), np.float32)], grad=False),
        ]


# -- scalar bodies: (x, dtype) -> Kernel IR expression ---------------------------------------

#: Cephes atan (double): atan(t) = t + t z P(z) / Q(z), z = t^2, |t| <= 0.66
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)  # fmt: skip
_ATAN_Q = (1.0, 2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)  # fmt: skip
#: Cephes atanf: atan(t) = t + t z P(z), |t| <= tan(pi/8)
_ATANF_P = (8.05374449538e-2, -1.38776856032e-1, 1.99777106478e-1, -3.33329491539e-1)
_MOREBITS = 6.123233995736765886130e-17  # pi/2 - float64(pi/2)


def _horner(z, coeffs, dtype):
    acc = Const(coeffs[0], dtype)
    for k in coeffs[1:]:
        acc = Math.ADD(Math.MUL(acc, z), Const(k, dtype))
    return acc


def _signed(x, y, dtype):
    """y with the sign of x (y >= 0 or NaN computed from |x|)."""
    return Math.SELECT(Math.LT(x, Const(0.0, dtype)), Math.NEG(y), y)


def _atan_abs(a, dtype):
    """atan(a) for a = |x| >= 0 (NaN passes through)."""

    def c(v):
        return Const(v, dtype)

    f64 = dtype == _dt.float64
    big = Math.GT(a, c(2.414213562373095))
    mid = Math.GT(a, c(0.66 if f64 else 0.4142135623730950))
    t = Math.SELECT(
        big,
        Math.DIV(c(-1.0), a),
        Math.SELECT(mid, Math.DIV(Math.SUB(a, c(1.0)), Math.ADD(a, c(1.0))), a),
    )
    z = Math.MUL(t, t)
    if f64:
        r = Math.DIV(Math.MUL(z, _horner(z, _ATAN_P, dtype)), _horner(z, _ATAN_Q, dtype))
        more = Math.SELECT(big, c(_MOREBITS), Math.SELECT(mid, c(0.5 * _MOREBITS), c(0.0)))
        p = Math.ADD(Math.ADD(Math.MUL(t, r), more), t)
    else:
        p = Math.ADD(Math.MUL(Math.MUL(_horner(z, _ATANF_P, dtype), z), t), t)
    base = Math.SELECT(big, c(math.pi / 2), Math.SELECT(mid, c(math.pi / 4), c(0.0)))
    return Math.ADD(base, p)


def _atan(x, dtype):
    return _signed(x, _atan_abs(Math.ABS(x), dtype), dtype)


def _asin(x, dtype):
    one = Const(1.0, dtype)
    return _atan(Math.DIV(x, Math.SQRT(Math.MUL(Math.SUB(one, x), Math.ADD(one, x)))), dtype)


def _acos(x, dtype):
    one = Const(1.0, dtype)
    t = Math.SQRT(Math.DIV(Math.SUB(one, x), Math.ADD(one, x)))  # >= 0 or NaN
    return Math.MUL(Const(2.0, dtype), _atan_abs(t, dtype))


def _exp_half_squared(a, dtype):
    """e^a / 2 as (h/2) h, h = e^(a/2): finite wherever the result is."""
    h = Math.EXP(Math.MUL(a, Const(0.5, dtype)))
    return Math.MUL(Math.MUL(h, Const(0.5, dtype)), h)


def _sinh(x, dtype):
    a = Math.ABS(x)
    e = Math.EXPM1(a)
    small = Math.MUL(Const(0.5, dtype), Math.ADD(e, Math.DIV(e, Math.ADD(e, Const(1.0, dtype)))))
    y = Math.SELECT(Math.GT(a, Const(20.0, dtype)), _exp_half_squared(a, dtype), small)
    return _signed(x, y, dtype)


def _cosh(x, dtype):
    a = Math.ABS(x)
    e = Math.EXP(a)
    half = Const(0.5, dtype)
    small = Math.ADD(Math.MUL(half, e), Math.DIV(half, e))
    return Math.SELECT(Math.GT(a, Const(20.0, dtype)), _exp_half_squared(a, dtype), small)


def _log_twice(a, dtype):
    """log(2a): asinh and acosh beyond 1e8."""
    return Math.ADD(Math.LOG(a), Const(math.log(2.0), dtype))


def _asinh(x, dtype):
    one = Const(1.0, dtype)
    a = Math.ABS(x)
    s = Math.MUL(a, a)
    t = Math.ADD(a, Math.DIV(s, Math.ADD(one, Math.SQRT(Math.ADD(one, s)))))
    y = Math.SELECT(Math.GT(a, Const(1e8, dtype)), _log_twice(a, dtype), Math.LOG1P(t))
    return _signed(x, y, dtype)


def _acosh(x, dtype):
    one = Const(1.0, dtype)
    d = Math.SUB(x, one)
    t = Math.ADD(d, Math.SQRT(Math.MUL(d, Math.ADD(x, one))))
    y = Math.SELECT(Math.GT(x, Const(1e8, dtype)), _log_twice(x, dtype), Math.LOG1P(t))
    return Math.SELECT(Math.LT(x, one), Const(float("nan"), dtype), y)


def _atanh(x, dtype):
    a = Math.ABS(x)
    r = Math.DIV(Math.ADD(a, a), Math.SUB(Const(1.0, dtype), a))
    return _signed(x, Math.MUL(Const(0.5, dtype), Math.LOG1P(r)), dtype)


def _one(x):
    return np.asarray(1, x.dtype.np)


def _rsqrt_one_minus_square(x):
    """1 / sqrt(1 - x^2): asin's derivative (acos's negated)."""
    return ew.rsqrt(ew.subtract(_one(x), ew.square(x)))


@register
class Asin(_Trig):
    """arcsin(x)."""

    np_fn, body, domain = np.arcsin, staticmethod(_asin), (-0.9, 0.9)
    derivative = staticmethod(_rsqrt_one_minus_square)


@register
class Acos(_Trig):
    """arccos(x)."""

    np_fn, body, domain = np.arccos, staticmethod(_acos), (-0.9, 0.9)
    derivative = staticmethod(lambda x: ew.negative(_rsqrt_one_minus_square(x)))


@register
class Atan(_Trig):
    """arctan(x)."""

    np_fn, body = np.arctan, staticmethod(_atan)
    derivative = staticmethod(lambda x: ew.reciprocal(ew.add(_one(x), ew.square(x))))


@register
class Sinh(_Trig):
    """sinh(x)."""

    np_fn, body = np.sinh, staticmethod(_sinh)
    derivative = staticmethod(lambda x: cosh(x))


@register
class Cosh(_Trig):
    """cosh(x)."""

    np_fn, body = np.cosh, staticmethod(_cosh)
    derivative = staticmethod(lambda x: sinh(x))


@register
class Asinh(_Trig):
    """arsinh(x)."""

    np_fn, body = np.arcsinh, staticmethod(_asinh)
    derivative = staticmethod(lambda x: ew.rsqrt(ew.add(ew.square(x), _one(x))))


@register
class Acosh(_Trig):
    """arcosh(x) (NaN below 1)."""

    np_fn, body, domain = np.arccosh, staticmethod(_acosh), (1.1, 3.0)
    derivative = staticmethod(lambda x: ew.rsqrt(ew.subtract(ew.square(x), _one(x))))


@register
class Atanh(_Trig):
    """artanh(x) (NaN outside [-1, 1])."""

    np_fn, body, domain = np.arctanh, staticmethod(_atanh), (-0.9, 0.9)
    derivative = staticmethod(lambda x: ew.reciprocal(ew.subtract(_one(x), ew.square(x))))


def _builder(type_name, doc):
    @located(type_name.lower())
    def build(x, name=None):
        x = convert_to_tensor(x)
        return apply1(type_name, [x], {"T": x.dtype}, name)

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
