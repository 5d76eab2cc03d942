#include "common/vec.h"

#include "common/cpu_features.h"

namespace cnnkit {

namespace {
template <class T>
inline __attribute__((always_inline)) void axpy_impl(T* y, const T* x, T a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// 64-byte GCC vectors: one register under AVX-512, two under AVX2, four under SSE.
// aligned(sizeof(T)) lowers their alignment to the element's, so loads and stores
// through them are unaligned ones (vmovups) and any T* may be cast to V*; GCC lets
// a vector alias its element type. No function here takes or returns a V by value:
// only the target clones see AVX-512, and a V crossing a call in a baseline
// function would use a different ABI from one crossing it in the x86-64-v4 clone.
typedef float vfloat __attribute__((vector_size(64), aligned(4)));
typedef double vdouble __attribute__((vector_size(64), aligned(8)));
template <class T>
struct Vec64;
template <>
struct Vec64<float> {
  using type = vfloat;
};
template <>
struct Vec64<double> {
  using type = vdouble;
};

// Assign: y[i] = start + taps; else y[i] += taps.
template <bool Assign, class T>
inline __attribute__((always_inline)) void taps_impl(T* y, const T* x, const int64_t* offset,
                                                     const T* w, int64_t taps, int64_t n,
                                                     T start) {
  using V = typename Vec64<T>::type;
  constexpr int64_t L = 64 / sizeof(T), B = 4 * L;
  const V splat = start - V{};
  int64_t i0 = 0;
  // Four vector accumulators stay in registers across all taps.
  for (; i0 + B <= n; i0 += B) {
    V a0 = splat, a1 = splat, a2 = splat, a3 = splat;
    if (!Assign) {
      a0 = *reinterpret_cast<const V*>(y + i0);
      a1 = *reinterpret_cast<const V*>(y + i0 + L);
      a2 = *reinterpret_cast<const V*>(y + i0 + 2 * L);
      a3 = *reinterpret_cast<const V*>(y + i0 + 3 * L);
    }
    for (int64_t t = 0; t < taps; ++t) {
      const T wv = w[t];
      const T* xs = x + offset[t] + i0;
      a0 += wv * *reinterpret_cast<const V*>(xs);
      a1 += wv * *reinterpret_cast<const V*>(xs + L);
      a2 += wv * *reinterpret_cast<const V*>(xs + 2 * L);
      a3 += wv * *reinterpret_cast<const V*>(xs + 3 * L);
    }
    *reinterpret_cast<V*>(y + i0) = a0;
    *reinterpret_cast<V*>(y + i0 + L) = a1;
    *reinterpret_cast<V*>(y + i0 + 2 * L) = a2;
    *reinterpret_cast<V*>(y + i0 + 3 * L) = a3;
  }
  for (; i0 + L <= n; i0 += L) {
    V a = Assign ? splat : *reinterpret_cast<const V*>(y + i0);
    for (int64_t t = 0; t < taps; ++t) a += w[t] * *reinterpret_cast<const V*>(x + offset[t] + i0);
    *reinterpret_cast<V*>(y + i0) = a;
  }
  if (Assign)
    for (int64_t i = i0; i < n; ++i) y[i] = start;
  for (int64_t t = 0; t < taps; ++t) {
    const T wv = w[t];
    const T* xs = x + offset[t];
    for (int64_t i = i0; i < n; ++i) y[i] += wv * xs[i];
  }
}
template <class T>
inline __attribute__((always_inline)) void taps_dot_impl(const T* g, const T* x,
                                                         const int64_t* offset, int64_t taps,
                                                         int64_t n, T* out) {
  using V = typename Vec64<T>::type;
  constexpr int64_t L = 64 / sizeof(T), G = 8;
  for (int64_t t0 = 0; t0 < taps; t0 += G) {
    const int64_t nt = taps - t0 < G ? taps - t0 : G;
    V acc[G] = {};
    int64_t i = 0;
    for (; i + L <= n; i += L) {
      const V gv = *reinterpret_cast<const V*>(g + i);
#pragma GCC unroll 8
      for (int64_t t = 0; t < G; ++t)
        if (t < nt) acc[t] += gv * *reinterpret_cast<const V*>(x + offset[t0 + t] + i);
    }
    for (int64_t t = 0; t < nt; ++t) {
      T s = 0;
      for (int64_t l = 0; l < L; ++l) s += acc[t][l];
      for (int64_t j = i; j < n; ++j) s += g[j] * x[offset[t0 + t] + j];
      out[t0 + t] += s;
    }
  }
}
}  // namespace

CNNKIT_MULTIVERSION void taps_dot(const float* g, const float* x, const int64_t* offset,
                                  int64_t taps, int64_t n, float* out) {
  taps_dot_impl(g, x, offset, taps, n, out);
}
CNNKIT_MULTIVERSION void taps_dot(const double* g, const double* x, const int64_t* offset,
                                  int64_t taps, int64_t n, double* out) {
  taps_dot_impl(g, x, offset, taps, n, out);
}

CNNKIT_MULTIVERSION void taps_accumulate(float* y, const float* x, const int64_t* offset,
                                         const float* w, int64_t taps, int64_t n) {
  taps_impl<false>(y, x, offset, w, taps, n, 0.0f);
}
CNNKIT_MULTIVERSION void taps_accumulate(double* y, const double* x, const int64_t* offset,
                                         const double* w, int64_t taps, int64_t n) {
  taps_impl<false>(y, x, offset, w, taps, n, 0.0);
}
CNNKIT_MULTIVERSION void taps_assign(float* y, const float* x, const int64_t* offset,
                                     const float* w, int64_t taps, int64_t n, float start) {
  taps_impl<true>(y, x, offset, w, taps, n, start);
}
CNNKIT_MULTIVERSION void taps_assign(double* y, const double* x, const int64_t* offset,
                                     const double* w, int64_t taps, int64_t n, double start) {
  taps_impl<true>(y, x, offset, w, taps, n, start);
}

CNNKIT_MULTIVERSION void axpy(float* y, const float* x, float a, int64_t n) {
  axpy_impl(y, x, a, n);
}
CNNKIT_MULTIVERSION void axpy(double* y, const double* x, double a, int64_t n) {
  axpy_impl(y, x, a, n);
}

}  // namespace cnnkit
