"""LLVM code generation for the cpu target (llvmlite).

``compile_kernel_program(kp, options)`` renders a Kernel IR program to LLVM IR
(``render.py``; transcendental polynomials in ``math.py``, GEMM through scipy-openblas32),
verifies and optimises it at O3 for the host CPU (``jit.py``), emits object code, loads it and
returns a ``Compiled`` whose ``runner`` (``runtime.py``) executes the whole program with one
native call. ``load_compiled(manifest, obj)`` rebuilds the same from the disk cache
(``cache.py``) without re-rendering or re-optimising.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ...kernel.ir import KernelProgram, LibCall, Store
from . import jit

#: modules compiled in parallel threads for a large program (LLVM optimisation and code
#: generation dominate compile time; llvmlite releases the GIL)
COMPILE_THREADS = 2
#: estimated code size (render._code_size summed over kernels) worth a second thread
PARALLEL_COMPILE_MIN = 400


def _code_size(kp) -> int:
    from .render import _code_size as size

    return sum(size(k.body) for k in kp.kernels)


@dataclass
class Compiled:
    runner: object
    obj: list  # object code of each module
    manifest: dict
    seconds: dict = field(default_factory=dict)
    llvm_ir: str = ""


def _written(body, out: set):
    from ...kernel.ir import If, Loop

    for s in body:
        if isinstance(s, Store):
            out.add(s.buffer)
        elif isinstance(s, LibCall) and s.fn == "gemm":
            out.add(s.args[2])
        elif isinstance(s, Loop):
            _written(s.body, out)
        elif isinstance(s, If):
            _written(s.then, out)
            _written(s.orelse, out)


def written_roots(kp: KernelProgram, layout) -> set:
    names: set = set()
    for k in kp.kernels:
        _written(k.body, names)
    return {layout.root[n] for n in names}


def threads_for(options) -> int:
    from ... import config

    return options.threads if options.threads else config.default_threads()


def compile_kernel_program(kp: KernelProgram, options, fast_math: bool = False) -> Compiled:
    """Render, verify, optimise (O3, host CPU), emit object code and load it."""
    from .cache import encode_program
    from .render import Renderer
    from .runtime import LLVMRunner

    secs = {}
    t0 = time.perf_counter()
    r = Renderer(kp, fast_math=fast_math)
    parts = COMPILE_THREADS if _code_size(kp) >= PARALLEL_COMPILE_MIN else 1
    texts = [str(m) for m in r.render_parts(parts)]
    secs["llvm_render"] = time.perf_counter() - t0
    opt_level = 2 if options.opt_level >= 1 else 0
    objs, ir_text, s2 = jit.compile_modules(texts, opt_level)
    secs.update(s2)
    t0 = time.perf_counter()
    loaded = jit.LoadedObject(objs)
    secs["llvm_load"] = time.perf_counter() - t0
    layout = r.layout
    names = [(k.name, tuple(k.ops)) for k in kp.kernels]
    consts = {n: kp.buffers[n].value for n in kp.outputs if kp.buffers[n].kind == "const"}
    wr = written_roots(kp, layout)
    runner = LLVMRunner(kp, layout, loaded, names, threads_for(options), wr, consts)
    manifest = {
        "program": encode_program(kp, consts),
        "kernels": [[k.name, list(k.ops), list(k.op_types)] for k in kp.kernels],
        "written_roots": sorted(wr),
        "object_sizes": [len(o) for o in objs],
        "llvm_ir": ir_text,
    }
    return Compiled(runner, objs, manifest, secs, ir_text)


def load_compiled(manifest: dict, obj: bytes, options) -> Compiled:
    """Rebuild a Compiled from a cache entry: link the object code, decode the manifest."""
    from .cache import decode_program
    from .render import Layout
    from .runtime import LLVMRunner

    t0 = time.perf_counter()
    kp, consts = decode_program(manifest["program"])
    layout = Layout.of(kp)
    sizes = manifest.get("object_sizes", [len(obj)])
    if sum(sizes) != len(obj):
        raise ValueError("object sizes do not match the cache entry")
    objs, pos = [], 0
    for n in sizes:
        objs.append(obj[pos : pos + n])
        pos += n
    loaded = jit.LoadedObject(objs)
    names = [(n, tuple(ops)) for n, ops, _ in manifest["kernels"]]
    runner = LLVMRunner(
        kp, layout, loaded, names, threads_for(options), set(manifest["written_roots"]), consts
    )
    return Compiled(
        runner, objs, manifest, {"load": time.perf_counter() - t0}, manifest.get("llvm_ir", "")
    )
