"""The checkpoint file format: named arrays, a JSON header, raw data, a SHA-256 trailer.

Layout (all integers little-endian)::

    b"GCCKPT01"                       magic and format version
    u64 header_length
    header (UTF-8 JSON)               {"format": ..., "tensors": [{"name", "dtype", "shape",
                                        "offset", "nbytes"}, ...], "meta": {...}}
    data                              each array's C-order little-endian bytes at its offset
    sha256(everything above)          32 bytes

No pickle anywhere: reading a checkpoint never runs code. ``write_file`` writes a temporary
file in the target directory and renames it over the target, so an interrupted save leaves
the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

from ..errors import InvalidArtifactError, NotFoundError
from ..fsutil import atomic_write_bytes

MAGIC = b"GCCKPT01"
FORMAT = "graphc-checkpoint"
_DIGEST = 32
#: dtypes a checkpoint may hold (little-endian numpy codes)
_DTYPES = {"<f2", "<f4", "<f8", "<i4", "<i8", "|b1", "|u1", "<i2", "|i1"}


def _le(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.byteorder not in ("<", "|") else dtype


def encode(arrays: dict, meta: dict | None = None) -> bytes:
    """The bytes of a checkpoint holding ``arrays`` (name -> array)."""
    entries, blobs, offset = [], [], 0
    for name in sorted(arrays):
        if not isinstance(name, str) or not name:
            raise ValueError(f"checkpoint names must be non-empty strings, got {name!r}")
        arr = np.asarray(arrays[name])
        # (not ascontiguousarray: it turns 0-d arrays into 1-d ones)
        arr = np.array(arr, dtype=_le(arr.dtype), order="C", copy=True)
        code = arr.dtype.str
        if code not in _DTYPES:
            raise TypeError(f"cannot checkpoint {name}: unsupported dtype {arr.dtype}")
        data = arr.tobytes(order="C")
        entries.append(
            {"name": name, "dtype": code, "shape": list(arr.shape), "offset": offset,
             "nbytes": len(data)}
        )  # fmt: skip
        blobs.append(data)
        offset += len(data)
    header = json.dumps(
        {"format": FORMAT, "version": 1, "tensors": entries, "meta": meta or {}},
        sort_keys=True,
    ).encode("utf-8")
    body = b"".join([MAGIC, struct.pack("<Q", len(header)), header, *blobs])
    return body + hashlib.sha256(body).digest()


def decode(raw: bytes, source: str = "<bytes>") -> tuple[dict, dict]:
    """``(arrays, meta)`` from checkpoint bytes; InvalidArtifactError if they are not valid."""

    def bad(why):
        return InvalidArtifactError(f"{source} is not a valid graphc checkpoint: {why}")

    fixed = len(MAGIC) + 8
    if len(raw) < fixed + _DIGEST:
        raise bad(f"file too short ({len(raw)} bytes), truncated?")
    if raw[: len(MAGIC)] != MAGIC:
        raise bad("wrong magic number (not a checkpoint, or an unknown format version)")
    body, digest = raw[:-_DIGEST], raw[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise bad("checksum mismatch (the file is corrupt or truncated)")
    (hlen,) = struct.unpack("<Q", raw[len(MAGIC) : fixed])
    if hlen > len(body) - fixed:
        raise bad("header length exceeds the file size")
    try:
        header = json.loads(body[fixed : fixed + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"unreadable header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad("header does not describe a graphc checkpoint")
    if header.get("version") != 1:
        raise bad(f"unsupported version {header.get('version')!r}")
    data = memoryview(body)[fixed + hlen :]
    arrays = {}
    for e in header.get("tensors", []):
        try:
            name, code, shape = e["name"], e["dtype"], tuple(int(d) for d in e["shape"])
            offset, nbytes = int(e["offset"]), int(e["nbytes"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"malformed tensor entry {e!r}") from None
        if code not in _DTYPES:
            raise bad(f"tensor {name!r} has unsupported dtype {code!r}")
        if any(d < 0 for d in shape):
            raise bad(f"tensor {name!r} has a negative dimension {shape}")
        dtype = np.dtype(code)
        count = int(np.prod(shape, dtype=np.int64))
        if nbytes != count * dtype.itemsize or offset < 0 or offset + nbytes > len(data):
            raise bad(f"tensor {name!r} lies outside the data or has the wrong size")
        if name in arrays:
            raise bad(f"tensor {name!r} appears twice")
        arr = np.frombuffer(data[offset : offset + nbytes], dtype=dtype, count=count)
        arrays[name] = arr.reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    meta = header.get("meta", {})
    return arrays, meta if isinstance(meta, dict) else {}


def write_file(path: str, raw: bytes) -> None:
    """Write ``raw`` to ``path`` atomically: temp file in the same directory, fsync, rename."""
    atomic_write_bytes(path, raw)


def read_file(path: str) -> tuple[dict, dict]:
    """``(arrays, meta)`` of the checkpoint at ``path``."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFoundError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise NotFoundError(f"checkpoint {path} is a directory, not a checkpoint file") from None
    return decode(raw, path)
