// Shared helpers of the CUDA kernels in cuda/*.cu.
//
// This header compiles three ways: under nvcc, under NVRTC (CuPy's run-time compiler,
// which has no standard library: only builtins and the CUDA math functions), and as
// plain C++ through tests/cuda_host/shim.h, which runs the kernels on the CPU. So: no
// #include here or in a .cu except "common.cuh" and other local .cuh files, no warp
// intrinsics (the shim runs blocks as CPU threads), and math through ck:: below.
#pragma once

typedef long long i64;

// Kernels come in float32 and float64 pairs named <name>_f32 and <name>_f64:
// CK_FOR_FLOAT_TYPES(M) expands M(f32, float) M(f64, double).
#define CK_FOR_FLOAT_TYPES(M) M(f32, float) M(f64, double)

// i (an i64) runs over [0, n) with the whole 1-D grid: any grid size covers any n.
#define CK_GRID_STRIDE_LOOP(i, n)                                         \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); \
       i += (i64)blockDim.x * gridDim.x)

namespace ck {

// ---- Index helpers (the same formulas as csrc/common/shapes.h)

__host__ __device__ __forceinline__ i64 floor_div(i64 a, i64 b) {
  const i64 q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

__host__ __device__ __forceinline__ i64 min(i64 a, i64 b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ i64 max(i64 a, i64 b) { return a > b ? a : b; }

// Range [lo, hi) of output positions o in [0, out) whose input position
// o * stride + offset falls inside [0, in), as cnnkit::valid_range on the CPU.
__host__ __device__ __forceinline__ void valid_range(i64 offset, i64 stride, i64 in, i64 out,
                                                     i64* lo, i64* hi) {
  typedef unsigned long long u64;  // offset and in - 1 - offset may each be near +-2**63
  const u64 s = (u64)stride;
  i64 l = 0, h = 0;
  if (offset < 0) {
    const u64 before = 0 - (u64)offset, skip = before / s + (before % s != 0);
    l = skip < (u64)out ? (i64)skip : out;
  }
  if (offset <= in - 1) {
    const u64 last = ((u64)(in - 1) - (u64)offset) / s;
    h = last < (u64)out ? (i64)last + 1 : out;
  }
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

// Divisor factor of a pooling window starting at `start` along one axis, as
// cnnkit::window_count: k clipped to the padded input or the input; k may be near 2**63.
__host__ __device__ __forceinline__ i64 window_count(i64 start, i64 k, i64 pad, i64 in,
                                                     int count_include_pad) {
  const i64 end = count_include_pad ? in + pad : in;
  const i64 stop = k < end - start ? start + k : end;
  return stop - (count_include_pad || start > 0 ? start : 0);
}

// Flat index i of a C-contiguous (N, C, H, W) array as its four coordinates.
struct Nchw {
  i64 n, c, h, w;
};
__host__ __device__ __forceinline__ Nchw unravel_nchw(i64 i, i64 channels, i64 height, i64 width) {
  Nchw p;
  p.w = i % width;
  i /= width;
  p.h = i % height;
  i /= height;
  p.c = i % channels;
  p.n = i / channels;
  return p;
}

// ---- Math for float and double (overloads, so that templates pick the precision)

__device__ __forceinline__ float exp(float x) { return ::expf(x); }
__device__ __forceinline__ double exp(double x) { return ::exp(x); }
__device__ __forceinline__ float expm1(float x) { return ::expm1f(x); }
__device__ __forceinline__ double expm1(double x) { return ::expm1(x); }
__device__ __forceinline__ float log(float x) { return ::logf(x); }
__device__ __forceinline__ double log(double x) { return ::log(x); }
__device__ __forceinline__ float log1p(float x) { return ::log1pf(x); }
__device__ __forceinline__ double log1p(double x) { return ::log1p(x); }
__device__ __forceinline__ float sqrt(float x) { return ::sqrtf(x); }
__device__ __forceinline__ double sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float pow(float x, float y) { return ::powf(x, y); }
__device__ __forceinline__ double pow(double x, double y) { return ::pow(x, y); }
__device__ __forceinline__ float fabs(float x) { return ::fabsf(x); }
__device__ __forceinline__ double fabs(double x) { return ::fabs(x); }
__device__ __forceinline__ float copysign(float x, float y) { return ::copysignf(x, y); }
__device__ __forceinline__ double copysign(double x, double y) { return ::copysign(x, y); }
__device__ __forceinline__ float floor(float x) { return ::floorf(x); }
__device__ __forceinline__ double floor(double x) { return ::floor(x); }

template <class T>
__device__ __forceinline__ bool isnan(T x) {
  return x != x;
}

// +infinity of T (NVRTC has no __builtin_huge_val and no <limits>).
template <class T>
__device__ __forceinline__ T infinity();
template <>
__device__ __forceinline__ float infinity<float>() {
  return __int_as_float(0x7f800000);
}
template <>
__device__ __forceinline__ double infinity<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

// ---- NaN-aware comparisons: NaN propagates, as in the CPU kernels

// a wins over the current best b: strictly greater, or a NaN over a number. Scanning
// with `if (greater(v, best)) best = v` keeps the first maximum and the first NaN.
template <class T>
__device__ __forceinline__ bool greater(T a, T b) {
  return a > b || (a != a && b == b);
}

// max(a, b) that returns a NaN operand (a's first).
template <class T>
__device__ __forceinline__ T nan_max(T a, T b) {
  return greater(b, a) ? b : a;
}

template <class T>
__device__ __forceinline__ T nan_min(T a, T b) {
  return (b < a || (b != b && a == a)) ? b : a;
}

struct Sum {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};

struct Max {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return nan_max(a, b);
  }
};

// ---- Dynamic shared memory: the launch's shared_mem bytes, 16-byte aligned

#ifdef CNNKIT_CUDA_HOST
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
  return reinterpret_cast<T*>(cuda_host::dynamic_shared());
}
#else
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char ck_dynamic_shared[];
  return reinterpret_cast<T*>(ck_dynamic_shared);
}
#endif

// ---- Block reductions over __shared__ memory (no warp shuffles: the host shim runs them)

// Reduces v over the threads of a 1-D block of exactly Block threads (a power of two),
// through smem, a __shared__ array of Block elements that the caller declares. Every
// thread of the block must call it; every thread gets the result, and smem may be
// reused after it returns. The order of the sums is fixed: results do not depend on
// timing.
template <int Block, class T, class Op>
__device__ __forceinline__ T block_reduce(T v, T* smem, Op op) {
  static_assert(Block >= 1 && (Block & (Block - 1)) == 0, "Block must be a power of two");
  const int t = (int)threadIdx.x;
  smem[t] = v;
  __syncthreads();
  for (int s = Block / 2; s > 0; s >>= 1) {
    if (t < s) smem[t] = op(smem[t], smem[t + s]);
    __syncthreads();
  }
  const T r = smem[0];
  __syncthreads();
  return r;
}

template <int Block, class T>
__device__ __forceinline__ T block_sum(T v, T* smem) {
  return block_reduce<Block>(v, smem, Sum());
}

template <int Block, class T>
__device__ __forceinline__ T block_max(T v, T* smem) {
  return block_reduce<Block>(v, smem, Max());
}

}  // namespace ck
