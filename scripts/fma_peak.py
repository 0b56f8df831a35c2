"""The machine's float32 multiply-add peak, per core, on one and on two threads.

    python scripts/fma_peak.py [--threads 1,2] [--steps 20000000]

A loop of 24 independent chains of 512-bit fused multiply-adds (``llvm.fma.v16f32``; the
CPU's own 256-bit vectors when it has no AVX-512, LLVM splitting each), compiled by llvmlite
for the host CPU and run on each thread at once: the bound of any float32 GEMM here. The
GEMM-bound workloads (W3, W9, the convolutions of W13) are compared with it in
docs/benchmarks.md. On a shared VM the clock moves between runs: take it right beside the
measurement it bounds.
"""

from __future__ import annotations

import argparse
import ctypes
import threading
import time

import llvmlite.binding as llvm

CHAINS = 24  # independent accumulators: more than the FMA latency times its throughput
LANES = 16


def _ir() -> str:
    phis = "\n".join(
        f"  %a{i} = phi <16 x float> [ zeroinitializer, %entry ], [ %b{i}, %loop ]"
        for i in range(CHAINS)
    )
    fmas = "\n".join(
        f"  %b{i} = call <16 x float> @llvm.fma.v16f32(<16 x float> %a{i}, <16 x float> %x, "
        f"<16 x float> %y)"
        for i in range(CHAINS)
    )
    sums = ["  %s0 = fadd <16 x float> zeroinitializer, %b0"]
    sums += [f"  %s{i} = fadd <16 x float> %s{i - 1}, %b{i}" for i in range(1, CHAINS)]
    body = "\n".join(sums)
    return f"""
declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
define float @peak(i64 %n, float %xs) {{
entry:
  %xv = insertelement <16 x float> undef, float %xs, i32 0
  %x = shufflevector <16 x float> %xv, <16 x float> undef, <16 x i32> zeroinitializer
  %y = fmul <16 x float> %x, %x
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
{phis}
{fmas}
  %i1 = add i64 %i, 1
  %c = icmp ult i64 %i1, %n
  br i1 %c, label %loop, label %done
done:
{body}
  %r = extractelement <16 x float> %s{CHAINS - 1}, i32 0
  ret float %r
}}
"""


def _timed(peak, steps: int, seconds: list) -> None:
    t0 = time.perf_counter()
    peak(steps, 0.999)
    seconds.append(time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=20_000_000)
    args = ap.parse_args()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(_ir())
    mod.verify()
    target = llvm.Target.from_default_triple()
    tm = target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
    )
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    fn_t = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64, ctypes.c_float)
    peak = fn_t(engine.get_function_address("peak"))
    peak(1000, 0.5)  # warm up (ctypes releases the GIL during the call)
    for threads in (int(t) for t in args.threads.split(",")):
        seconds: list = []

        workers = [threading.Thread(target=_timed, args=(peak, args.steps, seconds))
                   for _ in range(threads)]  # fmt: skip
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        flops = args.steps * CHAINS * LANES * 2 / max(seconds)
        print(f"{threads} thread(s): {flops / 1e9:.1f} GFLOP/s per core "
              f"({flops / 1e9 * threads:.1f} in all)")  # fmt: skip


if __name__ == "__main__":
    main()
