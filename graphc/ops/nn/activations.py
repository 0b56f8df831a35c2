"""Activations (``gc.nn.relu``, ``gelu``, ``softplus``...): elementwise ``Unary`` OpDefs with
a scalar body, so fusion treats them like ``exp``; their constants are typed by ``attrs["T"]``
(the input dtype, set by the builder), and each gradient is built from elementwise ops."""

from __future__ import annotations

import math

from ...expr import Const, Math
from ..elementwise import Unary
from ..registry import DTypeError, Example, apply1, convert_to_tensor, register
from ..shape_util import located
from .common import _ew, _sample

# == activations ===============================================================================


class _Activation(Unary):
    """An elementwise activation. ``attrs["T"]`` is the dtype of its scalar constants."""

    kinds = "f"
    #: attrs the registry examples build with (besides T)
    example_attrs: dict = {}

    def infer(self, specs, attrs):
        out = super().infer(specs, attrs)
        t = attrs.get("T")
        if t is not None and t != specs[0].dtype:
            raise DTypeError(f"attribute T={t.name} does not match input {specs[0].dtype.name}")
        return out

    def _builder(self, x):
        return _activation(self.type, x, None, **self.example_attrs)

    def vjp(self, op, grads):
        if grads[0] is None:
            return [None]
        return [self.grad(op.inputs[0], op.outputs[0], grads[0], op.attrs)]


def _c(value, attrs) -> Const:
    """A scalar constant of the op's dtype."""
    return Const(value, attrs["T"])


def _activation(type_name, features, name, **attrs):
    x = convert_to_tensor(features)
    return apply1(type_name, [x], {"T": x.dtype, **attrs}, name)


@register
class Relu(_Activation):
    kinds = "fi"

    def scalar(self, args, attrs):
        return Math.MAX(args[0], _c(0, attrs))

    def grad(self, x, y, g, attrs):
        # from the output, as TF's ReluGrad (y > 0 exactly where x > 0): the backward pass
        # then reads the stored activation, so the forward GEMM's bias + ReLU epilogue stores
        # only y, not also its input for the backward to recompute
        return g * _ew().cast(y > 0, g.dtype)


@register
class Relu6(_Activation):
    kinds = "fi"
    domain = (-3.0, 9.0)

    def scalar(self, args, attrs):
        return Math.MIN(Math.MAX(args[0], _c(0, attrs)), _c(6, attrs))

    def grad(self, x, y, g, attrs):
        ew = _ew()  # (from the output, as Relu: 0 < y < 6 exactly where 0 < x < 6)
        return g * ew.cast(ew.logical_and(y > 0, y < 6), g.dtype)


@register
class LeakyRelu(_Activation):
    example_attrs = {"alpha": 0.2}

    def scalar(self, args, attrs):
        x = args[0]
        return Math.SELECT(Math.GT(x, _c(0, attrs)), x, Math.MUL(x, _c(attrs["alpha"], attrs)))

    def grad(self, x, y, g, attrs):
        return _ew().where(x > 0, g, g * attrs["alpha"])


@register
class Elu(_Activation):
    def scalar(self, args, attrs):
        x = args[0]
        return Math.SELECT(Math.GT(x, _c(0, attrs)), x, Math.EXPM1(x))

    def grad(self, x, y, g, attrs):
        return _ew().where(x > 0, g, g * (y + 1))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@register
class Selu(_Activation):
    def scalar(self, args, attrs):
        x = args[0]
        neg = Math.MUL(_c(_SELU_ALPHA, attrs), Math.EXPM1(x))
        return Math.MUL(_c(_SELU_SCALE, attrs), Math.SELECT(Math.GT(x, _c(0, attrs)), x, neg))

    def grad(self, x, y, g, attrs):
        return _ew().where(x > 0, g * _SELU_SCALE, g * (y + _SELU_SCALE * _SELU_ALPHA))


_GELU_C = math.sqrt(2.0 / math.pi)


