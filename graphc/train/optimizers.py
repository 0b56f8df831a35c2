"""The TF1 optimizers: gradient descent, momentum, Adam, RMSProp, Adagrad.

Each update follows the formula of the matching TF1 kernel (ApplyGradientDescent,
ApplyMomentum, ApplyAdam, ApplyRMSProp, ApplyAdagrad) so that a model trains to the same
numbers as under TF1. Slot variables are named ``<var>/<optimizer name>[_k]`` as in TF1.
"""

from __future__ import annotations

from numbers import Real

from ..ops.control import group
from ..ops.elementwise import rsqrt, sqrt, square
from ..ops.state import assign, assign_sub
from .optimizer import Optimizer

__all__ = [
    "GradientDescentOptimizer",
    "MomentumOptimizer",
    "AdamOptimizer",
    "RMSPropOptimizer",
    "AdagradOptimizer",
]


def _check_lr(learning_rate, cls):
    if learning_rate is None:
        raise TypeError(f"{cls}: learning_rate is required")
    if isinstance(learning_rate, Real) and not isinstance(learning_rate, bool):
        if learning_rate < 0:
            raise ValueError(f"{cls}: learning_rate must be >= 0, got {learning_rate}")
    return learning_rate


class GradientDescentOptimizer(Optimizer):
    """``var -= lr * grad``."""

    def __init__(self, learning_rate=None, use_locking=False, name="GradientDescent", lr=None):
        super().__init__(use_locking, name)
        self._lr = _check_lr(learning_rate if learning_rate is not None else lr, name)

    def _apply_dense(self, grad, var):
        return assign_sub(var, self._hyper(self._lr, var) * grad).op


class MomentumOptimizer(Optimizer):
    """``accum = accum * momentum + grad``; ``var -= lr * accum``.

    With ``use_nesterov``: ``var -= lr * grad + lr * momentum * accum`` (TF1's form).
    Slot ``"momentum"``, variable ``<var>/Momentum``.
    """

    def __init__(self, learning_rate=None, momentum=None, use_locking=False, name="Momentum",
                 use_nesterov=False, lr=None):  # fmt: skip
        super().__init__(use_locking, name)
        self._lr = _check_lr(learning_rate if learning_rate is not None else lr, name)
        if momentum is None:
            raise TypeError("MomentumOptimizer: momentum is required")
        self._momentum = momentum
        self._use_nesterov = bool(use_nesterov)

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "momentum", self._name)

    def _apply_dense(self, grad, var):
        lr = self._hyper(self._lr, var)
        mom = self._hyper(self._momentum, var)
        accum = self.get_slot(var, "momentum")
        accum_t = assign(accum, accum * mom + grad)
        if self._use_nesterov:
            return assign_sub(var, grad * lr + accum_t * mom * lr).op
        return assign_sub(var, lr * accum_t).op


