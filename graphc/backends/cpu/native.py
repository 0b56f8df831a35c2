"""Native code in ``gc.export`` artifacts for the cpu target: store it, check it, load it.

``export_native`` takes the backend's disk-cache entry of an Executable (the JSON manifest
plus object code of ``llvm/cache.py``: exactly what a warm start loads) and describes the
machine it needs: target triple, CPU name (informational) and the CPU features the code was
compiled with. ``load_native`` runs it on a later load without LLVM compiling anything,
after checking, in this order:

1. the machine: same triple, and the host CPU has every feature the code was compiled for
   (else ``NativeMismatch``: the caller recompiles from the stored Program and says why);
2. the manifest: well-formed JSON with the fields and types the runtime uses, a
   KernelProgram that decodes and is consistent (buffers, aliases, dims, feeds, fetches,
   checks) and agrees with the stored Program's fetch dtypes;
3. the object code: ``elfcheck.validate`` (every offset, index, relocation in bounds and
   of a known kind), the ``gc_entry`` function present, every external symbol resolvable
   in this process (LLVM aborts on an unresolved one).

Any failure in 2-3 is ``InvalidArtifactError``. Checksums (artifact.py) are verified before
any of this. The machine code itself cannot be verified: an artifact whose native section
was altered and re-checksummed on purpose can run arbitrary code, so load native code only
from artifacts you trust (``gc.load(path, native=False)`` always recompiles).
"""

from __future__ import annotations

import json
import time

from ...errors import InvalidArtifactError

FORMAT = 1
BACKEND = "llvm-cpu"
ENTRY = "gc_entry"


class NativeMismatch(Exception):
    """The stored code cannot run on this machine (the reason names what differs)."""


def _features(flat: str) -> set:
    """The enabled ("+name") features of an LLVM feature string."""
    return {f[1:] for f in flat.split(",") if f.startswith("+")}


def host() -> dict:
    from ..llvm import jit

    return jit.host()


def cache_entry(source, options):
    """(manifest, payload) of ``source``'s disk-cache entry under ``options``, or None."""
    if options.cache_dir is None:
        return None
    from ..llvm import cache

    key = cache.cache_key(source.hash(), options.key(), host())
    return cache.load(options.cache_dir, key)


def object_code(manifest: dict, payload: bytes) -> list:
    """The object file of each module in a cache payload (the rest is compressed IR)."""
    sizes = manifest["object_sizes"]
    objs, pos = [], 0
    for n in sizes:
        objs.append(payload[pos : pos + n])
        pos += n
    return objs


def export_native(source, exe, options):
    """(header dict, sections dict) holding ``exe``'s native code, or None when it has
    none to store (host-fallback ops, or the cache entry could not be written)."""
    if exe.target != "cpu" or exe.stats.get("host_fallback_ops"):
        return None
    entry = cache_entry(source, options)
    if entry is None:
        return None
    manifest, payload = entry
    h = host()
    header = {
        "format": FORMAT,
        "backend": BACKEND,
        "triple": h["triple"],
        "cpu": h["cpu"],
        "features": sorted(_features(h["features"])),
        "object_sizes": list(manifest["object_sizes"]),
        "llvmlite": _llvmlite_version(),
    }
    man = dict(manifest)
    man.pop("key", None)  # the cache key of the exporting machine means nothing elsewhere
    sections = {
        "manifest.json": json.dumps(man, separators=(",", ":")).encode(),
        "code.bin": payload,
    }
    return header, sections


def _llvmlite_version() -> str:
    import llvmlite

    return llvmlite.__version__


