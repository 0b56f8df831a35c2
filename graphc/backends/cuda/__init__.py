"""The cuda target (pycuda). ``availability()`` says why it cannot run here, if it cannot.

Pipeline: ``passes.fusion.fuse`` -> ``kernel.lower.lower`` -> ``passes.plan.plan`` ->
``render.render_program`` (CUDA C) -> ``nvcc.compile_source`` (cubin for the GPU's
architecture, cached on disk) -> ``runtime.CudaRunner`` (pycuda). Everything up to the cubin
runs without a GPU (the tests do); the runtime needs one.
"""

from __future__ import annotations

import time
from pathlib import Path


def availability() -> str | None:
    """None when a GPU and pycuda are usable, else a sentence saying what is missing."""
    import importlib.util

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
    return None


def lower_for_cuda(program, options):
    """(fusion plan, planned KernelProgram, seconds per step) for an optimised Program."""
    from ...kernel.lower import lower
    from ...passes.fusion import fuse
    from ...passes.plan import plan as plan_buffers

    secs = {}
    t0 = time.perf_counter()
    fplan = fuse(program, options)
    secs["fusion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kp = lower(program, fplan, options)
    secs["lower"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kp = plan_buffers(kp) or kp
    secs["plan"] = time.perf_counter() - t0
    return fplan, kp, secs


def nvcc_options(options) -> tuple:
    return ("-O3", "-std=c++17") + (("-use_fast_math",) if options.fast_math else ())


def build_executable(source, result, options):
    """Compile the optimised Program of ``result`` for the GPU of this process."""
    from ...executable import Executable, KernelInfo
    from .nvcc import cache_key, compile_source, find_nvcc
    from .render import render_program
    from .runtime import CudaRunner, device

    program = result.program
    fplan, kp, secs = lower_for_cuda(program, options)
    t0 = time.perf_counter()
    module = render_program(kp)
    secs["render"] = time.perf_counter() - t0
    dev = device()
    t0 = time.perf_counter()
    flags = nvcc_options(options)
    cubin, from_disk = compile_source(module.source, dev.arch, "cubin", options.cache_dir, flags)
    secs["nvcc"] = time.perf_counter() - t0
    key = cache_key(module.source, dev.arch, "cubin", find_nvcc(), flags)
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
    stages = dict(result.stages)
    stages["fusion"] = fplan.report()
    stages["kernel"] = kp.text()
    stages["cuda"] = module.source
    if options.dump_dir is not None:
        d = Path(options.dump_dir)
        d.mkdir(parents=True, exist_ok=True)
        for name, ext in (("kernel", "txt"), ("fusion", "txt"), ("cuda", "cu")):
            (d / f"cuda.{name}.{ext}").write_text(stages[name])
    decisions = [tuple(x) for x in fplan.decisions]
    return Executable("cuda", source, program, runner, kernels, stats, stages, decisions)
