"""``gc.export_c``: a model as ``name.h`` + ``libname.so``, callable from plain C (no Python).

The library is the cpu backend's object code (the same as a disk-cache entry: one
``gc_entry(bufs, dims, trace, nthreads)`` function, see ``llvm/render.py``) linked with a
generated C wrapper that does what ``llvm/runtime.py`` does in Python: derive the runtime
dims from the inputs' ``None`` sizes, evaluate the program's shape checks and every buffer
size, validate pointers and sizes, allocate temporaries, point the buffer table at the
caller's arrays and the embedded weights, make the one native call, and turn the status
flags (CheckNumerics, out-of-range indices) into negative error codes. Weights (the
variables' current values) are embedded with the assembler's ``.incbin``; the BLAS the code
calls (scipy-openblas32) is linked by absolute path with an rpath. Only the ``name_*``
functions are exported (a version script hides ``gc_entry`` and the kernels).

Not supported (clear error at export time): random ops, programs that update variables,
inputs of unknown rank, ops that run on the host (no native lowering).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .backends.cpu import elfcheck
from .backends.cpu.native import cache_entry, object_code, target
from .backends.llvm import jit
from .backends.llvm.cache import decode_program
from .backends.llvm.render import Layout
from .compiler import compile_program
from .errors import FailedPreconditionError, UnavailableError, UnimplementedError
from .expr import Call, Cast, Const, Dim, Math
from .kernel.ir import STATUS_BUFFER
from .kernel.printer import expr_text
from .program import extract
from .signature import named_tensors
from .version import __version__

#: error codes (the header repeats them); a failing shape check i returns CHECK_BASE - i,
#: a raised status slot s (CheckNumerics, index out of range) returns STATUS_BASE - s
ERRORS = {
    "NULL": (-1, "a required pointer (inputs, dims, outputs or one of their entries) is NULL"),
    "NEGATIVE_DIM": (-2, "a runtime dim is negative"),
    "SHAPE": (-3, "the inputs' sizes are inconsistent with each other"),
    "TOO_LARGE": (-4, "a buffer size overflows 64 bits"),
    "NOMEM": (-5, "out of memory"),
    "BAD_INDEX": (-6, "output index out of range"),
    "BAD_ARGUMENT": (-7, "invalid argument"),
    "CPU": (-8, "this CPU lacks an instruction set extension the library's code uses"),
}

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


CHECK_BASE = -100
STATUS_BASE = -1000

_C_TYPES = {
    "float16": "uint16_t (IEEE half)",
    "float32": "float",
    "float64": "double",
    "int32": "int32_t",
    "int64": "int64_t",
    "bool": "uint8_t (0 or 1)",
}

_BIN = {Math.ADD: "+", Math.SUB: "-", Math.MUL: "*", Math.EQ: "==", Math.NE: "!=",
        Math.LT: "<", Math.LE: "<=", Math.GT: ">", Math.GE: ">=", Math.AND: "&&",
        Math.OR: "||", Math.BITXOR: "^"}  # fmt: skip


def _cexpr(e, dim_index: dict) -> str:
    """C text of a size/check expression: int64 arithmetic whose overflow sets the
    ``gc_ovf`` flag of ``gc_plan`` (which then returns TOO_LARGE), never wraps silently."""
    if isinstance(e, Const):
        return f"INT64_C({int(e.value)})"
    if isinstance(e, Dim):
        return f"D[{dim_index[e.name]}]"
    if isinstance(e, Cast):
        return f"((int64_t)({_cexpr(e.x, dim_index)}))"
    if isinstance(e, Call):
        a = [_cexpr(x, dim_index) for x in e.args]
        if e.fn in (Math.ADD, Math.SUB, Math.MUL):  # checked: an overflow sets gc_ovf
            op = {Math.ADD: "add", Math.SUB: "sub", Math.MUL: "mul"}[e.fn]
            return f"gc_c{op}({a[0]}, {a[1]}, &gc_ovf)"
        if e.fn in _BIN:
            return f"((int64_t)(({a[0]}) {_BIN[e.fn]} ({a[1]})))"
        simple = {Math.FLOORDIV: "gc_floordiv", Math.DIV: "gc_floordiv", Math.MOD: "gc_mod",
                  Math.MAX: "gc_max", Math.MIN: "gc_min"}  # fmt: skip
        if e.fn in simple:
            return f"{simple[e.fn]}({a[0]}, {a[1]})"
        if e.fn == Math.SELECT:
            return f"(({a[0]}) ? ({a[1]}) : ({a[2]}))"
        if e.fn == Math.NOT:
            return f"((int64_t)!({a[0]}))"
        if e.fn == Math.NEG:
            return f"((int64_t)(0 - (uint64_t)({a[0]})))"
        if e.fn == Math.ABS:
            return f"gc_abs({a[0]})"
        if e.fn == Math.SHR:
            return f"((int64_t)((uint64_t)({a[0]}) >> (({a[1]}) & 63)))"
    raise UnimplementedError(f"export_c: cannot express the size expression {e!r} in C")


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
        weights, var_offsets = _weights(sess, kp, consts)
        spec = _Spec(name, ins, outs, kp, layout, var_offsets, set(manifest["written_roots"]))
        spec.cpu_features = required_cpu_features(tgt)
        header_text = spec.header(tgt, manifest)
        (tmp / f"{name}.h").write_text(header_text)
        (tmp / "wrapper.c").write_text(spec.wrapper())
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
    """The blob of every variable value (and const fetch) the program reads, 64-aligned."""
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


class _Spec:
    """Generates the header and the C wrapper of one program."""

    def __init__(self, name, ins, outs, kp, layout, var_offsets, written_roots):
        self.name, self.ins, self.outs, self.kp, self.layout = name, ins, outs, kp, layout
        self.var_offsets = var_offsets
        self.written = written_roots
        self.cpu_features: list = []  # checked before the code runs (required_cpu_features)
        self.dim_index = {d: i for i, d in enumerate(layout.dims)}
        self.bufs = list(kp.buffers)
        self.buf_index = {b: i for i, b in enumerate(self.bufs)}
        self.members: dict = {}
        for b, r in layout.root.items():
            self.members.setdefault(r, []).append(b)
        # user dims: the None axes of the inputs, in order
        self.user_dims = [(k, ax) for k, (_, t) in enumerate(ins)
                          for ax, d in enumerate(t.shape) if d is None]  # fmt: skip
        for root in layout.slots:
            b = kp.buffers[root]
            if b.kind == "input" and self.members[root] != [root]:
                raise UnimplementedError(f"export_c: input buffer {root} shares its storage")
        counts = {}
        for o in kp.outputs:
            counts[o] = counts.get(o, 0) + 1
        self.direct = {
            o for o in kp.outputs
            if kp.buffers[o].kind == "output" and layout.root[o] == o
            and self.members[o] == [o] and counts[o] == 1
        }  # fmt: skip

    # -- header ------------------------------------------------------------------------------
    def header(self, host, manifest) -> str:

        n = self.name
        N = n.upper()
        lines = [
            f"/* {n}.h: generated by graphc {__version__} (gc.export_c). Do not edit.",
            " *",
            f" * Machine code for {host['triple']}, CPU {host['cpu']}: it needs a CPU with the",
            " * features it was built for (gc.export_c's cpu=: the exporting machine's by",
            f" * default); on a CPU without {', '.join(self.cpu_features) or 'them'}, {n}_run",
            f" * returns {N}_ERR_CPU.",
            " *",
            f" * {n}_run(inputs, dims, outputs): dense row-major buffers, in this order:",
        ]
        d = 0
        for k, (iname, t) in enumerate(self.ins):
            dims = []
            for s in t.shape:
                if s is None:
                    dims.append(f"dims[{d}]")
                    d += 1
                else:
                    dims.append(str(s))
            lines.append(f" *   inputs[{k}]  {iname}: {_C_TYPES.get(t.dtype.name, t.dtype.name)}"
                         f" [{', '.join(dims)}]")  # fmt: skip
        for j, (oname, t) in enumerate(self.outs):
            lines.append(
                f" *   outputs[{j}] {oname}: {_C_TYPES.get(t.dtype.name, t.dtype.name)}, rank "
                f"{len(self.kp.buffers[self.kp.outputs[j]].shape)} (sizes: {n}_output_shape)"
            )
        lines += [
            f" * dims: the runtime sizes of the inputs' unknown dims, in order ({d} of them).",
            f" * Returns 0, or a negative code that {n}_error() explains. Error codes:",
        ]
        for key, (code, msg) in ERRORS.items():
            lines.append(f" *   {N}_ERR_{key} ({code}): {msg}")
        lines += [
            f" *   {CHECK_BASE} - i: shape check i of the model failed (e.g. mismatched sizes)",
            f" *   {STATUS_BASE} - s: a run-time check failed (CheckNumerics found NaN/Inf, an",
            " *       index out of range...)",
            " * Thread safety: calls may run concurrently (all state is per call).",
            " */",
            f"#ifndef {N}_H",
            f"#define {N}_H",
            "#include <stdint.h>",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            f"#define {N}_NUM_INPUTS {len(self.ins)}",
            f"#define {N}_NUM_OUTPUTS {len(self.outs)}",
            f"#define {N}_NUM_DIMS {len(self.user_dims)}",
        ]
        for key, (code, _) in ERRORS.items():
            lines.append(f"#define {N}_ERR_{key} ({code})")
        lines += [
            f"#define {N}_ERR_CHECK_BASE ({CHECK_BASE})",
            f"#define {N}_ERR_STATUS_BASE ({STATUS_BASE})",
            "",
            "/* Run the model; see above. */",
            f"int {n}_run(void **inputs, const int64_t *dims, void **outputs);",
            "/* A static message for a code returned by this library. */",
            f"const char *{n}_error(int code);",
            "/* Shape of output `index` for the given dims: writes its rank entries to `shape`",
            "   and returns the rank, or a negative error code. */",
            f"int {n}_output_shape(const int64_t *dims, int index, int64_t *shape);",
            f"/* Rank of output `index`, or {N}_ERR_BAD_INDEX. */",
            f"int {n}_output_rank(int index);",
            f"int {n}_num_inputs(void);",
            f"int {n}_num_outputs(void);",
            f"int {n}_num_dims(void);",
            "/* Threads the parallel loops may use (default: the online CPUs). 0 or the count. */",
            f"int {n}_set_threads(int n);",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            f"#endif /* {N}_H */",
            "",
        ]
        return "\n".join(lines)

    # -- wrapper -----------------------------------------------------------------------------
    def wrapper(self) -> str:
        n, kp, lay = self.name, self.kp, self.layout
        nb = len(self.bufs)
        maxr = max([len(b.shape) for b in kp.buffers.values()] + [1])
        nin = len(self.ins)
        nd = max(len(lay.dims), 1)
        c = []
        w = c.append
        w(f'#include "{n}.h"')
        w("#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n")
        w("extern int32_t gc_entry(void **bufs, const int64_t *dims, double *trace, "
          "int32_t nthreads);")  # fmt: skip
        w(f"extern const unsigned char {n}_gc_weights[];")
        w("extern void scipy_openblas_set_num_threads(int) __attribute__((weak));")
        w("static int gc_threads;")
        w("static void __attribute__((constructor)) gc_init(void) {\n"
          "  long c = sysconf(_SC_NPROCESSORS_ONLN);\n  gc_threads = c > 0 ? (int)c : 1;\n"
          "  /* the generated code splits GEMMs over its own threads: 1 BLAS thread each */\n"
          "  if (scipy_openblas_set_num_threads)\n"
          "    scipy_openblas_set_num_threads(1);\n}")  # fmt: skip
        checks = " &&\n    ".join(f'__builtin_cpu_supports("{f}")' for f in self.cpu_features)
        w("/* the code was generated for the exporting CPU: refuse a CPU that lacks one of its\n"
          "   extensions instead of dying of SIGILL */\n"
          "static int gc_cpu_ok(void) {\n  static volatile int ok = -1;\n"
          f"  if (ok < 0) {{\n    __builtin_cpu_init();\n    ok = {checks or '1'};\n  }}\n"
          "  return ok;\n}")  # fmt: skip
        # the worker pool (llvm/pool.py, linked when the code has parallel loops): join its
        # threads before the library's code is unmapped (dlclose, exit)
        w("extern void gc_pool_shutdown(void) __attribute__((weak));")
        w("static void __attribute__((destructor)) gc_fini(void) {\n"
          "  if (gc_pool_shutdown)\n    gc_pool_shutdown();\n}")  # fmt: skip
        w("static int64_t gc_floordiv(int64_t a, int64_t b) {\n"
          "  if (b == 0) return 0;\n  if (b == -1) return (int64_t)(0 - (uint64_t)a);\n"
          "  int64_t q = a / b;\n  if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;\n"
          "  return q;\n}")  # fmt: skip
        w("static int64_t gc_mod(int64_t a, int64_t b) {\n"
          "  if (b == 0 || b == -1) return 0;\n  int64_t r = a % b;\n"
          "  if (r != 0 && ((r < 0) != (b < 0))) r += b;\n  return r;\n}")  # fmt: skip
        for op in ("add", "sub", "mul"):
            w(f"static int64_t gc_c{op}(int64_t a, int64_t b, int *ovf) {{\n"
              f"  int64_t r;\n  if (__builtin_{op}_overflow(a, b, &r)) *ovf = 1;\n"
              "  return r;\n}")  # fmt: skip
        w("static int64_t gc_max(int64_t a, int64_t b) { return a > b ? a : b; }")
        w("static int64_t gc_min(int64_t a, int64_t b) { return a < b ? a : b; }")
        w("static int64_t gc_abs(int64_t a) { return a < 0 ? (int64_t)(0 - (uint64_t)a) : a; }")
        w(f"struct gc_plan {{\n  int64_t D[{nd}];\n  int64_t shape[{nb}][{maxr}];\n"
          f"  int64_t count[{nb}];\n  int64_t bytes[{nb}];\n}};")  # fmt: skip
        # plan: dims, checks, every buffer's shape, count and bytes
        w("static int gc_plan(const int64_t *dims, struct gc_plan *p) {")
        w("  int gc_ovf = 0;")
        if self.user_dims:
            w("  if (!dims) return -1;")
        w(f"  int64_t ishape[{max(nin, 1)}][{max([len(t.shape) for _, t in self.ins] + [1])}];")
        d = 0
        for k, (_, t) in enumerate(self.ins):
            for ax, s in enumerate(t.shape):
                if s is None:
                    w(f"  ishape[{k}][{ax}] = dims[{d}];")
                    w(f"  if (dims[{d}] < 0) return -2;")
                    d += 1
                else:
                    w(f"  ishape[{k}][{ax}] = INT64_C({int(s)});")
        w("  int64_t *D = p->D;\n  D[0] = 0;")
        for name, (k, axis) in kp.dims.items():
            t = self.ins[k][1]
            if axis >= len(t.shape):
                raise UnimplementedError(f"export_c: dim {name} reads a missing input axis")
            w(f"  D[{self.dim_index[name]}] = ishape[{k}][{axis}];")
        for i, check in enumerate(kp.dim_checks):
            w(f"  if (!({_cexpr(check[0], self.dim_index)})) return {CHECK_BASE - i};")
            w("  if (gc_ovf) return -4;")
        for bi, b in enumerate(self.bufs):
            buf = kp.buffers[b]
            w(f"  {{ /* {b} */ int64_t n = 1;")
            for ax, e in enumerate(buf.shape):
                w(f"    p->shape[{bi}][{ax}] = {_cexpr(e, self.dim_index)};")
                w("    if (gc_ovf) return -4;")
                w(f"    if (p->shape[{bi}][{ax}] < 0) return -3;")
                w(f"    if (__builtin_mul_overflow(n, p->shape[{bi}][{ax}], &n)) return -4;")
            w(f"    p->count[{bi}] = n;")
            w(f"    if (__builtin_mul_overflow(n, (int64_t){buf.dtype.itemsize}, "
              f"&p->bytes[{bi}])) return -4;\n  }}")  # fmt: skip
        # inputs must have the sizes the program derives from the dims
        for k, (_, t) in enumerate(self.ins):
            bname = kp.inputs[k] if k < len(kp.inputs) else None
            if bname is None:
                continue
            bi = self.buf_index[bname]
            if len(kp.buffers[bname].shape) != len(t.shape):
                raise UnimplementedError(f"export_c: input {k} rank differs from its buffer")
            for ax in range(len(t.shape)):
                w(f"  if (p->shape[{bi}][{ax}] != ishape[{k}][{ax}]) return -3;")
        for buf, (_, shape) in self.var_offsets.items():
            bi = self.buf_index[buf]
            b = kp.buffers[buf]
            if len(b.shape) != len(shape):
                raise UnimplementedError(f"export_c: stored value of {buf} has the wrong rank")
            for ax, s in enumerate(shape):
                w(f"  if (p->shape[{bi}][{ax}] != INT64_C({s})) return -3;")
        w("  return 0;\n}")
        # output shapes
        w(f"int {n}_output_rank(int index) {{")
        w("  switch (index) {")
        for j, o in enumerate(kp.outputs):
            w(f"  case {j}: return {len(kp.buffers[o].shape)};")
        w("  default: return -6;\n  }\n}")
        w(f"static const int gc_out_buf[{max(len(kp.outputs), 1)}] = "
          f"{{{', '.join(str(self.buf_index[o]) for o in kp.outputs) or '0'}}};")  # fmt: skip
        w(f"int {n}_output_shape(const int64_t *dims, int index, int64_t *shape) {{")
        w(f"  if (index < 0 || index >= {len(kp.outputs)}) return -6;")
        w("  if (!shape) return -1;")
        w("  struct gc_plan p;\n  int rc = gc_plan(dims, &p);\n  if (rc) return rc;")
        w(f"  int r = {n}_output_rank(index);")
        w("  for (int i = 0; i < r; i++) shape[i] = p.shape[gc_out_buf[index]][i];")
        w("  return r;\n}")
        w(f"int {n}_num_inputs(void) {{ return {nin}; }}")
        w(f"int {n}_num_outputs(void) {{ return {len(self.outs)}; }}")
        w(f"int {n}_num_dims(void) {{ return {len(self.user_dims)}; }}")
        w(f"int {n}_set_threads(int t) {{ if (t < 1) return -7; gc_threads = t; return 0; }}")
        w(self._error_fn())
        w(self._run_fn())
        return "\n".join(c) + "\n"

    def _error_fn(self) -> str:
        n, kp = self.name, self.kp
        lines = [f"const char *{n}_error(int code) {{", "  switch (code) {",
                 '  case 0: return "ok";']  # fmt: skip
        for code, msg in ERRORS.values():
            lines.append(f"  case {code}: return {json.dumps(msg)};")
        for i, check in enumerate(kp.dim_checks):
            msg = _static_message(check)
            lines.append(f"  case {CHECK_BASE - i}: return {json.dumps(msg)};")
        for ch in kp.checks:
            suffix = {"nan": " : Tensor had NaN values", "inf": " : Tensor had Inf values"}
            text = str(ch.message) + suffix.get(ch.kind, "")
            lines.append(f"  case {STATUS_BASE - ch.slot}: return {json.dumps(text)};")
        lines += ['  default: return "unknown error code";', "  }", "}"]
        return "\n".join(lines)

    def _run_fn(self) -> str:
        n, kp, lay = self.name, self.kp, self.layout
        slots = lay.slots
        ns = max(len(slots), 1)
        lines = []
        w = lines.append
        w(f"int {n}_run(void **inputs, const int64_t *dims, void **outputs) {{")
        w(f"  if (!gc_cpu_ok()) return {ERRORS['CPU'][0]};")
        if self.ins:
            w("  if (!inputs) return -1;")
        w("  if (!outputs) return -1;")
        w("  struct gc_plan p;\n  int rc = gc_plan(dims, &p);\n  if (rc) return rc;")
        for k in range(len(self.ins)):
            bname = kp.inputs[k] if k < len(kp.inputs) else None
            if bname is not None:
                w(f"  if (!inputs[{k}] && p.count[{self.buf_index[bname]}] > 0) return -1;")
        for j, o in enumerate(kp.outputs):
            w(f"  if (!outputs[{j}] && p.count[{self.buf_index[o]}] > 0) return -1;")
        w(f"  void *desc[{ns}][3];\n  void *table[{ns}];\n  void *owned[{ns}];")
        w("  int nowned = 0;\n  int64_t zero[8] = {0};\n  (void)zero;\n  rc = 0;")
        w(f"  const unsigned char *W = {n}_gc_weights;\n  (void)W;")
        # storage per slot
        for s, root in enumerate(slots):
            b = kp.buffers[root]
            members = self.members[root]
            sizes = [f"p.bytes[{self.buf_index[m]}]" for m in members]
            w(f"  {{ /* slot {s}: {root} ({b.kind}) */")
            w(f"    int64_t nb = {sizes[0]};")
            for sz in sizes[1:]:
                w(f"    if ({sz} > nb) nb = {sz};")
            if b.kind == "input":
                k = list(kp.inputs).index(root)
                w(f"    void *data = nb > 0 ? inputs[{k}] : (void *)zero;")
            elif b.kind == "var" and root in self.var_offsets and root not in self.written:
                off = self.var_offsets[root][0]
                w(f"    void *data = (void *)(W + {off});")
            elif b.kind == "output" and root in self.direct:
                j = list(kp.outputs).index(root)
                w(f"    void *data = nb > 0 ? outputs[{j}] : (void *)zero;")
            else:
                w("    void *data = calloc(1, (size_t)(nb > 64 ? nb : 64));")
                w("    if (!data) { rc = -5; goto done; }")
                w("    owned[nowned++] = data;")
                if b.kind == "var" and root in self.var_offsets:
                    off = self.var_offsets[root][0]
                    w(f"    memcpy(data, W + {off}, (size_t)nb);")
                elif b.kind in ("var", "rng"):
                    raise UnimplementedError(f"export_c: buffer {root} ({b.kind}) has no value")
            w(f"    desc[{s}][0] = 0; desc[{s}][1] = 0; desc[{s}][2] = data;")
            w(f"    table[{s}] = desc[{s}];\n  }}")
        w("  gc_entry(table, p.D, 0, gc_threads);")
        if kp.checks:
            s = slots.index(lay.root[STATUS_BUFFER])
            w(f"  {{ const int32_t *st = (const int32_t *)desc[{s}][2];")
            for ch in sorted(kp.checks, key=lambda c: c.slot):
                w(f"    if (st[{ch.slot}]) {{ rc = {STATUS_BASE - ch.slot}; goto done; }}")
            w("  }")
        # outputs that were not written in place: copy them
        for j, o in enumerate(kp.outputs):
            if o in self.direct:
                continue
            b = kp.buffers[o]
            bi = self.buf_index[o]
            if b.kind == "input":
                src = f"inputs[{list(kp.inputs).index(o)}]"
            elif b.kind == "const" or (b.kind == "var" and lay.root[o] not in slots):
                src = f"(W + {self.var_offsets[o][0]})"
            else:
                src = f"desc[{slots.index(lay.root[o])}][2]"
            w(f"  if (p.bytes[{bi}] > 0) memcpy(outputs[{j}], {src}, (size_t)p.bytes[{bi}]);")
        w("done:")
        w("  for (int i = 0; i < nowned; i++) free(owned[i]);")
        w("  return rc;\n}")
        return "\n".join(lines)


def _static_message(check) -> str:
    """A shape check's message for a C string: its size fields shown as the expressions
    (``d0_1``...), since the C library returns one fixed text per error code."""
    msg = str(check[1])
    args = check[2] if len(check) > 2 else ()
    if not args:
        return msg

    try:
        return msg.format(*(expr_text(a) for a in args))
    except (IndexError, KeyError, ValueError):
        return msg
