// Softmax family and losses on the GPU, with the semantics of csrc/softmax.cpp:
// softmax / log_softmax along one dim (seen as (outer, size, inner)) forward and
// backward, cross_entropy (fused log-softmax + NLL) forward and backward, mse_loss,
// and the class-index check of cross_entropy's targets.
//
// Layout of the softmax kernels: a block is a 2-D tile of blockDim.x adjacent inner
// positions (columns) of one outer index times blockDim.y lanes along the softmax dim;
// both are powers of two, blockDim.x * blockDim.y <= 256 (chosen by the backend from
// the shape). Thread (tx, ty) reads elements k = ty, ty + blockDim.y, ... of column
// tx, and the lanes of a column are combined by a tree over __shared__ memory. So:
// - inner == 1 (contiguous rows): blockDim = (1, up to 256), one block per row, a warp
//   reads 32 consecutive elements of the row;
// - inner > 1: up to 32 adjacent columns per block, so a warp reads a run of adjacent
//   inner positions at each k (coalesced, no thread walks a long strided column
//   alone), and short dims give the threads to more columns instead of idle lanes.
// The lanes, tiles and tree are fixed by the shape alone: results do not depend on
// timing. Max and sum are in T, as on the CPU. Not measured (written without a GPU):
// the known weak spots are few tiles over a long dim (outer * inner / 32 blocks of 8
// lanes underfill the device; a dim split over blocks would need a second pass) and
// short contiguous rows (a block of up to 16 threads per row of 10 logits).
#include "common.cuh"

namespace {

constexpr int kTile = 256;  // threads of a block at most (the __shared__ tiles' size)

// op over the blockDim.y lanes of each column, via smem (kTile elements); every thread
// of the block must call it and gets its column's result.
template <class T, class Op>
__device__ __forceinline__ T lane_reduce(T v, T* smem, Op op) {
  const int bx = (int)blockDim.x, tx = (int)threadIdx.x, ty = (int)threadIdx.y;
  smem[ty * bx + tx] = v;
  __syncthreads();
  for (int s = (int)blockDim.y / 2; s > 0; s >>= 1) {
    if (ty < s) smem[ty * bx + tx] = op(smem[ty * bx + tx], smem[(ty + s) * bx + tx]);
    __syncthreads();
  }
  const T r = smem[tx];
  __syncthreads();
  return r;
}

// The CPU's row max: NaN is skipped here, but x - m is then NaN in the sum, which
// poisons the whole slice (as +inf, inf - inf, and an all -inf slice, -inf + inf, do).
struct CpuMax {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return b > a ? b : a;
  }
};

// The tiles of the grid: tile t covers columns [i0, i0 + blockDim.x) of outer index o;
// the thread's column i may lie past the last one (inactive: it still takes part in the
// reductions). Element k of the column is base + k * inner.
struct Tiles {
  i64 per_outer, count;
  __device__ __forceinline__ Tiles(i64 outer, i64 inner)
      : per_outer((inner + (i64)blockDim.x - 1) / (i64)blockDim.x), count(outer * per_outer) {}
  __device__ __forceinline__ i64 column(i64 t) const {
    return (t % per_outer) * (i64)blockDim.x + (i64)threadIdx.x;
  }
  __device__ __forceinline__ i64 base(i64 t, i64 size, i64 inner) const {
    return (t / per_outer) * size * inner + column(t);
  }
};

template <bool Log, class T>
__device__ __forceinline__ void softmax_forward(const T* __restrict__ x, T* __restrict__ y,
                                                i64 outer, i64 size, i64 inner) {
  __shared__ T smem[kTile];
  const i64 k0 = (i64)threadIdx.y, dk = (i64)blockDim.y;
  const Tiles tiles(outer, inner);
  for (i64 t = blockIdx.x; t < tiles.count; t += gridDim.x) {
    const bool active = tiles.column(t) < inner;
    const i64 base = tiles.base(t, size, inner);
    T m = -ck::infinity<T>();
    if (active)
      for (i64 k = k0; k < size; k += dk) m = CpuMax()(m, x[base + k * inner]);
    m = lane_reduce(m, smem, CpuMax());
    T s = T(0);
    if (active)
      for (i64 k = k0; k < size; k += dk) {
        const T e = ck::exp(x[base + k * inner] - m);
        if (!Log) y[base + k * inner] = e;
        s += e;
      }
    s = lane_reduce(s, smem, ck::Sum());
    if (!active) continue;
    if (Log) {
      const T ls = ck::log(s);
      for (i64 k = k0; k < size; k += dk) y[base + k * inner] = (x[base + k * inner] - m) - ls;
    } else {
      const T inv = T(1) / s;  // the thread rescales the elements it wrote itself
      for (i64 k = k0; k < size; k += dk) y[base + k * inner] *= inv;
    }
  }
}

