"""Persistent compile cache of the cpu target: object code + a JSON manifest, no pickle.

An entry is one file ``<cache_dir>/cpu-<key>.gcx`` (the cuda target keeps its entries in the
same container as ``cuda-<key>.gcx``, see ``graphc/backends/cuda/cache.py``)::

    b"GCXCPU01" | u64 manifest length | manifest (UTF-8 JSON) | u64 object length | object code
    | sha256 of everything before it (32 bytes)

``key`` is the sha256 of (Program hash, target, host CPU name + features + triple, graphc
version, llvmlite version, CompileOptions.key(), a hash of the compiler's own sources).
Entries are written to a temp file in the same directory and ``os.replace``d, so a reader
sees a complete old or new file, never a torn one; a truncated, corrupt or mismatching file
is treated as a miss (and rewritten by the next compile). The manifest holds what the runtime
needs (buffers with symbolic shapes,
dims, checks, kernels) encoded as plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

from ... import dtypes as _dt
from ...fsutil import atomic_write_bytes
from ...kernel.expr import Call, Cast, Const, Dim, Math, Var
from ...kernel.ir import Buffer, Check, KernelProgram

MAGIC = b"GCXCPU01"
FORMAT = 1


def sources_hash(files) -> str:
    """sha256 over the names and contents of ``files`` (unreadable ones are skipped)."""
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f.name.encode() + f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()


@lru_cache(maxsize=1)
def codegen_hash() -> str:
    """sha256 of the code generator's own sources (lowering included), so an entry written
    by another version of the compiler is never reused, even with an unchanged version."""
    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + sorted((here.parent.parent / "kernel").glob("*.py"))
    files += sorted((here.parent.parent / "passes").glob("*.py"))
    return sources_hash(files)


def cache_key(program_hash: str, options_key, host: dict) -> str:
    import llvmlite

    from ...version import __version__

    parts = {
        "format": FORMAT,
        "program": program_hash,
        "target": "cpu",
        "cpu": host["cpu"],
        "features": host["features"],
        "triple": host["triple"],
        "graphc": __version__,
        "llvmlite": llvmlite.__version__,
        "options": repr(tuple(options_key)),
        "codegen": codegen_hash(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def entry_path(cache_dir, key: str, target: str = "cpu") -> Path:
    return Path(cache_dir) / f"{target}-{key}.gcx"


def save(cache_dir, key: str, manifest: dict, obj: bytes, target: str = "cpu") -> bool:
    """Write an entry atomically; False (and nothing written) if the directory is unusable."""
    try:
        d = Path(cache_dir)
        d.mkdir(parents=True, exist_ok=True)
        man = json.dumps(manifest, separators=(",", ":")).encode()
        body = MAGIC + struct.pack("<Q", len(man)) + man + struct.pack("<Q", len(obj)) + obj
        data = body + hashlib.sha256(body).digest()
        # no fsync: a cache entry lost in a crash is only a recompile
        atomic_write_bytes(entry_path(d, key, target), data, fsync=False)
        return True
    except OSError:
        return False


def load(cache_dir, key: str, target: str = "cpu"):
    """(manifest, object bytes) of a valid entry, else None."""
    try:
        data = entry_path(cache_dir, key, target).read_bytes()
    except OSError:
        return None
    try:
        if len(data) < len(MAGIC) + 16 + 32 or not data.startswith(MAGIC):
            return None
        body, digest = data[:-32], data[-32:]
        if hashlib.sha256(body).digest() != digest:
            return None
        pos = len(MAGIC)
        (mlen,) = struct.unpack_from("<Q", body, pos)
        pos += 8
        man = body[pos : pos + mlen]
        pos += mlen
        (olen,) = struct.unpack_from("<Q", body, pos)
        pos += 8
        obj = body[pos : pos + olen]
        if len(obj) != olen or pos + olen != len(body):
            return None
        manifest = json.loads(man.decode())
        if manifest.get("key") != key:
            return None
        return manifest, obj
    except (ValueError, struct.error, UnicodeDecodeError):
        return None


# -- JSON encoding of the runtime part of a KernelProgram -----------------------------------------


def encode_expr(e):
    if isinstance(e, Var):
        return ["v", e.name, e.dtype.name]
    if isinstance(e, Const):
        v = e.value
        v = bool(v) if e.dtype == _dt.bool_ else (float(v) if e.dtype.is_floating else int(v))
        return ["c", v, e.dtype.name]
    if isinstance(e, Dim):
        return ["d", e.name]
    if isinstance(e, Call):
        return ["f", e.fn.name, [encode_expr(a) for a in e.args]]
    if isinstance(e, Cast):
        return ["x", encode_expr(e.x), e.dtype.name]
    raise TypeError(f"cannot encode {e!r} in a cache manifest")


def decode_expr(j):
    tag = j[0]
    if tag == "c":
        return Const(j[1], _dt.as_dtype(j[2]))
    if tag == "d":
        return Dim(j[1])
    if tag == "f":
        return Call(Math[j[1]], tuple(decode_expr(a) for a in j[2]))
    if tag == "x":
        return Cast(decode_expr(j[1]), _dt.as_dtype(j[2]))
    if tag == "v":
        return Var(j[1], _dt.as_dtype(j[2]))
    raise ValueError(f"bad expression tag {tag!r}")


def encode_program(kp: KernelProgram, const_values: dict) -> dict:
    """What the runtime needs of ``kp`` (no kernel bodies: those are in the object code)."""
    return {
        "buffers": [
            [b.name, b.dtype.name, [encode_expr(d) for d in b.shape], b.kind, b.alias_of]
            for b in kp.buffers.values()
        ],
        "dims": [[n, list(v)] for n, v in kp.dims.items()],
        "inputs": list(kp.inputs),
        "outputs": list(kp.outputs),
        "var_reads": kp.var_reads,
        "var_updates": kp.var_updates,
        "rng": [list(r) for r in kp.rng],
        "checks": [[c.slot, c.message, c.kind] for c in kp.checks],
        "dim_checks": [[encode_expr(c), m] for c, m in kp.dim_checks],
        "consts": {
            n: [np.asarray(v).dtype.str, list(np.shape(v)), np.asarray(v).tobytes().hex()]
            for n, v in const_values.items()
        },
    }


def decode_program(j: dict) -> tuple[KernelProgram, dict]:
    buffers = {}
    for name, dtype, shape, kind, alias in j["buffers"]:
        buffers[name] = Buffer(
            name, _dt.as_dtype(dtype), tuple(decode_expr(d) for d in shape), kind, None, alias
        )
    kp = KernelProgram(
        buffers=buffers,
        kernels=[],
        dims={n: tuple(v) for n, v in j["dims"]},
        inputs=tuple(j["inputs"]),
        outputs=tuple(j["outputs"]),
        var_reads=dict(j["var_reads"]),
        var_updates=dict(j["var_updates"]),
        rng=tuple(tuple(r) for r in j["rng"]),
        checks=tuple(Check(s, m, k) for s, m, k in j["checks"]),
        dim_checks=tuple((decode_expr(c), m) for c, m in j["dim_checks"]),
    )
    consts = {
        n: np.frombuffer(bytes.fromhex(h), dtype=np.dtype(dt)).reshape(shape).copy()
        for n, (dt, shape, h) in j["consts"].items()
    }
    return kp, consts
