"""Run generated CUDA C on the CPU (g++) to check its meaning without a GPU.

Two ways, both compared with the Kernel IR interpreter / the reference by the tests:

* single-thread (``build(...)``): each block is one thread (blockDim = gridDim = 1), so
  grid-stride and block-stride loops visit every index in order and warp shuffles are the
  identity. Fast: used for every lowered registry example.
* many-thread (``build(..., threaded=True)``): every CUDA thread is a std::thread,
  ``__syncthreads`` a block barrier, warp shuffles exchange through memory with a warp
  barrier. Block cooperation (shared memory, barriers, shuffles, the tiled GEMM) really
  runs; blocks run one after another.

What it cannot show: real-GPU timing, memory-model subtleties beyond barriers, the pycuda
runtime and cuBLAS (tests marked ``cuda``). ``gemm`` launches run in numpy from the same
evaluated arguments the runtime passes to cuBLAS (single-thread), or in the tiled kernel
(many-thread).
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from graphc.backends.cuda import launch as L
from graphc.backends.cuda.rendered import CudaModule
from graphc.kernel.ir import RNG_BUFFER, STATUS_BUFFER, KernelProgram
from graphc.kernel.runtime import bind_variables, dim_values, raise_status, rng_keys, shape_of

SHIM = r"""
#define GC_HOST_EMULATION 1
#include <cmath>
#include <math.h>
#include <cstring>
#include <cuda_fp16.h>
struct gc_dim3 { unsigned x, y, z; };
static gc_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static const gc_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
static inline void __syncthreads() {}
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int) { return v; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) {
  double d; std::memcpy(&d, &i, 8); return d;
}
"""

#: Many-thread emulation: every CUDA thread of a block is a std::thread; __syncthreads is
#: a block-wide std::barrier and warp shuffles exchange through a per-warp slot array with
#: a warp-wide barrier, so block cooperation (shared memory, barriers, shuffles) really
#: runs. Blocks run one after another (shared memory is static storage).
THREADED_SHIM = r"""
#include <cmath>
#include <math.h>
#include <cstring>
#include <barrier>
#include <functional>
#include <thread>
#include <vector>
#include <cuda_fp16.h>
struct gc_dim3 { unsigned x, y, z; };
static gc_dim3 blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
static thread_local gc_dim3 threadIdx = {0, 0, 0};
static std::barrier<>* gc_block_barrier = nullptr;
static std::barrier<>* gc_warp_barrier[32];
static unsigned long long gc_shfl_slot[32][32];
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
static inline void __syncthreads() { gc_block_barrier->arrive_and_wait(); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int offset) {
  unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  std::memcpy(&gc_shfl_slot[warp][lane], &v, sizeof(T));
  gc_warp_barrier[warp]->arrive_and_wait();
  T r;
  std::memcpy(&r, &gc_shfl_slot[warp][lane ^ offset], sizeof(T));
  gc_warp_barrier[warp]->arrive_and_wait();
  return r;
}
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) {
  double d; std::memcpy(&d, &i, 8); return d;
}
static void gc_emu_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                          const std::function<void()>& kernel) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, 1, 1};
  std::barrier<> block(bx);
  gc_block_barrier = &block;
  std::vector<std::barrier<>*> warps;
  for (unsigned w = 0; w < (bx + 31) / 32; ++w) {
    warps.push_back(new std::barrier<>(bx - 32 * w < 32 ? bx - 32 * w : 32));
    gc_warp_barrier[w] = warps.back();
  }
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
      for (unsigned x = 0; x < gx; ++x) {
        blockIdx = {x, y, z};
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < bx; ++t)
          threads.emplace_back([t, &kernel] { threadIdx = {t, 0, 0}; kernel(); });
        for (auto& th : threads) th.join();
      }
  for (auto* w : warps) delete w;
}
"""

_SIGNATURE = re.compile(
    r'extern "C" __global__ void (?:__launch_bounds__\(\d+\)\s*)?(\w+)\(([^)]*)\)'
)


def _launchers(source: str) -> str:
    """A host entry ``emu_<name>(gx, gy, gz, bx, params...)`` for every kernel function."""
    out = []
    for name, params in _SIGNATURE.findall(source.replace("\n", " ")):
        params = params.strip()
        names = [p.split()[-1] for p in params.split(",")] if params and params != "void" else []
        plist = ", ".join(["unsigned gx", "unsigned gy", "unsigned gz", "unsigned bx"]
                          + ([params] if names else []))  # fmt: skip
        out.append(
            f'extern "C" void emu_{name}({plist}) {{\n'
            f"  gc_emu_launch(gx, gy, gz, bx, [&] {{ {name}({', '.join(names)}); }});\n}}"
        )
    return "\n".join(out)


CUDA_INCLUDE = "/usr/local/cuda/include"


def available() -> str | None:
    """None when g++ and the CUDA headers are here, else why not."""
    if shutil.which("g++") is None:
        return "g++ is not installed"
    if not Path(CUDA_INCLUDE, "cuda_fp16.h").is_file():
        return f"CUDA headers not found in {CUDA_INCLUDE}"
    return None


def build(source: str, cache_dir: Path, opt: str = "-O1", threaded=False) -> ctypes.CDLL:
    """Compile a module as a host shared library (cached by source hash).

    threaded: every CUDA thread a std::thread (see THREADED_SHIM); launch through
    ``emu_<function>(gx, gy, gz, bx, ...)``.
    """
    code = THREADED_SHIM + source + _launchers(source) if threaded else SHIM + source
    key = hashlib.sha256((opt + code).encode()).hexdigest()[:24]
    lib = cache_dir / f"emu_{key}.so"
    if not lib.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "m.cpp"
            src.write_text(code)
            out = Path(tmp) / "m.so"
            cmd = ["g++", "-std=c++20", opt, "-shared", "-fPIC", "-w", "-pthread",
                   f"-I{CUDA_INCLUDE}", str(src), "-o", str(out)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                raise AssertionError(f"host build failed:\n{proc.stderr[:4000]}")
            shutil.move(str(out), lib)
    return ctypes.CDLL(str(lib))


def run(module: CudaModule, kp: KernelProgram, ctx, lib: ctypes.CDLL, variant="auto",
        threaded=None) -> list:  # fmt: skip
    """Run ``module`` (rendered from ``kp``) on the CPU like the CUDA runtime would.

    variant: "auto" (the runtime's choice), "rows" or "threads" (force that function of
    every launch that has both). threaded: (max blocks, threads per block) for a library
    built with ``threaded=True`` (grids are capped there: the loops stride over the rest);
    gemm launches then run the tiled kernel of gemm.cuh instead of numpy.
    """
    dims = dim_values(kp, ctx.feeds)
    variables = bind_variables(kp, ctx)
    storage = {}
    for name, buf in kp.buffers.items():
        shape = shape_of(kp, name, dims)
        if buf.kind == "input":
            value = ctx.feeds[kp.inputs.index(name)]
        elif buf.kind == "const":
            value = buf.value
        elif buf.kind == "var":
            value = variables[name]
        elif name == RNG_BUFFER:
            value = rng_keys(kp, ctx)
        elif buf.kind == "status":
            value = np.zeros(shape, buf.dtype.np)  # the runtime zeroes the flags
        else:  # device memory is not zeroed: all-ones bytes (NaN, -1) expose a stray read
            value = np.full(int(np.prod(shape)) * buf.dtype.itemsize, 0xFF, np.uint8)
            value = value.view(buf.dtype.np).reshape(shape)
        storage[name] = np.array(value, dtype=buf.dtype.np, order="C").reshape(shape).copy()
    for name, buf in kp.buffers.items():  # planned storage sharing, as on the device
        if buf.alias_of is not None:
            root = buf.alias_of
            while kp.buffers[root].alias_of is not None:
                root = kp.buffers[root].alias_of
            flat = storage[root].reshape(-1).view(np.uint8)
            n = storage[name].nbytes
            storage[name] = flat[:n].view(buf.dtype.np).reshape(storage[name].shape)
    for rk in module.kernels:
        for launch in rk.launches:
            if launch.kind == "gemm":
                for call in L.gemm_calls(launch, dims):
                    if threaded:
                        _tiled_gemm(call, storage, kp, lib)
                    else:
                        _gemm(call, storage)
                continue
            geo = L.configure(launch, dims)
            if geo.function is None:
                continue
            if variant == "rows" and launch.kind == "rows":
                geo = L.Geometry(launch.function, launch.params, geo.grid, geo.block)
            elif variant == "threads" and launch.alt:
                geo = L.Geometry(launch.alt, launch.alt_params, geo.grid, geo.block)
            args = []
            for kind, name in geo.params:
                if kind == "buffer":
                    args.append(ctypes.c_void_p(storage[name].ctypes.data))
                else:
                    args.append(ctypes.c_longlong(dims[name]))
            if threaded:
                max_blocks, threads = threaded
                block = threads if geo.block[0] > 1 else 1
                grid = [ctypes.c_uint(min(geo.grid[0], max_blocks)), ctypes.c_uint(1),
                        ctypes.c_uint(1), ctypes.c_uint(block)]  # fmt: skip
                getattr(lib, f"emu_{geo.function}")(*grid, *args)
            else:
                getattr(lib, geo.function)(*args)
    if STATUS_BUFFER in storage:
        raise_status(kp, storage[STATUS_BUFFER])
    for var, buf in kp.var_updates.items():
        ctx.write_variable(var, storage[buf].copy())
    return [storage[name].copy() for name in kp.outputs]


def _tiled_gemm(g: L.GemmArgs, storage: dict, kp, lib) -> None:
    """The fallback kernel gc_gemm_* of gemm.cuh, 256 emulated threads per block."""
    dtype = kp.buffers[g.c].dtype
    name, scalar = {"float32": ("gc_gemm_f32", ctypes.c_float),
                    "float64": ("gc_gemm_f64", ctypes.c_double),
                    "float16": ("gc_gemm_f16", ctypes.c_float)}[dtype.name]  # fmt: skip
    size = dtype.itemsize

    def ptr(buf, offset):
        return ctypes.c_void_p(storage[buf].ctypes.data + offset * size)

    gx, gy, gz = g.tiled_grid()
    ll = ctypes.c_longlong
    getattr(lib, f"emu_{name}")(
        ctypes.c_uint(gx), ctypes.c_uint(gy), ctypes.c_uint(gz), ctypes.c_uint(256),
        ptr(g.a, g.offset_a), ptr(g.b, g.offset_b), ptr(g.c, g.offset_c),
        ctypes.c_int(g.trans_a), ctypes.c_int(g.trans_b), ll(g.m), ll(g.n), ll(g.k),
        ll(g.batch), ll(g.stride_a), ll(g.stride_b), ll(g.stride_c),
        scalar(g.alpha), scalar(g.beta),
    )  # fmt: skip


def _gemm(g: L.GemmArgs, storage: dict) -> None:
    A, B, C = (storage[x].reshape(-1) for x in (g.a, g.b, g.c))
    for b in range(g.batch):
        a = A[g.offset_a + b * g.stride_a :][: g.m * g.k]
        bm = B[g.offset_b + b * g.stride_b :][: g.k * g.n]
        a = a.reshape(g.k, g.m).T if g.trans_a else a.reshape(g.m, g.k)
        bm = bm.reshape(g.n, g.k).T if g.trans_b else bm.reshape(g.k, g.n)
        c = C[g.offset_c + b * g.stride_c :][: g.m * g.n].reshape(g.m, g.n)
        prod = g.alpha * (a.astype(np.float64) @ bm.astype(np.float64))
        if g.beta != 0:
            prod = prod + g.beta * c
        c[...] = prod.astype(c.dtype)
