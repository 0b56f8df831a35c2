"""The handler registry: one function per ONNX op type, ``fn(ctx) -> outputs``.

A handler reads its node through ``ctx`` (a ``NodeContext`` of ``graphc.onnx.importer``):
``ctx.input(i)`` (a graphc tensor, ``None`` for an absent optional input), ``ctx.const(i)``
(the input's value as a numpy array, when it is known at import time), ``ctx.attr(name,
default)``, ``ctx.opset`` and the ONNX element types of inputs and outputs. It returns a
tensor, a numpy array (a value folded at import time), or a list of them (``None`` for an
output it does not produce). Handlers build graphc ops only; what graphc lacks is added to
the op library (``graphc/ops/``), not emulated here.
"""

from __future__ import annotations

HANDLERS: dict = {}


def handler(*op_types):
    """Register ``fn`` as the converter of the ONNX ``op_types`` (default domain)."""

    def deco(fn):
        for t in op_types:
            if t in HANDLERS:
                raise ValueError(f"ONNX handler for {t} registered twice")
            HANDLERS[t] = fn
        return fn

    return deco
