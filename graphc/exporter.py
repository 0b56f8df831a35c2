"""Export compiled graphs: ``gc.export`` / ``gc.load`` artifacts and ``gc.export_c`` libraries
(the module is called exporter so that ``gc.export`` stays the function).

An artifact is one file (graphc/artifact.py container) holding: the optimised Program (JSON +
array blob), the variables' values, the signature, the graphc version, the target and machine
it was compiled for, and (when the backend can export it) the native code, each section
checksummed, and optionally signed (``signing_key``). Loading verifies every checksum (and the
signature when ``verify_key`` is given) first, checks the header's schema and that the
signature and variables agree with the stored Program, never unpickles, and runs the stored
code when the machine matches, else recompiles from the stored Program (and says why).
``native=False`` never runs stored code.
"""

from __future__ import annotations

import copy
import json
import platform
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import llvmlite.binding as llvm
import numpy as np

from . import config
from . import dtypes as _dt
from .artifact import _check_key, read_container, write_container
from .backends.cpu.native import (
    NativeMismatch,
    check_header_schema,
    check_machine,
    export_native,
    load_native,
)
from .backends.cpu.native import target as native_target
from .clib import export_c
from .compiler import check_target, compile_program
from .errors import FailedPreconditionError, InvalidArgumentError, InvalidArtifactError
from .executable import KernelInfo
from .options import CompileOptions
from .passes.dot import program_to_dot
from .passes.manager import optimize
from .program import extract
from .runtime_state import RunContext
from .serialize import dumps_program, loads_program
from .session import validate_feed
from .signature import named_tensors
from .version import __version__

__all__ = ["export", "load", "export_c", "Model"]


def _spec(t) -> dict:
    return {"dtype": t.dtype.name, "shape": None if t.shape is None else list(t.shape)}


def _machine() -> dict:
    info = {"python_machine": platform.machine(), "system": platform.system()}
    try:
        info["triple"] = llvm.get_process_triple()
        info["cpu"] = llvm.get_host_cpu_name()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def export(sess, path, inputs: dict, outputs: dict, *, signing_key: bytes | None = None,
           cpu: str = "host") -> str:  # fmt: skip
    """Write a self-contained artifact for ``outputs`` computed from ``inputs`` to ``path``.

    Holds the optimised graph, the current values of the variables it reads, and the
    compiled code for the session's target. ``signing_key`` (bytes): append an HMAC-SHA256 of
    the whole file under that key, for ``gc.load(path, verify_key=key)`` on the machines the
    artifact is moved to. ``cpu`` (cpu target): the CPU the stored machine code is for:
    "host" (this machine's CPU with all its features, the default), "generic" (the
    architecture's baseline, e.g. x86-64 with SSE2 only: runs natively on any CPU of the
    architecture, slower loops) or a CPU name such as "x86-64-v3" or "skylake-avx512"
    (ValueError names the valid ones). Returns the path.
    """
    if signing_key is not None:
        _check_key(signing_key, "signing_key")
    native_target(cpu)  # ValueError for an unknown CPU, before anything is compiled or written
    ins = named_tensors(sess, inputs, "inputs")
    outs = named_tensors(sess, outputs, "outputs")
    program = extract([t for _, t in outs], [], [t for _, t in ins])
    used_feeds = {name for _, name in program.feeds}
    for name, t in ins:
        if t.name not in used_feeds and not any(t is o for _, o in outs):
            warnings.warn(f"export: input {name!r} ({t.name}) does not affect the outputs",
                          stacklevel=2)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="graphc-export-") as tmp:
        options = sess.options
        if sess.target == "cpu" and cpu != "host":
            options = copy.copy(options)
            options.target_cpu = cpu  # compiled for that CPU (the cache key names it)
        if sess.target == "cpu" and options.cache_dir is None:
            # the native code is taken from the backend's disk-cache entry: give it one
            options = copy.copy(options)
            options.cache_dir = Path(tmp)
        exe = compile_program(program, sess.target, options)
        optimised = _optimised(program, exe, options)
        native = _export_native(program, optimised, exe, options)
        if native is None and options.cache_dir != Path(tmp) and _has_native(exe):
            # the session's cache directory is unusable (e.g. read-only, or not private):
            # use a private one
            options = copy.copy(options)
            options.cache_dir = Path(tmp)
            exe = compile_program(program, sess.target, options)
            optimised = _optimised(program, exe, options)
            native = _export_native(program, optimised, exe, options)
    var_names = sorted({
        n.attrs["var"] for n in optimised.nodes if n.op_def.variable
    })  # fmt: skip
    values = sess.variable_values()
    missing = [v for v in var_names if v not in values]
    readers = {n.attrs["var"] for n in optimised.nodes if n.op_def.source == "variable"}
    if any(v in readers for v in missing):
        raise FailedPreconditionError(
            f"export: variable(s) {', '.join(v for v in missing if v in readers)} are not "
            "initialised in this session"
        )
    prog_json, prog_blob = dumps_program(optimised)
    var_meta, var_parts, offset = [], [], 0
    for name in var_names:
        if name not in values:
            continue
        arr = np.array(values[name], order="C")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        var_meta.append({"name": name, "dtype": _dt.as_dtype(arr.dtype).name,
                         "shape": list(arr.shape), "offset": offset,
                         "nbytes": len(data)})  # fmt: skip
        var_parts.append(data)
        offset += len(data)
    sections = {
        "program.json": prog_json,
        "program.bin": prog_blob,
        "variables.json": json.dumps(var_meta).encode(),
        "variables.bin": b"".join(var_parts),
    }
    native_manifest = None
    if native is not None:
        native_manifest, blobs = native
        for k, v in blobs.items():
            sections[f"native/{k}"] = v
    header = {
        "graphc_version": __version__,
        "target": sess.target,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "signature": {
            "inputs": {name: _spec(t) for name, t in ins},
            "outputs": {name: _spec(t) for name, t in outs},
        },
        "input_order": [name for name, _ in ins],
        "output_order": [name for name, _ in outs],
        "program_hash": optimised.hash(),
        "machine": _machine(),
        "native": native_manifest,
        "kernels": [
            {"name": k.name, "ops": list(k.op_types), "node_names": list(k.ops)}
            for k in exe.kernels
        ],
        "stats": {k: v for k, v in exe.stats.items() if isinstance(v, int | float | str)},
    }
    write_container(path, header, sections, signing_key=signing_key)
    return str(path)