class AdamOptimizer(Optimizer):
    """Adam (Kingma & Ba) with TF1's bias correction folded into the step size.

    ``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``; ``m = beta1 m + (1 - beta1) g``;
    ``v = beta2 v + (1 - beta2) g^2``; ``var -= lr_t * m / (sqrt(v) + epsilon)``.
    Slots ``"m"``/``"v"`` (``<var>/Adam``, ``<var>/Adam_1``); the powers ``beta1_power`` and
    ``beta2_power`` are graph-level variables multiplied by beta1/beta2 after each step.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 use_locking=False, name="Adam", lr=None):  # fmt: skip
        super().__init__(use_locking, name)
        self._lr = _check_lr(lr if lr is not None else learning_rate, name)
        self._beta1, self._beta2, self._epsilon = beta1, beta2, epsilon
        for what, b in (("beta1", beta1), ("beta2", beta2)):
            if isinstance(b, float | int) and not 0.0 <= b < 1.0:
                raise ValueError(f"AdamOptimizer: {what} must be in [0, 1), got {b}")

    def _create_slots(self, var_list):
        first = min(var_list, key=lambda v: v.op.name)
        self._non_slot_variable("beta1_power", self._beta1, first)
        self._non_slot_variable("beta2_power", self._beta2, first)
        for v in var_list:
            self._slot(v, "m", self._name)
            self._slot(v, "v", self._name)

    def _powers(self, graph):
        return self._get_non_slot("beta1_power", graph), self._get_non_slot("beta2_power", graph)

    def _apply_dense(self, grad, var):
        b1p, b2p = (self._hyper(p, var) for p in self._powers(var.graph))
        lr = self._hyper(self._lr, var)
        beta1, beta2 = self._hyper(self._beta1, var), self._hyper(self._beta2, var)
        eps = self._hyper(self._epsilon, var)
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        lr_t = lr * sqrt(1 - b2p) / (1 - b1p)
        # TF's kernel form: m + (g - m) * (1 - beta1) equals beta1 m + (1 - beta1) g.
        m_t = assign(m, m + (grad - m) * (1 - beta1))
        v_t = assign(v, v + (square(grad) - v) * (1 - beta2))
        return assign_sub(var, lr_t * m_t / (sqrt(v_t) + eps)).op

    def _finish(self, update_ops, name_scope):
        graph = update_ops[0].graph
        b1p, b2p = self._powers(graph)
        # The powers advance only after every variable used the current ones.
        with graph.control_dependencies(update_ops):
            up1 = assign(b1p, b1p * self._hyper(self._beta1, b1p))
            up2 = assign(b2p, b2p * self._hyper(self._beta2, b2p))
        return group(*update_ops, up1, up2, name=name_scope)


class RMSPropOptimizer(Optimizer):
    """RMSProp as TF1's ApplyRMSProp: ``ms = ms + (g^2 - ms)(1 - decay)``;
    ``mom = momentum * mom + lr * g / sqrt(ms + epsilon)``; ``var -= mom``.

    ``centered`` also tracks ``mg`` (mean gradient) and divides by
    ``sqrt(ms - mg^2 + epsilon)``. The ``rms`` slot starts at ones, as in TF1.
    """

    def __init__(self, learning_rate=None, decay=0.9, momentum=0.0, epsilon=1e-10,
                 use_locking=False, centered=False, name="RMSProp", lr=None):  # fmt: skip
        super().__init__(use_locking, name)
        self._lr = _check_lr(learning_rate if learning_rate is not None else lr, name)
        self._decay, self._momentum, self._epsilon = decay, momentum, epsilon
        self._centered = bool(centered)

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "rms", self._name, init=1.0)
            if self._centered:
                self._slot(v, "mg", self._name)
            self._slot(v, "momentum", self._name)

    def _apply_dense(self, grad, var):
        lr = self._hyper(self._lr, var)
        decay = self._hyper(self._decay, var)
        momentum = self._hyper(self._momentum, var)
        eps = self._hyper(self._epsilon, var)
        ms, mom = self.get_slot(var, "rms"), self.get_slot(var, "momentum")
        ms_t = assign(ms, ms + (square(grad) - ms) * (1 - decay))
        denom = ms_t
        if self._centered:
            mg = self.get_slot(var, "mg")
            mg_t = assign(mg, mg + (grad - mg) * (1 - decay))
            denom = ms_t - square(mg_t)
        mom_t = assign(mom, mom * momentum + lr * grad / sqrt(denom + eps))
        return assign_sub(var, mom_t).op


class AdagradOptimizer(Optimizer):
    """``accum += g^2``; ``var -= lr * g / sqrt(accum)`` (slot ``"accumulator"``, starting at
    ``initial_accumulator_value``)."""

    def __init__(self, learning_rate=None, initial_accumulator_value=0.1, use_locking=False,
                 name="Adagrad", lr=None):  # fmt: skip
        super().__init__(use_locking, name)
        self._lr = _check_lr(learning_rate if learning_rate is not None else lr, name)
        if not initial_accumulator_value > 0.0:
            raise ValueError(
                "AdagradOptimizer: initial_accumulator_value must be positive, got "
                f"{initial_accumulator_value}"
            )
        self._init_acc = float(initial_accumulator_value)

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "accumulator", self._name, init=self._init_acc)

    def _apply_dense(self, grad, var):
        lr = self._hyper(self._lr, var)
        acc = self.get_slot(var, "accumulator")
        acc_t = assign(acc, acc + square(grad))
        return assign_sub(var, grad * lr * rsqrt(acc_t)).op
