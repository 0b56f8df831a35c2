"""Program <-> JSON + binary sections, with no pickle (used by export and the compile cache).

Attributes are encoded with explicit tags, numpy arrays as raw little-endian bytes in a
separate blob so that loading never executes code and never trusts a Python object stream.
A control-flow body (a Program attribute) is a nested program with the same encoding; it is
verified like the outer one, and its op checks that body and op agree (``OpDef.infer``).
"""

from __future__ import annotations

import json
import math

import numpy as np

from . import dtypes as _dt
from .errors import InvalidArtifactError
from .graph.core import TensorSpec
from .ops.registry import REGISTRY
from .program import Node, Program


class _Blob:
    """Accumulates array bytes; arrays are referenced by (offset, nbytes)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, arr: np.ndarray) -> dict:
        data = np.array(arr, order="C").astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        ref = {"offset": self.size, "nbytes": len(data)}
        self.parts.append(data)
        self.size += len(data)
        return ref

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _enc(value, blob: _Blob):
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isfinite(v):
            return {"t": "f", "v": v}
        return {"t": "f", "s": repr(v)}
    if isinstance(value, _dt.DType):
        return {"t": "dtype", "v": value.name}
    if isinstance(value, np.ndarray):
        return {"t": "arr", "dtype": value.dtype.str.lstrip("<>|="), "shape": list(value.shape),
                **blob.add(value)}  # fmt: skip
    if isinstance(value, tuple):
        return {"t": "tuple", "v": [_enc(v, blob) for v in value]}
    if isinstance(value, list):
        return {"t": "list", "v": [_enc(v, blob) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": {str(k): _enc(v, blob) for k, v in value.items()}}
    if isinstance(value, Program):  # a control-flow body: stored inline, arrays in the blob
        return {"t": "program", "v": program_to_json(value, blob)[0]}
    raise TypeError(f"cannot serialise attribute value of type {type(value).__name__}")


_ALLOWED_ARRAY_DTYPES = {"f2", "f4", "f8", "i4", "i8", "b1", "u1", "i1", "u8"}


def _dec(value, blob: bytes):
    if value is None or isinstance(value, bool | str | int):
        return value
    if not isinstance(value, dict) or "t" not in value:
        raise InvalidArtifactError(f"malformed attribute encoding: {value!r:.80}")
    tag = value["t"]
    if tag == "f":
        return float(value["s"]) if "s" in value else float(value["v"])
    if tag == "dtype":
        return _dt.as_dtype(value["v"])
    if tag == "tuple":
        return tuple(_dec(v, blob) for v in value["v"])
    if tag == "list":
        return [_dec(v, blob) for v in value["v"]]
    if tag == "dict":
        return {k: _dec(v, blob) for k, v in value["v"].items()}
    if tag == "program":
        return program_from_json(value["v"], blob)
    if tag == "arr":
        dtype = value["dtype"]
        if dtype not in _ALLOWED_ARRAY_DTYPES:
            raise InvalidArtifactError(f"array of unsupported dtype {dtype!r}")
        shape = tuple(int(d) for d in value["shape"])
        off, n = int(value["offset"]), int(value["nbytes"])
        np_dtype = np.dtype("<" + dtype) if dtype not in ("b1", "u1", "i1") else np.dtype(dtype)
        expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
        if n != expected or off < 0 or off + n > len(blob):
            raise InvalidArtifactError("array data is out of bounds or of the wrong size")
        arr = np.frombuffer(blob, dtype=np_dtype, count=expected // max(np_dtype.itemsize, 1),
                            offset=off).reshape(shape)  # fmt: skip
        arr = arr.astype(np_dtype.newbyteorder("="), copy=True)
        arr.setflags(write=False)
        return arr
    raise InvalidArtifactError(f"unknown attribute tag {tag!r}")


def _enc_spec(s: TensorSpec):
    return [None if s.shape is None else list(s.shape), s.dtype.name]


def _dec_spec(v) -> TensorSpec:
    shape, dtype = v
    if shape is not None and not (
        isinstance(shape, list) and all(d is None or (type(d) is int and d >= 0) for d in shape)
    ):
        raise ValueError(f"malformed shape {shape!r:.80}")
    if not isinstance(dtype, str) or _dt.as_dtype(dtype).name != dtype:
        raise ValueError(f"malformed dtype {dtype!r:.80}")
    return TensorSpec(None if shape is None else tuple(shape), _dt.as_dtype(dtype))


def program_to_json(program: Program, blob: _Blob | None = None) -> tuple[dict, bytes]:
    """(JSON-able dict, blob of array data) for ``program``. ``blob``: add the array data
    to this one (a control-flow body shares its enclosing program's blob)."""
    blob = _Blob() if blob is None else blob
    nodes = []
    for n in program.nodes:
        nodes.append({
            "id": n.id, "op": n.op, "inputs": [list(r) for r in n.inputs],
            "outs": [_enc_spec(s) for s in n.outs],
            "attrs": {k: _enc(v, blob) for k, v in n.attrs.items()},
            "control": list(n.control), "name": n.name,
            "location": [str(n.location[0]), int(n.location[1])],
        })  # fmt: skip
    doc = {
        "nodes": nodes,
        "feeds": [[i, name] for i, name in program.feeds],
        "fetches": [list(r) for r in program.fetches],
        "targets": list(program.targets),
    }
    return doc, blob.bytes()


def program_from_json(doc: dict, blob: bytes) -> Program:
    """Inverse of program_to_json; InvalidArtifactError on anything malformed (whatever the
    JSON's shape: a wrong type anywhere is malformed, never a stray TypeError)."""
    try:
        if not isinstance(doc, dict):
            raise InvalidArtifactError("malformed stored program: not a JSON object")
        nodes = []
        for d in doc["nodes"]:
            if d["op"] not in REGISTRY:
                raise InvalidArtifactError(f"unknown op type {d['op']!r} in stored program")
            nodes.append(Node(
                int(d["id"]), str(d["op"]), tuple((int(a), int(b)) for a, b in d["inputs"]),
                tuple(_dec_spec(s) for s in d["outs"]),
                {k: _dec(v, blob) for k, v in d["attrs"].items()},
                tuple(int(c) for c in d["control"]), str(d["name"]),
                (str(d["location"][0]), int(d["location"][1])),
            ))  # fmt: skip
        program = Program(
            tuple(nodes),
            tuple((int(i), str(name)) for i, name in doc["feeds"]),
            tuple((int(a), int(b)) for a, b in doc["fetches"]),
            tuple(int(t) for t in doc["targets"]),
        )
    except InvalidArtifactError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:  # fmt: skip
        raise InvalidArtifactError(f"malformed stored program: {exc}") from None
    try:
        program.verify()
    except Exception as exc:  # noqa: BLE001 - shape inference on any stored attrs: malformed
        raise InvalidArtifactError(
            f"stored program does not verify: {type(exc).__name__}: {exc}"
        ) from None
    return program


def dumps_program(program: Program) -> tuple[bytes, bytes]:
    doc, blob = program_to_json(program)
    return json.dumps(doc, separators=(",", ":")).encode(), blob


def loads_program(text: bytes, blob: bytes) -> Program:
    try:
        doc = json.loads(text.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidArtifactError(f"stored program is not valid JSON: {exc}") from None
    return program_from_json(doc, blob)
