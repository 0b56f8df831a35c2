// graphc CUDA reductions: warp shuffles, then one shared-memory slot per warp.
// Generated row kernels (one block per row of a reduction) call gc_block_reduce once per
// accumulator. blockDim.x must be a multiple of 32 (the runtime launches 32..1024).

struct GcAdd {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct GcMul {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a * b; }
};
struct GcMax {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const {
    return gc_max(a, b);
  }
};
struct GcMin {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const {
    return gc_min(a, b);
  }
};
struct GcAnd {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const {
    return (T)((a != 0) && (b != 0));
  }
};
struct GcOr {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const {
    return (T)((a != 0) || (b != 0));
  }
};

template <typename T, typename Op> __device__ __forceinline__ T gc_warp_reduce(T v, Op op) {
#ifdef GC_HOST_EMULATION  // tests run generated code on the CPU as one-thread blocks
  return v;
#endif
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Reduce v over the whole block; every thread gets the result. smem: >= 32 slots of T.
// The leading barrier makes back-to-back calls (several accumulators, several rows per
// block) safe to share one scratch array.
template <typename T, typename Op>
__device__ __forceinline__ T gc_block_reduce(T v, Op op, T* smem) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = gc_warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  T r = smem[0];
  for (int w = 1; w < nwarps; ++w) r = op(r, smem[w]);
  return r;
}
