"""llvmlite plumbing: target machines, verification, O3 pipeline, object code, loading.

Compilation goes LLVM IR text -> verified module -> O3 (new pass manager, tuned for the host
CPU name and features, e.g. znver4 with AVX-512, or for the CPU an export asks for, see
``cpus.py``; the renderer marks loop-free glue functions ``optnone``, so only functions with
loops pay for it) -> relocatable object code. A program
split into several modules (split.py) compiles them on parallel threads. Loading always goes
through the object code (also when it comes straight from the compiler), so a module loaded
from the disk cache runs exactly the code a fresh compile would.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import threading
import time

import llvmlite
import llvmlite.binding as llvm

from . import blas, cache, cpus, pool
from . import math as _math
from .irutil import MODULE_SEP

_lock = threading.Lock()
_state: dict = {}
#: cpu name (cpus.py) -> the state of code generated for it, as _init's for the host
_targets: dict = {}


def _init():
    if _state:
        return _state
    with _lock:
        if _state:
            return _state
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        # a vectorised remainder loop after the main one doubles code size; the scalar
        # remainder (< 16 iterations) costs nothing measurable
        llvm.set_option("graphc", "-enable-epilogue-vectorization=false")
        cpu = llvm.get_host_cpu_name()
        features = llvm.get_host_cpu_features().flatten()
        target = llvm.Target.from_triple(llvm.get_process_triple())
        tm = _target_machine(target, cpu, features)
        blas_lib = blas.try_load()  # None without scipy-openblas32: GEMMs then refuse to compile
        _math.HOST.update(_flags(features))
        # read the data layout once: each ``tm.target_data`` wrapper frees shared state
        # when collected, and a second one then crashes
        td = tm.target_data
        s = dict(
            tm=tm,
            td=td,
            target=target,
            layout=str(td),
            cpu=cpu,
            features=features,
            triple=llvm.get_process_triple(),
            blas_lib=blas_lib,
        )
        _state.update(s)
    return _state


def _flags(features: str) -> dict:
    """The target properties the math emitters adapt to (``math.HOST``), from an LLVM feature
    string: vector ldexp is one instruction with AVX-512 (vscalef), a libm call per lane
    without; graphc's own GEMM kernel (nativegemm.py) keeps 24 accumulators of 16 floats in
    registers, which only AVX-512 has (32 vector registers)."""
    avx512 = "+avx512f" in features.split(",")
    return {"ldexp": avx512, "avx512f": avx512}


def _target_state(cpu=None) -> dict:
    """_init's state for code generated for ``cpu`` (None or "host": the host's own);
    ValueError for a name cpus.py does not know (naming the valid ones)."""
    s = _init()
    if cpu is None or cpu == cpus.HOST:
        return s
    with _lock:
        t = _targets.get(cpu)
        if t is None:
            name, features = cpus.resolve(cpu, s["triple"], s["features"])
            # same triple, same data layout: the host's is reused (no target_data read)
            t = {k: v for k, v in s.items() if k not in ("tm", "td")}
            t.update(cpu=name, features=features, flags=_flags(features))
            _targets[cpu] = t
    return t


def target(cpu=None) -> dict:
    """{'cpu', 'features', 'triple'} of the code generated for ``cpu`` (see cpus.py; None or
    "host": the host, as ``host()``). ValueError for an unknown name."""
    s = _target_state(cpu)
    return {"cpu": s["cpu"], "features": s["features"], "triple": s["triple"]}


def target_flags(cpu=None) -> dict | None:
    """The math emitters' properties of ``cpu``'s code (for ``math.using``); None for the
    host, whose are ``math.HOST`` itself (set by _init, which this initialises)."""
    s = _target_state(cpu)
    return None if s is _state else dict(s["flags"])


def runnable(cpu=None) -> bool:
    """Whether this machine has every feature the code generated for ``cpu`` uses (code for
    another CPU is compiled for export only: it must never run here)."""
    if cpu is None or cpu == cpus.HOST:
        return True
    have = {f for f in host()["features"].split(",") if f.startswith("+")}
    return {f for f in target(cpu)["features"].split(",") if f.startswith("+")} <= have


def pool_object(cpu=None) -> bytes:
    """Position-independent object code of the worker pool for ``cpu``'s machines (gc.export_c
    links it into the library)."""
    if cpu is None or cpu == cpus.HOST:
        load_pool()
        return pool.object_code()
    s = _target_state(cpu)
    return _compile(s, pool.pool_ir(s["triple"]), 2, pic=True)[0]


def load_pool(cache_dir=None) -> None:
    """Load the worker pool every program's parallel loops call (``gc_parallel_for``), once per
    process, before any program's object code is loaded (that code needs the pool's symbols).

    ``cache_dir``: the compile cache of whoever loads the first program (a Session's
    ``CompileOptions.cache_dir``); None compiles the pool without reading or writing any
    cache. The default cache directory is read only when the caller's options name it."""
    if pool.loaded():
        return
    s = _init()
    pool.load(
        lambda text, pic=False: _pool_object(s, text, pic, None if pic else cache_dir),
        lambda obj: LoadedObject(obj, s),
        s["triple"],
    )


