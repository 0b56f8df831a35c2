"""Native code in ``gc.export`` artifacts for the cpu target: store it, check it, load it.

``export_native`` takes the backend's disk-cache entry of an Executable (the JSON manifest
plus object code of ``llvm/cache.py``: exactly what a warm start loads) and describes the
machine it needs: target triple, CPU name (informational), the CPU features the code was
compiled with (the host's, or those of the CPU ``gc.export(..., cpu=...)`` names, e.g. only
SSE2 for "generic": ``llvm/cpus.py``), and the fusion setting it was lowered with.
``load_native`` runs it on a later load without LLVM compiling anything, after checking, in
this order:

1. the machine: same triple, and the host CPU has every feature the code was compiled for
   (else ``NativeMismatch``: the caller recompiles from the stored Program and says why);
2. the manifest, against the stored Program: everything the runtime takes from it (buffers
   with their dtypes and symbolic shapes, dims, feeds, fetches, variables, random streams,
   status-check slots, constants, the kernel list, the storage the code writes) is derived
   again by lowering the stored Program (fusion, Kernel IR, buffer plan: no LLVM) and must be
   identical: a manifest that describes smaller buffers than the code writes, other dtypes,
   or other status slots never reaches the runtime; the large constants stored after the
   code (``llvm.cache_payload``) must be the lowered program's values, byte for byte;
3. the object code: ``elfcheck.validate`` (every offset, index, relocation in bounds and
   of a known kind), the ``gc_entry`` function present, every external symbol resolvable
   in this process (LLVM aborts on an unresolved one; a missing BLAS is
   ``UnavailableError`` naming scipy-openblas32).

Any failure in 2-3 is ``InvalidArtifactError``. Checksums (artifact.py), and the signature
when ``gc.load(verify_key=...)`` asks for one, are verified before any of this. The machine
code itself cannot be verified: an artifact whose code section was altered on purpose (and
re-checksummed) can run arbitrary code, so load native code only from artifacts you trust or
whose signature you verify (``gc.load(path, native=False)`` never runs stored code).
"""

from __future__ import annotations

import ctypes
import json
import time
from types import SimpleNamespace

import llvmlite
import llvmlite.binding as llvm
import numpy as np

from ...errors import InvalidArtifactError
from ...executable import Executable, KernelInfo
from ...pipeline import lower_program
from ...program import StageTexts
from ..llvm import (
    blas,
    cache,
    cpus,
    jit,
    load_compiled,
    payload_consts,
    runtime_manifest,
    slot_consts,
    target_cpu,
)
from ..llvm.render import Layout
from . import KERNEL_PASSES, REDUCTION_LAYOUT, elfcheck

#: 2: the header names the fusion setting, and loading derives the manifest from the Program;
#: 3: constants above llvm/render.py's EMBED_CONST_MAX_BYTES are buffer-table slots whose bytes
#: follow the code (a format-2 artifact's code has them inside and another slot layout: it is
#: recompiled, never run)
FORMAT = 3
BACKEND = "llvm-cpu"
ENTRY = "gc_entry"


class NativeMismatch(Exception):
    """The stored code cannot run on this machine (the reason names what differs)."""


def _features(flat: str) -> set:
    """The enabled ("+name") features of an LLVM feature string."""
    return {f[1:] for f in flat.split(",") if f.startswith("+")}


def host() -> dict:
    return jit.host()


def target(cpu) -> dict:
    """{'cpu', 'features', 'triple'} of the code generated for a user's ``cpu=`` ("host",
    "generic" or a CPU name of ``llvm/cpus.py``). ValueError naming the valid choices for any
    other value (None included)."""
    if cpu == cpus.HOST:
        return host()
    h = host()
    cpus.resolve(cpu, h["triple"], h["features"])  # ValueError for anything else
    return jit.target(cpu)


def cache_entry(source, options):
    """(manifest, payload) of ``source``'s disk-cache entry under ``options``, or None."""
    if options.cache_dir is None:
        return None
    key = cache.cache_key(source.hash(), options.key(), jit.target(target_cpu(options)))
    return cache.load(options.cache_dir, key)


def object_code(manifest: dict, payload: bytes) -> list:
    """The object file of each module in a cache payload (then come the compressed IR and the
    large constants' bytes)."""
    sizes = manifest["object_sizes"]
    objs, pos = [], 0
    for n in sizes:
        objs.append(payload[pos : pos + n])
        pos += n
    return objs


