"""ONNX model -> graphc graph (``gc.onnx.import_model``).

The importer walks the model's nodes in order and calls one handler per node
(``graphc/onnx/handlers/``). Every ONNX value becomes a graphc tensor; initializers become
constants and graph inputs placeholders (``None`` for symbolic dims). Values known at import
time (initializers, ``Constant`` nodes, the ``Shape`` of a tensor of static shape, and
anything computed from those only) are *static*: a handler that needs one as an attribute
(Reshape's shape, Pad's pads, TopK's k...) gets it with ``ctx.const(i)``, evaluated by the
reference interpreter, so shape subgraphs fold away. An input that must be static but is
computed from a graph input raises ``NeedConstant`` (an ``UnimplementedError`` naming the
node and input).

ONNX element types graphc has no dtype for ride in a wider carrier (``graphc/onnx/types.py``):
after each node whose output is such a type, the carrier is wrapped back into range unless
the op only moves values (``_PRESERVES``).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import GraphcError, InvalidArgumentError, UnimplementedError
from ..graph import Graph, get_default_graph, name_scope
from ..ops import constant as _const
from ..ops import elementwise as _ew
from ..session import Session
from . import functions as _fn
from . import types as _ty
from .handlers import HANDLERS

#: ops whose outputs hold only values of their inputs (or of a compare): no wrap needed
_PRESERVES = {
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split",
    "Slice", "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Pad", "Max", "Min",
    "ReduceMax", "ReduceMin", "Where", "TopK", "Constant", "ConstantOfShape", "Shape", "Size",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "ArgMax", "ArgMin",
    "DepthToSpace", "SpaceToDepth", "ScatterElements", "ScatterND", "Scatter", "Trilu",
    "MaxPool", "GlobalMaxPool", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "And", "Or", "Xor",
    "Not", "OneHot", "Clip", "Relu", "Sign", "Dropout", "Compress", "ReverseSequence",
}  # fmt: skip

#: ops whose outputs are never static (random draws)
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
           "Bernoulli", "Multinomial"}  # fmt: skip

#: ops with subgraphs: their bodies may read any value of the enclosing scopes (never static)
_CONTROL = {"If", "Loop", "Scan"}


class NeedConstant(UnimplementedError):
    """A node needs an input's value at import time, and it depends on a graph input."""

    def __init__(self, value_name: str, node_label: str, what: str, inputs=frozenset()):
        super().__init__(
            f"ONNX node {node_label}: input {value_name!r} ({what}) must be known at import time "
            "(a constant, an initializer or computed from static shapes), but it depends on a "
            "graph input"
        )
        self.value_name = value_name
        #: the graph inputs the value is computed from
        self.inputs = frozenset(inputs)


