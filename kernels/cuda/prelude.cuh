// graphc CUDA prelude: scalar helpers whose meaning is graphc.kernel.expr.eval_expr (numpy).
// Pasted at the top of every generated module (the renderer inlines it, so a module's
// source is self-contained and its hash covers these helpers too).
#include <cuda_fp16.h>

typedef long long gc_i64;

// float16 values live in float registers holding exactly representable halves: every
// arithmetic result is rounded back to half precision, as numpy does per operation.
__device__ __forceinline__ float gc_rh(float x) { return __half2float(__float2half_rn(x)); }
__device__ __forceinline__ float gc_rh_d(double x) { return __half2float(__double2half(x)); }

#define GC_INF_F __int_as_float(0x7f800000)
#define GC_NAN_F __int_as_float(0x7fffffff)
#define GC_INF_D __longlong_as_double(0x7ff0000000000000LL)
#define GC_NAN_D __longlong_as_double(0x7fffffffffffffffLL)

// max/min propagate NaN like np.maximum / np.minimum (fmaxf would drop it).
template <typename T> __device__ __forceinline__ T gc_max(T a, T b) {
  return (a != a) ? a : ((b != b) ? b : (a > b ? a : b));
}
template <typename T> __device__ __forceinline__ T gc_min(T a, T b) {
  return (a != a) ? a : ((b != b) ? b : (a < b ? a : b));
}

// numpy floor_divide / mod on floats (npy_divmod): Python sign rules, exact for exact cases.
template <typename T> __device__ __forceinline__ T gc_fmod_py(T a, T b) {
  T mod = fmod(a, b);
  if (b == T(0)) return mod;
  if (mod != T(0)) {
    if ((b < T(0)) != (mod < T(0))) mod += b;
  } else {
    mod = copysign(T(0), b);
  }
  return mod;
}
template <typename T> __device__ __forceinline__ T gc_floordiv_f(T a, T b) {
  if (b == T(0)) return a / b;
  T mod = fmod(a, b);
  T div = (a - mod) / b;
  if (mod != T(0) && ((b < T(0)) != (mod < T(0)))) div -= T(1);
  T fl;
  if (div != T(0)) {
    fl = floor(div);
    if (div - fl > T(0.5)) fl += T(1);
  } else {
    fl = copysign(T(0), a / b);
  }
  return fl;
}

// Integer floor division / modulo with Python signs; x // 0 == x and x % 0 == 0, as in
// eval_expr (which divides by 1 where the divisor is 0).
template <typename T> __device__ __forceinline__ T gc_floordiv_i(T a, T b) {
  if (b == 0) return a;
  T q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
  return q;
}
template <typename T> __device__ __forceinline__ T gc_mod_i(T a, T b) {
  if (b == 0) return 0;
  T r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}
// Integer power with negative exponents clamped to 0 (eval_expr); wraps on overflow.
template <typename T> __device__ __forceinline__ T gc_pow_i(T a, T b) {
  typedef unsigned long long U;
  U result = 1, base = (U)(long long)a;
  long long e = b < 0 ? 0 : (long long)b;
  while (e) {
    if (e & 1) result *= base;
    base *= base;
    e >>= 1;
  }
  return (T)(long long)result;
}

// Logical right shift of the word taken as uint64 (numpy: astype(uint64) >> b).
template <typename T> __device__ __forceinline__ T gc_shr(T a, T b) {
  unsigned long long u = (unsigned long long)(long long)a;
  return (b < 0 || b >= 64) ? (T)0 : (T)(long long)(u >> b);
}

// Shifts of int32/int64 in their own width (tf.bitwise, numpy's meaning for every count): a
// count outside [0, width) gives 0 (left, logical right) or the sign fill (arithmetic right).
// The words are shifted as unsigned (a signed left shift that overflows is undefined in C);
// the mask keeps an int32 word's 32 bits only.
template <typename T> __device__ __forceinline__ unsigned long long gc_word(T a) {
  return (unsigned long long)(long long)a & (sizeof(T) == 8 ? ~0ULL : 0xffffffffULL);
}
template <typename T> __device__ __forceinline__ T gc_shl(T a, T b) {
  return (b < 0 || b >= (T)(8 * sizeof(T))) ? (T)0 : (T)(long long)(gc_word(a) << b);
}
template <typename T> __device__ __forceinline__ T gc_sar(T a, T b) {
  const T top = (T)(8 * sizeof(T) - 1);
  return a >> ((b < 0 || b > top) ? top : b);
}
template <typename T> __device__ __forceinline__ T gc_lshr(T a, T b) {
  return (b < 0 || b >= (T)(8 * sizeof(T))) ? (T)0 : (T)(long long)(gc_word(a) >> b);
}

// Float -> integer conversion with graphc's (XLA's) saturating rule, as eval_expr's
// cast_values: NaN -> 0, beyond the range -> its ends, else truncation toward zero (a plain
// C cast is undefined out of range). The bounds are powers of two, exact in F.
template <typename I, typename F> __device__ __forceinline__ I gc_f2i(F x) {
  const F hi = F(sizeof(I) == 8 ? 9223372036854775808.0 : 2147483648.0);
  if (x != x) return I(0);
  if (x >= hi) return sizeof(I) == 8 ? I(9223372036854775807LL) : I(2147483647);
  if (x < -hi) return sizeof(I) == 8 ? I(-9223372036854775807LL - 1) : I(-2147483647 - 1);
  return I(x);
}

template <typename T> __device__ __forceinline__ T gc_sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));
}
template <typename T> __device__ __forceinline__ T gc_abs_i(T x) { return x < 0 ? -x : x; }

// Sigmoid that is stable in both tails (exp of a non-positive number only), as eval_expr.
__device__ __forceinline__ float gc_sigmoid_f(float x) {
  float e = expf(-fabsf(x));
  return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}
__device__ __forceinline__ double gc_sigmoid_d(double x) {
  double e = exp(-fabs(x));
  return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
