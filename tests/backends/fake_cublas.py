"""A stand-in for ``libcublas`` that checks graphc's ctypes calls against cuBLAS's contract.

``graphc/backends/cuda/cublas.py`` computes the row-major ``C = op(A) @ op(B)`` as the
column-major ``C^T = op(B)^T @ op(A)^T`` (operands swapped, leading dimensions as stored).
This fake implements ``cublas<S|D>gemmStridedBatched`` from cuBLAS's documentation alone
(column-major, ``C[i + j*ldc]``, ``op(X)`` by transa/transb, host-pointer alpha/beta,
strides in elements, every argument range-checked like cuBLAS's
CUBLAS_STATUS_INVALID_VALUE), on host memory behind the "device" addresses of the fake
pycuda. Running the runtime's GEMM launches through it tests that mapping without a GPU;
it proves nothing about cuBLAS itself.
"""

from __future__ import annotations

import ctypes

import numpy as np

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
STATUS_SUCCESS, STATUS_INVALID_VALUE = 0, 7


class _Entry:
    """A ctypes-function look-alike: accepts argtypes/restype and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def _value(x):
    """The Python value behind a ctypes argument (by value or ``byref``)."""
    if hasattr(x, "_obj"):  # ctypes.byref(...)
        x = x._obj
    return x.value if hasattr(x, "value") else x


def _matrix(ptr: int, rows: int, cols: int, ld: int, dtype) -> np.ndarray:
    """Column-major rows x cols view with leading dimension ld at address ptr."""
    item = np.dtype(dtype).itemsize
    span = (cols - 1) * ld + rows if rows and cols else 0
    flat = np.ctypeslib.as_array((ctypes.c_byte * (span * item)).from_address(ptr))
    flat = flat.view(dtype)
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (item, ld * item))


class FakeCublasLib:
    """The few libcublas entry points graphc uses."""

    def __init__(self):
        self.stream = None
        self.cublasCreate_v2 = _Entry(self._create)
        self.cublasDestroy_v2 = _Entry(lambda handle: STATUS_SUCCESS)
        self.cublasSetStream_v2 = _Entry(self._set_stream)
        self.cublasSgemmStridedBatched = _Entry(lambda *a: self._gemm(np.float32, *a))
        self.cublasDgemmStridedBatched = _Entry(lambda *a: self._gemm(np.float64, *a))

    def _create(self, handle_ref) -> int:
        handle_ref._obj.value = 0xC0B1A5
        return STATUS_SUCCESS

    def _set_stream(self, handle, stream) -> int:
        self.stream = _value(stream)
        return STATUS_SUCCESS

    def _gemm(self, dtype, handle, transa, transb, m, n, k, alpha, a, lda, stride_a,
              b, ldb, stride_b, beta, c, ldc, stride_c, batch) -> int:  # fmt: skip
        transa, transb, m, n, k = (_value(x) for x in (transa, transb, m, n, k))
        lda, ldb, ldc, batch = (_value(x) for x in (lda, ldb, ldc, batch))
        alpha, beta = _value(alpha), _value(beta)
        a, b, c = (_value(x) for x in (a, b, c))
        stride_a, stride_b, stride_c = (_value(x) for x in (stride_a, stride_b, stride_c))
        if transa not in (CUBLAS_OP_N, CUBLAS_OP_T) or transb not in (CUBLAS_OP_N, CUBLAS_OP_T):
            return STATUS_INVALID_VALUE
        a_rows = m if transa == CUBLAS_OP_N else k  # A as stored (column-major)
        b_rows = k if transb == CUBLAS_OP_N else n
        if min(m, n, k, batch) < 0 or lda < max(1, a_rows) or ldb < max(1, b_rows):
            return STATUS_INVALID_VALUE
        if ldc < max(1, m):
            return STATUS_INVALID_VALUE
        item = np.dtype(dtype).itemsize
        for i in range(batch):
            A = _matrix(a + i * stride_a * item, a_rows, k if transa == CUBLAS_OP_N else m, lda,
                        dtype)  # fmt: skip
            B = _matrix(b + i * stride_b * item, b_rows, n if transb == CUBLAS_OP_N else k, ldb,
                        dtype)  # fmt: skip
            C = _matrix(c + i * stride_c * item, m, n, ldc, dtype)
            opa = A if transa == CUBLAS_OP_N else A.T
            opb = B if transb == CUBLAS_OP_N else B.T
            prod = alpha * (opa.astype(np.float64) @ opb.astype(np.float64))
            if beta != 0:
                prod += beta * C
            C[...] = prod.astype(dtype)
        return STATUS_SUCCESS