// y is the forward's output; gx = y * (gy - sum(gy * y)), or gy - exp(y) * sum(gy).
template <bool Log, class T>
__device__ __forceinline__ void softmax_backward(const T* __restrict__ gy, const T* __restrict__ y,
                                                 T* __restrict__ gx, i64 outer, i64 size,
                                                 i64 inner) {
  __shared__ T smem[kTile];
  const i64 k0 = (i64)threadIdx.y, dk = (i64)blockDim.y;
  const Tiles tiles(outer, inner);
  for (i64 t = blockIdx.x; t < tiles.count; t += gridDim.x) {
    const bool active = tiles.column(t) < inner;
    const i64 base = tiles.base(t, size, inner);
    T s = T(0);
    if (active)
      for (i64 k = k0; k < size; k += dk) {
        const i64 j = base + k * inner;
        s += Log ? gy[j] : gy[j] * y[j];
      }
    s = lane_reduce(s, smem, ck::Sum());
    if (!active) continue;
    for (i64 k = k0; k < size; k += dk) {
      const i64 j = base + k * inner;
      gx[j] = Log ? gy[j] - ck::exp(y[j]) * s : y[j] * (gy[j] - s);
    }
  }
}

// ---- cross_entropy: one block per row of logits, blockDim = (1, lanes) as above.

// Per-sample loss logsumexp(x) - x[t] = (m - x[t]) + log(sum), in double as on the
// CPU, so that large logits lose no digits. U is T ('none') or double (to be summed).
template <class T, class U>
__device__ __forceinline__ void cross_entropy_rows(const T* __restrict__ x,
                                                   const i64* __restrict__ target, i64 n, i64 c,
                                                   U* __restrict__ loss) {
  __shared__ T smem[kTile];
  const i64 k0 = (i64)threadIdx.y, dk = (i64)blockDim.y;
  for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
    const T* xr = x + r * c;
    T m = -ck::infinity<T>();
    for (i64 k = k0; k < c; k += dk) m = CpuMax()(m, xr[k]);
    m = lane_reduce(m, smem, CpuMax());
    T s = T(0);
    for (i64 k = k0; k < c; k += dk) s += ck::exp(xr[k] - m);
    s = lane_reduce(s, smem, ck::Sum());
    if (k0 == 0) loss[r] = (U)(((double)m - (double)xr[target[r]]) + ck::log((double)s));
  }
}

// softmax(x) * scale - scale * onehot(target), scale = 1 or 1 / n ('mean').
template <class T>
__device__ __forceinline__ void cross_entropy_grad_rows(const T* __restrict__ x,
                                                        const i64* __restrict__ target, i64 n,
                                                        i64 c, T scale, T* __restrict__ g) {
  __shared__ T smem[kTile];
  const i64 k0 = (i64)threadIdx.y, dk = (i64)blockDim.y;
  for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
    const T* xr = x + r * c;
    T* gr = g + r * c;
    T m = -ck::infinity<T>();
    for (i64 k = k0; k < c; k += dk) m = CpuMax()(m, xr[k]);
    m = lane_reduce(m, smem, CpuMax());
    T s = T(0);
    for (i64 k = k0; k < c; k += dk) {
      gr[k] = ck::exp(xr[k] - m);
      s += gr[k];
    }
    s = lane_reduce(s, smem, ck::Sum());
    const T f = scale / s;
    const i64 t = target[r];
    for (i64 k = k0; k < c; k += dk) gr[k] = k == t ? gr[k] * f - scale : gr[k] * f;
  }
}

// ---- Sums of the reduced losses: in double, per block of a 1-D grid of 256 threads,
// then one block over the partials (loss_total): fixed order, no atomics.

template <class T>
__device__ __forceinline__ void mse_partials(const T* __restrict__ x, const T* __restrict__ t,
                                             double* __restrict__ partial, i64 n) {
  __shared__ double smem[kTile];
  double acc = 0;
  CK_GRID_STRIDE_LOOP(i, n) {
    const double e = (double)x[i] - (double)t[i];
    acc += e * e;
  }
  acc = ck::block_sum<kTile>(acc, smem);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// out[0] = the sum of partial[0..blocks), divided by count when mean (the mean of no
// losses, 0 / 0, is NaN as in torch). Launched with one block of 256 threads.
template <class T>
__device__ __forceinline__ void loss_total(const double* __restrict__ partial, i64 blocks,
                                           i64 count, int mean, T* __restrict__ out) {
  __shared__ double smem[kTile];
  double acc = 0;
  for (i64 b = threadIdx.x; b < blocks; b += blockDim.x) acc += partial[b];
  acc = ck::block_sum<kTile>(acc, smem);
  if (threadIdx.x == 0) out[0] = (T)(mean ? acc / (double)count : acc);
}

struct MinI64 {
  __device__ __forceinline__ i64 operator()(i64 a, i64 b) const { return ck::min(a, b); }
};

}  // namespace

