"""graphc graph -> ONNX model (``gc.onnx.export``).

The exported graph is the *optimised* Program of the outputs (the pass pipeline of
``graphc/passes/manager.py``, as ``gc.export`` stores it): feeds become graph inputs,
variables initializers holding the session's current values, constants initializers, and
each node one or a few ONNX nodes (``_EMIT``: graphc op type -> emitter). graphc's NHWC
convolutions and pools become NCHW ONNX ops between transposes. An op with no ONNX
equivalent raises ``UnimplementedError`` naming it; the model is checked with
``onnx.checker.check_model(full_check=True)`` before it is written.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import dtypes as _dt
from ..errors import FailedPreconditionError, UnimplementedError
from ..passes.manager import optimize
from ..program import extract
from ..signature import named_tensors

_INT_MAX = 2**62


class _Emitter:
    """Collects ONNX nodes and initializers; fresh value names."""

    def __init__(self, opset):
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def fresh(self, hint="v"):
        self._n += 1
        return f"{hint}_{self._n}"

    def node(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.fresh(op_type) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=None, hint="c"):
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, values):
        return self.const(np.asarray(list(values), np.int64), hint="ints")


# -- emitters: (emitter, node, input names, input specs) -> output name(s) -------------------

_EMIT: dict = {}


def _emits(*types):
    def deco(fn):
        for t in types:
            _EMIT[t] = fn
        return fn

    return deco


def _simple(onnx_type):
    def emit(e, n, ins, specs):
        return e.node(onnx_type, ins)

    return emit


for _g, _o in {
    "Add": "Add", "Sub": "Sub", "Mul": "Mul", "Maximum": "Max", "Minimum": "Min",
    "Pow": "Pow", "Neg": "Neg", "Abs": "Abs", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
    "Reciprocal": "Reciprocal", "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Relu": "Relu",
    "Erf": "Erf", "Sin": "Sin", "Cos": "Cos", "Tan": "Tan", "Floor": "Floor", "Ceil": "Ceil",
    "Round": "Round", "Sign": "Sign", "Equal": "Equal", "Less": "Less", "Greater": "Greater",
    "LessEqual": "LessOrEqual", "GreaterEqual": "GreaterOrEqual", "LogicalAnd": "And",
    "LogicalOr": "Or", "LogicalXor": "Xor", "LogicalNot": "Not", "Select": "Where",
    "Identity": "Identity", "StopGradient": "Identity", "Softplus": "Softplus",
    "Softsign": "Softsign", "Elu": "Elu", "Selu": "Selu", "IsNan": "IsNaN",
    "Asin": "Asin", "Acos": "Acos", "Atan": "Atan", "Sinh": "Sinh", "Cosh": "Cosh",
    "Asinh": "Asinh", "Acosh": "Acosh", "Atanh": "Atanh",
    "BroadcastTo": None, "MatMul": None,
}.items():  # fmt: skip
    if _o is not None:
        _EMIT[_g] = _simple(_o)


@_emits("NotEqual")
def _not_equal(e, n, ins, specs):
    return e.node("Not", [e.node("Equal", ins)])


@_emits("RealDiv")
def _div(e, n, ins, specs):
    if not specs[0].dtype.is_floating:
        raise UnimplementedError("integer true division has no ONNX equivalent")
    return e.node("Div", ins)


@_emits("FloorDiv")
def _floordiv(e, n, ins, specs):
    if specs[0].dtype.is_floating:
        return e.node("Floor", [e.node("Div", ins)])
    # a - floormod(a, b) is a multiple of b: ONNX's truncating Div is then exact
    return e.node("Div", [e.node("Sub", [ins[0], e.node("Mod", ins, fmod=0)]), ins[1]])


@_emits("FloorMod")
def _floormod(e, n, ins, specs):
    if not specs[0].dtype.is_floating:
        return e.node("Mod", ins, fmod=0)
    q = e.node("Floor", [e.node("Div", ins)])
    return e.node("Sub", [ins[0], e.node("Mul", [ins[1], q])])


def _scalar(e, spec, value):
    return e.const(np.asarray(value, spec.dtype.np))


@_emits("Square")
def _square(e, n, ins, specs):
    return e.node("Mul", [ins[0], ins[0]])


@_emits("Rsqrt")
def _rsqrt(e, n, ins, specs):
    return e.node("Reciprocal", [e.node("Sqrt", ins)])


@_emits("Expm1")
def _expm1(e, n, ins, specs):
    return e.node("Sub", [e.node("Exp", ins), _scalar(e, specs[0], 1)])


@_emits("Log1p")
def _log1p(e, n, ins, specs):
    return e.node("Log", [e.node("Add", [ins[0], _scalar(e, specs[0], 1)])])


@_emits("IsFinite")
def _isfinite(e, n, ins, specs):
    return e.node("Not", [e.node("Or", [e.node("IsInf", ins), e.node("IsNaN", ins)])])


@_emits("Relu6")
def _relu6(e, n, ins, specs):
    return e.node("Clip", [ins[0], _scalar(e, specs[0], 0), _scalar(e, specs[0], 6)])


@_emits("LeakyRelu")
def _leaky(e, n, ins, specs):
    return e.node("LeakyRelu", ins, alpha=float(n.attrs.get("alpha", 0.2)))


@_emits("Silu")
def _silu(e, n, ins, specs):
    return e.node("Mul", [ins[0], e.node("Sigmoid", ins)])


@_emits("Gelu")
def _gelu(e, n, ins, specs):
    x, s = ins[0], specs[0]
    if n.attrs.get("approximate"):
        cube = e.node("Mul", [x, e.node("Mul", [x, x])])
        inner = e.node("Add", [x, e.node("Mul", [cube, _scalar(e, s, 0.044715)])])
        t = e.node("Tanh", [e.node("Mul", [inner, _scalar(e, s, math.sqrt(2 / math.pi))])])
    else:
        t = e.node("Erf", [e.node("Mul", [x, _scalar(e, s, 1 / math.sqrt(2))])])
    half = e.node("Mul", [x, _scalar(e, s, 0.5)])
    return e.node("Mul", [half, e.node("Add", [t, _scalar(e, s, 1)])])


@_emits("Cast")
def _cast(e, n, ins, specs):
    src, dst = specs[0].dtype, n.outs[0].dtype
    to = _onnx_type(dst)
    if not (src.is_floating and dst.is_integer):
        return e.node("Cast", ins, to=to)
    # graphc saturates (NaN gives 0), as TF does; ONNX leaves out-of-range casts undefined,
    # so the bounds are spelled out: clip below the top, then patch the top and NaN
    info = np.iinfo(dst.np)
    top = float(np.nextafter(src.np.type(info.max), src.np.type(0)))
    x = ins[0]
    clipped = e.node("Clip", [x, _scalar(e, specs[0], info.min), _scalar(e, specs[0], top)])
    y = e.node("Cast", [clipped], to=to)
    over = e.node("GreaterOrEqual", [x, _scalar(e, specs[0], float(info.max))])
    y = e.node("Where", [over, e.const(np.asarray(info.max, dst.np)), y])
    return e.node("Where", [e.node("IsNaN", [x]), e.const(np.asarray(0, dst.np)), y])


@_emits("MatMul")
def _matmul(e, n, ins, specs):
    a, b = ins
    for k, key in enumerate(("transpose_a", "transpose_b")):
        if n.attrs.get(key):
            rank = len(specs[k].shape)
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            if k == 0:
                a = e.node("Transpose", [a], perm=perm)
            else:
                b = e.node("Transpose", [b], perm=perm)
    return e.node("MatMul", [a, b])


@_emits("Einsum")
def _einsum(e, n, ins, specs):
    eq = n.attrs["equation"]
    if "..." in eq:
        lhs = eq.split("->")[0].split(",")
        spans = {len(s.shape) - len(t.replace("...", "")) for s, t in zip(specs, lhs)
                 if "..." in t}  # fmt: skip
        if len(spans) > 1:
            raise UnimplementedError("an ellipsis of different ranks has no ONNX equivalent")
    return e.node("Einsum", ins, equation=eq)


def _reduce(onnx_type):
    def emit(e, n, ins, specs):
        axes = [int(a) for a in n.attrs["axes"]]
        keep = int(bool(n.attrs.get("keepdims", False)))
        x = ins[0]
        if not axes:
            return e.node("Identity", [x])
        if onnx_type == "ReduceSum" or e.opset >= 18:
            return e.node(onnx_type, [x, e.ints(axes)], keepdims=keep)
        return e.node(onnx_type, [x], axes=axes, keepdims=keep)

    return emit


for _g, _o in {"Sum": "ReduceSum", "Mean": "ReduceMean", "Max": "ReduceMax",
               "Min": "ReduceMin", "Prod": "ReduceProd"}.items():  # fmt: skip
    _EMIT[_g] = _reduce(_o)


def _logical_reduce(onnx_type):
    def emit(e, n, ins, specs):
        as_int = e.node("Cast", ins, to=TensorProto.INT32)
        red = _reduce(onnx_type)(e, n, [as_int], specs)
        return e.node("Cast", [red], to=TensorProto.BOOL)

    return emit


_EMIT["Any"] = _logical_reduce("ReduceMax")
_EMIT["All"] = _logical_reduce("ReduceMin")


@_emits("ArgMax", "ArgMin")
def _arg(e, n, ins, specs):
    y = e.node(n.op, ins, axis=int(n.attrs["axis"]), keepdims=0)
    if n.outs[0].dtype != _dt.int64:
        y = e.node("Cast", [y], to=_onnx_type(n.outs[0].dtype))
    return y


@_emits("Cumsum")
def _cumsum(e, n, ins, specs):
    axis = e.const(np.asarray(n.attrs["axis"], np.int64))
    return e.node("CumSum", [ins[0], axis], exclusive=int(n.attrs["exclusive"]),
                  reverse=int(n.attrs["reverse"]))  # fmt: skip


@_emits("Reshape")
def _reshape(e, n, ins, specs):
    return e.node("Reshape", [ins[0], e.ints(n.attrs["shape"])])


@_emits("ReshapeLike")
def _reshape_like(e, n, ins, specs):
    return e.node("Reshape", [ins[0], e.node("Shape", [ins[1]])])


@_emits("BroadcastLike")
def _broadcast_like(e, n, ins, specs):
    return e.node("Expand", [ins[0], e.node("Shape", [ins[1]])])


@_emits("BroadcastTo")
def _broadcast_to(e, n, ins, specs):
    shape = n.outs[0].shape
    if shape is None or None in shape:
        raise UnimplementedError("broadcast_to a shape with unknown dims")
    return e.node("Expand", [ins[0], e.ints(shape)])


@_emits("ZerosLike")
def _zeros_like(e, n, ins, specs):
    dt = n.outs[0].dtype
    value = numpy_helper.from_array(np.zeros(1, dt.np), "value")
    return e.node("ConstantOfShape", [e.node("Shape", [ins[0]])], value=value)


@_emits("Transpose")
def _transpose(e, n, ins, specs):
    return e.node("Transpose", ins, perm=[int(p) for p in n.attrs["perm"]])


@_emits("ConcatV2")
def _concat(e, n, ins, specs):
    return e.node("Concat", ins, axis=int(n.attrs["axis"]))


@_emits("ExpandDims")
def _expand_dims(e, n, ins, specs):
    return e.node("Unsqueeze", [ins[0], e.ints([n.attrs["axis"]])])


@_emits("Squeeze")
def _squeeze(e, n, ins, specs):
    return e.node("Squeeze", [ins[0], e.ints(n.attrs["axes"])])


@_emits("GatherV2")
def _gather(e, n, ins, specs):
    if n.attrs.get("batch_dims", 0):
        raise UnimplementedError("gather with batch_dims has no ONNX equivalent")
    return e.node("Gather", ins, axis=int(n.attrs["axis"]))


@_emits("GatherNd")
def _gather_nd(e, n, ins, specs):
    idx = ins[1] if specs[1].dtype == _dt.int64 else e.node("Cast", [ins[1]], to=TensorProto.INT64)
    return e.node("GatherND", [ins[0], idx], batch_dims=int(n.attrs.get("batch_dims", 0)))


@_emits("GatherElements")
def _gather_elements(e, n, ins, specs):
    return e.node("GatherElements", ins, axis=int(n.attrs["axis"]))


@_emits("ScatterElements")
def _scatter_elements(e, n, ins, specs):
    red = n.attrs["reduction"]
    return e.node("ScatterElements", ins, axis=int(n.attrs["axis"]),
                  reduction=None if red == "none" else red)  # fmt: skip


@_emits("TopK")
def _topk(e, n, ins, specs):
    if n.attrs["k"] is None:  # gc.sort of a dim unknown at build time: the run-time length
        axis = int(n.attrs["axis"]) % len(specs[0].shape)
        shape = e.node("Shape", [ins[0]])
        k = e.node("Slice", [shape, e.ints([axis]), e.ints([axis + 1]), e.ints([0])])
    else:
        k = e.ints([n.attrs["k"]])
    return e.node("TopK", [ins[0], k], n_out=2, axis=int(n.attrs["axis"]),
                  largest=int(n.attrs["largest"]), sorted=1)  # fmt: skip


@_emits("Tile")
def _tile(e, n, ins, specs):
    return e.node("Tile", [ins[0], e.ints(n.attrs["multiples"])])


@_emits("Pad")
def _pad(e, n, ins, specs):
    mode = n.attrs["mode"]
    if mode not in ("CONSTANT", "REFLECT"):
        raise UnimplementedError(f"pad mode {mode} has no ONNX equivalent")
    pads = [lo for lo, _ in n.attrs["paddings"]] + [hi for _, hi in n.attrs["paddings"]]
    value = _scalar(e, specs[0], n.attrs.get("constant_values", 0))
    return e.node("Pad", [ins[0], e.ints(pads), value], mode=mode.lower())


@_emits("ReverseV2")
def _reverse(e, n, ins, specs):
    axes = [int(a) for a in n.attrs["axes"]] if "axes" in n.attrs else [int(n.attrs["axis"])]
    k = len(axes)
    return e.node("Slice", [ins[0], e.ints([-1] * k), e.ints([-_INT_MAX] * k), e.ints(axes),
                            e.ints([-1] * k)])  # fmt: skip


@_emits("StridedSlice")
def _strided_slice(e, n, ins, specs):
    key, rank = n.attrs["key"], len(specs[0].shape)
    consumed = sum(1 for it in key if it[0] in ("int", "slice", "span"))
    starts, ends, axes, steps, squeeze, new = [], [], [], [], [], []
    axis = out_axis = 0
    for it in key:
        kind = it[0]
        if kind == "ellipsis":
            skip = rank - consumed
            axis += skip
            out_axis += skip
            continue
        if kind == "new":
            new.append(out_axis)
            out_axis += 1
            continue
        if kind == "int":
            i = int(it[1])
            starts.append(i)
            ends.append(i + 1 if i != -1 else _INT_MAX)
            steps.append(1)
            squeeze.append(axis)
        elif kind == "span":
            b, size = int(it[1]), int(it[2])
            starts.append(b)
            ends.append(_INT_MAX if size == -1 else b + size)
            steps.append(1)
            out_axis += 1
        else:
            start, stop, step = it[1], it[2], it[3] or 1
            if start is None:
                start = 0 if step > 0 else -1
            if stop is None:
                stop = _INT_MAX if step > 0 else -_INT_MAX
            starts.append(int(start))
            ends.append(int(stop))
            steps.append(int(step))
            out_axis += 1
        axes.append(axis)
        axis += 1
    y = ins[0]
    if axes:
        y = e.node("Slice", [y, e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])
    if squeeze:
        y = e.node("Squeeze", [y, e.ints(squeeze)])
    if new:
        y = e.node("Unsqueeze", [y, e.ints(new)])
    return y if y is not ins[0] else e.node("Identity", [y])


@_emits("Pack")
def _pack(e, n, ins, specs):
    axis = int(n.attrs["axis"])
    rank = len(specs[0].shape) + 1
    axis = axis + rank if axis < 0 else axis
    parts = [e.node("Unsqueeze", [x, e.ints([axis])]) for x in ins]
    return e.node("Concat", parts, axis=axis)


def _nchw(e, x):
    return e.node("Transpose", [x], perm=[0, 3, 1, 2])


def _nhwc(e, x):
    return e.node("Transpose", [x], perm=[0, 2, 3, 1])


def _pads_attrs(padding, spec=None, kernel=None, strides=None, dilations=(1, 1)):
    if padding == "SAME" and tuple(dilations) != (1, 1):
        if spec is None or spec.shape is None or None in spec.shape[1:3]:
            raise UnimplementedError("SAME padding with dilations needs static spatial sizes")
        pads = []
        for n_, k, s, d in zip(spec.shape[1:3], kernel, strides, dilations):
            total = max((-(-n_ // s) - 1) * s + (k - 1) * d + 1 - n_, 0)
            pads.append((total // 2, total - total // 2))
        padding = tuple(pads)
    if padding == "SAME":
        return {"auto_pad": "SAME_UPPER"}  # TF's SAME puts the odd element after
    if padding == "VALID":
        return {"pads": [0, 0, 0, 0]}
    (t, b), (l, r) = padding
    return {"pads": [t, l, b, r]}


@_emits("Conv2D")
def _conv2d(e, n, ins, specs):
    a = n.attrs
    w = e.node("Transpose", [ins[1]], perm=[3, 2, 0, 1])  # HWIO -> OIHW
    dil = tuple(a.get("dilations", (1, 1)))
    kernel = specs[1].shape[:2]
    pads = _pads_attrs(a["padding"], specs[0], kernel, a["strides"], dil)
    y = e.node("Conv", [_nchw(e, ins[0]), w], strides=list(a["strides"]), dilations=list(dil),
               **pads)  # fmt: skip
    return _nhwc(e, y)


def _pool(e, n, ins, op, **extra):
    a = n.attrs
    y = e.node(op, [_nchw(e, ins[0])], kernel_shape=list(a["ksize"]), strides=list(a["strides"]),
               **_pads_attrs(a["padding"]), **extra)  # fmt: skip
    return _nhwc(e, y)


@_emits("MaxPool")
def _max_pool(e, n, ins, specs):
    return _pool(e, n, ins, "MaxPool")


@_emits("AvgPool")
def _avg_pool(e, n, ins, specs):
    return _pool(e, n, ins, "AveragePool", count_include_pad=0)


@_emits("Shape")
def _shape(e, n, ins, specs):
    y = e.node("Shape", ins)
    if n.outs[0].dtype != _dt.int64:
        y = e.node("Cast", [y], to=_onnx_type(n.outs[0].dtype))
    return y


# -- the walk --------------------------------------------------------------------------------


def _onnx_type(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(_dt.as_dtype(dtype).np)


def _value_info(name, spec):
    shape = None if spec.shape is None else [d if d is not None else f"{name}_d{i}"
                                             for i, d in enumerate(spec.shape)]  # fmt: skip
    return helper.make_tensor_value_info(name, _onnx_type(spec.dtype), shape)


def to_model(sess, inputs: dict, outputs: dict, opset: int = 17) -> onnx.ModelProto:
    """The ONNX model of ``outputs`` computed from ``inputs`` (checked, not written)."""
    if opset < 13:
        raise UnimplementedError(f"export: opset {opset} is not supported (13 or later)")
    ins = named_tensors(sess, inputs, "inputs")
    outs = named_tensors(sess, outputs, "outputs")
    program = extract([t for _, t in outs], [], [t for _, t in ins])
    program = optimize(program, sess.options).program
    feed_names = {t.name: name for name, t in ins}
    values = sess.variable_values()
    e = _Emitter(opset)
    names: dict = {}  # (node id, output index) -> ONNX value name
    graph_inputs = []
    for node in program.nodes:
        if node.op_def.source == "feed":
            name = feed_names.get(node.attrs["tensor"], node.attrs["tensor"])
            names[(node.id, 0)] = name
            graph_inputs.append(_value_info(name, node.outs[0]))
            continue
        if node.op_def.source == "variable":
            var = node.attrs["var"]
            if var not in values:
                raise FailedPreconditionError(f"export: variable {var} is not initialised in "
                                              "this session")  # fmt: skip
            names[(node.id, 0)] = e.const(values[var], hint=var.replace("/", "_"))
            continue
        if node.op_def.source == "const":
            names[(node.id, 0)] = e.const(node.attrs["value"])
            continue
        emit = _EMIT.get(node.op)
        if emit is None:
            raise UnimplementedError(
                f"export: op {node.op} ('{node.name}', built at {node.location[0]}:"
                f"{node.location[1]}) has no ONNX equivalent in graphc's exporter"
            )
        in_names = [names[r] for r in node.inputs]
        specs = [program.spec(r) for r in node.inputs]
        try:
            out = emit(e, node, in_names, specs)
        except UnimplementedError as exc:
            raise UnimplementedError(f"export: op {node.op} ('{node.name}'): {exc}") from None
        outs_list = out if isinstance(out, list) else [out]
        for k, o in enumerate(outs_list):
            names[(node.id, k)] = o
    graph_outputs = []
    for (name, _), ref in zip(outs, program.fetches):
        e.nodes.append(helper.make_node("Identity", [names[ref]], [name]))
        graph_outputs.append(_value_info(name, program.spec(ref)))
    graph = helper.make_graph(e.nodes, "graphc", graph_inputs, graph_outputs, e.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="graphc")  # fmt: skip
    model.ir_version = min(model.ir_version, 8 if opset <= 17 else model.ir_version)
    onnx.checker.check_model(model, full_check=True)
    return model


def export(sess, path, inputs, outputs, opset=17):
    """Write ``to_model(...)`` to ``path``; returns the path."""
    model = to_model(sess, inputs, outputs, opset)
    onnx.save(model, str(path))
    return str(path)
