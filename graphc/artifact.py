"""A single-file container of named, checksummed sections (no pickle), written atomically.

Layout: MAGIC (8 bytes) | header length (u64 LE) | header JSON | sha256(header) (32 bytes) |
section bytes... | [HMAC-SHA256 of everything before it (32 bytes), when signed]. The header
lists each section's offset, size and sha256; every checksum is verified before any section
is used.

The header's schema is checked explicitly (``check_container_header``): every malformed
header, whatever its shape, is ``InvalidArtifactError``, never a stray ``KeyError`` or
``TypeError``. Sections must follow each other in the order listed, from offset 0, and end
where the file (or its signature) ends: no gap, overlap, or byte outside a section.

Checksums catch corruption, not a file altered on purpose (anyone can recompute them). A
*signed* artifact (``gc.export(..., signing_key=key)``; header ``"signed":
"hmac-sha256"``) ends with an HMAC-SHA256 under a key shared by its author and its users:
``gc.load(..., verify_key=key)`` refuses it unless the HMAC verifies, and refuses an unsigned
artifact; without ``verify_key`` the signature is not checked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
from pathlib import Path

from .errors import InvalidArtifactError
from .fsutil import atomic_write_bytes

MAGIC = b"GRAPHC\x00\x01"
FORMAT_VERSION = 1
MAX_HEADER = 64 << 20
SIGNATURE = "hmac-sha256"
MAC_BYTES = 32
_SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")


def _check_key(key, what: str) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, got {type(key).__name__}")
    key = bytes(key)
    if not key:
        raise ValueError(f"{what} must not be empty")
    return key


def _mac(key: bytes, data) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def write_container(path, header: dict, sections: dict, signing_key=None) -> None:
    """Write ``sections`` (name -> bytes) with ``header`` to ``path`` atomically; with
    ``signing_key`` (bytes), append an HMAC-SHA256 of the whole file under it."""
    path = Path(path)
    key = None if signing_key is None else _check_key(signing_key, "signing_key")
    entries = []
    offset = 0
    for name, data in sections.items():
        entries.append({"name": name, "offset": offset, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
        offset += len(data)
    head = dict(header, format_version=FORMAT_VERSION, sections=entries)
    head.pop("signed", None)
    if key is not None:
        head["signed"] = SIGNATURE
    head_bytes = json.dumps(head, sort_keys=True).encode()
    body = b"".join([MAGIC, struct.pack("<Q", len(head_bytes)), head_bytes,
                     hashlib.sha256(head_bytes).digest(), *sections.values()])  # fmt: skip
    atomic_write_bytes(path, body + (_mac(key, body) if key is not None else b""))


def _is_int(v) -> bool:
    return type(v) is int  # not bool, not float


def check_container_header(header, body_size: int, where: str = "artifact") -> int:
    """InvalidArtifactError unless ``header`` has the container's schema and its sections
    tile the ``body_size`` bytes after the header exactly (less the signature when signed).
    Returns the signature's size (0 when unsigned)."""

    def bad(msg):
        return InvalidArtifactError(f"{where}: malformed header: {msg}")

    if not isinstance(header, dict):
        raise bad(f"a JSON object was expected, found {type(header).__name__}")
    version = header.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        raise InvalidArtifactError(
            f"{where}: artifact format {version!r:.40}, this graphc reads format {FORMAT_VERSION}"
        )
    signed = header.get("signed")
    if signed is not None and signed != SIGNATURE:
        raise bad(f"unknown signature kind {signed!r:.40}")
    mac_size = MAC_BYTES if signed is not None else 0
    sections = header.get("sections")
    if not isinstance(sections, list):
        raise bad(f"'sections' must be a list, found {type(sections).__name__}")
    names, pos = set(), 0
    for i, entry in enumerate(sections):
        if not isinstance(entry, dict) or set(entry) != {"name", "offset", "size", "sha256"}:
            raise bad(f"section {i} must be an object with name, offset, size and sha256")
        name, off, size, digest = entry["name"], entry["offset"], entry["size"], entry["sha256"]
        if not isinstance(name, str) or not name or name in names:
            raise bad(f"section {i}: name {name!r:.40} is not a new non-empty string")
        names.add(name)
        if not _is_int(off) or not _is_int(size) or size < 0:
            raise bad(f"section {name!r:.40}: offset and size must be non-negative integers")
        if off != pos:
            raise bad(f"section {name!r:.40} starts at {off}, expected {pos} (gap or overlap)")
        pos += size
        if pos + mac_size > body_size:
            raise InvalidArtifactError(f"{where}: section {name!r:.40} is truncated")
        if not isinstance(digest, str) or not _SHA256_HEX.match(digest):
            raise bad(f"section {name!r:.40}: sha256 must be 64 lowercase hex digits")
    if pos + mac_size != body_size:
        raise InvalidArtifactError(f"{where}: unexpected trailing data (corrupt artifact)")
    return mac_size


def read_container(path, verify_key=None) -> tuple[dict, dict]:
    """(header, sections) from ``path``; InvalidArtifactError if anything is off. With
    ``verify_key`` (bytes), the artifact must be signed with that key."""
    path = Path(path)
    key = None if verify_key is None else _check_key(verify_key, "verify_key")
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
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidArtifactError(f"{path}: header is not valid JSON ({exc})") from None
    body = start + hlen + 32
    mac_size = check_container_header(header, len(data) - body, str(path))
    if key is not None:
        if not mac_size:
            raise InvalidArtifactError(f"{path}: the artifact is not signed (verify_key given)")
        if not hmac.compare_digest(_mac(key, memoryview(data)[:-MAC_BYTES]), data[-MAC_BYTES:]):
            raise InvalidArtifactError(
                f"{path}: signature does not verify with verify_key (altered, or signed with "
                "another key)"
            )
    sections = {}
    for entry in header["sections"]:
        off, size = body + entry["offset"], entry["size"]
        chunk = data[off : off + size]
        if hashlib.sha256(chunk).hexdigest() != entry["sha256"]:
            raise InvalidArtifactError(
                f"{path}: checksum mismatch in section {entry['name']!r} (corrupt artifact)"
            )
        sections[entry["name"]] = chunk
    return header, sections
