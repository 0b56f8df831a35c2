"""Persistent compile cache of the cuda target: a whole Executable, keyed like the cpu one.

An entry (``<cache_dir>/cuda-<key>.gcx``, the authenticated container of
``graphc/backends/llvm/cache.py``: HMAC-SHA256 under the user's cache key, read only from a
directory of the user's own that others cannot write) holds the cubin, the generated CUDA C
(zlib) and a JSON manifest: the KernelProgram's runtime part (buffers with symbolic shapes,
dims, checks, constants), every kernel's launches (kind, function, parameters, size
expressions), the kernel list, stats, stage texts and fusion decisions. A hit rebuilds the
runner from it without running the pass pipeline, the lowering or nvcc.

``key`` is the sha256 of (un-optimised Program hash, GPU architecture, nvcc version,
CompileOptions.key(), graphc version, a hash of the compiler's own sources and CUDA
templates). A truncated, corrupt, forged or mismatching entry is a miss (the next compile
rewrites it), never loaded. nvcc's own cubin cache (``nvcc.py``, keyed by the source, its
entries ``nvcc-cubin-<key>.gcx`` in the same container) stays underneath: a miss here whose
CUDA C is unchanged still skips nvcc.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from ...kernel.ir import KernelProgram
from ...version import __version__
from ..llvm import cache as _container
from .render import kernels_dir
from .rendered import CudaModule, Launch, RenderedKernel


@lru_cache(maxsize=1)
def codegen_hash() -> str:
    """sha256 of the sources that decide the generated code: passes, lowering, this
    backend and its CUDA templates (an entry from another compiler is never reused)."""
    here = Path(__file__).resolve().parent
    package = here.parent.parent
    files = sorted(here.glob("*.py")) + sorted((package / "kernel").glob("*.py"))
    files += sorted((package / "passes").glob("*.py")) + sorted(kernels_dir().glob("*.cuh"))
    return _container.sources_hash(files)


def cache_key(program_hash: str, options_key, arch: str, nvcc_version: str) -> str:
    parts = {
        "format": _container.FORMAT,
        "program": program_hash,
        "target": "cuda",
        "arch": arch,
        "nvcc": nvcc_version,
        "graphc": __version__,
        "options": repr(tuple(options_key)),
        "codegen": codegen_hash(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# -- launches as JSON --------------------------------------------------------------------------


def _expr(e):
    return None if e is None else _container.encode_expr(e)


def _unexpr(j):
    return None if j is None else _container.decode_expr(j)


def encode_launch(ln: Launch) -> dict:
    return {
        "kind": ln.kind,
        "function": ln.function,
        "params": [list(p) for p in ln.params],
        "count": _expr(ln.count),
        "inner": _expr(ln.inner),
        "alt": ln.alt,
        "contiguous": ln.contiguous,
        "args": [a if isinstance(a, str) else _expr(a) for a in ln.args],
        "arg_is_name": [isinstance(a, str) for a in ln.args],
        "alt_params": [list(p) for p in ln.alt_params],
        "loops": [[v, _expr(a), _expr(b)] for v, a, b in ln.loops],
        "vector": ln.vector,
    }


def decode_launch(j: dict) -> Launch:
    args = tuple(a if name else _unexpr(a) for a, name in zip(j["args"], j["arg_is_name"]))
    return Launch(
        j["kind"],
        j["function"],
        tuple(tuple(p) for p in j["params"]),
        _unexpr(j["count"]),
        _unexpr(j["inner"]),
        j["alt"],
        j["contiguous"],
        args,
        tuple(tuple(p) for p in j["alt_params"]),
        tuple((v, _unexpr(a), _unexpr(b)) for v, a, b in j["loops"]),
        j["vector"],
    )


def encode_module(module: CudaModule) -> dict:
    return {
        "functions": list(module.functions),
        "kernels": [
            [rk.name, list(rk.ops), list(rk.op_types), list(rk.notes),
             [encode_launch(ln) for ln in rk.launches]]
            for rk in module.kernels
        ],
    }  # fmt: skip


def decode_module(j: dict, source: str) -> CudaModule:
    kernels = [
        RenderedKernel(name, tuple(ops), tuple(types), [decode_launch(x) for x in launches],
                       list(notes))
        for name, ops, types, notes, launches in j["kernels"]
    ]  # fmt: skip
    return CudaModule(source, kernels, list(j["functions"]))


# -- entries -----------------------------------------------------------------------------------


def save(cache_dir, key: str, kp: KernelProgram, module: CudaModule, cubin: bytes,
         cubin_key: str, extra: dict) -> bool:  # fmt: skip
    """Write an entry; False when the program cannot be encoded or the directory is
    unusable (the executable works either way)."""
    consts = {n: b.value for n, b in kp.buffers.items() if b.kind == "const"}
    try:
        manifest = {
            "key": key,
            "program": _container.encode_program(kp, consts),
            "module": encode_module(module),
            "cubin_key": cubin_key,
            "cubin_size": len(cubin),
            **extra,
        }
        json.dumps(manifest)
    except (TypeError, ValueError):
        return False  # e.g. an expression kind the manifest has no encoding for
    payload = cubin + zlib.compress(module.source.encode(), 1)
    return _container.save(cache_dir, key, manifest, payload, target="cuda")


def load(cache_dir, key: str):
    """(manifest, KernelProgram with its constants, CudaModule, cubin) of a valid entry, or
    None."""
    hit = _container.load(cache_dir, key, target="cuda")
    if hit is None:
        return None
    manifest, payload = hit
    try:
        size = manifest["cubin_size"]
        cubin, source = payload[:size], zlib.decompress(payload[size:]).decode()
        kp, consts = _container.decode_program(manifest["program"])
        for name, value in consts.items():
            kp.buffers[name] = replace(kp.buffers[name], value=value)
        module = decode_module(manifest["module"], source)
    except (KeyError, ValueError, TypeError, zlib.error, UnicodeDecodeError):
        return None
    return manifest, kp, module, cubin
