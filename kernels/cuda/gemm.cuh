// graphc tiled GEMM, used when cuBLAS is not found at run time.
// C[b] (M x N) = alpha * op(A[b]) @ op(B[b]) + beta * C[b], all row-major; op = transpose
// when trans_* is set (A stored K x M, B stored N x K). Strides are elements per batch entry
// (0 broadcasts); offsets are folded into the pointers by the caller. beta == 0 never reads C.
// 64x64 output tile per 256-thread block, 16-deep k slices staged in shared memory, each
// thread accumulating a 4x4 micro-tile (rows ty+16i, cols tx+16j: conflict-free smem reads).

#define GC_GEMM_BM 64
#define GC_GEMM_BN 64
#define GC_GEMM_BK 16

__device__ __forceinline__ float gc_gemm_load(float v) { return v; }
__device__ __forceinline__ double gc_gemm_load(double v) { return v; }
__device__ __forceinline__ float gc_gemm_load(__half v) { return __half2float(v); }
template <typename T, typename Acc> __device__ __forceinline__ T gc_gemm_store(Acc v) {
  return (T)v;
}
template <> __device__ __forceinline__ __half gc_gemm_store<__half, float>(float v) {
  return __float2half_rn(v);
}

// Acc: float for float/half data, double for double data.
template <typename T, typename Acc>
__device__ void gc_gemm_tiled(const T* __restrict__ A, const T* __restrict__ B, T* C,
                              int trans_a, int trans_b, gc_i64 M, gc_i64 N, gc_i64 K,
                              gc_i64 batch, gc_i64 stride_a, gc_i64 stride_b, gc_i64 stride_c,
                              Acc alpha, Acc beta) {
  __shared__ Acc As[GC_GEMM_BK][GC_GEMM_BM + 1];
  __shared__ Acc Bs[GC_GEMM_BK][GC_GEMM_BN + 1];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4, tid = threadIdx.x;
  const gc_i64 m0 = (gc_i64)blockIdx.y * GC_GEMM_BM, n0 = (gc_i64)blockIdx.x * GC_GEMM_BN;
  for (gc_i64 b = blockIdx.z; b < batch; b += gridDim.z) {
    const T* a = A + b * stride_a;
    const T* bm = B + b * stride_b;
    T* c = C + b * stride_c;
    Acc acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = Acc(0);
    for (gc_i64 k0 = 0; k0 < K; k0 += GC_GEMM_BK) {
      // Stage A (BM x BK) and B (BK x BN); the index order follows the contiguous axis.
      for (int idx = tid; idx < GC_GEMM_BM * GC_GEMM_BK; idx += 256) {
        int mm, kk;
        if (trans_a) { kk = idx / GC_GEMM_BM; mm = idx % GC_GEMM_BM; }
        else { mm = idx / GC_GEMM_BK; kk = idx % GC_GEMM_BK; }
        gc_i64 m = m0 + mm, k = k0 + kk;
        Acc v = Acc(0);
        if (m < M && k < K) v = (Acc)gc_gemm_load(trans_a ? a[k * M + m] : a[m * K + k]);
        As[kk][mm] = v;
      }
      for (int idx = tid; idx < GC_GEMM_BK * GC_GEMM_BN; idx += 256) {
        int nn, kk;
        if (trans_b) { nn = idx / GC_GEMM_BK; kk = idx % GC_GEMM_BK; }
        else { kk = idx / GC_GEMM_BN; nn = idx % GC_GEMM_BN; }
        gc_i64 n = n0 + nn, k = k0 + kk;
        Acc v = Acc(0);
        if (n < N && k < K) v = (Acc)gc_gemm_load(trans_b ? bm[n * K + k] : bm[k * N + n]);
        Bs[kk][nn] = v;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < GC_GEMM_BK; ++kk) {
        Acc ar[4], br[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) ar[i] = As[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) br[j] = Bs[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] += ar[i] * br[j];
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      gc_i64 m = m0 + ty + 16 * i;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        gc_i64 n = n0 + tx + 16 * j;
        if (n >= N) continue;
        Acc out = alpha * acc[i][j];
        if (beta != Acc(0)) out += beta * (Acc)gc_gemm_load(c[m * N + n]);
        c[m * N + n] = gc_gemm_store<T, Acc>(out);
      }
    }
  }
}

// Entry points the runtime launches: grid (ceil(N/64), ceil(M/64), min(batch, 65535)),
// block 256.
extern "C" __global__ void __launch_bounds__(256)
gc_gemm_f32(const float* A, const float* B, float* C, int trans_a, int trans_b, gc_i64 M,
            gc_i64 N, gc_i64 K, gc_i64 batch, gc_i64 sa, gc_i64 sb, gc_i64 sc, float alpha,
            float beta) {
  gc_gemm_tiled<float, float>(A, B, C, trans_a, trans_b, M, N, K, batch, sa, sb, sc, alpha, beta);
}
extern "C" __global__ void __launch_bounds__(256)
gc_gemm_f64(const double* A, const double* B, double* C, int trans_a, int trans_b, gc_i64 M,
            gc_i64 N, gc_i64 K, gc_i64 batch, gc_i64 sa, gc_i64 sb, gc_i64 sc, double alpha,
            double beta) {
  gc_gemm_tiled<double, double>(A, B, C, trans_a, trans_b, M, N, K, batch, sa, sb, sc, alpha,
                                beta);
}
extern "C" __global__ void __launch_bounds__(256)
gc_gemm_f16(const __half* A, const __half* B, __half* C, int trans_a, int trans_b, gc_i64 M,
            gc_i64 N, gc_i64 K, gc_i64 batch, gc_i64 sa, gc_i64 sb, gc_i64 sc, float alpha,
            float beta) {
  gc_gemm_tiled<__half, float>(A, B, C, trans_a, trans_b, M, N, K, batch, sa, sb, sc, alpha, beta);
}
