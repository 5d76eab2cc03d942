// Test kernels for cuda/common.cuh and the host shim (not shipped): block reductions,
// shared memory and barriers, atomics, NaN-aware comparisons and the index helpers.
// The tests compile them like cuda/*.cu (nvcc, NVRTC) and run them on the host.
#include "common.cuh"

#define CK_SELFTEST_KERNELS(sfx, T)                                                        \
  /* One 256-thread block per row (grid-stride over rows): sums and NaN-aware maxima. */   \
  extern "C" __global__ void selftest_row_sum_##sfx(const T* x, T* out, i64 rows,          \
                                                    i64 cols) {                            \
    __shared__ T smem[256];                                                                \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                   \
      T acc = T(0);                                                                        \
      for (i64 c = threadIdx.x; c < cols; c += blockDim.x) acc += x[r * cols + c];          \
      acc = ck::block_sum<256>(acc, smem);                                                 \
      if (threadIdx.x == 0) out[r] = acc;                                                  \
    }                                                                                      \
  }                                                                                        \
  extern "C" __global__ void selftest_row_max_##sfx(const T* x, T* out, i64 rows,          \
                                                    i64 cols) {                            \
    __shared__ T smem[256];                                                                \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                   \
      T acc = -ck::infinity<T>();                                                          \
      for (i64 c = threadIdx.x; c < cols; c += blockDim.x)                                 \
        acc = ck::nan_max(acc, x[r * cols + c]);                                           \
      acc = ck::block_max<256>(acc, smem);                                                 \
      if (threadIdx.x == 0) out[r] = acc;                                                  \
    }                                                                                      \
  }                                                                                        \
  /* Each block reverses its chunk of blockDim.x items through dynamic shared memory. */   \
  extern "C" __global__ void selftest_reverse_blocks_##sfx(const T* x, T* y, i64 n) {      \
    T* buf = ck::dynamic_shared<T>();                                                      \
    const i64 base = (i64)blockIdx.x * blockDim.x;                                         \
    const i64 i = base + threadIdx.x;                                                      \
    if (i < n) buf[threadIdx.x] = x[i];                                                    \
    __syncthreads();                                                                       \
    const i64 len = ck::min((i64)blockDim.x, n - base);                                    \
    if ((i64)threadIdx.x < len) y[base + threadIdx.x] = buf[len - 1 - threadIdx.x];        \
  }                                                                                        \
  extern "C" __global__ void selftest_atomic_sum_##sfx(const T* x, T* out, i64 n) {        \
    CK_GRID_STRIDE_LOOP(i, n) atomicAdd(out, x[i]);                                        \
  }                                                                                        \
  extern "C" __global__ void selftest_compare_##sfx(const T* a, const T* b, T* mx, T* mn,   \
                                                    unsigned char* gt, i64 n) {            \
    CK_GRID_STRIDE_LOOP(i, n) {                                                            \
      mx[i] = ck::nan_max(a[i], b[i]);                                                     \
      mn[i] = ck::nan_min(a[i], b[i]);                                                     \
      gt[i] = ck::greater(a[i], b[i]) ? 1 : 0;                                             \
    }                                                                                      \
  }
CK_FOR_FLOAT_TYPES(CK_SELFTEST_KERNELS)
#undef CK_SELFTEST_KERNELS

// args holds (offset, stride, in, out) per item; res gets (lo, hi, floor_div(offset, stride)).
extern "C" __global__ void selftest_index(const i64* args, i64* res, i64 n) {
  CK_GRID_STRIDE_LOOP(i, n) {
    const i64* a = args + 4 * i;
    i64 lo, hi;
    ck::valid_range(a[0], a[1], a[2], a[3], &lo, &hi);
    res[3 * i] = lo;
    res[3 * i + 1] = hi;
    res[3 * i + 2] = ck::floor_div(a[0], a[1]);
  }
}

// The 3-D indices every thread sees, flattened: for tests of the launcher.
extern "C" __global__ void selftest_thread_ids(unsigned int* out, i64 n) {
  const i64 t = threadIdx.x + (i64)blockDim.x * (threadIdx.y + (i64)blockDim.y * threadIdx.z);
  const i64 b = blockIdx.x + (i64)gridDim.x * (blockIdx.y + (i64)gridDim.y * blockIdx.z);
  const i64 threads = (i64)blockDim.x * blockDim.y * blockDim.z;
  const i64 i = b * threads + t;
  if (i < n) {
    unsigned int* o = out + 6 * i;
    o[0] = threadIdx.x, o[1] = threadIdx.y, o[2] = threadIdx.z;
    o[3] = blockIdx.x, o[4] = blockIdx.y, o[5] = blockIdx.z;
  }
}
