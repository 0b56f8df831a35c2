"""The cpu target: the optimised Program is fused, lowered to Kernel IR and compiled to native
code with LLVM (``graphc/backends/llvm``); one native call runs a whole ``Session.run``.

The generic stages (graph passes, fusion, lowering, buffer planning) run in
``graphc/pipeline.py``; this backend renders and loads (``llvm.compile_kernel_program``).
Compiled code is cached on disk (``CompileOptions.cache_dir``; see ``llvm/cache.py``): a hit
skips lowering and LLVM entirely and sets ``exe.stats["loaded_from_disk"] = True``.

Programs with ops the lowering cannot express yet run those ops on the host with their numpy
reference, between native segments: an explicit, labelled fallback (``fallback.py``: kernels
named ``host_fallback:<op>``, ``exe.stats["host_fallback_ops"]``), never a silent one.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...executable import Executable, KernelInfo
from ...kernel.copies import elide_reshape_copies, updates_out_of_place
from ...kernel.recip import hoist_divisors
from ...kernel.runtime import eval_int
from ...kernel.split_runs import split_runs
from ...kernel.transpose_tiles import tile_transposes
from ...pipeline import body_pass, lower_program
from ...program import StageTexts
from ..llvm import cache, cache_payload, compile_kernel_program, jit, load_compiled, target_cpu
from ..llvm.concat_store import direct_concat
from ..llvm.epilogue import plan_row_epilogues
from . import fallback

#: row reductions as unit-stride SIMD over the rows (see kernel/lower_columns.py)
REDUCTION_LAYOUT = "columns"
#: Kernel IR passes the pipeline runs for this backend after lowering and buffer planning:
#: reshape copies of read-only buffers dropped and variables updated out of place (no private
#: copy per run: ``kernel/copies.py``), strided transposes tiled (``kernel/transpose_tiles.py``),
#: inner loops split into their contiguous runs (``kernel/split_runs.py``),
#: divisions by loop-invariant values hoisted, then which GEMMs run their epilogue per row chunk
#: and which convolutions store straight into their piece of a concat
KERNEL_PASSES = (
    elide_reshape_copies,
    updates_out_of_place,
    body_pass(tile_transposes),
    body_pass(split_runs),
    body_pass(hoist_divisors),
    plan_row_epilogues,
    direct_concat,
)


def _cache_key(source, options):
    """The disk-cache key of ``source`` under ``options``: it names the CPU name and features
    the code is for (the host's, or ``options.target_cpu``'s)."""
    return cache.cache_key(source.hash(), options.key(), jit.target(target_cpu(options)))


def try_load_cached(source, options):
    """The Executable for ``source`` from the disk cache, or None (no passes run). Never a
    hit when ``options.dump_dir`` is set: the dumps are written by the passes and the
    backend as they run (the compile still writes its entry)."""
    if options.cache_dir is None or options.dump_dir is not None:
        return None
    t0 = time.perf_counter()
    key = _cache_key(source, options)
    hit = cache.load(options.cache_dir, key)
    if hit is None:
        return None
    manifest, obj = hit
    try:
        compiled = load_compiled(manifest, obj, options)
    except Exception:  # noqa: BLE001 - an unusable entry is a miss; recompile
        return None
    kernels = [KernelInfo(n, tuple(ops), tuple(types)) for n, ops, types in manifest["kernels"]]
    stats = dict(manifest.get("stats", {}))
    stats["loaded_from_disk"] = True
    stats["compile_seconds"] = {"cache_load": time.perf_counter() - t0}
    stages = StageTexts(manifest.get("stages", {}))
    _add_code_stages(stages, compiled.llvm_ir, target_cpu(options))
    return Executable("cpu", source, source, compiled.runner, kernels, stats, stages,
                      [tuple(d) for d in manifest.get("decisions", [])])  # fmt: skip


def _add_code_stages(stages, llvm_ir, cpu=None):
    """ "llvm" (optimised IR) and "asm" (for ``cpu``, None: the host) stages; both may be
    computed on first access."""
    stages["llvm"] = llvm_ir
    stages["asm"] = lambda: jit.emit_assembly(stages["llvm"], cpu)


def build_executable(source, result, lowered, options) -> Executable:
    """Render and load the lowered program of ``result`` (``pipeline.lower_program``) for this
    CPU with LLVM, and write it to the disk cache."""
    program = result.program
    kp, fplan = lowered.kp, lowered.fplan
    secs = dict(lowered.seconds)
    compiled = compile_kernel_program(kp, options, fast_math=options.fast_math)
    secs.update(compiled.seconds)

    kernels = [
        KernelInfo(k.name, tuple(k.ops), tuple(k.op_types), _int_or_none(k.bytes_moved))
        for k in kp.kernels
    ]
    stats = _stats(kp)
    # native kernel functions: kernels that are the same computation on other buffers share one
    stats["kernel_functions"] = compiled.manifest["kernel_functions"]
    stats["loaded_from_disk"] = False
    stats["compile_seconds"] = secs
    stages = StageTexts(result.stages)
    stages["fusion"] = fplan.report
    stages["kernel"] = kp.text
    _add_code_stages(stages, compiled.llvm_ir, target_cpu(options))
    decisions = [tuple(d) for d in fplan.decisions]
    exe = Executable("cpu", source, program, compiled.runner, kernels, stats, stages, decisions)
    if options.cache_dir is not None:
        key = _cache_key(source, options)
        manifest = dict(compiled.manifest)
        manifest.update(
            key=key,
            stats={k: v for k, v in stats.items() if k != "compile_seconds"},
            # (every text but the IR, stored compressed, and the assembly, made from it)
            stages={k: stages[k] for k in stages if k not in ("llvm", "asm")},
            decisions=[list(map(str, d)) for d in decisions],
        )
        payload = cache_payload(compiled)
        manifest["ir_zlib_size"] = compiled.manifest["ir_zlib_size"]
        manifest["const_size"] = compiled.manifest["const_size"]
        cache.save(options.cache_dir, key, manifest, payload)
    if options.dump_dir is not None:
        _dump(options.dump_dir, stages)
    return exe


def build_with_host_ops(source, result, options, exc, compile_body) -> Executable:
    """The executable of a program with ops the lowering cannot express: those ops run on
    the host, labelled as such, between native segments (see fallback.py); the bodies of
    control-flow ops are whole programs compiled by ``compile_body(program) -> Executable``
    (the compiler's entry point, passed down so this layer does not import the one above)."""
    program = result.program
    secs: dict = {}
    texts = []
    hits = []

    def compile_segment(sub):
        # each native segment is an ordinary Program (already optimised with the whole one):
        # loaded from the disk cache or lowered and compiled like one, so a second process or
        # run of the same step compiles nothing
        exe = try_load_cached(sub, options)
        if exe is None:
            exe = build_executable(sub, _SegmentResult(sub), lower_program(sub, options,
                                   REDUCTION_LAYOUT, KERNEL_PASSES), options)  # fmt: skip
        for k, v in exe.stats.get("compile_seconds", {}).items():
            secs[k] = secs.get(k, 0.0) + v
        texts.append(exe.stages.get("kernel", ""))
        hits.append(bool(exe.stats.get("loaded_from_disk")))
        return exe.runner, list(exe.kernels)

    t0 = time.perf_counter()
    runner, kernels, fstats = fallback.build(source, program, options, compile_segment,
                                             compile_body)  # fmt: skip
    secs["host_fallback_split"] = time.perf_counter() - t0
    stats = {"kernel_count": len(kernels), "loaded_from_disk": False, "compile_seconds": secs}
    stats.update(fstats)
    stats["host_fallback_reason"] = str(exc)
    stats["segments_loaded_from_disk"] = sum(hits)
    stages = StageTexts(result.stages)
    stages["kernel"] = "\n\n".join(texts)
    return Executable("cpu", source, program, runner, kernels, stats, stages)


class _SegmentResult:
    """What build_executable reads of a pass-pipeline result, for a fallback segment (already
    optimised with the whole program)."""

    def __init__(self, program):
        self.program = program
        self.stages: dict = {}


def _int_or_none(v):
    return v if isinstance(v, int) else None


def _stats(kp) -> dict:
    """kernel_count, buffer bytes by kind and peak temporary memory (static sizes; a
    dynamic size counts as unknown and is left out)."""
    by_kind: dict = {}
    for b in kp.buffers.values():
        try:
            n = 1
            for d in b.shape:
                n *= int(eval_int(d, {}))
        except (KeyError, TypeError):
            continue
        if b.alias_of is None:
            by_kind[b.kind] = by_kind.get(b.kind, 0) + n * b.dtype.itemsize
    stats = {
        "kernel_count": len(kp.kernels),
        "buffer_bytes": by_kind,
        "peak_temp_bytes": by_kind.get("temp", 0),
    }
    for k, v in (kp.stats or {}).items():
        stats.setdefault(k, v)
    return stats


def _dump(dump_dir, stages):
    d = Path(dump_dir)
    d.mkdir(parents=True, exist_ok=True)
    for name in ("kernel", "fusion", "llvm"):
        if name in stages:
            (d / f"cpu.{name}.txt").write_text(stages[name])
