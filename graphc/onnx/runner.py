"""Running an ONNX model with graphc: ``gc.onnx.load`` and the backend's prepared models.

An ``OnnxModel`` imports the model into a private graph and runs it in a ``gc.Session`` of
its target. It first imports with the declared input shapes (``None`` for symbolic dims);
when the model needs more than that at import time (a shape computed from an input's
shape, or an input used as a shape, as Reshape's shape or TopK's k can be), it imports one
*specialisation* per distinct input signature instead: the fed shapes become static, and the
inputs a node needs as values become constants of the values fed. Outputs come back in the
model's ONNX element types (graphc computes narrow integers in a wider carrier).
"""

from __future__ import annotations

import threading

import numpy as np
import onnx

from ..errors import InvalidArgumentError, UnimplementedError
from ..graph import Graph
from ..session import Session
from . import types as _ty
from .importer import Importer, NeedConstant

#: distinct specialisations kept per model (oldest dropped first)
MAX_SPECIALISATIONS = 16


class _Instance:
    """One import of the model: its graph, session, placeholders and outputs."""

    def __init__(self, model, target, static_inputs=None, input_shapes=None, options=None):
        self.graph = Graph()
        imp = Importer(model, self.graph, static_inputs, input_shapes)
        imp.run()
        self.inputs = imp.inputs
        self.outputs = imp.outputs
        self.in_types = {n: imp.types[n] for n in imp.inputs}
        self.out_types = dict(imp.output_types)
        self.session = Session(graph=self.graph, target=target, options=options)

    def run(self, feeds: dict, output_names) -> list:
        feed_dict = {}
        for name, ph in self.inputs.items():
            if name not in feeds:
                raise InvalidArgumentError(f"missing ONNX input {name!r}")
            feed_dict[ph] = _ty.to_carrier(feeds[name], self.in_types[name])
        fetches = [self.outputs[n] for n in output_names]
        outs = self.session.run(fetches, feed_dict)
        res = [_ty.from_carrier(o, self.out_types[n]) for o, n in zip(outs, output_names)]
        seen = set()
        for i, a in enumerate(res):  # one tensor, two outputs: each its own array
            if id(a) in seen:
                res[i] = a.copy()
            seen.add(id(a))
        return res

    def close(self):
        self.session.close()


class OnnxModel:
    """An ONNX model run by graphc: ``m(name=array, ...)`` or ``m.run([arrays])``."""

    def __init__(self, model: onnx.ModelProto, target: str = "cpu", options=None):
        self.model = model
        self.target = target
        self.options = options  # gc.CompileOptions of the sessions (None: the default)
        g = model.graph
        inits = {i.name for i in g.initializer}
        self.input_names = [vi.name for vi in g.input if vi.name not in inits]
        self.output_names = [vi.name for vi in g.output]
        self._input_types = {}
        self._input_dtypes = {}  # name -> the numpy dtype a value must have (checked per run)
        for vi in g.input:
            if vi.name in self.input_names and vi.type.HasField("tensor_type"):
                t = vi.type.tensor_type.elem_type
                self._input_types[vi.name] = t
                if _ty.supported(t):
                    self._input_dtypes[vi.name] = _ty.numpy_dtype(t)
        self._lock = threading.Lock()
        self._generic = None
        self._generic_failed = False
        self._static_names: set = set()
        self._instances: dict = {}

    @classmethod
    def from_path(cls, path, target="cpu"):
        return cls(onnx.load(path), target)

    @property
    def signature(self) -> dict:
        def spec(vi):
            tt = vi.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            return {"dtype": _ty.numpy_dtype(tt.elem_type).name, "shape": shape}

        g = self.model.graph
        return {
            "inputs": {vi.name: spec(vi) for vi in g.input if vi.name in self.input_names},
            "outputs": {vi.name: spec(vi) for vi in g.output},
        }

    def __call__(self, **inputs) -> dict:
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise InvalidArgumentError(f"unknown input(s) {', '.join(unknown)}; the model takes "
                                       f"{', '.join(self.input_names)}")  # fmt: skip
        outs = self.run([inputs.get(n) for n in self.input_names])
        return dict(zip(self.output_names, outs))

    def run(self, arrays) -> list:
        """Outputs (in the model's order) for ``arrays`` (in the model's input order)."""
        if len(arrays) != len(self.input_names):
            raise InvalidArgumentError(
                f"the model takes {len(self.input_names)} inputs "
                f"({', '.join(self.input_names)}), got {len(arrays)}"
            )
        feeds = {}
        for name, a in zip(self.input_names, arrays):
            if a is None:
                raise InvalidArgumentError(f"missing ONNX input {name!r}")
            a = np.asarray(a)
            want = self._input_dtypes.get(name)
            if want is not None and a.dtype != want:
                raise InvalidArgumentError(f"ONNX input {name!r} must be {want}, "
                                           f"got {a.dtype}")  # fmt: skip
            feeds[name] = a
        with self._lock:
            inst = self._instance(feeds)
        return inst.run(feeds, self.output_names)

    def _instance(self, feeds) -> _Instance:
        if self._generic is None and not self._generic_failed:
            try:
                self._generic = _Instance(self.model, self.target, options=self.options)
            except NeedConstant as exc:
                self._generic_failed = True
                self._static_names |= exc.inputs
            except (UnimplementedError, InvalidArgumentError):
                self._generic_failed = True  # e.g. a shape needed static: specialise
            else:
                if all(_fits(ph, feeds[n]) for n, ph in self._generic.inputs.items()):
                    return self._generic
        if self._generic is not None and all(
            _fits(ph, feeds[n]) for n, ph in self._generic.inputs.items()
        ):
            return self._generic
        while True:
            key = tuple(
                (n, feeds[n].shape, feeds[n].dtype.str,
                 feeds[n].tobytes() if n in self._static_names else None)
                for n in self.input_names
            )  # fmt: skip
            inst = self._instances.get(key)
            if inst is not None:
                return inst
            static = {n: feeds[n] for n in self._static_names}
            shapes = {n: feeds[n].shape for n in self.input_names if n not in static}
            try:
                inst = _Instance(self.model, self.target, static, shapes, self.options)
            except NeedConstant as exc:
                new = exc.inputs - self._static_names
                if not new:
                    raise
                self._static_names |= new
                continue
            if len(self._instances) >= MAX_SPECIALISATIONS:
                old = self._instances.pop(next(iter(self._instances)))
                old.close()
            self._instances[key] = inst
            return inst

    def close(self):
        for inst in list(self._instances.values()) + [self._generic]:
            if inst is not None:
                inst.close()
        self._instances.clear()
        self._generic = None


def _fits(ph, value) -> bool:
    shape = ph.shape
    if shape is None:
        return True
    if len(shape) != value.ndim:
        return False
    return all(d is None or d == v for d, v in zip(shape, value.shape))
