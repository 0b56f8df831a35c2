"""The cuda target (pycuda). ``availability()`` says why it cannot run here, if it cannot.

The generic stages (graph passes, fusion, lowering, buffer planning) run in
``graphc/pipeline.py``; this backend renders (``render.render_program``, CUDA C) ->
``nvcc.compile_source`` (cubin for the GPU's architecture, cached on disk) ->
``runtime.CudaRunner`` (pycuda). Everything up to the cubin runs without a GPU (the tests
do); the runtime needs one. With ``CompileOptions.cache_dir`` the whole executable is kept
on disk (``cache.py``) and a later compile of the same Program skips all of it
(``exe.stats["loaded_from_disk"]``). A program with control flow (``While``/``If``) runs as
native segments and host-side loops over its bodies' kernels, its values kept on the GPU
(``build_with_host_ops``, ``control.py``).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from ...executable import Executable, KernelInfo
from ...ops.registry import get_op_def
from ...pipeline import lower_program
from ...program import StageTexts
from . import cache, nvcc
from .launch_plan import plan_launches
from .render import render_program


def availability() -> str | None:
    """None when a GPU, pycuda and nvcc are usable, else a sentence saying what is missing."""
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed (pip install 'graphc[cuda]')"
    try:
        import pycuda.driver as drv
    except ImportError as exc:  # e.g. libcuda.so.1 missing: installed, but no GPU driver
        return f"pycuda is installed but cannot load the CUDA driver, so no GPU is usable ({exc})"
    try:
        drv.init()
        if drv.Device.count() == 0:
            return "no CUDA GPU was found"
    except Exception as exc:  # noqa: BLE001 - any driver failure means no usable GPU
        return f"the CUDA driver could not be initialised ({exc})"
    if nvcc.find_nvcc() is None:  # kernels are compiled at run time
        return "nvcc (the CUDA toolkit) was not found: set CUDA_HOME or put nvcc on PATH"
    return None


#: row reductions with one thread block per row
REDUCTION_LAYOUT = "rows"
#: Kernel IR passes the pipeline runs for this backend after buffer planning: the launch
#: mapping and vectorization of every kernel (``launch_plan.py``), which the renderer reads
KERNEL_PASSES = (plan_launches,)


def nvcc_options(options) -> tuple:
    return ("-O3", "-std=c++17") + (("-use_fast_math",) if options.fast_math else ())


def _disk_key(source, options, dev) -> str:
    exe = nvcc.find_nvcc()
    return cache.cache_key(source.hash(), options.key(), dev.arch,
                           nvcc.nvcc_version(exe) if exe else "none")  # fmt: skip


def try_load_cached(source, options):
    """The Executable for ``source`` from the disk cache, or None (no passes run). Never a
    hit when ``options.dump_dir`` is set: the dumps are written by the passes and the
    backend as they run (the compile still writes its entry)."""
    if options.cache_dir is None or options.dump_dir is not None:
        return None
    from .runtime import CudaRunner, device  # pycuda

    t0 = time.perf_counter()
    dev = device()
    hit = cache.load(options.cache_dir, _disk_key(source, options, dev))
    if hit is None:
        return None
    manifest, kp, module, cubin = hit
    try:
        runner = CudaRunner(dev, kp, module, manifest["cubin_key"], cubin)
    except Exception:  # noqa: BLE001 - an entry the driver refuses is a miss; recompile
        return None
    kernels = [KernelInfo(n, tuple(ops), tuple(types), moved)
               for n, ops, types, moved in manifest["kernels"]]  # fmt: skip
    stats = dict(manifest["stats"], loaded_from_disk=True, cubin_from_disk=True)
    stats["compile_seconds"] = {"cache_load": time.perf_counter() - t0}
    stages = dict(manifest["stages"], cuda=module.source)
    return Executable("cuda", source, source, runner, kernels, stats, stages,
                      [tuple(d) for d in manifest["decisions"]])  # fmt: skip


def build_executable(source, result, lowered, options):
    """Render the lowered program of ``result`` (``pipeline.lower_program``) as CUDA C,
    compile it for the GPU of this process and load it."""
    from .runtime import CudaRunner, device  # pycuda

    program = result.program
    fplan, kp, secs = lowered.fplan, lowered.kp, dict(lowered.seconds)
    t0 = time.perf_counter()
    module = render_program(kp)
    secs["render"] = time.perf_counter() - t0
    dev = device()
    t0 = time.perf_counter()
    flags = nvcc_options(options)
    cubin, from_disk = nvcc.compile_source(module.source, dev.arch, "cubin", options.cache_dir,
                                           flags)  # fmt: skip
    secs["nvcc"] = time.perf_counter() - t0
    key = nvcc.cache_key(module.source, dev.arch, "cubin", nvcc.find_nvcc(), flags)
    runner = CudaRunner(dev, kp, module, key, cubin)
    kernels = [KernelInfo(k.name, tuple(k.ops), tuple(k.op_types),
                          k.bytes_moved if isinstance(k.bytes_moved, int) else None)
               for k in kp.kernels]  # fmt: skip
    stats = {
        "kernel_count": len(kp.kernels),
        "launches": sum(len(rk.launches) for rk in module.kernels),
        "device": dev.name,
        "cublas": dev.cublas is not None,
        "loaded_from_disk": False,
        "cubin_from_disk": from_disk,
        "compile_seconds": secs,
        "mapping_notes": [n for rk in module.kernels for n in rk.notes],
    }
    stages = StageTexts(result.stages)
    stages["fusion"] = fplan.report()
    stages["kernel"] = kp.text()
    stages["cuda"] = module.source
    if options.dump_dir is not None:
        d = Path(options.dump_dir)
        d.mkdir(parents=True, exist_ok=True)
        for name, ext in (("kernel", "txt"), ("fusion", "txt"), ("cuda", "cu")):
            (d / f"cuda.{name}.{ext}").write_text(stages[name])
    decisions = [tuple(x) for x in fplan.decisions]
    if options.cache_dir is not None:
        extra = {
            "kernels": [[k.name, list(k.ops), list(k.op_types), k.bytes_moved] for k in kernels],
            "stats": {k: v for k, v in stats.items() if k != "compile_seconds"},
            "stages": {k: v for k, v in stages.items() if isinstance(v, str) and k != "cuda"},
            "decisions": [list(map(str, d)) for d in decisions],
        }
        cache.save(options.cache_dir, _disk_key(source, options, dev), kp, module, cubin, key,
                   extra)  # fmt: skip
    return Executable("cuda", source, program, runner, kernels, stats, stages, decisions)


def build_with_host_ops(source, result, options, exc, compile_body):
    """The executable of a program with control-flow ops (``While``/``If``, which have no
    lowering): native segments and host-side loops over the bodies' kernels, every value
    staying on the GPU (``control.py``); each body is compiled once by ``compile_body``
    (the compiler's entry point, passed down so this layer does not import the one above).
    Any other op without a lowering is refused as before (``exc``): the cuda target runs
    no op on the host."""
    program = result.program
    if not any(hasattr(get_op_def(n.op), "run_control") for n in program.nodes):
        raise exc
    from .control import build  # pycuda (through runtime.py)

    secs: dict = {}

    def compile_segment(sub):
        # a native segment is an ordinary Program (already optimised with the whole one):
        # loaded from the disk cache or lowered, rendered and compiled like one
        exe = try_load_cached(sub, options)
        if exe is None:
            lowered = lower_program(sub, options, REDUCTION_LAYOUT, KERNEL_PASSES)
            exe = build_executable(sub, _SegmentResult(sub), lowered, options)
        for k, v in exe.stats.get("compile_seconds", {}).items():
            secs[k] = secs.get(k, 0.0) + v
        return exe

    t0 = time.perf_counter()
    runner, kernels, fstats = build(program, compile_segment, compile_body)
    secs["control_split"] = time.perf_counter() - t0
    stats = {"kernel_count": len(kernels), "loaded_from_disk": False, "compile_seconds": secs}
    stats.update(fstats)
    stats["host_fallback_reason"] = str(exc)
    stages = StageTexts(result.stages)
    return Executable("cuda", source, program, runner, kernels, stats, stages)


class _SegmentResult:
    """What build_executable reads of a pass-pipeline result, for a segment (already
    optimised with the whole program)."""

    def __init__(self, program):
        self.program = program
        self.stages: dict = {}