def export_native(source, program, exe, options):
    """(header dict, sections dict) holding ``exe``'s native code, or None when it has none to
    store (host-fallback ops, the cache entry could not be written, or its manifest is not the
    one ``program`` lowers to: a later load would refuse it).

    ``source``: the Program the executable was compiled from (its cache key); ``program``: the
    optimised Program the artifact stores, which the code was lowered from."""
    if exe.target != "cpu" or exe.stats.get("host_fallback_ops"):
        return None
    entry = cache_entry(source, options)
    if entry is None:
        return None
    manifest, payload = entry
    try:
        check_derived(manifest, program, options.fusion)
    except InvalidArtifactError:
        return None
    h = jit.target(target_cpu(options))  # the CPU the code was compiled for
    header = {
        "format": FORMAT,
        "backend": BACKEND,
        "triple": h["triple"],
        "cpu": h["cpu"],
        "features": sorted(_features(h["features"])),
        "object_sizes": list(manifest["object_sizes"]),
        "llvmlite": _llvmlite_version(),
        "fusion": bool(options.fusion),
    }
    man = dict(manifest)
    man.pop("key", None)  # the cache key of the exporting machine means nothing elsewhere
    sections = {
        "manifest.json": json.dumps(man, separators=(",", ":")).encode(),
        "code.bin": payload,
    }
    return header, sections


def _llvmlite_version() -> str:
    return llvmlite.__version__


def check_header_schema(header) -> None:
    """InvalidArtifactError unless the artifact header's ``native`` part has the fields and
    types of its format (format 1, an older graphc's, only needs to be an object)."""
    if not isinstance(header, dict):
        raise InvalidArtifactError(f"native code: header is not an object: {header!r:.80}")
    if header.get("format") == 1 and type(header.get("format")) is int:
        return
    if header.get("format") not in (2, FORMAT) or type(header.get("format")) is not int:
        raise InvalidArtifactError(f"native code: unknown format {header.get('format')!r:.80}")
    for key, kind in (("backend", str), ("triple", str), ("cpu", str), ("llvmlite", str),
                      ("fusion", bool)):  # fmt: skip
        if not isinstance(header.get(key), kind):
            raise InvalidArtifactError(f"native code: {key} missing or malformed")
    feats = header.get("features")
    if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
        raise InvalidArtifactError("native code: features must be a list of strings")
    sizes = header.get("object_sizes")
    if not isinstance(sizes, list) or not sizes or not all(type(n) is int and n > 0 for n in sizes):
        raise InvalidArtifactError("native code: object_sizes missing or malformed")


def check_machine(header: dict) -> None:
    """NativeMismatch unless this machine can run code described by ``header``;
    InvalidArtifactError when ``header`` is malformed."""
    check_header_schema(header)
    if header["format"] == 1:
        raise NativeMismatch(
            "the native code was stored by an older graphc (format 1), whose manifest cannot "
            "be checked against the stored program"
        )
    if header["format"] == 2:
        raise NativeMismatch(
            "the native code was stored by an older graphc (format 2), whose code holds its "
            "large constants and lays its buffers out differently"
        )
    if header["backend"] != BACKEND:
        raise NativeMismatch(f"native code is for backend {header['backend']!r:.80}")
    triple, feats = header["triple"], header["features"]
    h = host()
    if triple != h["triple"]:
        raise NativeMismatch(f"the code was compiled for {triple}, this machine is {h['triple']}")
    missing = sorted(set(feats) - _features(h["features"]))
    if missing:
        raise NativeMismatch(
            f"this CPU ({h['cpu']}) lacks feature(s) {', '.join(missing)} that the stored code "
            f"(compiled for {header.get('cpu')}) needs"
        )


def _bad(msg: str):
    return InvalidArtifactError(f"native code: {msg}")


def derive_manifest(program, fusion: bool) -> dict:
    """The runtime part of the manifest (``llvm.runtime_manifest``) that ``program`` lowers to,
    as JSON values: what the stored code must have been compiled from."""
    return _derive(program, fusion)[0]


def _derive(program, fusion: bool) -> tuple:
    """(derive_manifest's value, the KernelProgram it comes from)."""
    try:
        kp = lower_program(
            program, SimpleNamespace(fusion=fusion), REDUCTION_LAYOUT, KERNEL_PASSES
        ).kp
        return json.loads(json.dumps(runtime_manifest(kp, Layout.of(kp)))), kp
    except Exception as exc:  # noqa: BLE001 - a program that does not lower has no native code
        raise _bad(f"the stored program does not lower ({type(exc).__name__}: {exc})") from None


