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

// The same-sized integer vectors: lane masks for the vectors above.
template <class T>
struct Mask64;
template <>
struct Mask64<float> {
  typedef int32_t type __attribute__((vector_size(64)));
};
template <>
struct Mask64<double> {
  typedef int64_t type __attribute__((vector_size(64)));
};

// v's lanes summed pairwise: a tree of depth log2(lanes), not one chain through them all.
template <class T, class V>
inline __attribute__((always_inline)) T lane_sum(const V& v) {
  constexpr int64_t L = 64 / sizeof(T);
  T s[L];
  for (int64_t l = 0; l < L; ++l) s[l] = v[l];
  for (int64_t w = L / 2; w > 0; w /= 2)
    for (int64_t l = 0; l < w; ++l) s[l] += s[l + w];
  return s[0];
}

// taps_dot for NT taps, fixed at compile time so that the loop carries no per-tap tests.
template <int NT, class T>
inline __attribute__((always_inline)) void taps_dot_group(const T* g, const T* x,
                                                          const int64_t* offset, int64_t n,
                                                          T* out) {
  using V = typename Vec64<T>::type;
  using M = typename Mask64<T>::type;
  constexpr int64_t L = 64 / sizeof(T);
  const T* xs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = x + offset[t];
  V acc[NT] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const V gv = *reinterpret_cast<const V*>(g + i);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] += gv * *reinterpret_cast<const V*>(xs[t] + i);
  }
  if (i < n && n >= L) {
    // The last L elements once more, the lanes already summed zeroed in g's vector.
    const int64_t last = n - L;
    M lane;
    for (int64_t l = 0; l < L; ++l) lane[l] = l;
    using Lane = decltype(lane[0] + 0);
    const M fresh = lane >= (M{} + Lane(i - last));
    const V gv = fresh ? *reinterpret_cast<const V*>(g + last) : V{};
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] += gv * *reinterpret_cast<const V*>(xs[t] + last);
    i = n;
  }
  for (int t = 0; t < NT; ++t) {
    T s = lane_sum<T>(acc[t]);
    for (int64_t j = i; j < n; ++j) s += g[j] * xs[t][j];
    out[t] += s;
  }
}

// Taps in groups of at most 8 (one pass over g each), the groups as even as can be:
// 25 taps go 7 + 6 + 6 + 6, not 8 + 8 + 8 + 1.
template <class T>
inline __attribute__((always_inline)) void taps_dot_impl(const T* g, const T* x,
                                                         const int64_t* offset, int64_t taps,
                                                         int64_t n, T* out) {
  constexpr int64_t G = 8;
  const int64_t groups = (taps + G - 1) / G;
  for (int64_t k = 0, t0 = 0; k < groups; ++k) {
    const int64_t nt = taps / groups + (k < taps % groups);
    const int64_t* o = offset + t0;
    T* r = out + t0;
    switch (nt) {
      case 1: taps_dot_group<1>(g, x, o, n, r); break;
      case 2: taps_dot_group<2>(g, x, o, n, r); break;
      case 3: taps_dot_group<3>(g, x, o, n, r); break;
      case 4: taps_dot_group<4>(g, x, o, n, r); break;
      case 5: taps_dot_group<5>(g, x, o, n, r); break;
      case 6: taps_dot_group<6>(g, x, o, n, r); break;
      case 7: taps_dot_group<7>(g, x, o, n, r); break;
      default: taps_dot_group<8>(g, x, o, n, r); break;
    }
    t0 += nt;
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
