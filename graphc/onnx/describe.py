"""``graphc inspect model.onnx``: an ONNX model's signature, opsets and op counts, and which of
its ops graphc's importer has no converter for."""

from __future__ import annotations

import collections

import numpy as np
import onnx

from ..errors import InvalidArtifactError
from . import functions as _fn
from . import types as _ty
from .handlers import HANDLERS


def _spec(vi) -> str:
    t = vi.type
    if not t.HasField("tensor_type"):
        return "(not a tensor)"
    tt = t.tensor_type
    dims = [
        str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim
    ]
    return f"{_ty.type_name(tt.elem_type).lower()}[{', '.join(dims)}]"


def describe(path) -> str:
    """A text description of the ONNX model at ``path``."""
    try:
        model = onnx.load(str(path))
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise InvalidArtifactError(f"{path}: not an ONNX model ({exc})") from None
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    counts = collections.Counter(n.op_type for n in g.node)
    params = sum(int(np.prod(i.dims, dtype=np.int64)) for i in g.initializer)
    lines = [
        f"ONNX model {path}",
        f"  producer: {model.producer_name or '?'} {model.producer_version}".rstrip(),
        f"  ir_version {model.ir_version}; opsets: "
        + ", ".join(f"{d} {v}" for d, v in sorted(opsets.items())),
        "  inputs:",
    ]
    lines += [f"    {vi.name}: {_spec(vi)}" for vi in g.input if vi.name not in inits]
    lines.append("  outputs:")
    lines += [f"    {vi.name}: {_spec(vi)}" for vi in g.output]
    lines.append(f"  initializers: {len(inits)} ({params:,} values)")
    lines.append(f"  nodes: {len(g.node)}")
    opset = opsets.get("ai.onnx", 1)
    missing = []
    for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        how = ""
        if op not in HANDLERS:
            node = next(x for x in g.node if x.op_type == op)
            if not _fn.has_function(node, opset):
                how = "  (not supported by graphc)"
                missing.append(op)
            else:
                how = "  (imported through its ONNX function body)"
        lines.append(f"    {op:24s} {n:5d}{how}")
    lines.append("  graphc imports every op" if not missing else
                 f"  graphc cannot import: {', '.join(missing)}")  # fmt: skip
    return "\n".join(lines)
