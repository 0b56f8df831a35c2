"""Persistent compile cache of the cpu target: object code + a JSON manifest, no pickle.

An entry is one file ``<cache_dir>/cpu-<key>.gcx`` (the cuda target keeps its entries in the
same container as ``cuda-<key>.gcx``, see ``graphc/backends/cuda/cache.py``; the worker pool's
object code is one too, see ``jit._pool_object``)::

    b"GCXCPU02" | u64 manifest length | manifest (UTF-8 JSON) | u64 object length | object code
    | HMAC-SHA256 of everything before it (32 bytes)

(for cpu entries the "object code" part is the modules' object code, the compressed IR text
and the bytes of the constants too large to be in the code: ``llvm/__init__.py``'s
``cache_payload``; the manifest's sizes say where each ends.)

An entry holds machine code that a hit runs, so the cache trusts nothing it reads:

* the directory is used only when it belongs to the current user and neither group nor
  others may write it (``usable_dir``); otherwise graphc warns once, naming the directory
  and why, and compiles without the cache. A directory graphc creates is made 0700.
* every entry is authenticated with an HMAC-SHA256 under a per-user secret key (32 random
  bytes in ``config.cache_key_file()``, e.g. ``~/.config/graphc/cache.key``, created on first
  use with mode 0600; a key file that is not a regular 0600 file of this user is ignored, with
  a warning). Whoever can write the cache directory but not read the key cannot make an entry
  that verifies: a forged, altered or foreign entry is a miss (recompiled and atomically
  overwritten), never an error, never run. Without a usable key file the process uses a
  random in-memory key: its own entries still work, other processes' are misses.

``key`` is the sha256 of (Program hash, target, host CPU name + features + triple, graphc
version, llvmlite version, CompileOptions.key(), a hash of the compiler's own sources).
Entries are written to a temp file in the same directory and ``os.replace``d, so a reader
sees a complete old or new file, never a torn one; a truncated, corrupt or mismatching file
is treated as a miss (and rewritten by the next compile). The manifest holds what the runtime
needs (buffers with symbolic shapes, dims, checks, kernels) encoded as plain JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import struct
import tempfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path

import llvmlite
import numpy as np

from ... import config
from ... import dtypes as _dt
from ...expr import Call, Cast, Const, Dim, Math, Var
from ...fsutil import atomic_write_bytes
from ...kernel.ir import Buffer, Check, KernelProgram
from ...version import __version__

MAGIC = b"GCXCPU02"
FORMAT = 2
KEY_BYTES = 32
MAC_BYTES = 32

_lock = threading.Lock()
_keys: dict = {}  # key file path -> secret key bytes (read or created once per process)
_warned: set = set()


def _warn_once(what: tuple, message: str) -> None:
    with _lock:
        if what in _warned:
            return
        _warned.add(what)
    warnings.warn(message, UserWarning, stacklevel=4)


# -- the cache directory -----------------------------------------------------------------------


def dir_problem(st: os.stat_result) -> str | None:
    """Why a directory (its ``os.stat``) may not hold native code graphc runs, or None."""
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"group or others may write it (mode {stat.S_IMODE(st.st_mode):o}); "
            "make it private with chmod 700"
        )
    return None


def usable_dir(cache_dir, create: bool = False) -> Path | None:
    """``cache_dir`` when graphc may read and write entries there, else None.

    ``create``: make a missing directory (mode 0700). A directory of another user, or one that
    group or others may write, is refused with a warning (once per directory and reason): its
    entries could have been planted by someone else. A path that is missing (``create``
    False) or cannot be made is refused silently: there is nothing to read, or nowhere to
    write, and compiling is the answer either way.
    """
    d = Path(cache_dir)
    try:
        if create:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.stat()
    except OSError:
        return None
    problem = dir_problem(st)
    if problem is None:
        return d
    if stat.S_ISDIR(st.st_mode):
        _warn_once(
            ("dir", str(d), problem),
            f"graphc: not using the compile cache {d}: {problem}. Compiling without it.",
        )
    return None


# -- the secret key ----------------------------------------------------------------------------


def _read_key(path: Path) -> bytes:
    """The key in ``path``; FileNotFoundError when absent (another OSError when it cannot be
    opened), ValueError (saying why) when the file may not be trusted: a symbolic link, not a
    regular file, another owner, readable or writable by group or others, or not exactly
    KEY_BYTES long."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if Path(path).is_symlink():
            raise ValueError("it is a symbolic link") from None
        raise  # missing (FileNotFoundError), or unreadable: the caller says which
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("it is not a regular file")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise ValueError(f"it is owned by uid {st.st_uid}, not by this user")
        if st.st_mode & 0o077:
            raise ValueError(f"its mode is {stat.S_IMODE(st.st_mode):o}, not 600")
        data = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise ValueError(f"it holds {len(data)} bytes, not {KEY_BYTES}")
    return data