#define CK_SOFTMAX_KERNELS(sfx, T)                                                           \
  extern "C" __global__ void softmax_forward_##sfx(const T* x, T* y, i64 outer, i64 size,     \
                                                   i64 inner) {                               \
    softmax_forward<false>(x, y, outer, size, inner);                                        \
  }                                                                                          \
  extern "C" __global__ void log_softmax_forward_##sfx(const T* x, T* y, i64 outer, i64 size, \
                                                       i64 inner) {                           \
    softmax_forward<true>(x, y, outer, size, inner);                                         \
  }                                                                                          \
  extern "C" __global__ void softmax_backward_##sfx(const T* gy, const T* y, T* gx, i64 outer, \
                                                    i64 size, i64 inner) {                    \
    softmax_backward<false>(gy, y, gx, outer, size, inner);                                  \
  }                                                                                          \
  extern "C" __global__ void log_softmax_backward_##sfx(const T* gy, const T* y, T* gx,       \
                                                        i64 outer, i64 size, i64 inner) {     \
    softmax_backward<true>(gy, y, gx, outer, size, inner);                                   \
  }                                                                                          \
  extern "C" __global__ void cross_entropy_none_##sfx(const T* x, const i64* target, i64 n,   \
                                                      i64 c, T* loss) {                       \
    cross_entropy_rows(x, target, n, c, loss);                                               \
  }                                                                                          \
  extern "C" __global__ void cross_entropy_losses_##sfx(const T* x, const i64* target, i64 n, \
                                                        i64 c, double* loss) {                \
    cross_entropy_rows(x, target, n, c, loss);                                               \
  }                                                                                          \
  extern "C" __global__ void cross_entropy_backward_##sfx(const T* x, const i64* target,      \
                                                          i64 n, i64 c, T scale, T* g) {      \
    cross_entropy_grad_rows(x, target, n, c, scale, g);                                      \
  }                                                                                          \
  extern "C" __global__ void squared_error_##sfx(const T* x, const T* t, T* y, i64 n) {       \
    CK_GRID_STRIDE_LOOP(i, n) {                                                              \
      const T e = x[i] - t[i];                                                               \
      y[i] = e * e;                                                                          \
    }                                                                                        \
  }                                                                                          \
  extern "C" __global__ void mse_partials_##sfx(const T* x, const T* t, double* partial,      \
                                                i64 n) {                                      \
    mse_partials(x, t, partial, n);                                                          \
  }                                                                                          \
  extern "C" __global__ void mse_loss_backward_##sfx(const T* x, const T* t, T* g, i64 n,     \
                                                     T scale) {                               \
    CK_GRID_STRIDE_LOOP(i, n) g[i] = scale * (x[i] - t[i]);                                  \
  }                                                                                          \
  extern "C" __global__ void loss_total_##sfx(const double* partial, i64 blocks, i64 count,   \
                                              int mean, T* out) {                             \
    loss_total(partial, blocks, count, mean, out);                                           \
  }
CK_FOR_FLOAT_TYPES(CK_SOFTMAX_KERNELS)
#undef CK_SOFTMAX_KERNELS

// Per-block sums of n doubles (cross_entropy's losses), as mse_partials; 256 threads.
extern "C" __global__ void sum_partials_f64(const double* v, double* partial, i64 n) {
  __shared__ double smem[kTile];
  double acc = 0;
  CK_GRID_STRIDE_LOOP(i, n) acc += v[i];
  acc = ck::block_sum<kTile>(acc, smem);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// The first position of a target outside [0, classes), per block (n when none);
// 256 threads. Each thread's first hit is its smallest, since i increases.
extern "C" __global__ void class_index_partials(const i64* target, i64 n, i64 classes,
                                                i64* partial) {
  __shared__ i64 smem[kTile];
  i64 first = n;
  CK_GRID_STRIDE_LOOP(i, n) {
    if (target[i] < 0 || target[i] >= classes) {
      first = i;
      break;
    }
  }
  first = ck::block_reduce<kTile>(first, smem, MinI64());
  if (threadIdx.x == 0) partial[blockIdx.x] = first;
}

// out = (first bad position or n, its target or 0) over the partials; one block of 256.
extern "C" __global__ void class_index_first(const i64* partial, i64 blocks, const i64* target,
                                             i64 n, i64* out) {
  __shared__ i64 smem[kTile];
  i64 first = n;
  for (i64 b = threadIdx.x; b < blocks; b += blockDim.x) first = ck::min(first, partial[b]);
  first = ck::block_reduce<kTile>(first, smem, MinI64());
  if (threadIdx.x == 0) {
    out[0] = first;
    out[1] = first < n ? target[first] : 0;
  }
}
