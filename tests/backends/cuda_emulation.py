"""Run generated CUDA C on the CPU (g++), each block as one thread, to check its meaning.

Without a GPU this is how the tests check that the renderer's C means what the Kernel IR
means: the same module is compiled as host C++ with the CUDA builtins shimmed
(blockDim = gridDim = 1, so grid-stride and block-stride loops visit every index in order;
warp shuffles are the identity), run, and compared with the Kernel IR interpreter. It does
not check the cooperation of many threads (shuffles, barriers): that needs a GPU
(tests marked ``cuda``). ``gemm`` launches run in numpy from the same evaluated arguments
the runtime passes to cuBLAS.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from graphc.backends.cuda import launch as L
from graphc.backends.cuda.render import CudaModule
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

CUDA_INCLUDE = "/usr/local/cuda/include"


def available() -> str | None:
    """None when g++ and the CUDA headers are here, else why not."""
    if shutil.which("g++") is None:
        return "g++ is not installed"
    if not Path(CUDA_INCLUDE, "cuda_fp16.h").is_file():
        return f"CUDA headers not found in {CUDA_INCLUDE}"
    return None


def build(source: str, cache_dir: Path, opt: str = "-O1") -> ctypes.CDLL:
    """Compile a module as a host shared library (cached by source hash)."""
    code = SHIM + source
    key = hashlib.sha256((opt + code).encode()).hexdigest()[:24]
    lib = cache_dir / f"emu_{key}.so"
    if not lib.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "m.cpp"
            src.write_text(code)
            out = Path(tmp) / "m.so"
            cmd = ["g++", "-std=c++17", opt, "-shared", "-fPIC", "-w", f"-I{CUDA_INCLUDE}",
                   str(src), "-o", str(out)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                raise AssertionError(f"host build failed:\n{proc.stderr[:4000]}")
            shutil.move(str(out), lib)
    return ctypes.CDLL(str(lib))


def run(module: CudaModule, kp: KernelProgram, ctx, lib: ctypes.CDLL, variant="auto") -> list:
    """Run ``module`` (rendered from ``kp``) on the CPU like the CUDA runtime would.

    variant: "auto" (the runtime's choice), "rows" or "threads" (force that function of
    every launch that has both).
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
        else:
            value = np.zeros(shape, buf.dtype.np)
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
            getattr(lib, geo.function)(*args)
    if STATUS_BUFFER in storage:
        raise_status(kp, storage[STATUS_BUFFER])
    for var, buf in kp.var_updates.items():
        ctx.write_variable(var, storage[buf].copy())
    return [storage[name].copy() for name in kp.outputs]


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
