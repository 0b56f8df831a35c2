"""``gc.export_c``: a model as ``name.h`` + ``libname.so``, callable from plain C (no Python).

The library is the cpu backend's object code (the same as a disk-cache entry: one
``gc_entry(bufs, dims, trace, nthreads)`` function, see ``llvm/render.py``) linked with a
generated C wrapper that does what ``llvm/runtime.py`` does in Python: derive the runtime
dims from the inputs' ``None`` sizes, evaluate the program's shape checks and every buffer
size, validate pointers and sizes, allocate temporaries, point the buffer table at the
caller's arrays and the embedded weights, make the one native call, and turn the status
flags (CheckNumerics, out-of-range indices) into negative error codes. Weights (the
variables' current values, and the constants the object code does not hold: those above
``llvm/render.py``'s EMBED_CONST_MAX_BYTES) are embedded with the assembler's ``.incbin``;
the BLAS the code calls (scipy-openblas32) is linked by absolute path with an rpath. Only
the ``name_*`` functions are exported (a version script hides ``gc_entry`` and the kernels).

Not supported (clear error at export time): random ops, programs that update variables,
inputs of unknown rank, ops that run on the host (no native lowering).

This module drives the export (compile, collect the object code and weights, run the C
compiler); ``spec`` indexes the program for the C generators, ``header`` writes ``name.h``,
``wrapper`` the C source around ``gc_entry``.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..backends.cpu import elfcheck
from ..backends.cpu.native import cache_entry, object_code, target
from ..backends.llvm import jit, payload_consts
from ..backends.llvm.cache import decode_program
from ..backends.llvm.render import Layout
from ..compiler import compile_program
from ..errors import FailedPreconditionError, UnavailableError, UnimplementedError
from ..program import extract
from ..signature import named_tensors
from .header import header_text
from .spec import CHECK_BASE, ERRORS, STATUS_BASE, LibrarySpec
from .wrapper import wrapper_text

__all__ = [
    "CHECK_BASE", "ERRORS", "STATUS_BASE", "X86_FEATURES", "export_c", "find_cc",
    "required_cpu_features",
]  # fmt: skip

#: x86-64 extensions the generated code may use, checked before the first native instruction
#: runs (LLVM and GCC's __builtin_cpu_supports spell these the same way)
X86_FEATURES = (
    "popcnt", "sse4.1", "sse4.2", "avx", "avx2", "fma", "bmi", "bmi2", "avx512f", "avx512vl",
    "avx512bw", "avx512dq", "avx512cd", "avx512vnni", "avx512vbmi", "avx512ifma",
)  # fmt: skip


def required_cpu_features(host: dict) -> list:
    """The extensions of ``X86_FEATURES`` enabled for the code generated for ``host`` (its LLVM
    feature string: the exporting machine's, or the ``cpu=`` one's): the library refuses to
    run (error CPU) on a CPU without one of them."""
    if not host["triple"].startswith("x86_64"):
        return []
    enabled = {f[1:] for f in str(host["features"]).split(",") if f.startswith("+")}
    return [f for f in X86_FEATURES if f in enabled]


def find_cc() -> str:
    """The system C compiler (cc, else gcc); UnavailableError if there is none."""
    for name in ("cc", "gcc"):
        path = shutil.which(name)
        if path:
            return path
    raise UnavailableError(
        "gc.export_c needs a C compiler (cc or gcc) on PATH to build the library; none found"
    )


def _blas_library() -> Path | None:
    try:
        import scipy_openblas32 as sob
    except ImportError:  # pragma: no cover - install_requires has it
        return None
    p = Path(sob.get_lib_dir()) / f"lib{sob.get_library()}.so"
    return p if p.exists() else None


def export_c(sess, directory, inputs: dict, outputs: dict, name: str = "model",
             cpu: str = "host") -> dict:  # fmt: skip
    """Write ``name.h`` and ``libname.so`` to ``directory``; returns their paths.

    ``cpu``: the CPU the library's code is for, as for ``gc.export``: "host" (this machine's,
    the default), "generic" (the architecture's baseline: any CPU of it) or a CPU name such
    as "x86-64-v3" (ValueError names the valid ones)."""
    tgt = target(cpu)  # ValueError for an unknown CPU, before anything is compiled or written
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise ValueError(f"export_c: name {name!r} must be a C identifier")
    if sess.target != "cpu":
        raise UnimplementedError(
            f"gc.export_c builds native code for the cpu target only; this session's target "
            f"is {sess.target!r} (use gc.Session(target='cpu'))"
        )
    cc = find_cc()
    ins = named_tensors(sess, inputs, "inputs")
    outs = named_tensors(sess, outputs, "outputs")
    for iname, t in ins:
        if t.shape is None:
            raise UnimplementedError(
                f"export_c: input {iname!r} has an unknown rank; the C API needs every "
                "input's rank (give the placeholder a shape, None for runtime sizes)"
            )
    program = extract([t for _, t in outs], [], [t for _, t in ins])

    with tempfile.TemporaryDirectory(prefix="graphc-export-c-") as tmp:
        tmp = Path(tmp)
        options = copy.copy(sess.options)
        options.cache_dir = tmp / "cache"
        options.position_independent = True  # linked into a shared library: no text relocations
        options.target_cpu = None if cpu == "host" else cpu
        exe = compile_program(program, "cpu", options)
        if exe.stats.get("host_fallback_ops"):
            raise UnimplementedError(
                "export_c: some ops have no native lowering and would run on the host "
                f"({exe.stats.get('host_fallback_reason')})"
            )
        entry = cache_entry(program, options)
        if entry is None:
            raise UnavailableError("export_c: the cpu backend produced no object code to link")
        manifest, payload = entry
        kp, consts = decode_program(manifest["program"])
        layout = Layout.of(kp)
        objs = object_code(manifest, payload)
        if any(b"gc_parallel_for" in o for o in objs):
            objs.append(jit.pool_object(options.target_cpu))  # the pool the parallel loops call
        machine = elfcheck.EM_X86_64 if tgt["triple"].startswith("x86_64") else 183
        undefined = set()
        for o in objs:
            undefined |= elfcheck.validate(o, machine).undefined
        # the large constants (slots of their own, not in the object code) ride with the weights
        consts = {**payload_consts(manifest, payload, kp, layout), **consts}
        weights, var_offsets = _weights(sess, kp, consts)
        spec = LibrarySpec(name, ins, outs, kp, layout, var_offsets, set(manifest["written_roots"]))
        spec.cpu_features = required_cpu_features(tgt)
        (tmp / f"{name}.h").write_text(header_text(spec, tgt))
        (tmp / "wrapper.c").write_text(wrapper_text(spec))
        (tmp / "weights.bin").write_bytes(weights)
        (tmp / "weights.S").write_text(
            f'\t.section .rodata\n\t.balign 64\n\t.globl {name}_gc_weights\n'
            f'\t.hidden {name}_gc_weights\n{name}_gc_weights:\n\t.incbin "weights.bin"\n'
            '\t.section .note.GNU-stack,"",@progbits\n'
        )  # fmt: skip
        (tmp / "exports.map").write_text(f"{{ global: {name}_*; local: *; }};\n")
        obj_files = []
        for i, o in enumerate(objs):
            p = tmp / f"code{i}.o"
            p.write_bytes(o)
            obj_files.append(str(p))
        cmd = [cc, "-shared", "-fPIC", "-O2", "-std=c11", "-o", f"lib{name}.so",
               "wrapper.c", "weights.S", *obj_files,
               "-Wl,--version-script=exports.map", "-Wl,-z,noexecstack"]  # fmt: skip
        if any(s.startswith("scipy_") for s in undefined):
            blas = _blas_library()
            if blas is None:
                raise UnavailableError("export_c: the code calls scipy-openblas32, not installed")
            cmd += [str(blas), f"-Wl,-rpath,{blas.parent}"]
        cmd += ["-lpthread", "-lm"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UnavailableError(
                f"export_c: the C compiler failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}"
            )
        out_dir = Path(directory)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"header": out_dir / f"{name}.h", "library": out_dir / f"lib{name}.so"}
        shutil.copyfile(tmp / f"{name}.h", paths["header"])
        shutil.copyfile(tmp / f"lib{name}.so", paths["library"])
    return {k: str(v) for k, v in paths.items()}


def _weights(sess, kp, consts) -> tuple[bytes, dict]:
    """The blob of every variable value (and const fetch, and constant too large to be in the
    object code) the program reads, 64-aligned."""
    if kp.rng:
        raise UnimplementedError("export_c: random ops are not supported by the C library yet")
    if kp.var_updates:
        raise UnimplementedError(
            "export_c: the outputs update variables (assign ops); export an inference graph"
        )
    values = sess.variable_values()
    parts, offsets, pos = [], {}, 0
    items = []
    for buf, var in kp.var_reads.items():
        if var not in values:
            raise FailedPreconditionError(f"export_c: variable {var} is not initialised")
        items.append((buf, values[var]))
    items += [(n, v) for n, v in consts.items()]
    for buf, value in items:
        arr = np.ascontiguousarray(np.asarray(value), dtype=kp.buffers[buf].dtype.np)
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        offsets[buf] = (pos, tuple(arr.shape))
        parts.append(data)
        pad = (-len(data)) % 64
        parts.append(b"\0" * pad)
        pos += len(data) + pad
    parts.append(b"\0" * 64)  # a dummy element for empty values
    return b"".join(parts), offsets