def _create_key(path: Path) -> None:
    """Write a new random key to ``path`` unless a file is already there: the key goes to a
    private temp file (mode 0600) in the same directory, which is then hard-linked to
    ``path``: atomic, and it never replaces an existing key (of two processes creating it at
    once, the first link wins and both use that key). Where the file system has no hard
    links, the file is created exclusively (O_EXCL) instead."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cache.key.", dir=path.parent)  # mode 0600
    key = os.urandom(KEY_BYTES)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            return
        except OSError:
            pass  # no hard links here
    finally:
        os.unlink(tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(key)


def secret_key() -> bytes:
    """This user's key for the entries' HMACs (read, or created, once per process)."""
    path = config.cache_key_file()
    with _lock:
        key = _keys.get(path)
    if key is not None:
        return key
    try:
        try:
            key = _read_key(path)
        except FileNotFoundError:
            _create_key(path)
            key = _read_key(path)
    except ValueError as exc:
        problem = f"{exc}; remove it to let graphc create it again with mode 600"
    except OSError as exc:
        problem = f"it cannot be read or created ({exc.strerror or exc})"
    if key is None:
        _warn_once(
            ("key", str(path)),
            f"graphc: ignoring the compile cache key {path}: {problem}. Cache entries of "
            "other processes will not be used (this one uses a random key of its own).",
        )
        key = os.urandom(KEY_BYTES)
    with _lock:
        return _keys.setdefault(path, key)


def _mac(body: bytes) -> bytes:
    return hmac.new(secret_key(), body, hashlib.sha256).digest()


# -- entries -----------------------------------------------------------------------------------


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
    files += sorted((here.parent / "cpu").glob("*.py"))  # (its KERNEL_PASSES)
    return sources_hash(files)


def cache_key(program_hash: str, options_key, host: dict) -> str:
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
    """Write an authenticated entry atomically; False (and nothing written) if the directory
    is unusable (see ``usable_dir``)."""
    try:
        d = usable_dir(cache_dir, create=True)
        if d is None:
            return False
        man = json.dumps(manifest, separators=(",", ":")).encode()
        body = MAGIC + struct.pack("<Q", len(man)) + man + struct.pack("<Q", len(obj)) + obj
        data = body + _mac(body)
        # no fsync: a cache entry lost in a crash is only a recompile
        atomic_write_bytes(entry_path(d, key, target), data, fsync=False)
        return True
    except OSError:
        return False


def load(cache_dir, key: str, target: str = "cpu"):
    """(manifest, object bytes) of an entry whose HMAC verifies, else None."""
    d = usable_dir(cache_dir)
    if d is None:
        return None
    try:
        data = entry_path(d, key, target).read_bytes()
    except OSError:
        return None
    try:
        if len(data) < len(MAGIC) + 16 + MAC_BYTES or not data.startswith(MAGIC):
            return None
        body, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
        if not hmac.compare_digest(_mac(body), mac):
            return None  # not written with this user's key: never trusted
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
        if not isinstance(manifest, dict) or manifest.get("key") != key:
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


def _encode_dim_check(check) -> list:
    """(condition, message) or (condition, message, size expressions the message names)."""
    cond, message, *rest = check
    out = [encode_expr(cond), message]
    if rest:
        out.append([encode_expr(a) for a in rest[0]])
    return out


def _decode_dim_check(j) -> tuple:
    if not isinstance(j, list) or len(j) not in (2, 3) or not isinstance(j[1], str):
        raise ValueError(f"malformed shape check {j!r:.80}")
    if len(j) == 2:
        return decode_expr(j[0]), j[1]
    return decode_expr(j[0]), j[1], tuple(decode_expr(a) for a in j[2])


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
        "dim_checks": [_encode_dim_check(c) for c in kp.dim_checks],
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
        dim_checks=tuple(_decode_dim_check(c) for c in j["dim_checks"]),
    )
    consts = {
        n: np.frombuffer(bytes.fromhex(h), dtype=np.dtype(dt)).reshape(shape).copy()
        for n, (dt, shape, h) in j["consts"].items()
    }
    return kp, consts
