"""LLVM code generation for the cpu target (llvmlite).

``compile_kernel_program(kp, options)`` renders a Kernel IR program to LLVM IR
(``render.py``; transcendental polynomials in ``math.py``, GEMM through scipy-openblas32),
compiles identical kernels once and splits a large program into one module per core
(``split.py``), verifies and optimises the modules at O3 for the host CPU on parallel threads
(``jit.py``; ``options.target_cpu``: for another CPU, see ``cpus.py``), emits object code,
loads it and returns a ``Compiled`` whose ``runner`` (``runtime.py``) executes the whole
program with one native call (code for a CPU whose features this machine lacks is not
loaded: its runner refuses to run, ``NotRunnable``). ``load_compiled(manifest,
obj)`` rebuilds the same from the disk cache (``cache.py``) without re-rendering or
re-optimising.

Constant buffers larger than ``render.EMBED_CONST_MAX_BYTES`` are not in the object code: they
are buffer-table slots the runner fills once (``slot_consts``), and a cache entry stores their
bytes after the object code and IR (``cache_payload``; ``load_compiled`` checks their sizes
against the manifest's buffers before using them).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from ... import config
from ...errors import FailedPreconditionError
from ...kernel.analysis import buffers_written
from ...kernel.ir import KernelProgram
from . import blas, jit
from . import math as _math
from .cache import decode_program, encode_program
from .render import Layout, Renderer, slotted_const, static_nbytes
from .runtime import LLVMRunner, aligned_empty
from .split import split_module

#: IR text longer than this is not stored with a disk-cache entry (dump_ir says so)
MAX_STORED_IR = 1 << 20


@dataclass
class Compiled:
    runner: object
    obj: list  # object code of each module
    manifest: dict
    seconds: dict = field(default_factory=dict)
    llvm_ir: object = ""  # the optimised IR text, or a callable producing it (lazy)
    consts: dict = field(default_factory=dict)  # slotted const root -> its value (slot_consts)


def written_roots(kp: KernelProgram, layout) -> set:
    names: set = set()
    for k in kp.kernels:
        names |= buffers_written(k.body)
    return {layout.root[n] for n in names}


def threads_for(options) -> int:
    return options.threads if options.threads else config.default_threads()


class NotRunnable:
    """The runner of code compiled for a CPU with features this machine lacks (an export for
    another machine): the code is never loaded here, and running it is an error, not SIGILL."""

    def __init__(self, cpu: str):
        self.cpu = cpu

    def run(self, ctx, trace):
        raise FailedPreconditionError(
            f"this program was compiled for CPU {self.cpu!r}, whose features this machine "
            "lacks: it can be exported, not run here"
        )


def target_cpu(options):
    """The CPU ``options`` compile for (``CompileOptions.target_cpu``; None: the host)."""
    return getattr(options, "target_cpu", None)


def compile_kernel_program(kp: KernelProgram, options, fast_math: bool = False) -> Compiled:
    """Render, split, verify, optimise (O3, for the host CPU or ``options.target_cpu``), emit
    object code and load it (unless this machine cannot run it)."""
    secs = {}
    cpu = target_cpu(options)
    flags = jit.target_flags(cpu)  # initialises LLVM; ValueError for an unknown CPU
    t0 = time.perf_counter()
    with _math.using(flags):  # the emitters adapt to the target's features, not the host's
        r = Renderer(kp, fast_math=fast_math)
        # one module per core: LLVM compiles them on parallel threads (see split.py)
        texts = split_module(r.render(), threads_for(options))
    secs["llvm_render"] = time.perf_counter() - t0
    opt_level = jit.SPEED_LEVEL if options.opt_level >= 1 else 0
    pic = getattr(options, "position_independent", False)  # for a shared library
    objs, ir_text, s2 = jit.compile_modules(texts, opt_level, pic, cpu)
    secs.update(s2)
    t0 = time.perf_counter()
    layout = r.layout
    names = [(k.name, tuple(k.ops)) for k in kp.kernels]
    consts = slot_consts(kp, layout)
    runner = _runner(
        kp, layout, objs, options, names, written_roots(kp, layout), output_consts(kp), consts
    )
    secs["llvm_load"] = time.perf_counter() - t0
    manifest = dict(
        runtime_manifest(kp, layout),
        object_sizes=[len(o) for o in objs],
        kernel_functions=r.distinct_kernels,
    )
    return Compiled(runner, objs, manifest, secs, ir_text, consts)


def _runner(kp, layout, objs, options, names: list, written: set, consts: dict, slotted: dict):
    """The LLVMRunner of the object code ``objs`` loaded into this process, or a NotRunnable
    when it was compiled for a CPU this machine cannot run."""
    cpu = target_cpu(options)
    if not jit.runnable(cpu):
        return NotRunnable(jit.target(cpu)["cpu"])
    if blas.uses_blas(objs):
        blas.load_library()  # an unresolved BLAS symbol would abort the process
    loaded = jit.LoadedObject(objs, pool_cache_dir=options.cache_dir)
    return LLVMRunner(kp, layout, loaded, names, threads_for(options), written, consts, slotted)


def output_consts(kp: KernelProgram) -> dict:
    """Values of the constant buffers that are outputs (the runtime returns them; other
    constants are baked into the code)."""
    return {n: kp.buffers[n].value for n in kp.outputs if kp.buffers[n].kind == "const"}


def slotted_roots(kp: KernelProgram, layout) -> list:
    """(root, bytes) of the const roots that take a buffer-table slot, in slot order."""
    return [(r, static_nbytes(kp.buffers[r])) for r in layout.slots if slotted_const(kp.buffers[r])]


def slot_consts(kp: KernelProgram, layout) -> dict:
    """Each slotted const root's value as a C-contiguous array of its dtype (64-byte aligned:
    GEMM operands), from the KernelProgram's buffer values."""
    out = {}
    for r, _ in slotted_roots(kp, layout):
        b = kp.buffers[r]
        v = np.asarray(b.value, dtype=b.dtype.np)
        a = aligned_empty(v.shape, v.dtype)
        np.copyto(a, v)
        out[r] = a
    return out


