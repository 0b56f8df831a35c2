"""ONNX interchange (extra ``graphc[onnx]``: the packages onnx and onnxruntime).

    inputs, outputs = gc.onnx.import_model("model.onnx")   # placeholders / tensors
    m = gc.onnx.load("model.onnx", target="cpu")            # a callable, like gc.load
    gc.onnx.export(sess, "model.onnx", inputs={"x": x}, outputs={"y": y}, opset=17)

``graphc.onnx.backend`` implements ``onnx.backend.base.Backend`` (the official backend test
suite runs against it). ``import graphc`` never imports onnx: each function here imports
it when called and raises ``UnavailableError`` naming the package when it is missing.
"""

from __future__ import annotations

import importlib

from ..errors import UnavailableError

__all__ = ["import_model", "load", "export", "describe"]


def _require(module: str):
    """Import ``graphc.onnx.<module>`` (which imports onnx), or say what to install."""
    try:
        importlib.import_module("onnx")
    except ImportError as exc:
        raise UnavailableError(
            "graphc.onnx needs the 'onnx' package (pip install 'graphc[onnx]', which installs "
            f"onnx and onnxruntime): {exc}"
        ) from None
    return importlib.import_module(f"{__name__}.{module}")


def import_model(model_or_path, graph=None):
    """Import an ONNX model (``onnx.ModelProto`` or a file path) into ``graph`` (default: the
    default graph). Returns ``(inputs, outputs)``: dicts from ONNX value names to graphc
    placeholders and tensors, usable like any graphc tensors (run, differentiate, compile,
    export)."""
    return _require("importer").import_model(model_or_path, graph)


def load(path, target="cpu"):
    """An ONNX model as a callable: ``m(x=array)`` returns a dict of numpy arrays (outputs in
    the model's element types); ``m.signature`` describes inputs and outputs."""
    return _require("runner").OnnxModel.from_path(path, target)


def export(sess, path, inputs, outputs, opset=17):
    """Write the optimised graph computing ``outputs`` from ``inputs`` (dicts name -> tensor)
    as an ONNX model (variables become initializers holding ``sess``'s current values)."""
    return _require("exporter").export(sess, path, inputs, outputs, opset)


def describe(path) -> str:
    """A text description of the ONNX model at ``path``: inputs, outputs, opsets, op counts,
    and the ops graphc cannot import (``graphc inspect model.onnx``)."""
    return _require("describe").describe(path)


def __getattr__(name):
    if name == "backend":
        return _require("backend")
    raise AttributeError(f"module 'graphc.onnx' has no attribute {name!r}")