def _has_native(exe) -> bool:
    return exe.target == "cpu" and not exe.stats.get("host_fallback_ops")


def _optimised(program, exe, options):
    """The optimised Program ``exe`` runs: an executable loaded from the disk cache holds
    only the un-optimised one (its key), so the passes run again (deterministic: the entry
    was built from their result). The artifact stores it, and gc.load lowers it again to
    check the stored native code's manifest."""
    if exe.target == "reference" or not exe.stats.get("loaded_from_disk"):
        return exe.program
    return optimize(program, options).program


def _export_native(program, optimised, exe, options):
    """(header, sections) of the executable's native code, or None (not a cpu target, or
    nothing the backend can store, e.g. host-fallback ops)."""
    if exe.target != "cpu":
        return None
    return export_native(program, optimised, exe, options)


def _load_variables(meta_bytes: bytes, blob: bytes) -> dict:
    try:
        meta = json.loads(meta_bytes.decode())
        out = {}
        for m in meta:
            dt = _dt.as_dtype(m["dtype"]).np
            shape = tuple(int(d) for d in m["shape"])
            off, n = int(m["offset"]), int(m["nbytes"])
            if n != int(np.prod(shape, dtype=np.int64)) * dt.itemsize or off + n > len(blob):
                raise InvalidArtifactError(f"variable {m['name']!r}: data of the wrong size")
            arr = np.frombuffer(blob, dtype=dt.newbyteorder("<"), count=n // dt.itemsize,
                                offset=off).astype(dt).reshape(shape)  # fmt: skip
            arr.setflags(write=False)
            out[str(m["name"])] = arr
        return out
    except InvalidArtifactError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError,
            UnicodeDecodeError) as exc:  # fmt: skip
        raise InvalidArtifactError(f"malformed variables section: {exc}") from None


def _is_dtype_name(v) -> bool:
    try:
        return isinstance(v, str) and _dt.as_dtype(v).name == v
    except (TypeError, ValueError):
        return False


