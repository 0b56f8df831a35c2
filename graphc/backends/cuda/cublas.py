"""cuBLAS through ctypes: strided-batched SGEMM/DGEMM for the ``gemm`` library call.

Loaded at run time when the library is found (the CUDA toolkit, or the ``nvidia-cublas``
wheel); otherwise the runtime uses the tiled kernel of ``kernels/cuda/gemm.cuh``. cuBLAS is
column-major: the row-major product C = op(A) @ op(B) is computed as the column-major
C^T = op(B)^T @ op(A)^T, i.e. the operands swap and every matrix keeps its memory as is.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

from ... import config

_OP_N, _OP_T = 0, 1
_INT_MAX = 2**31 - 1


def _candidates() -> list:
    names = ["libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"]
    dirs = []
    root = config.cuda_root()
    for base in filter(None, [root, "/usr/local/cuda"]):
        dirs += [os.path.join(base, "lib64"), os.path.join(base, "targets/x86_64-linux/lib")]
    for site in sys.path:  # the nvidia-cublas wheel (e.g. next to PyTorch)
        dirs += glob.glob(os.path.join(site, "nvidia", "cu*", "lib"))
        dirs.append(os.path.join(site, "nvidia", "cublas", "lib"))
    out = list(names)
    for d in dirs:
        out += sorted(glob.glob(os.path.join(d, "libcublas.so*")), reverse=True)
    return out


class Cublas:
    """One cuBLAS handle bound to the current CUDA context."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        self.handle = ctypes.c_void_p()
        self.stream = None  # the stream the handle was last set to
        status = lib.cublasCreate_v2(ctypes.byref(self.handle))
        if status != 0:
            raise OSError(f"cublasCreate failed with status {status}")
        i, ll, p = ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p
        argtypes = [p, i, i, i, i, i, p, p, i, ll, p, i, ll, p, p, i, ll, i]
        for name in ("cublasSgemmStridedBatched", "cublasDgemmStridedBatched"):
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
        lib.cublasSetStream_v2.argtypes = [p, p]
        lib.cublasSetStream_v2.restype = ctypes.c_int

    def supports(self, dtype, g) -> bool:
        """Whether cuBLAS can take this call (float32/64, sizes within its int arguments)."""
        if dtype.name not in ("float32", "float64") or min(g.m, g.n, g.k) < 1:
            return False  # (k == 0 would need a leading dimension of 0: the kernel scales C)
        return max(g.m, g.n, g.k, g.batch, g.lda, g.ldb) <= _INT_MAX

    def gemm(self, dtype, g, a_ptr: int, b_ptr: int, c_ptr: int, stream_handle: int) -> None:
        """C = alpha op(A) op(B) + beta C for every batch entry; pointers include offsets."""
        if stream_handle != self.stream:  # the runtime uses one stream: set it once
            status = self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_handle))
            if status != 0:
                raise RuntimeError(f"cublasSetStream failed with status {status}")
            self.stream = stream_handle
        if dtype.name == "float32":
            fn, scalar = self.lib.cublasSgemmStridedBatched, ctypes.c_float
        else:
            fn, scalar = self.lib.cublasDgemmStridedBatched, ctypes.c_double
        alpha, beta = scalar(g.alpha), scalar(g.beta)
        status = fn(
            self.handle,
            _OP_T if g.trans_b else _OP_N,
            _OP_T if g.trans_a else _OP_N,
            g.n, g.m, g.k,
            ctypes.byref(alpha),
            ctypes.c_void_p(b_ptr), g.ldb, g.stride_b,
            ctypes.c_void_p(a_ptr), g.lda, g.stride_a,
            ctypes.byref(beta),
            ctypes.c_void_p(c_ptr), g.n, g.stride_c,
            g.batch,
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(f"cuBLAS gemm failed with status {status} ({g})")

    def close(self) -> None:
        if self.handle:
            self.lib.cublasDestroy_v2(self.handle)
            self.handle = ctypes.c_void_p()


def load() -> Cublas | None:
    """A cuBLAS handle for the current context, or None when the library is not found."""
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            return Cublas(lib)
        except (OSError, AttributeError):
            return None
    return None
