"""Compile generated CUDA C with nvcc, with an on-disk cache keyed by what changes the code.

Used by the runtime (``cubin`` for the GPU's architecture) and by the tests that compile every
rendered kernel to PTX on machines without a GPU.

The disk cache holds GPU code that the runtime loads, so it trusts nothing it reads: an
entry is one file ``<cache_dir>/nvcc-<kind>-<key>.gcx`` in the authenticated container of
``graphc/backends/llvm/cache.py`` (HMAC-SHA256 under the user's secret cache key; read and
written only in a directory of the user's own that group and others cannot write, else not
at all, with one warning). A planted, forged, altered or foreign file is a miss: nvcc runs
again and the entry is atomically rewritten; its bytes are never returned. Files of the old
layout (raw ``<cache_dir>/cuda/<key>.cubin``) are not read. No pickle.

This level sits under the executable cache (``cache.py``, keyed by the un-optimised
program, options and the compiler's own sources): it is what still skips nvcc when that
cache misses but the CUDA C is unchanged (another graph or option set that renders the same
module, an edit of graphc that does not change the generated code, ``dump_dir`` set).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ... import config
from ...errors import CompileError, UnavailableError
from ...version import __version__
from ..llvm import cache as _container


def find_nvcc() -> str | None:
    """Path of nvcc: $CUDA_HOME/bin, then PATH, then /usr/local/cuda/bin; None if absent."""
    root = config.cuda_root()
    candidates = [Path(root) / "bin" / "nvcc"] if root else []
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


@lru_cache(maxsize=4)
def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "unknown"


def cache_key(source: str, arch: str, kind: str, nvcc: str, options=()) -> str:
    """sha256 over graphc's version, the target, the GPU arch, nvcc and the source."""
    h = hashlib.sha256()
    for part in (__version__, "cuda", arch, kind, nvcc_version(nvcc), " ".join(options), source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def entry_target(kind: str) -> str:
    """The container's target name of ``kind``'s entries: ``<cache_dir>/nvcc-<kind>-<key>.gcx``."""
    return f"nvcc-{kind}"


def load_cached(cache_dir, key: str, kind: str, arch: str) -> bytes | None:
    """nvcc's output for ``key`` from an entry whose HMAC verifies and whose manifest names
    this key, kind and arch; None otherwise (a miss)."""
    hit = _container.load(cache_dir, key, target=entry_target(kind))
    if hit is None:
        return None
    manifest, data = hit
    if manifest.get("kind") != kind or manifest.get("arch") != arch or not data:
        return None
    return data


def compile_source(source: str, arch: str = "sm_90", kind: str = "ptx", cache_dir=None,
                   options=("-O3", "-std=c++17")) -> tuple:  # fmt: skip
    """Compile ``source`` to ``kind`` ("ptx" or "cubin") for ``arch``.

    Returns (bytes, loaded_from_cache). ``cache_dir`` None disables the disk cache (nothing
    is read or written); otherwise an entry is used only when it authenticates (see above).
    Raises UnavailableError without nvcc and CompileError with nvcc's messages on failure.
    """
    if kind not in ("ptx", "cubin"):
        raise ValueError(f"kind must be 'ptx' or 'cubin', got {kind!r}")
    nvcc = find_nvcc()
    if nvcc is None:
        raise UnavailableError("nvcc was not found (set CUDA_HOME or put nvcc on PATH)")
    key = cache_key(source, arch, kind, nvcc, options)
    if cache_dir is not None:
        hit = load_cached(cache_dir, key, kind, arch)
        if hit is not None:
            return hit, True
    with tempfile.TemporaryDirectory(prefix="graphc-nvcc-") as tmp:
        src = Path(tmp) / "module.cu"
        out = Path(tmp) / f"module.{kind}"
        src.write_text(source)
        cmd = [nvcc, f"-{kind}", f"-arch={arch}", *options, str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CompileError(
                f"nvcc failed ({' '.join(cmd[:3])}):\n{_excerpt(proc.stderr, source)}"
            )
        data = out.read_bytes()
    if cache_dir is not None:
        # atomic (a reader sees the old entry or the new one); False, nothing written, when
        # the directory is not the user's own
        _container.save(cache_dir, key, {"key": key, "kind": kind, "arch": arch}, data,
                        target=entry_target(kind))  # fmt: skip
    return data, False


def _excerpt(stderr: str, source: str, limit: int = 40) -> str:
    """nvcc's first errors, each followed by the offending source line."""
    lines = source.splitlines()
    out = []
    for msg in stderr.splitlines()[:limit]:
        out.append(msg)
        head = msg.split("(", 1)
        if len(head) == 2 and head[1].split(")", 1)[0].isdigit():
            n = int(head[1].split(")", 1)[0])
            if 0 < n <= len(lines):
                out.append(f"    | {lines[n - 1].strip()}")
    return "\n".join(out)