@register
class Gelu(_Activation):
    """x * Phi(x); with ``approximate`` the tanh form of Hendrycks & Gimpel (as TF)."""

    example_attrs = {"approximate": False}

    def scalar(self, args, attrs):
        x = args[0]
        half_x = Math.MUL(_c(0.5, attrs), x)
        if attrs["approximate"]:
            cube = Math.MUL(Math.MUL(x, x), x)
            inner = Math.MUL(_c(_GELU_C, attrs), Math.ADD(x, Math.MUL(_c(0.044715, attrs), cube)))
            return Math.MUL(half_x, Math.ADD(_c(1, attrs), Math.TANH(inner)))
        return Math.MUL(
            half_x, Math.ADD(_c(1, attrs), Math.ERF(Math.MUL(x, _c(1 / math.sqrt(2.0), attrs))))
        )

    def grad(self, x, y, g, attrs):
        ew = _ew()
        if attrs["approximate"]:
            x2 = x * x
            t = ew.tanh(_GELU_C * (x + 0.044715 * x2 * x))
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (_GELU_C * (1 + 3 * 0.044715 * x2))
            return g * d
        cdf = 0.5 * (1 + ew.erf(x * (1 / math.sqrt(2.0))))
        pdf = ew.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return g * (cdf + x * pdf)

    def examples(self):
        x = _sample(3, 4, low=-3, high=3)
        approx = lambda t: gelu(t, approximate=True)  # noqa: E731
        return [*super().examples(), Example(approx, [x])]


@register
class Silu(_Activation):
    """x * sigmoid(x) (also called swish)."""

    def scalar(self, args, attrs):
        return Math.MUL(args[0], Math.SIGMOID(args[0]))

    def grad(self, x, y, g, attrs):
        s = _ew().sigmoid(x)
        return g * s * (1 + x * (1 - s))


@register
class Softplus(_Activation):
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|."""

    domain = (-6.0, 6.0)

    def scalar(self, args, attrs):
        x = args[0]
        return Math.ADD(Math.MAX(x, _c(0, attrs)), Math.LOG1P(Math.EXP(Math.NEG(Math.ABS(x)))))

    def grad(self, x, y, g, attrs):
        return g * _ew().sigmoid(x)


@register
class Softsign(_Activation):
    def scalar(self, args, attrs):
        x = args[0]
        return Math.DIV(x, Math.ADD(_c(1, attrs), Math.ABS(x)))

    def grad(self, x, y, g, attrs):
        d = 1 + _ew().abs(x)
        return g / (d * d)


@located("relu")
def relu(features, name=None):
    """max(features, 0)."""
    return _activation("Relu", features, name)


@located("relu6")
def relu6(features, name=None):
    """min(max(features, 0), 6)."""
    return _activation("Relu6", features, name)


@located("leaky_relu")
def leaky_relu(features, alpha=0.2, name=None):
    """features where positive, else alpha * features."""
    return _activation("LeakyRelu", features, name, alpha=float(alpha))


@located("elu")
def elu(features, name=None):
    """features where positive, else exp(features) - 1."""
    return _activation("Elu", features, name)


@located("selu")
def selu(features, name=None):
    """Scaled ELU with the self-normalising constants of Klambauer et al."""
    return _activation("Selu", features, name)


@located("gelu")
def gelu(features, approximate=False, name=None):
    """Gaussian error linear unit x * Phi(x) (tanh approximation with ``approximate``)."""
    return _activation("Gelu", features, name, approximate=bool(approximate))


@located("silu")
def silu(features, name=None):
    """x * sigmoid(x)."""
    return _activation("Silu", features, name)


swish = silu


@located("softplus")
def softplus(features, name=None):
    """log(1 + exp(features)), computed stably."""
    return _activation("Softplus", features, name)


@located("softsign")
def softsign(features, name=None):
    """features / (1 + |features|)."""
    return _activation("Softsign", features, name)
