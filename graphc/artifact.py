"""A single-file container of named, checksummed sections (no pickle), written atomically.

Layout: MAGIC (8 bytes) | header length (u64 LE) | header JSON | sha256(header) (32 bytes) |
section bytes... The header lists each section's offset, size and sha256; every checksum is
verified before any section is used.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from .errors import InvalidArtifactError
from .fsutil import atomic_write_bytes

MAGIC = b"GRAPHC\x00\x01"
FORMAT_VERSION = 1
MAX_HEADER = 64 << 20


def write_container(path, header: dict, sections: dict) -> None:
    """Write ``sections`` (name -> bytes) with ``header`` to ``path`` atomically."""
    path = Path(path)
    entries = []
    offset = 0
    for name, data in sections.items():
        entries.append({"name": name, "offset": offset, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
        offset += len(data)
    head = dict(header, format_version=FORMAT_VERSION, sections=entries)
    head_bytes = json.dumps(head, sort_keys=True).encode()
    body = [MAGIC, struct.pack("<Q", len(head_bytes)), head_bytes,
            hashlib.sha256(head_bytes).digest(), *sections.values()]  # fmt: skip
    atomic_write_bytes(path, b"".join(body))


def read_container(path) -> tuple[dict, dict]:
    """(header, sections) from ``path``; InvalidArtifactError if anything is off."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidArtifactError(f"{path}: no such artifact") from None
    except IsADirectoryError:
        raise InvalidArtifactError(f"{path}: is a directory, not an artifact") from None
    if len(data) < len(MAGIC) + 8 or data[: len(MAGIC)] != MAGIC:
        raise InvalidArtifactError(f"{path}: not a graphc artifact (bad magic)")
    (hlen,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    if hlen > MAX_HEADER or start + hlen + 32 > len(data):
        raise InvalidArtifactError(f"{path}: truncated or corrupt header")
    head_bytes = data[start : start + hlen]
    digest = data[start + hlen : start + hlen + 32]
    if hashlib.sha256(head_bytes).digest() != digest:
        raise InvalidArtifactError(f"{path}: header checksum mismatch (corrupt artifact)")
    try:
        header = json.loads(head_bytes.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArtifactError(f"{path}: header is not valid JSON ({exc})") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise InvalidArtifactError(
            f"{path}: artifact format {header.get('format_version')!r}, this graphc reads "
            f"format {FORMAT_VERSION}"
        )
    body = start + hlen + 32
    sections = {}
    for entry in header.get("sections", []):
        off, size = int(entry["offset"]), int(entry["size"])
        if off < 0 or size < 0 or body + off + size > len(data):
            raise InvalidArtifactError(f"{path}: section {entry['name']!r} is truncated")
        chunk = data[body + off : body + off + size]
        if hashlib.sha256(chunk).hexdigest() != entry["sha256"]:
            raise InvalidArtifactError(
                f"{path}: checksum mismatch in section {entry['name']!r} (corrupt artifact)"
            )
        sections[entry["name"]] = chunk
    if body + sum(int(e["size"]) for e in header.get("sections", [])) != len(data):
        raise InvalidArtifactError(f"{path}: unexpected trailing data (corrupt artifact)")
    return header, sections
