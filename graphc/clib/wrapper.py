"""The C source linked around the cpu backend's object code in a ``gc.export_c`` library: what
``llvm/runtime.py`` does in Python, in C. It derives the runtime dims from the inputs' sizes,
evaluates the shape checks and every buffer size with overflow-checked int64 arithmetic
(``_cexpr``), validates pointers, allocates temporaries, points the buffer table at the
caller's arrays and the embedded weights, makes the one native call and turns the status
flags into error codes."""

from __future__ import annotations

import json

from ..errors import UnimplementedError
from ..expr import Call, Cast, Const, Dim, Math
from ..kernel.ir import STATUS_BUFFER
from ..kernel.printer import expr_text
from .spec import CHECK_BASE, ERRORS, STATUS_BASE, LibrarySpec

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


def wrapper_text(spec: LibrarySpec) -> str:
    """The C wrapper around ``gc_entry``: the size plan, the checks and the ``name_*``
    functions the header declares."""
    n, kp, lay = spec.name, spec.kp, spec.layout
    nb = len(spec.bufs)
    maxr = max([len(b.shape) for b in kp.buffers.values()] + [1])
    nin = len(spec.ins)
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
    checks = " &&\n    ".join(f'__builtin_cpu_supports("{f}")' for f in spec.cpu_features)
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
    if spec.user_dims:
        w("  if (!dims) return -1;")
    w(f"  int64_t ishape[{max(nin, 1)}][{max([len(t.shape) for _, t in spec.ins] + [1])}];")
    d = 0
    for k, (_, t) in enumerate(spec.ins):
        for ax, s in enumerate(t.shape):
            if s is None:
                w(f"  ishape[{k}][{ax}] = dims[{d}];")
                w(f"  if (dims[{d}] < 0) return -2;")
                d += 1
            else:
                w(f"  ishape[{k}][{ax}] = INT64_C({int(s)});")
    w("  int64_t *D = p->D;\n  D[0] = 0;")
    for name, (k, axis) in kp.dims.items():
        t = spec.ins[k][1]
        if axis >= len(t.shape):
            raise UnimplementedError(f"export_c: dim {name} reads a missing input axis")
        w(f"  D[{spec.dim_index[name]}] = ishape[{k}][{axis}];")
    for i, check in enumerate(kp.dim_checks):
        w(f"  if (!({_cexpr(check[0], spec.dim_index)})) return {CHECK_BASE - i};")
        w("  if (gc_ovf) return -4;")
    for bi, b in enumerate(spec.bufs):
        buf = kp.buffers[b]
        w(f"  {{ /* {b} */ int64_t n = 1;")
        for ax, e in enumerate(buf.shape):
            w(f"    p->shape[{bi}][{ax}] = {_cexpr(e, spec.dim_index)};")
            w("    if (gc_ovf) return -4;")
            w(f"    if (p->shape[{bi}][{ax}] < 0) return -3;")
            w(f"    if (__builtin_mul_overflow(n, p->shape[{bi}][{ax}], &n)) return -4;")
        w(f"    p->count[{bi}] = n;")
        w(f"    if (__builtin_mul_overflow(n, (int64_t){buf.dtype.itemsize}, "
          f"&p->bytes[{bi}])) return -4;\n  }}")  # fmt: skip
    # inputs must have the sizes the program derives from the dims
    for k, (_, t) in enumerate(spec.ins):
        bname = kp.inputs[k] if k < len(kp.inputs) else None
        if bname is None:
            continue
        bi = spec.buf_index[bname]
        if len(kp.buffers[bname].shape) != len(t.shape):
            raise UnimplementedError(f"export_c: input {k} rank differs from its buffer")
        for ax in range(len(t.shape)):
            w(f"  if (p->shape[{bi}][{ax}] != ishape[{k}][{ax}]) return -3;")
    for buf, (_, shape) in spec.var_offsets.items():
        bi = spec.buf_index[buf]
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
      f"{{{', '.join(str(spec.buf_index[o]) for o in kp.outputs) or '0'}}};")  # fmt: skip
    w(f"int {n}_output_shape(const int64_t *dims, int index, int64_t *shape) {{")
    w(f"  if (index < 0 || index >= {len(kp.outputs)}) return -6;")
    w("  if (!shape) return -1;")
    w("  struct gc_plan p;\n  int rc = gc_plan(dims, &p);\n  if (rc) return rc;")
    w(f"  int r = {n}_output_rank(index);")
    w("  for (int i = 0; i < r; i++) shape[i] = p.shape[gc_out_buf[index]][i];")
    w("  return r;\n}")
    w(f"int {n}_num_inputs(void) {{ return {nin}; }}")
    w(f"int {n}_num_outputs(void) {{ return {len(spec.outs)}; }}")
    w(f"int {n}_num_dims(void) {{ return {len(spec.user_dims)}; }}")
    w(f"int {n}_set_threads(int t) {{ if (t < 1) return -7; gc_threads = t; return 0; }}")
    w(_error_fn(spec))
    w(_run_fn(spec))
    return "\n".join(c) + "\n"