class NodeContext:
    """What a handler sees of one node: inputs, static values, attributes, types."""

    def __init__(self, importer: Importer, node: onnx.NodeProto, opset: dict | None = None):
        self.imp = importer
        self.node = node
        self.op_type = node.op_type
        opsets = opset or importer.opset
        self.opset = opsets.get(node.domain or "", opsets.get("", 1))
        self.label = f"{node.name or '(unnamed)'} ({node.op_type})"
        self._attrs = {a.name: a for a in node.attribute}

    # -- attributes --
    def attr(self, name: str, default=None):
        a = self._attrs.get(name)
        if a is None:
            return default
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnimplementedError(f"ONNX node {self.label}: attribute {name!r} is a subgraph "
                                     "(read it with ctx.subgraph)")  # fmt: skip
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, onnx.TensorProto):
            return numpy_helper.to_array(v)
        if isinstance(v, list) and v and isinstance(v[0], bytes):
            return [s.decode() for s in v]
        return v

    def subgraph(self, name: str) -> onnx.GraphProto:
        """The subgraph attribute ``name`` (control flow bodies)."""
        a = self._attrs.get(name)
        if a is None or a.type != onnx.AttributeProto.GRAPH:
            self.fail(f"attribute {name!r} must be a subgraph", InvalidArgumentError)
        return a.g

    def run_subgraph(self, g: onnx.GraphProto, inputs: list, types: list) -> list:
        """Import the nodes of subgraph ``g`` into the current default graph (a control
        flow body being traced), its inputs bound to the graphc tensors ``inputs`` of ONNX
        element types ``types``; values of the enclosing scopes stay visible (graphc
        captures them). Returns ``[(tensor, elem_type)]``, one per output of ``g``."""
        return self.imp.run_subgraph(g, inputs, types, self.label)

    def inline_subgraph(self, g: onnx.GraphProto) -> list:
        """Import the nodes of subgraph ``g`` (no inputs) into the current graph, as if they
        were the node's own (a branch chosen at import time). Returns one graphc tensor per
        output, or its value (numpy) when it is known at import time."""
        return self.imp.run_subgraph(g, [], [], self.label, inline=True)

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    # -- inputs --
    @property
    def n_inputs(self) -> int:
        return len(self.node.input)

    def has(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def input(self, i: int):
        """Input ``i`` as a graphc tensor (``None`` when absent)."""
        if not self.has(i):
            return None
        return self.imp.tensors[self.node.input[i]]

    def inputs(self) -> list:
        return [self.input(i) for i in range(self.n_inputs)]

    def in_type(self, i: int) -> int:
        return self.imp.types[self.node.input[i]]

    def out_type(self, k: int = 0) -> int | None:
        """The ONNX element type shape inference gave output ``k`` (None if unknown)."""
        if k >= len(self.node.output):
            return None
        return self.imp.declared.get(self.node.output[k])

    def is_static(self, i: int) -> bool:
        return self.has(i) and self.node.input[i] in self.imp.static

    def const(self, i: int, what: str = "a static argument"):
        """Input ``i``'s value (numpy, in its ONNX dtype) at import time; ``None`` if absent."""
        if not self.has(i):
            return None
        return self.imp.value_of(self.node.input[i], self.label, what)

    def const_ints(self, i: int, what: str = "a static argument"):
        v = self.const(i, what)
        return None if v is None else [int(d) for d in np.asarray(v).reshape(-1)]

    # -- building --
    def constant(self, value, elem_type: int):
        """A graphc constant holding ``value`` as ONNX ``elem_type`` (in its carrier)."""
        return _const.constant(_ty.to_carrier(np.asarray(value), elem_type),
                               dtype=_ty.carrier(elem_type))  # fmt: skip

    def fail(self, message: str, kind=UnimplementedError):
        raise kind(f"ONNX node {self.label}: {message}")


class Importer:
    """One import: ONNX values -> graphc tensors of ``graph``."""

    def __init__(self, model: onnx.ModelProto, graph: Graph, static_inputs=None,
                 input_shapes=None):  # fmt: skip
        self.model = model
        self.graph = graph
        self.static_inputs = dict(static_inputs or {})
        self.input_shapes = dict(input_shapes or {})
        self.opset = {o.domain or "": o.version for o in model.opset_import}
        self.tensors: dict = {}
        self.types: dict = {}
        self.values: dict = {}
        self.static: set = set()
        self.deps: dict = {}  # value name -> the graph inputs it is computed from
        self.declared: dict = {}
        self.inputs: dict = {}
        self.outputs: dict = {}
        self.output_types: dict = {}
        self.sub_depth = 0  # > 0 while importing a control flow body

    # -- static values --
    def value_of(self, name: str, label: str, what: str):
        if name in self.values:
            return self.values[name]
        if name not in self.static or self.tensors[name].graph is not self.graph:
            raise NeedConstant(name, label, what, self.deps.get(name, ()))
        with Session(graph=self.graph, target="reference") as sess:
            carried = sess.run(self.tensors[name])
        value = _ty.from_carrier(np.array(carried), self.types[name])  # (its own copy)
        self.values[name] = value
        return value

    def _set(self, name, tensor, elem_type, static, value=None):
        self.tensors[name] = tensor
        self.types[name] = elem_type
        if static:
            self.static.add(name)
        if value is not None:
            self.values[name] = np.asarray(value)

    def _add_constant(self, name, array):
        array = np.asarray(array)
        et = _ty.from_numpy(array.dtype)
        t = _const.constant(_ty.to_carrier(array, et), dtype=_ty.carrier(et),
                            name=_op_name("const_" + name))  # fmt: skip
        self._set(name, t, et, True, array)

    # -- the walk --
    def run(self):
        g = self.model.graph
        self._declared_types()
        with self.graph.as_default():
            for init in g.initializer:
                self._add_constant(init.name, _tensor_array(init))
            for vi in g.input:
                if vi.name in self.tensors:
                    continue
                et = _tensor_type(vi, "graph input")
                if vi.name in self.static_inputs:
                    value = np.asarray(self.static_inputs[vi.name]).astype(_ty.numpy_dtype(et))
                    self._add_constant(vi.name, value)
                    continue
                shape = self.input_shapes.get(vi.name, _static_shape(vi))
                ph = _const.placeholder(_ty.carrier(et), shape=shape, name=_op_name(vi.name))
                self._set(vi.name, ph, et, False)
                self.deps[vi.name] = frozenset([vi.name])
                self.inputs[vi.name] = ph
            for node in g.node:
                self._convert(node)
            for vi in g.output:
                if vi.name not in self.tensors:
                    raise InvalidArgumentError(f"ONNX graph output {vi.name!r} is not computed")
                self.outputs[vi.name] = self.tensors[vi.name]
                self.output_types[vi.name] = self.types[vi.name]
        return self.inputs, self.outputs

    def run_subgraph(self, g, inputs, types, label, inline=False):
        """See ``NodeContext.run_subgraph``: the body's names shadow the enclosing ones
        only while it is imported."""
        saved = (dict(self.tensors), dict(self.types), set(self.static), dict(self.values),
                 dict(self.deps))  # fmt: skip
        depth = 0 if inline else 1
        self.sub_depth += depth
        try:
            if len(g.input) != len(inputs):
                raise InvalidArgumentError(f"ONNX node {label}: its subgraph {g.name!r} takes "
                                           f"{len(g.input)} inputs, the node gives "
                                           f"{len(inputs)}")  # fmt: skip
            for vi, t, et in zip(g.input, inputs, types):
                _untyped_or_tensor(vi, f"subgraph input of {label}")
                self._set(vi.name, t, et, False)
                self.deps[vi.name] = frozenset()
            for init in g.initializer:
                self._add_constant(init.name, _tensor_array(init))
            for node in g.node:
                self._convert(node)
            outs = []
            for vi in g.output:
                _untyped_or_tensor(vi, f"subgraph output of {label}")
                if vi.name not in self.tensors:
                    raise InvalidArgumentError(f"ONNX node {label}: subgraph output "
                                               f"{vi.name!r} is not computed")  # fmt: skip
                if inline:
                    static = vi.name in self.static
                    outs.append(self.value_of(vi.name, label, "") if static
                                else self.tensors[vi.name])  # fmt: skip
                else:
                    outs.append((self.tensors[vi.name], self.types[vi.name]))
            return outs
        finally:
            self.sub_depth -= depth
            self.tensors, self.types, self.static, self.values, self.deps = saved

    def _declared_types(self):
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model)
        except Exception:  # noqa: BLE001 - shape inference is a hint; handlers decide
            inferred = self.model
        graphs = [inferred.graph]
        while graphs:
            g = graphs.pop()
            for vi in list(g.value_info) + list(g.output) + list(g.input):
                tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
                if tt is not None and tt.elem_type:
                    self.declared.setdefault(vi.name, tt.elem_type)
            for node in g.node:  # control flow bodies
                graphs.extend(a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH)

    def _convert(self, node: onnx.NodeProto, opset: dict | None = None, depth: int = 0):
        ctx = NodeContext(self, node, opset)
        if node.domain not in ("", "ai.onnx"):
            ctx.fail(f"ops of domain {node.domain!r} are not supported")
        for name in node.input:
            if name and name not in self.tensors:
                ctx.fail(f"input {name!r} is not defined before the node", InvalidArgumentError)
        fn = HANDLERS.get(node.op_type)
        if fn is None:
            self._expand_function(ctx, depth)
            return
        # CastLike reads only the element type of its second input
        deps = node.input[:1] if node.op_type == "CastLike" else node.input
        static = node.op_type not in _RANDOM | _CONTROL and all(
            (not name) or name in self.static for name in deps
        )
        try:
            if static and self.sub_depth and self._hoist_inputs(node):
                # in a body: a static value is built in the outer graph (where it can be
                # evaluated at import time), and captured by the body that reads it
                with self.graph.as_default(), name_scope(_op_name(node.name or node.op_type)):
                    outs = fn(ctx)
            else:
                with name_scope(_op_name(node.name or node.op_type)):
                    outs = fn(ctx)
        except NeedConstant:
            raise
        except GraphcError as exc:
            if str(exc).startswith("ONNX node"):
                raise
            raise type(exc)(f"ONNX node {ctx.label}: {exc}") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(f"ONNX node {ctx.label}: {exc}") from exc
        if not isinstance(outs, list | tuple):
            outs = [outs]
        used = [n for n in node.input if n]
        if node.op_type in _CONTROL:
            used += _outer_names(node)  # what its bodies read of the enclosing scopes
        deps = frozenset().union(*(self.deps.get(n, frozenset()) for n in used))
        for name in node.output:
            self.deps[name] = deps
        for k, name in enumerate(node.output):
            if not name:
                continue
            out = outs[k] if k < len(outs) else None
            if out is None:
                ctx.fail(f"output {k} ({name!r}) is not produced by graphc's converter")
            self._bind_output(ctx, name, out, static, node.op_type)

    def _hoist_inputs(self, node):
        """The static inputs of ``node`` that are tensors of a body as constants of the
        outer graph (their values are known: constants and initializers of the body).
        False (nothing hoisted) when one's value is not known."""
        inner = [n for n in node.input if n and self.tensors[n].graph is not self.graph]
        if any(n not in self.values for n in inner):
            return False
        for name in inner:
            value, et = self.values[name], self.types[name]
            with self.graph.as_default():
                self.tensors[name] = _const.constant(_ty.to_carrier(value, et),
                                                     dtype=_ty.carrier(et))  # fmt: skip
        return True

    def _expand_function(self, ctx, depth):
        """Import an op graphc has no handler for through its ONNX function body."""
        node = ctx.node
        types = [
            _fn.tensor_type(self.types[n], self.tensors[n].shape) if n else onnx.TypeProto()
            for n in node.input
        ]
        fp = None if depth > 8 else _fn.function_body(node, ctx.opset, types)
        if fp is None:
            ctx.fail(f"ONNX op {node.op_type} is not supported by graphc's importer")
        body, opset = _fn.expand(node, fp, _fn.filled(node, ctx.opset))
        for inner in body:
            self._convert(inner, opset or None, depth + 1)
        for name in node.output:
            if name and name not in self.tensors:
                ctx.fail(f"the function body of {node.op_type} does not compute {name!r}")

    def _bind_output(self, ctx, name, out, static, op_type):
        et = self.declared.get(name)
        if isinstance(out, np.ndarray | np.generic):
            arr = np.asarray(out)
            et = et or _ty.from_numpy(arr.dtype)
            arr = arr.astype(_ty.numpy_dtype(et), copy=False)
            t = ctx.constant(arr, et)
            self._set(name, t, et, True, arr)
            return
        if et is None or not _ty.supported(et):
            if et is not None:
                _ty.carrier(et)  # raises: a type graphc lacks
            et = _ty.from_graphc(out.dtype)
        want = _ty.carrier(et)
        if out.dtype != want:
            out = _ew.cast(out, want)
        if _ty.is_narrow(et) and op_type not in _PRESERVES:
            out = _ty.wrap(out, et)
        self._set(name, out, et, static)