def _pool_object(s: dict, text: str, pic: bool, cache_dir) -> bytes:
    """Object code of the worker pool's IR ``text``: from the disk cache ``cache_dir`` when it
    holds an authenticated entry for this exact text, host CPU and llvmlite, else compiled
    (and stored there). Compiling it costs 25-40 ms of every new process's first compile or
    gc.load. ``cache_dir`` None: compiled, nothing read or written."""
    parts = [text, s["triple"], s["cpu"], s["features"], llvmlite.__version__, pic, "pool"]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    hit = cache.load(cache_dir, key) if cache_dir is not None else None
    if hit is not None and hit[0].get("kind") == "worker pool":
        return hit[1]
    obj = _compile(s, text, 2, pic=pic)[0]
    if cache_dir is not None:
        cache.save(cache_dir, key, {"key": key, "kind": "worker pool"}, obj)
    return obj


def _target_machine(target, cpu, features, pic: bool = False):
    """Objects loaded into this process use the large code model without PIC: every reference
    to another section or symbol is a 64-bit absolute address. With the small model,
    RuntimeDyld maps .text and .rodata (constant pools) separately and patches 32-bit
    PC-relative offsets between them; once the address space is fragmented (PyTorch and JAX
    loaded in the same process) they can land more than 2 GB apart and LLVM aborts the process
    ("isInt<32>(RealOffset)" in RuntimeDyldELF; seen in `graphc bench` with both peers
    loaded). ``pic``: position-independent small-model code for the system linker to put in a
    shared library (gc.export_c), where the linker keeps the sections together."""
    reloc, model = ("pic", "default") if pic else ("static", "large")
    return target.create_target_machine(
        cpu=cpu, features=features, opt=3, reloc=reloc, codemodel=model, jit=False
    )


def host() -> dict:
    """{'cpu', 'features', 'triple'} of the machine code is generated for."""
    s = _init()
    return {"cpu": s["cpu"], "features": s["features"], "triple": s["triple"]}


#: loop interleaving (several vector bodies per iteration): measured no faster on W1 and
#: larger code, so off
INTERLEAVE = False


#: LLVM pipeline (speed level) of the functions with loops (the rest is optnone glue)
SPEED_LEVEL = 3


def _unlocked(fn):
    """The ctypes function behind an llvmlite binding, or None. llvmlite runs every LLVM call
    under one process-wide lock; optimising and emitting a module only touch that module, its
    own LLVM context, target machine and pass builder, which LLVM allows on several threads at
    once (ctypes releases the GIL during the call)."""
    return getattr(fn, "_cfn", None)


def _run_passes(mpm, mod, pb, parallel: bool):
    raw = _unlocked(llvm.ffi.lib.LLVMPY_RunNewModulePassManager) if parallel else None
    if raw is None:
        mpm.run(mod, pb)
    else:
        raw(mpm, mod, pb)


def _emit_object(tm, mod, parallel: bool) -> bytes:
    lib = llvm.ffi.lib
    raw = _unlocked(lib.LLVMPY_TargetMachineEmitToMemory) if parallel else None
    if raw is None:
        return tm.emit_object(mod)
    with llvm.ffi.OutputString() as err:
        mb = raw(tm, mod, 1, err)
        if not mb:
            raise RuntimeError(str(err))
    try:
        return ctypes.string_at(lib.LLVMPY_GetBufferStart(mb), lib.LLVMPY_GetBufferSize(mb))
    finally:
        lib.LLVMPY_DisposeMemoryBuffer(mb)


def compile_module(
    ir_text: str, opt_level: int = 3, parallel: bool = False, pic: bool = False, cpu=None
):
    """Parse, verify, optimise and emit object code for one module (in an LLVM context,
    target machine and pass builder of its own). Returns (object, optimised IR, seconds).
    ``parallel``: optimise and emit outside llvmlite's global lock (other threads compile
    other modules meanwhile). ``pic``: for a shared library (see _target_machine). ``cpu``:
    the CPU the code is for (cpus.py; None: the host)."""
    return _compile(_target_state(cpu), ir_text, opt_level, parallel, pic)