def check_machine(header: dict) -> None:
    """NativeMismatch unless this machine can run code described by ``header``."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidArtifactError(f"native code: unknown format {header!r:.80}")
    if header.get("backend") != BACKEND:
        raise NativeMismatch(f"native code is for backend {header.get('backend')!r}")
    feats = header.get("features")
    triple = header.get("triple")
    if not isinstance(triple, str) or not isinstance(feats, list):
        raise InvalidArtifactError("native code: triple/features missing or malformed")
    if not all(isinstance(f, str) for f in feats):
        raise InvalidArtifactError("native code: features must be strings")
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


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_manifest(manifest, payload: bytes, program):
    """(KernelProgram, consts) of a manifest after checking what the runtime relies on."""
    from ...kernel.runtime import eval_int
    from ..llvm.cache import decode_program
    from ..llvm.render import Layout

    if not isinstance(manifest, dict):
        raise _bad("manifest is not an object")
    sizes = manifest.get("object_sizes")
    if (
        not isinstance(sizes, list)
        or not sizes
        or not all(isinstance(s, int) and s > 0 for s in sizes)
    ):
        raise _bad("object_sizes missing or malformed")
    ir_size = manifest.get("ir_zlib_size", 0)
    if not isinstance(ir_size, int) or ir_size < 0 or sum(sizes) + ir_size != len(payload):
        raise _bad("object sizes do not add up to the stored code")
    kernels = manifest.get("kernels")
    if not isinstance(kernels, list) or not all(
        isinstance(k, list) and len(k) == 3 and isinstance(k[0], str) and _is_str_list(k[1])
        and _is_str_list(k[2]) for k in kernels
    ):  # fmt: skip
        raise _bad("kernel list malformed")
    if not _is_str_list(manifest.get("written_roots")):
        raise _bad("written_roots malformed")
    if not isinstance(manifest.get("program"), dict):
        raise _bad("program missing")
    try:
        kp, consts = decode_program(manifest["program"])
        layout = Layout.of(kp)
    except InvalidArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a malformed manifest
        raise _bad(f"runtime description does not decode ({type(exc).__name__}: {exc})") from None
    bufs = kp.buffers
    kinds = {"input", "output", "temp", "const", "var", "rng", "status"}
    for b in bufs.values():
        if b.kind not in kinds:
            raise _bad(f"buffer {b.name}: unknown kind {b.kind!r}")
        if b.alias_of is not None and b.alias_of not in bufs:
            raise _bad(f"buffer {b.name}: aliases unknown buffer {b.alias_of!r}")
    if set(manifest["written_roots"]) - set(bufs):
        raise _bad("written_roots names unknown buffers")
    n_feeds = len(kp.inputs)
    fed = {program.node(i).attrs.get("index") for i, _ in program.feeds}
    for k, name in enumerate(kp.inputs):
        if name is None:
            continue
        if k not in fed or name not in bufs or bufs[name].kind != "input":
            raise _bad(f"input {k} names no input buffer or no input of the program")
    for name, src in kp.dims.items():
        if not (isinstance(src, tuple) and len(src) == 2 and all(isinstance(v, int) for v in src)):
            raise _bad(f"dim {name}: malformed source")
        k, axis = src
        if (
            not 0 <= k < n_feeds
            or kp.inputs[k] is None
            or not 0 <= axis < len(bufs[kp.inputs[k]].shape)
        ):
            raise _bad(f"dim {name}: reads axis {axis} of feed {k}, which does not exist")
    if len(kp.outputs) != len(program.fetches):
        raise _bad("the code returns a different number of outputs than the program")
    for name, (nid, port) in zip(kp.outputs, program.fetches):
        if name not in bufs:
            raise _bad(f"output {name!r} names no buffer")
        want = program.node(nid).outs[port].dtype
        if bufs[name].dtype != want:
            raise _bad(f"output {name}: dtype {bufs[name].dtype} but the program says {want}")
        if bufs[name].kind == "const" and name not in consts:
            raise _bad(f"const output {name} has no value")
    for buf, var in kp.var_reads.items():
        if buf not in bufs or bufs[buf].kind != "var" or not isinstance(var, str):
            raise _bad(f"variable read {var!r} names no var buffer")
    for var, buf in kp.var_updates.items():
        if buf not in bufs or not isinstance(var, str):
            raise _bad(f"variable update {var!r} names no buffer")
    from ...kernel.ir import RNG_BUFFER, STATUS_BUFFER

    if kp.rng and (RNG_BUFFER not in bufs or bufs[RNG_BUFFER].kind != "rng"):
        raise _bad("random ops without an rng buffer")
    dims = {d: 1 for d in kp.dims}
    try:
        shapes = {n: [int(eval_int(d, dims)) for d in b.shape] for n, b in bufs.items()}
    except Exception as exc:  # noqa: BLE001
        raise _bad(f"a buffer size does not evaluate ({exc})") from None
    if kp.rng and shapes[RNG_BUFFER] != [len(kp.rng)]:
        raise _bad("rng buffer size does not match the random ops")
    if kp.checks:
        if STATUS_BUFFER not in bufs or bufs[STATUS_BUFFER].kind != "status":
            raise _bad("checks without a status buffer")
        n_status = 1
        for s in shapes[STATUS_BUFFER]:
            n_status *= s
        if any(not 0 <= c.slot < n_status for c in kp.checks):
            raise _bad("a check's status slot is out of range")
    for n, v in consts.items():
        if n not in bufs or list(v.shape) != shapes[n] or v.dtype != bufs[n].dtype.np:
            raise _bad(f"const {n}: value does not match its buffer")
    return kp, consts, layout


class _LazyStages(dict):
    """Stage texts; a callable value (the stored IR, decompressed) is computed on access."""

    def __getitem__(self, key):
        v = super().__getitem__(key)
        if callable(v):
            v = v()
            self[key] = v
        return v


def check_objects(objs: list) -> None:
    """elfcheck every object; gc_entry defined; every external symbol resolvable here."""
    import ctypes

    import llvmlite.binding as llvm

    from ..llvm import jit
    from . import elfcheck

    jit._init()  # loads the BLAS and registers its symbols
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
    if unresolved:
        raise _bad(f"the object code needs symbol(s) {', '.join(unresolved)} this process lacks")


def load_native(program, header: dict, blobs: dict, options):
    """An Executable running the stored code of ``program`` (no LLVM compilation).

    NativeMismatch when this machine cannot run it; InvalidArtifactError when the stored
    manifest or object code is malformed.
    """
    from ...executable import Executable, KernelInfo
    from ..llvm import load_compiled

    t0 = time.perf_counter()
    check_machine(header)
    if set(blobs) != {"manifest.json", "code.bin"}:
        raise _bad(f"expected sections manifest.json and code.bin, found {sorted(blobs)}")
    try:
        manifest = json.loads(blobs["manifest.json"].decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"manifest is not JSON ({exc})") from None
    payload = blobs["code.bin"]
    check_manifest(manifest, payload, program)
    if header.get("object_sizes") != manifest["object_sizes"]:
        raise _bad("header and manifest disagree on the object sizes")
    check_objects(object_code(manifest, payload))
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
    stages = _LazyStages({k: v for k, v in stored.items() if isinstance(v, str)})
    stages["llvm"] = compiled.llvm_ir
    decisions = [tuple(d) for d in manifest.get("decisions", []) if isinstance(d, list)]
    return Executable("cpu", program, program, compiled.runner, kernels, stats, stages, decisions)