def _is_spec(v) -> bool:
    """{"dtype": name, "shape": None or [int >= 0 or None, ...]}"""
    if not isinstance(v, dict) or set(v) != {"dtype", "shape"} or not _is_dtype_name(v["dtype"]):
        return False
    shape = v["shape"]
    return shape is None or (isinstance(shape, list) and all(
        d is None or (type(d) is int and d >= 0) for d in shape))  # fmt: skip


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_header(header: dict, where: str) -> None:
    """InvalidArtifactError unless the graphc part of an artifact's header (read_container
    checked the container part) has the fields and types loading and ``describe`` use."""

    def bad(msg):
        return InvalidArtifactError(f"{where}: malformed header: {msg}")

    for key in ("graphc_version", "target", "created", "program_hash"):
        if not isinstance(header.get(key), str):
            raise bad(f"{key!r} must be a string")
    if header["target"] not in ("cpu", "cuda", "reference"):
        raise bad(f"unknown target {header['target']!r:.40}")
    sig = header.get("signature")
    if not isinstance(sig, dict) or set(sig) != {"inputs", "outputs"}:
        raise bad("'signature' must be an object with inputs and outputs")
    for part in ("inputs", "outputs"):
        specs = sig[part]
        if not isinstance(specs, dict) or not all(
            isinstance(k, str) and _is_spec(v) for k, v in specs.items()
        ):
            raise bad(f"signature {part} must map names to {{dtype, shape}}")
        order = header.get(part[:-1] + "_order")
        if (
            not _is_str_list(order)
            or sorted(order) != sorted(specs)
            or len(set(order)) != len(order)
        ):
            raise bad(f"'{part[:-1]}_order' must list the signature's {part}, each once")
    if not isinstance(header.get("machine"), dict):
        raise bad("'machine' must be an object")
    if header.get("native") is not None:
        check_header_schema(header["native"])
    if not isinstance(header.get("stats"), dict):
        raise bad("'stats' must be an object")
    kernels = header.get("kernels")
    if not isinstance(kernels, list) or not all(
        isinstance(k, dict) and isinstance(k.get("name"), str) and _is_str_list(k.get("ops"))
        and _is_str_list(k.get("node_names", [])) for k in kernels
    ):  # fmt: skip
        raise bad("'kernels' must be a list of {name, ops, node_names}")


def _read(path, verify_key=None):
    """(header, sections) of an artifact whose container and header are well-formed."""
    header, sections = read_container(path, verify_key)  # every checksum verified here
    check_header(header, str(path))
    for key in ("program.json", "program.bin", "variables.json", "variables.bin"):
        if key not in sections:
            raise InvalidArtifactError(f"{path}: missing section {key!r}")
    return header, sections


def _check_against_program(path, program, header, variables) -> None:
    """InvalidArtifactError unless the header's signature and the stored variables agree with
    the stored Program: the inputs are checked against the signature before a run, and the
    compiled code trusts the Program's shapes and dtypes."""
    sig = header["signature"]
    order = header["input_order"]
    for nid, _ in program.feeds:
        node = program.node(nid)
        k = node.attrs.get("index")
        if type(k) is not int or not 0 <= k < len(order):
            raise InvalidArtifactError(f"{path}: feed {node.name!r} reads no signature input")
        spec, have = sig["inputs"][order[k]], node.outs[0]
        shape = None if have.shape is None else list(have.shape)
        if spec["dtype"] != have.dtype.name or spec["shape"] != shape:
            raise InvalidArtifactError(
                f"{path}: signature input {order[k]!r} is {spec['dtype']}{spec['shape']}, the "
                f"stored program takes {have.dtype.name}{shape}"
            )
    for name, (nid, port) in zip(header["output_order"], program.fetches):
        have = program.node(nid).outs[port].dtype.name
        if sig["outputs"][name]["dtype"] != have:
            raise InvalidArtifactError(
                f"{path}: signature output {name!r} is {sig['outputs'][name]['dtype']}, the "
                f"stored program computes {have}"
            )
    for n in program.nodes:
        if n.op_def.source != "variable" or n.attrs.get("var") not in variables:
            continue
        value, spec = variables[n.attrs["var"]], n.outs[0]
        fits = spec.shape is None or (
            len(spec.shape) == value.ndim
            and all(d is None or d == v for d, v in zip(spec.shape, value.shape))
        )
        if value.dtype != spec.dtype.np or not fits:
            raise InvalidArtifactError(
                f"{path}: variable {n.attrs['var']!r} holds {value.dtype}{list(value.shape)}, "
                f"the stored program reads {spec.dtype.name}{spec.shape}"
            )


