"""The ``light`` test models shipped with the onnx package (ResNet-50, DenseNet-121, Inception
v1/v2, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512, AlexNet; opset 9, NCHW), for the ONNX
tests and workload W13.

In the files every weight is a ``ConstantOfShape`` of one value (they are stored small), so
their outputs say little; ``with_random_weights`` replaces each weight by a seeded random
initializer of the same shape (uniform in +-sqrt(3 / fan_in) for tensors of rank >= 2,
uniform in [0.5, 1.5] for vectors: biases, batch-norm scales and variances stay positive).
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx.backend.test
from onnx import numpy_helper
from onnx.backend.test.runner import Runner

LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512")  # fmt: skip


def light_dir() -> str:
    return os.path.join(os.path.dirname(onnx.backend.test.__file__), "data", "light")


def light_model(name: str) -> onnx.ModelProto:
    """The model ``light_<name>.onnx`` of the onnx package."""
    return onnx.load(os.path.join(light_dir(), f"light_{name}.onnx"))


def expected_output(name: str) -> np.ndarray:
    """The output stored with the model (for ``dummy_input``)."""
    path = os.path.join(light_dir(), f"light_{name}_output_0.pb")
    return numpy_helper.to_array(onnx.load_tensor(path))


def input_info(model):
    inits = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits][0]


def dummy_input(model, name: str) -> np.ndarray:
    """The input ONNX's backend test runner feeds the model (its stored output's input)."""
    return Runner.generate_dummy_data(input_info(model), seed=0, name=f"test_{name}",
                                      random=False)  # fmt: skip


def random_input(model, batch: int, seed: int = 0) -> np.ndarray:
    shape = [d.dim_value for d in input_info(model).type.tensor_type.shape.dim]
    shape[0] = batch
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def with_batch(model, batch: int):
    """A copy of ``model`` whose input and output batch dimension is ``batch`` (the models'
    Reshapes to constant shapes (1, ...) get ``batch`` in front)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in [input_info(out)] + list(out.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = batch
    del out.graph.value_info[:]  # intermediate shapes declared for batch 1 (ShuffleNet)
    shapes = {n.input[1] for n in out.graph.node if n.op_type == "Reshape" and len(n.input) > 1}
    for i, init in enumerate(out.graph.initializer):
        if init.name in shapes:
            arr = numpy_helper.to_array(init)
            if arr.ndim == 1 and len(arr) >= 2 and arr[0] == 1:
                fixed = np.concatenate([[batch], arr[1:]]).astype(arr.dtype)
                out.graph.initializer[i].CopyFrom(numpy_helper.from_array(fixed, init.name))
    return out


def with_random_weights(model, seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` with every weight (ConstantOfShape of an initializer shape, or an
    initializer of floats) replaced by a seeded random initializer of the same shape."""
    rng = np.random.default_rng(seed)
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    del og.node[:]
    new_inits = {}
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = [int(d) for d in inits[node.input[0]]]
            new_inits[node.output[0]] = _random(rng, shape)
            continue
        og.node.append(node)
    used = {i for n in og.node for i in n.input}
    kept = []
    for i in g.initializer:
        if i.name not in used:
            continue
        arr = inits[i.name]
        if arr.dtype.kind == "f":
            arr = _random(rng, list(arr.shape))
        kept.append(numpy_helper.from_array(arr, i.name))
    del og.initializer[:]
    og.initializer.extend(kept)
    og.initializer.extend(numpy_helper.from_array(v, k) for k, v in new_inits.items())
    keep_inputs = [vi for vi in og.input if vi.name not in inits]
    del og.input[:]
    og.input.extend(keep_inputs)
    out.ir_version = max(out.ir_version, 4)  # initializers need not be graph inputs
    return out


def _random(rng, shape):
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        bound = np.sqrt(3.0 / max(fan_in, 1))
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)


def onnxruntime_session(model, threads: int = 1):
    """An onnxruntime session of ``model`` on ``threads`` intra-op threads (CPU)."""
    import onnxruntime as ort  # optional dependency: only the W13 peer and tests need it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])  # fmt: skip