def _compile(s: dict, ir_text: str, opt_level: int, parallel: bool = False, pic: bool = False):
    """compile_module's work; an ``ir_text`` of two modules joined by MODULE_SEP (the worker
    pool's) gets the IR passes on the first only, the second (hand-written kernels whose IR
    the passes do not improve) is linked in as it is before code generation."""
    secs = {}
    t0 = time.perf_counter()
    ctx = llvm.create_context()
    ir_text, _, raw_text = ir_text.partition(MODULE_SEP)
    mod = llvm.parse_assembly(ir_text, context=ctx)
    mod.triple = s["triple"]
    mod.data_layout = s["layout"]
    mod.verify()
    raw = None
    if raw_text:
        raw = llvm.parse_assembly(raw_text, context=ctx)
        raw.triple = s["triple"]
        raw.data_layout = s["layout"]
        raw.verify()
    secs["llvm_parse_verify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tm = _target_machine(s["target"], s["cpu"], s["features"], pic)
    pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    pto.loop_vectorization = opt_level >= 2
    pto.slp_vectorization = opt_level >= 2
    # one 512-bit vector body per loop: interleaving (4 bodies) and unrolling multiply code
    # size and compile time (W3 step: 0.82 s -> 0.51 s) for no gain on memory-bound loops
    pto.loop_unrolling = False
    pto.loop_interleaving = INTERLEAVE
    pb = llvm.create_pass_builder(tm, pto)
    _run_passes(pb.getModulePassManager(), mod, pb, parallel)
    if raw is not None:
        mod.link_in(raw)
    secs["llvm_opt"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    obj = _emit_object(tm, mod, parallel)
    secs["llvm_codegen"] = time.perf_counter() - t0
    text = str(mod)
    del pb, pto, mod
    return obj, text, secs


def compile_modules(ir_texts: list, opt_level: int = 3, pic: bool = False, cpu=None) -> tuple:
    """compile_module (for ``cpu``) for each text, on a thread each (the first on the calling
    thread); returns (objects, IR texts joined by MODULE_SEP, seconds: the sums over the modules of
    each phase, and ``llvm_wall``, the elapsed time of them all)."""
    t0 = time.perf_counter()
    parallel = len(ir_texts) > 1
    results: list = [None] * len(ir_texts)

    def work(i):
        try:
            results[i] = compile_module(ir_texts[i], opt_level, parallel, pic, cpu)
        except BaseException as e:  # re-raised on the calling thread
            results[i] = e

    threads, inline = [], [0]
    for i in range(1, len(ir_texts)):
        t = threading.Thread(target=work, args=(i,), name=f"graphc-llvm-{i}")
        try:
            t.start()
            threads.append(t)
        except RuntimeError:  # no thread to be had: compile it here
            inline.append(i)
    for i in inline:
        work(i)
    for t in threads:
        t.join()
    objs, texts, secs = [], [], {}
    for r in results:
        if isinstance(r, BaseException):
            raise r
        obj, text, sc = r
        objs.append(obj)
        texts.append(text)
        for k, v in sc.items():
            secs[k] = secs.get(k, 0.0) + v
    secs["llvm_wall"] = time.perf_counter() - t0
    return objs, MODULE_SEP.join(texts), secs


def emit_assembly(ir_text: str, cpu=None) -> str:
    """Assembly of (every module of) an optimised IR text, for ``cpu`` (None: the host)."""
    s = _target_state(cpu)
    out = []
    for text in ir_text.split(MODULE_SEP):
        ctx = llvm.create_context()
        mod = llvm.parse_assembly(text, context=ctx)
        mod.triple = s["triple"]
        mod.data_layout = s["layout"]
        tm = _target_machine(s["target"], s["cpu"], s["features"])
        out.append(tm.emit_assembly(mod))
    return "\n".join(out)


class LoadedObject:
    """Object code (one or several objects, linked together) loaded into the process;
    ``address(name)`` of its symbols."""

    def __init__(self, objs, state: dict | None = None, pool_cache_dir=None):
        """``state``: given only when loading the worker pool itself; every other object
        needs the pool first (see load_pool; ``pool_cache_dir`` is where it may be cached)."""
        if state is None:
            load_pool(pool_cache_dir)
        s = state or _init()
        empty = llvm.parse_assembly("")
        empty.triple = s["triple"]
        # the engine takes ownership of (and frees) its target machine: give it its own
        tm = _target_machine(s["target"], s["cpu"], s["features"])
        self.engine = llvm.create_mcjit_compiler(empty, tm)
        for obj in [objs] if isinstance(objs, bytes) else objs:
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"symbol {name!r} not found in the compiled object")
        return addr

    def global_address(self, name: str) -> int:
        return self.engine.get_global_value_address(name)