@dataclass(frozen=True)
class Signature:
    """Names, dtypes and shapes (None for dynamic dims) of a loaded model's inputs/outputs."""

    inputs: dict
    outputs: dict

    def __repr__(self) -> str:
        def fmt(d):
            return ", ".join(f"{k}: {v['dtype']}{tuple(v['shape'])}" for k, v in d.items())

        return f"Signature(inputs=({fmt(self.inputs)}), outputs=({fmt(self.outputs)}))"


class Model:
    """A loaded artifact: call it with keyword arrays, get a dict of numpy arrays."""

    def __init__(self, path, target=None, options: CompileOptions | None = None, native=True,
                 verify_key=None):  # fmt: skip
        header, sections = _read(path, verify_key)
        self.path = str(path)
        self.header = header
        self.program = loads_program(sections["program.json"], sections["program.bin"])
        self._variables = _load_variables(sections["variables.json"], sections["variables.bin"])
        sig = header["signature"]
        self.signature = Signature(dict(sig["inputs"]), dict(sig["outputs"]))
        self._input_order = list(header["input_order"])
        self._output_order = list(header["output_order"])
        if len(self._output_order) != len(self.program.fetches):
            raise InvalidArtifactError(f"{path}: signature and program disagree on outputs")
        _check_against_program(path, self.program, header, self._variables)
        self.target = check_target(target or header["target"])
        #: why the stored native code is not running (None when it runs, or there is none)
        self.recompiled_reason = None
        #: True when the stored machine code runs (no compilation happened on load)
        self.loaded_native = False
        # the worker pool's object code (loaded before stored code) may come from the default
        # disk cache, authenticated like every entry; nothing else on load reads a cache
        pool_cache = options.cache_dir if options is not None else config.default_cache_dir()
        options = options or CompileOptions(cache_dir=None)
        native_blobs = {
            k[len("native/") :]: v for k, v in sections.items() if k.startswith("native/")
        }
        self.executable = None
        has_native = bool(header.get("native")) and bool(native_blobs)
        if has_native and not native:
            self.recompiled_reason = "native code disabled by the caller (native=False)"
        elif has_native and self.target != header.get("target"):
            self.recompiled_reason = (
                f"target {self.target!r} differs from the exported {header.get('target')!r}"
            )
        elif has_native:
            self.executable = self._load_native(header["native"], native_blobs, options,
                                                pool_cache)  # fmt: skip
            self.loaded_native = self.executable is not None
        if self.executable is None:
            self.executable = compile_program(self.program, self.target, options)
            if self.recompiled_reason and native:
                warnings.warn(f"gc.load: recompiled {path} from its stored program: "
                              f"{self.recompiled_reason}", stacklevel=3)  # fmt: skip
        self._rng: dict = {}
        self._lock = threading.Lock()
        self._needed = [
            self._input_order[self.program.node(i).attrs["index"]] for i, _ in self.program.feeds
        ]
        self._specs = {
            name: SimpleNamespace(
                name=name, dtype=_dt.as_dtype(s["dtype"]),
                shape=None if s["shape"] is None else tuple(s["shape"]),
            )
            for name, s in self.signature.inputs.items()
        }  # fmt: skip

    def _load_native(self, header, blobs, options, pool_cache):
        try:
            return load_native(self.program, header, blobs, options, pool_cache)
        except NativeMismatch as exc:  # another machine: recompile from the Program
            self.recompiled_reason = str(exc)
            return None

    def __call__(self, **inputs) -> dict:
        """Run the model: ``m(x=array, ...)`` -> {output name: array}."""
        unknown = sorted(set(inputs) - set(self._specs))
        if unknown:
            raise InvalidArgumentError(
                f"unknown input(s) {', '.join(unknown)}; the model takes "
                f"{', '.join(self._input_order)}"
            )
        missing = [n for n in self._needed if n not in inputs]
        if missing:
            raise InvalidArgumentError(f"missing input(s) {', '.join(missing)}")
        # Feed nodes read ctx.feeds[attrs["index"]]: the position in the input order.
        values = [
            validate_feed(self._specs[name], inputs[name]) if name in inputs else None
            for name in self._input_order
        ]
        with self._lock:
            ctx = RunContext(dict(self._variables), self._rng, values)
            outs = self.executable.run(ctx, None)
            ctx.commit()
            self._variables = ctx.variables
        return {name: np.array(o, copy=True) for name, o in zip(self._output_order, outs)}

    def __repr__(self) -> str:
        return f"<gc.Model {self.path} target={self.target} {self.signature!r}>"


