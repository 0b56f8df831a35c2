"""ONNX ops defined as *functions*: expanded into their body when graphc has no handler.

ONNX defines many ops (Attention, RMSNormalization, the loss ops, CenterCropPad, the window
functions, ...) by a function body of simpler ONNX ops, either fixed or built for the
node's attributes and input types (a *context-dependent* function). The importer replaces
such a node by that body, with its edges renamed and attribute references resolved, and
imports the body's nodes one by one: exactly ONNX's definition of the op, on graphc's ops.
"""

from __future__ import annotations

import itertools

import onnx
from onnx import AttributeProto, FunctionProto, NodeProto, TypeProto, helper

_counter = itertools.count()


def _schema(node: NodeProto, opset: int):
    try:
        return onnx.defs.get_schema(node.op_type, opset, domain=node.domain or "")
    except onnx.defs.SchemaError:
        return None


def function_body(node: NodeProto, opset: int, input_types: list) -> FunctionProto | None:
    """The function defining ``node`` at ``opset`` (``None`` if the op is not a function).

    ``input_types``: an ``onnx.TypeProto`` per input (for context-dependent functions).
    """
    schema = _schema(node, opset)
    if schema is None:
        return None
    node = _with_defaults(node, schema)
    best = None
    for v in schema.function_opset_versions:
        if v <= opset and (best is None or v > best[0]):
            best = (v, "fixed")
    for v in schema.context_dependent_function_opset_versions:
        if v <= opset and (best is None or v > best[0]):
            best = (v, "context")
    if best is None:
        return None
    fp = FunctionProto()
    if best[1] == "fixed":
        fp.ParseFromString(schema.get_function_with_opset_version(best[0]))
    else:
        blob = schema.get_context_dependent_function_with_opset_version(
            best[0], node.SerializeToString(), [t.SerializeToString() for t in input_types]
        )
        if not blob:
            return None
        fp.ParseFromString(blob)
    return fp


def _with_defaults(node: NodeProto, schema) -> NodeProto:
    """``node`` with the schema's default attribute values filled in."""
    out = NodeProto()
    out.CopyFrom(node)
    have = {a.name for a in node.attribute}
    for name, attr in schema.attributes.items():
        if name not in have and attr.default_value and attr.default_value.name:
            out.attribute.extend([attr.default_value])
    return out


def expand(node: NodeProto, fp: FunctionProto, schema_node: NodeProto | None = None):
    """The body of ``fp`` as nodes wired to ``node``'s inputs and outputs."""
    prefix = f"{node.op_type}_{next(_counter)}__"
    names = {}
    for i, formal in enumerate(fp.input):
        names[formal] = node.input[i] if i < len(node.input) else ""
    for i, formal in enumerate(fp.output):
        if i < len(node.output) and node.output[i]:
            names[formal] = node.output[i]
    attrs = {a.name: a for a in fp.attribute_proto}
    attrs.update({a.name: a for a in (schema_node or node).attribute})

    def rename(name):
        if name in names:
            return names[name]
        return "" if not name else prefix + name

    body = []
    for inner in fp.node:
        new = NodeProto()
        new.CopyFrom(inner)
        new.ClearField("input")
        new.ClearField("output")
        new.ClearField("attribute")
        new.input.extend(rename(n) for n in inner.input)
        new.output.extend(rename(n) for n in inner.output)
        for a in inner.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in attrs:
                    ref = AttributeProto()
                    ref.CopyFrom(attrs[a.ref_attr_name])
                    ref.name = a.name
                    new.attribute.extend([ref])
            else:
                new.attribute.extend([a])
        body.append(new)
    opset = {o.domain or "": o.version for o in fp.opset_import}
    return body, opset


def tensor_type(elem_type: int, shape) -> TypeProto:
    """A TypeProto of a tensor (``shape`` None: unknown rank)."""
    return helper.make_tensor_type_proto(elem_type, None if shape is None else list(shape))


def has_function(node: NodeProto, opset: int) -> bool:
    """Whether ONNX defines ``node``'s op by a function at ``opset`` (fixed or built from the
    node's types)."""
    schema = _schema(node, opset)
    if schema is None:
        return False
    versions = list(schema.function_opset_versions)
    versions += list(schema.context_dependent_function_opset_versions)
    return any(v <= opset for v in versions)


def filled(node: NodeProto, opset: int) -> NodeProto:
    """``node`` with its schema's default attributes (what attribute references resolve to)."""
    schema = _schema(node, opset)
    return node if schema is None else _with_defaults(node, schema)
