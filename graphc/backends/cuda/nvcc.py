"""Compile generated CUDA C with nvcc, with an on-disk cache keyed by what changes the code.

Used by the runtime (``cubin`` for the GPU's architecture) and by the tests that compile every
rendered kernel to PTX on machines without a GPU. No pickle: the cache holds the compiler's
output files, named by a sha256 key.
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


def compile_source(source: str, arch: str = "sm_90", kind: str = "ptx", cache_dir=None,
                   options=("-O3", "-std=c++17")) -> tuple:  # fmt: skip
    """Compile ``source`` to ``kind`` ("ptx" or "cubin") for ``arch``.

    Returns (bytes, loaded_from_cache). ``cache_dir`` None disables the disk cache.
    Raises UnavailableError without nvcc and CompileError with nvcc's messages on failure.
    """
    if kind not in ("ptx", "cubin"):
        raise ValueError(f"kind must be 'ptx' or 'cubin', got {kind!r}")
    nvcc = find_nvcc()
    if nvcc is None:
        raise UnavailableError("nvcc was not found (set CUDA_HOME or put nvcc on PATH)")
    key = cache_key(source, arch, kind, nvcc, options)
    cached = Path(cache_dir) / "cuda" / f"{key}.{kind}" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return cached.read_bytes(), True
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
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        part = cached.with_suffix(f".{os.getpid()}.part")
        part.write_bytes(data)
        os.replace(part, cached)  # atomic: a concurrent reader sees all or nothing
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