def _difference(want, got, where: str) -> str | None:
    """Where two JSON values first differ (a path such as ``program.buffers[3]``), or None."""
    if type(want) is not type(got):
        return where
    if isinstance(want, dict):
        for k in sorted(set(want) | set(got), key=str):
            if k not in want or k not in got:
                return f"{where}.{k}"
            d = _difference(want[k], got[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(want, list):
        if len(want) != len(got):
            return f"{where} (length {len(got)}, the program needs {len(want)})"
        for i, (a, b) in enumerate(zip(want, got)):
            d = _difference(a, b, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if want == got else where


def check_derived(manifest, program, fusion: bool, payload: bytes | None = None) -> None:
    """InvalidArtifactError unless every field the runtime reads from ``manifest`` is the one
    ``program`` lowers to (see derive_manifest), and, given the ``payload``, unless the large
    constants stored after its code (``llvm.cache_payload``) are the program's own values."""
    if not isinstance(manifest, dict):
        raise _bad("manifest is not an object")
    want, kp = _derive(program, fusion)
    for field, value in want.items():
        where = _difference(value, manifest.get(field), field)
        if where:
            raise _bad(f"the manifest does not match the stored program at {where}")
    if payload is None:
        return
    layout = Layout.of(kp)
    try:
        stored = payload_consts(manifest, payload, kp, layout)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    for root, value in slot_consts(kp, layout).items():
        if not np.array_equal(
            stored[root].reshape(-1).view(np.uint8), value.reshape(-1).view(np.uint8)
        ):
            raise _bad(f"the stored value of constant {root} is not the program's")


def check_manifest(manifest, payload: bytes, program, fusion: bool) -> None:
    """InvalidArtifactError unless ``manifest`` describes ``payload`` (object sizes) and is the
    one ``program`` lowers to with ``fusion``."""
    if not isinstance(manifest, dict):
        raise _bad("manifest is not an object")
    sizes = manifest.get("object_sizes")
    if not isinstance(sizes, list) or not sizes or not all(type(s) is int and s > 0 for s in sizes):
        raise _bad("object_sizes missing or malformed")
    ir_size = manifest.get("ir_zlib_size", 0)
    const_size = manifest.get("const_size", 0)  # the large constants (llvm.cache_payload)
    for n in (ir_size, const_size):
        if type(n) is not int or n < 0:
            raise _bad("ir_zlib_size / const_size malformed")
    if sum(sizes) + ir_size + const_size != len(payload):
        raise _bad("object sizes do not add up to the stored code")
    check_derived(manifest, program, fusion, payload)


def check_objects(objs: list, pool_cache_dir=None) -> None:
    """elfcheck every object; gc_entry defined; every external symbol resolvable here (the
    worker pool is loaded first, from ``pool_cache_dir`` if not None; a BLAS symbol without
    the BLAS is UnavailableError)."""
    jit.load_pool(pool_cache_dir)  # registers the pool's symbols (and the BLAS's, if any)
    triple = host()["triple"]
    machine = elfcheck.EM_X86_64 if triple.startswith("x86_64") else elfcheck.EM_AARCH64
    functions, undefined = set(), set()
    for i, obj in enumerate(objs):
        try:
            info = elfcheck.validate(obj, machine)
        except ValueError as exc:
            raise _bad(f"object {i}: {exc}") from None
        functions |= info.functions
        undefined |= info.undefined
    if ENTRY not in functions:
        raise _bad(f"the object code defines no {ENTRY} function")
    process = ctypes.CDLL(None)  # MCJIT also searches the process itself (libc, pthread)
    unresolved = sorted(
        s for s in undefined - functions
        if not llvm.address_of_symbol(s) and not hasattr(process, s)
    )  # fmt: skip
    if set(unresolved) & set(blas.SYMBOLS):
        blas.load_library()  # raises UnavailableError naming the package
    if unresolved:
        raise _bad(f"the object code needs symbol(s) {', '.join(unresolved)} this process lacks")


def load_native(program, header: dict, blobs: dict, options, pool_cache_dir=None):
    """An Executable running the stored code of ``program`` (no LLVM compilation).
    ``pool_cache_dir``: where the worker pool's object code may be cached, if it is not
    loaded yet (None: compiled).

    NativeMismatch when this machine cannot run it; InvalidArtifactError when the stored
    manifest or object code is malformed.
    """
    t0 = time.perf_counter()
    check_machine(header)
    if set(blobs) != {"manifest.json", "code.bin"}:
        raise _bad(f"expected sections manifest.json and code.bin, found {sorted(blobs)}")
    try:
        manifest = json.loads(blobs["manifest.json"].decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"manifest is not JSON ({exc})") from None
    payload = blobs["code.bin"]
    check_manifest(manifest, payload, program, header["fusion"])
    if header.get("object_sizes") != manifest["object_sizes"]:
        raise _bad("header and manifest disagree on the object sizes")
    objs = object_code(manifest, payload)
    check_objects(objs, pool_cache_dir)
    if blas.uses_blas(objs):
        blas.load_library()  # UnavailableError naming the package, before LLVM sees the code
    try:
        compiled = load_compiled(manifest, payload, options)
    except Exception as exc:  # noqa: BLE001 - validated above; anything left is malformed
        raise _bad(f"could not load the object code ({type(exc).__name__}: {exc})") from None
    kernels = [KernelInfo(n, tuple(ops), tuple(types)) for n, ops, types in manifest["kernels"]]
    stats = dict(manifest.get("stats", {})) if isinstance(manifest.get("stats"), dict) else {}
    stats["loaded_from_disk"] = True
    stats["loaded_native"] = True
    stats["compile_seconds"] = {"native_load": time.perf_counter() - t0}
    stored = manifest.get("stages") if isinstance(manifest.get("stages"), dict) else {}
    stages = StageTexts({k: v for k, v in stored.items() if isinstance(v, str)})
    stages["llvm"] = compiled.llvm_ir
    decisions = [tuple(d) for d in manifest.get("decisions", []) if isinstance(d, list)]
    return Executable("cpu", program, program, compiled.runner, kernels, stats, stages, decisions)