def _error_fn(spec: LibrarySpec) -> str:
    n, kp = spec.name, spec.kp
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


def _run_fn(spec: LibrarySpec) -> str:
    n, kp, lay = spec.name, spec.kp, spec.layout
    slots = lay.slots
    ns = max(len(slots), 1)
    lines = []
    w = lines.append
    w(f"int {n}_run(void **inputs, const int64_t *dims, void **outputs) {{")
    w(f"  if (!gc_cpu_ok()) return {ERRORS['CPU'][0]};")
    if spec.ins:
        w("  if (!inputs) return -1;")
    w("  if (!outputs) return -1;")
    w("  struct gc_plan p;\n  int rc = gc_plan(dims, &p);\n  if (rc) return rc;")
    for k in range(len(spec.ins)):
        bname = kp.inputs[k] if k < len(kp.inputs) else None
        if bname is not None:
            w(f"  if (!inputs[{k}] && p.count[{spec.buf_index[bname]}] > 0) return -1;")
    for j, o in enumerate(kp.outputs):
        w(f"  if (!outputs[{j}] && p.count[{spec.buf_index[o]}] > 0) return -1;")
    w(f"  void *desc[{ns}][3];\n  void *table[{ns}];\n  void *owned[{ns}];")
    w("  int nowned = 0;\n  int64_t zero[8] = {0};\n  (void)zero;\n  rc = 0;")
    w(f"  const unsigned char *W = {n}_gc_weights;\n  (void)W;")
    # storage per slot
    for s, root in enumerate(slots):
        b = kp.buffers[root]
        members = spec.members[root]
        sizes = [f"p.bytes[{spec.buf_index[m]}]" for m in members]
        w(f"  {{ /* slot {s}: {root} ({b.kind}) */")
        w(f"    int64_t nb = {sizes[0]};")
        for sz in sizes[1:]:
            w(f"    if ({sz} > nb) nb = {sz};")
        if b.kind == "input":
            k = list(kp.inputs).index(root)
            w(f"    void *data = nb > 0 ? inputs[{k}] : (void *)zero;")
        elif b.kind == "const":  # a large constant: read in place from the weights
            w(f"    void *data = (void *)(W + {spec.var_offsets[root][0]});")
        elif b.kind == "var" and root in spec.var_offsets and root not in spec.written:
            off = spec.var_offsets[root][0]
            w(f"    void *data = (void *)(W + {off});")
        elif b.kind == "output" and root in spec.direct:
            j = list(kp.outputs).index(root)
            w(f"    void *data = nb > 0 ? outputs[{j}] : (void *)zero;")
        else:
            w("    void *data = calloc(1, (size_t)(nb > 64 ? nb : 64));")
            w("    if (!data) { rc = -5; goto done; }")
            w("    owned[nowned++] = data;")
            if b.kind == "var" and root in spec.var_offsets:
                off = spec.var_offsets[root][0]
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
        if o in spec.direct:
            continue
        b = kp.buffers[o]
        bi = spec.buf_index[o]
        if b.kind == "input":
            src = f"inputs[{list(kp.inputs).index(o)}]"
        elif b.kind == "const" or (b.kind == "var" and lay.root[o] not in slots):
            src = f"(W + {spec.var_offsets[o][0]})"
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