def payload_consts(manifest: dict, payload: bytes, kp: KernelProgram, layout) -> dict:
    """The slotted constants stored at the end of a cache payload (see cache_payload), each
    checked against its buffer's dtype and static shape in the (decoded) manifest; ValueError
    when the sizes do not add up."""
    sizes = manifest["object_sizes"]
    ir_size = manifest.get("ir_zlib_size", 0)
    const_size = manifest.get("const_size", 0)
    roots = slotted_roots(kp, layout)
    for n in [*sizes, ir_size, const_size]:
        if type(n) is not int or n < 0:
            raise ValueError("malformed sizes in the cache manifest")
    if const_size != sum(n for _, n in roots):
        raise ValueError("the stored constants do not match the program's constant buffers")
    if sum(sizes) + ir_size + const_size != len(payload):
        raise ValueError("object sizes do not match the cache entry")
    out, pos = {}, sum(sizes) + ir_size
    for r, n in roots:
        b = kp.buffers[r]
        shape = tuple(int(d.value) for d in b.shape)
        a = aligned_empty(shape, b.dtype.np)
        a.reshape(-1).view(np.uint8)[:] = np.frombuffer(payload, np.uint8, n, pos)
        out[r] = a
        pos += n
    return out


def runtime_manifest(kp: KernelProgram, layout) -> dict:
    """What the runtime takes from a manifest besides the object code, as JSON values: the
    KernelProgram's runtime part, the kernel list and the storage roots the code writes. A
    function of ``kp`` alone, so gc.load can derive it from an artifact's stored program and
    compare (``cpu/native.py``)."""
    return {
        "program": encode_program(kp, output_consts(kp)),
        "kernels": [[k.name, list(k.ops), list(k.op_types)] for k in kp.kernels],
        "written_roots": sorted(written_roots(kp, layout)),
    }


def cache_payload(compiled: Compiled) -> bytes:
    """Object code of every module, then the zlib-compressed IR text (for dump_ir), then the
    bytes of the slotted constants; the manifest's object_sizes / ir_zlib_size / const_size
    say where each ends."""
    text = compiled.llvm_ir
    if len(text) > MAX_STORED_IR:  # mostly baked constants: not worth reading on every load
        text = f"(IR of {len(text)} characters not stored in the disk cache)"
    ir = zlib.compress(text.encode(), 1)
    compiled.manifest["ir_zlib_size"] = len(ir)
    # the slotted constants, in slot order (slot_consts' order), as raw bytes
    consts = [a.reshape(-1).view(np.uint8) for a in compiled.consts.values()]
    compiled.manifest["const_size"] = sum(c.size for c in consts)
    return b"".join(compiled.obj) + ir + b"".join(consts)


def load_compiled(manifest: dict, obj: bytes, options) -> Compiled:
    """Rebuild a Compiled from a cache entry: link the object code, decode the manifest."""
    t0 = time.perf_counter()
    kp, consts = decode_program(manifest["program"])
    layout = Layout.of(kp)
    sizes = manifest["object_sizes"]
    ir_size = manifest.get("ir_zlib_size", 0)
    slotted = payload_consts(manifest, obj, kp, layout)  # ValueError unless sizes add up
    ir_blob = obj[sum(sizes) : sum(sizes) + ir_size]

    def llvm_ir():
        return zlib.decompress(ir_blob).decode() if ir_blob else "(IR not stored)"

    objs, pos = [], 0
    for n in sizes:
        objs.append(obj[pos : pos + n])
        pos += n
    names = [(n, tuple(ops)) for n, ops, _ in manifest["kernels"]]
    written = set(manifest["written_roots"])
    runner = _runner(kp, layout, objs, options, names, written, consts, slotted)
    return Compiled(runner, objs, manifest, {"load": time.perf_counter() - t0}, llvm_ir, slotted)