def _op_name(name: str) -> str:
    """An ONNX name as a graphc op name (letters, digits, ``_ . -``)."""
    s = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    if not s or not (s[0].isalnum() or s[0] == "_"):
        s = "v" + s
    return s


def _tensor_type(vi, what):
    if not vi.type.HasField("tensor_type"):
        raise UnimplementedError(f"ONNX {what} {vi.name!r}: only tensors are supported "
                                 "(not sequences, maps or optionals)")  # fmt: skip
    return vi.type.tensor_type.elem_type


def _outer_names(node) -> list:
    """Every value name the subgraphs of ``node`` read (theirs and the enclosing scopes')."""
    names = []
    graphs = [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
    while graphs:
        g = graphs.pop()
        for n in g.node:
            names.extend(x for x in n.input if x)
            graphs.extend(a.g for a in n.attribute if a.type == onnx.AttributeProto.GRAPH)
    return names


def _untyped_or_tensor(vi, what):
    """A subgraph's inputs and outputs may leave their type out (it follows the node's)."""
    if vi.type.WhichOneof("value") is not None:
        _tensor_type(vi, what)


def _static_shape(vi):
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)


def _tensor_array(tp: onnx.TensorProto) -> np.ndarray:
    if not _ty.supported(tp.data_type):
        _ty.carrier(tp.data_type)
    return numpy_helper.to_array(tp)


def import_model(model_or_path, graph=None, static_inputs=None, input_shapes=None):
    """Import an ONNX model (a ``ModelProto`` or a path) into ``graph`` (default: the default
    graph). Returns ``(inputs, outputs)``: dicts from ONNX value names to graphc placeholders
    and tensors.

    ``static_inputs`` (name -> array) makes those graph inputs constants, and
    ``input_shapes`` (name -> shape) overrides the declared shapes of graph inputs (the ONNX
    backend uses both to specialise a model on what it is run with).
    """
    model = onnx.load(model_or_path) if isinstance(model_or_path, str) else model_or_path
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"import_model: expected an onnx.ModelProto or a path, got "
                        f"{type(model_or_path).__name__}")  # fmt: skip
    graph = graph or get_default_graph()
    imp = Importer(model, graph, static_inputs, input_shapes)
    imp.run()
    return imp.inputs, imp.outputs


def import_with_types(model, graph, static_inputs=None, input_shapes=None):
    """``import_model`` that also returns the ONNX element types of inputs and outputs."""
    imp = Importer(model, graph, static_inputs, input_shapes)
    imp.run()
    in_types = {n: imp.types[n] for n in imp.inputs}
    return imp.inputs, imp.outputs, in_types, dict(imp.output_types)