def load(path, target=None, *, native: bool = True, verify_key: bytes | None = None) -> Model:
    """Load an artifact written by ``gc.export``; ``target`` defaults to the exported one.

    The stored native code runs when this machine can run it (same triple, every CPU feature
    it was compiled for); otherwise the stored Program is recompiled, with a warning saying
    why. Running stored native code trusts the artifact's author: the checksums catch
    corruption, not a deliberately altered and re-checksummed file (the worker pool's object
    code may then come from the default compile cache). ``native=False`` never runs stored
    code: it always recompiles the stored Program, and reads no compile cache.
    ``verify_key`` (bytes): the artifact must carry an HMAC-SHA256 signature under that key
    (``gc.export(..., signing_key=key)``), else InvalidArtifactError.
    """
    return Model(path, target, native=native, verify_key=verify_key)


def describe(path) -> str:
    """Human-readable summary of an artifact: signature, ops, kernels, sizes and versions."""
    header, sections = _read(path)
    program = loads_program(sections["program.json"], sections["program.bin"])
    lines = [
        f"artifact      {path}",
        f"graphc        {header.get('graphc_version')} (format {header.get('format_version')})",
        f"target        {header.get('target')}   created {header.get('created')}",
        f"machine       {json.dumps(header.get('machine', {}))}",
        f"program hash  {header.get('program_hash')}",
        "inputs:",
    ]
    for name, s in header["signature"]["inputs"].items():
        lines.append(f"  {name}: {s['dtype']}{tuple(s['shape']) if s['shape'] else ()}")
    lines.append("outputs:")
    for name, s in header["signature"]["outputs"].items():
        lines.append(f"  {name}: {s['dtype']}{tuple(s['shape']) if s['shape'] else ()}")
    counts: dict = {}
    for n in program.nodes:
        counts[n.op] = counts.get(n.op, 0) + 1
    lines.append(f"ops ({len(program.nodes)}): " + ", ".join(f"{k} x{v}" for k, v in
                                                             sorted(counts.items())))  # fmt: skip
    kernels = header.get("kernels", [])
    lines.append(f"kernels ({len(kernels)}):")
    for k in kernels:
        lines.append(f"  {k['name']}: {', '.join(k['ops'])}")
    lines.append("sections:")
    for s in header.get("sections", []):
        lines.append(f"  {s['name']:<24} {s['size']:>12,d} bytes  sha256 {s['sha256'][:16]}")
    lines.extend(_describe_native(header.get("native"), sections))
    return "\n".join(lines)


def _describe_native(native, sections) -> list:
    if not native:
        return ["native code   no (loading recompiles the stored program)"]
    code = sections.get("native/code.bin", b"")
    feats = native.get("features") if _is_str_list(native.get("features")) else []
    lines = [
        f"native code   yes: {native.get('backend')} for {native.get('triple')}, "
        f"CPU {native.get('cpu')}, {len(code):,d} bytes",
        f"  needs CPU features ({len(feats)}): {', '.join(feats)}",
    ]
    try:
        check_machine(native)
        lines.append("  this machine: can run it (gc.load will not recompile)")
    except NativeMismatch as exc:
        lines.append(f"  this machine: cannot run it ({exc}); gc.load recompiles")
    except (InvalidArtifactError, ImportError) as exc:
        lines.append(f"  this machine: unusable native code ({exc})")
    return lines


def to_dot(path) -> str:
    """DOT drawing of an artifact's program with its kernels as clusters."""
    header, sections = _read(path)
    program = loads_program(sections["program.json"], sections["program.bin"])
    kernels = [KernelInfo(k["name"], tuple(k.get("node_names", ())), tuple(k["ops"]))
               for k in header.get("kernels", [])]  # fmt: skip
    return program_to_dot(program, kernels)
