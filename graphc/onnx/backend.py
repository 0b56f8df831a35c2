"""``onnx.backend.base.Backend`` for graphc, so that ONNX's backend test suite runs on it.

    import graphc.onnx.backend as backend
    rep = backend.prepare(model, "CPU")      # graphc's cpu target (LLVM)
    outputs = rep.run([x])

``ReferenceBackend`` runs the same on graphc's reference interpreter (the oracle).
Models are run through ``graphc.onnx.runner.OnnxModel`` (one import per distinct input
signature where the model needs static shapes or values).
"""

from __future__ import annotations

import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from ..errors import UnimplementedError
from .handlers import HANDLERS
from .runner import OnnxModel


class GraphcRep(BackendRep):
    """A prepared model: ``run(inputs)`` returns the outputs as a list of numpy arrays."""

    def __init__(self, model: onnx.ModelProto, target: str):
        self.model = OnnxModel(model, target)

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            arrays = [inputs[n] for n in self.model.input_names]
        elif isinstance(inputs, list | tuple):
            arrays = list(inputs)
        else:
            arrays = [inputs]
        return self.model.run(arrays)


class GraphcBackend(Backend):
    """graphc's cpu target as an ONNX backend (device "CPU")."""

    target = "cpu"

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        return all(n.op_type in HANDLERS for n in model.graph.node)

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        if not cls.supports_device(device):
            raise UnimplementedError(f"graphc's ONNX backend runs on CPU, not {device}")
        return GraphcRep(model, cls.target)

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        """Run one node on ``inputs`` (a list in the node's input order)."""
        values = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        names = [n for n in node.input if n]
        vis = [helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype),
                                             v.shape) for n, v in zip(names, values)]  # fmt: skip
        outs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        graph = helper.make_graph([node], "run_node", vis, outs)
        model = helper.make_model(graph)
        return cls.run_model(model, values, device, **kwargs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


class ReferenceBackend(GraphcBackend):
    """graphc's reference interpreter (numpy, op by op) as an ONNX backend."""

    target = "reference"


is_compatible = GraphcBackend.is_compatible
prepare = GraphcBackend.prepare
run_model = GraphcBackend.run_model
run_node = GraphcBackend.run_node
supports_device = GraphcBackend.supports_device
