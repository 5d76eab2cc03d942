#include "pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/cpu_features.h"
#include "common/shapes.h"
#include "common/threading.h"

namespace cnnkit {

namespace {

// Elements of work below which a parallel_for item is not worth a thread.
constexpr int64_t kGrainElems = 16384;

template <class T>
std::unique_ptr<T[]> uninitialized(int64_t n) {
  return std::unique_ptr<T[]>(n > 0 ? new T[n] : nullptr);
}

struct Span {
  int64_t lo, hi;
};

// Taps [lo, hi) of a window starting at `start` (stride `dilation`, k taps) that
// fall inside [0, in).
CNNKIT_INLINE Span window_taps(int64_t start, int64_t k, int64_t dilation, int64_t in) {
  Span s;
  valid_range(start, dilation, in, k, &s.lo, &s.hi);
  return s;
}

// Output columns of a row: those in [lo, hi) have windows wholly inside the input
// (the first and the last tap are inside, so every tap is) and run on the vectorised
// kernels; those in [lo, vec_hi) also leave room for whole-vector loads at the column
// stride, which read up to stride - 1 elements past a window's last tap.
struct Columns {
  int64_t lo, hi, vec_hi;
};

// End of the whole-vector columns of an output row whose windows' last input row is
// last_row. Reading past the end of an input row reads the next row's start, so only
// windows that reach the array's very last row must stop at vec_hi.
CNNKIT_INLINE int64_t vector_end(const PoolGeometry& g, Columns cols, int64_t plane,
                                 int64_t last_row) {
  return plane == g.planes() - 1 && last_row == g.h - 1 ? cols.vec_hi : cols.hi;
}

Columns interior_columns(const PoolGeometry& g) {
  Span first, last, room;
  const int64_t last_tap = -g.pw + (g.kw - 1) * g.dw;
  valid_range(-g.pw, g.sw, g.w, g.wo, &first.lo, &first.hi);
  valid_range(last_tap, g.sw, g.w, g.wo, &last.lo, &last.hi);
  int64_t room_tap;  // past the input when it overflows
  if (__builtin_add_overflow(last_tap, g.sw - 1, &room_tap)) room_tap = g.w;
  valid_range(room_tap, g.sw, g.w, g.wo, &room.lo, &room.hi);
  const int64_t lo = std::max(first.lo, last.lo);
  const int64_t hi = std::max(lo, std::min(first.hi, last.hi));
  return {lo, hi, std::max(lo, std::min(hi, room.hi))};
}

template <class T>
using SameWidthInt = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

// 16-byte GCC vectors, four to a chunk of outputs. Wider generic vectors would not
// help: a target_clones body is lowered for the baseline target before it is cloned,
// and 32- or 64-byte compares then fall apart into scalar code, while 16-byte ones
// stay native in every clone (with VEX blends in the AVX2 and AVX-512 clones).
// aligned(sizeof(T)) makes loads and stores through them unaligned-safe.
typedef float vfloat __attribute__((vector_size(16), aligned(4)));
typedef double vdouble __attribute__((vector_size(16), aligned(8)));
typedef int32_t vint32 __attribute__((vector_size(16), aligned(4)));
typedef int64_t vint64 __attribute__((vector_size(16), aligned(8)));

template <class T>
struct Vec;
template <>
struct Vec<float> {
  using V = vfloat;
  using I = vint32;  // lanes of the same width, for selects driven by compares
};
template <>
struct Vec<double> {
  using V = vdouble;
  using I = vint64;
};
template <class T>
constexpr int64_t kLanes = 16 / sizeof(T);
constexpr int kUnroll = 4;  // independent vectors per chunk, to hide latency
template <class T>
constexpr int64_t kChunk = kUnroll * kLanes<T>;

// Vectors pass by reference and their types are never deduced (deduction would drop
// the unaligned attribute).
template <class T>
CNNKIT_INLINE void vload(const T* p, typename Vec<T>::V& v) {
  v = *reinterpret_cast<const typename Vec<T>::V*>(p);
}

template <class T>
CNNKIT_INLINE void vstore(T* p, const typename Vec<T>::V& v) {
  *reinterpret_cast<typename Vec<T>::V*>(p) = v;
}

// v = the even lanes of (a, b): a stride-2 load.
CNNKIT_INLINE void even_lanes(const vfloat& a, const vfloat& b, vfloat& v) {
#if defined(__clang__)
  v = __builtin_shufflevector(a, b, 0, 2, 4, 6);
#else
  v = __builtin_shuffle(a, b, vint32{0, 2, 4, 6});
#endif
}

CNNKIT_INLINE void even_lanes(const vdouble& a, const vdouble& b, vdouble& v) {
#if defined(__clang__)
  v = __builtin_shufflevector(a, b, 0, 2);
#else
  v = __builtin_shuffle(a, b, vint64{0, 2});
#endif
}

// v = kLanes elements p[0], p[S], p[2 S], ... (S is 1 or 2).
template <int S, class T>
CNNKIT_INLINE void load_columns(const T* p, typename Vec<T>::V& v) {
  using V = typename Vec<T>::V;
  static_assert(S == 1 || S == 2, "whole-vector loads at column stride 1 or 2");
  if constexpr (S == 1) {
    vload(p, v);
  } else {
    V a, b;
    vload(p, a);
    vload(p + kLanes<T>, b);
    even_lanes(a, b, v);
  }
}

// ---- Max pooling

// PyTorch's rule: a strictly greater value or any NaN takes the window, so ties keep
// the first maximum and the last NaN wins.
template <class T>
CNNKIT_INLINE bool takes_max(T v, T m) {
  return (v > m) | (v != v);
}

// One window, clipped to the input, scalar: the boundary columns.
template <class T, bool kIdx>
CNNKIT_INLINE void max_window(const T* x, const PoolGeometry& g, int64_t ih0, Span rows,
                              int64_t ow, T* y, int64_t* switches) {
  const int64_t iw0 = ow * g.sw - g.pw;
  const Span cols = window_taps(iw0, g.kw, g.dw, g.w);
  T m = -std::numeric_limits<T>::infinity();
  int64_t best = (ih0 + rows.lo * g.dh) * g.w + iw0 + cols.lo * g.dw;
  for (int64_t i = rows.lo; i < rows.hi; ++i) {
    const int64_t row = (ih0 + i * g.dh) * g.w;
    for (int64_t j = cols.lo; j < cols.hi; ++j) {
      const int64_t at = row + iw0 + j * g.dw;
      if (takes_max(x[at], m)) {
        m = x[at];
        best = at;
      }
    }
  }
  *y = m;
  if (kIdx) *switches = best;
}

// Interior columns of one output row, n outputs from column `lo`: the running max m
// (the output row itself) and the winning tap's offset r from the window origin are
// updated one tap at a time across the whole row, so the compare-and-select loops
// vectorise. S is the column stride when known at compile time, 0 otherwise. R is an
// integer as wide as T, so that the select of r shares the lanes of the compare.
template <class T, bool kIdx, int S, class R = SameWidthInt<T>>
CNNKIT_INLINE void max_interior(const T* __restrict x, const PoolGeometry& g, int64_t ih0,
                                Span rows, int64_t lo, int64_t n, T* __restrict m,
                                R* __restrict r) {
  const int64_t s = S ? S : g.sw;
  const T* origin = x + lo * s - g.pw;
  {
    const T* __restrict src = origin + (ih0 + rows.lo * g.dh) * g.w;
    for (int64_t k = 0; k < n; ++k) m[k] = src[k * s];
    if (kIdx) {
      const R t = static_cast<R>(rows.lo * g.dh * g.w);
      for (int64_t k = 0; k < n; ++k) r[k] = t;
    }
  }
  for (int64_t i = rows.lo; i < rows.hi; ++i) {
    for (int64_t j = (i == rows.lo); j < g.kw; ++j) {
      const T* __restrict src = origin + (ih0 + i * g.dh) * g.w + j * g.dw;
      if (kIdx) {
        const R t = static_cast<R>(i * g.dh * g.w + j * g.dw);
        for (int64_t k = 0; k < n; ++k) {
          const T v = src[k * s];
          const bool take = takes_max(v, m[k]);
          m[k] = take ? v : m[k];
          r[k] = take ? t : r[k];
        }
      } else {
        for (int64_t k = 0; k < n; ++k) {
          const T v = src[k * s];
          m[k] = takes_max(v, m[k]) ? v : m[k];
        }
      }
    }
  }
}

// kChunk consecutive interior outputs of one row from column k0, S = 1 or 2: the
// running maxima and the winning taps' offsets from the window origin stay in
// registers across all taps.
template <class T, bool kIdx, int S>
CNNKIT_INLINE void max_chunk(const T* xp, const PoolGeometry& g, int64_t ih0, Span rows,
                             int64_t k0, T* y, int64_t* switches) {
  using V = typename Vec<T>::V;
  using I = typename Vec<T>::I;
  using R = SameWidthInt<T>;
  constexpr int64_t L = kLanes<T>;
  // Flat index of the first window's origin (negative in the top padding: only the
  // tap offsets bring it into the plane).
  const int64_t origin = ih0 * g.w + k0 * S - g.pw;
  const R first = static_cast<R>(rows.lo * g.dh * g.w);
  V m[kUnroll];
  I r[kUnroll];
  for (int u = 0; u < kUnroll; ++u) {
    load_columns<S>(xp + (origin + first + u * L * S), m[u]);
    r[u] = I{} + first;
  }
  for (int64_t i = rows.lo; i < rows.hi; ++i) {
    for (int64_t j = (i == rows.lo); j < g.kw; ++j) {
      const R t = static_cast<R>(i * g.dh * g.w + j * g.dw);
      for (int u = 0; u < kUnroll; ++u) {
        V v;
        load_columns<S>(xp + (origin + t + u * L * S), v);
        const I take = (v > m[u]) | (v != v);  // takes_max, lane-wise
        m[u] = take ? v : m[u];
        if (kIdx) r[u] = take ? I{} + t : r[u];
      }
    }
  }
  for (int u = 0; u < kUnroll; ++u) vstore(y + k0 + u * L, m[u]);
  if (kIdx) {
    R rel[kChunk<T>];
    std::memcpy(rel, r, sizeof r);
    for (int64_t k = 0; k < kChunk<T>; ++k) switches[k0 + k] = origin + k * S + rel[k];
  }
}

// Output rows [r0, r1) of all planes (row = plane * ho + oh).
template <class T, bool kIdx, int S>
CNNKIT_INLINE void max_pool_rows(const T* x, T* y, int64_t* switches, const PoolGeometry& g,
                                 Columns cols, int64_t r0, int64_t r1, SameWidthInt<T>* rel) {
  constexpr int64_t L = kChunk<T>;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t oh = row % g.ho;
    const T* xp = x + (row / g.ho) * g.plane_in();
    T* yr = y + row * g.wo;
    int64_t* sr = kIdx ? switches + row * g.wo : nullptr;
    const int64_t ih0 = oh * g.sh - g.ph;
    const Span rows = window_taps(ih0, g.kh, g.dh, g.h);
    for (int64_t ow = 0; ow < cols.lo; ++ow)
      max_window<T, kIdx>(xp, g, ih0, rows, ow, yr + ow, kIdx ? sr + ow : nullptr);
    int64_t done = cols.lo;
    if constexpr (S != 0) {
      // Whole vectors; the last one overlaps its predecessor rather than running short.
      const int64_t end = vector_end(g, cols, row / g.ho, ih0 + (rows.hi - 1) * g.dh);
      if (end - cols.lo >= L) {
        for (int64_t k0 = cols.lo; k0 < end; k0 += L)
          max_chunk<T, kIdx, S>(xp, g, ih0, rows, std::min(k0, end - L), yr, sr);
        done = end;
      }
    }
    const int64_t n = cols.hi - done;
    if (n > 0) {
      max_interior<T, kIdx, S>(xp, g, ih0, rows, done, n, yr + done, rel);
      if (kIdx) {
        const int64_t base = ih0 * g.w + done * g.sw - g.pw;
        for (int64_t k = 0; k < n; ++k) sr[done + k] = base + k * g.sw + rel[k];
      }
    }
    for (int64_t ow = cols.hi; ow < g.wo; ++ow)
      max_window<T, kIdx>(xp, g, ih0, rows, ow, yr + ow, kIdx ? sr + ow : nullptr);
  }
}

template <class T, bool kIdx>
CNNKIT_INLINE void max_pool_rows_by_stride(const T* x, T* y, int64_t* switches,
                                           const PoolGeometry& g, Columns cols, int64_t r0,
                                           int64_t r1, SameWidthInt<T>* rel) {
  if (g.sw == 1)
    max_pool_rows<T, kIdx, 1>(x, y, switches, g, cols, r0, r1, rel);
  else if (g.sw == 2)
    max_pool_rows<T, kIdx, 2>(x, y, switches, g, cols, r0, r1, rel);
  else
    max_pool_rows<T, kIdx, 0>(x, y, switches, g, cols, r0, r1, rel);
}

#define CNNKIT_MAX_POOL_DISPATCH(T)                                                           \
  CNNKIT_MULTIVERSION void max_pool_rows_mv(const T* x, T* y, int64_t* switches,              \
                                            const PoolGeometry& g, Columns cols, int64_t r0,  \
                                            int64_t r1, SameWidthInt<T>* rel) {               \
    if (switches)                                                                             \
      max_pool_rows_by_stride<T, true>(x, y, switches, g, cols, r0, r1, rel);                 \
    else                                                                                      \
      max_pool_rows_by_stride<T, false>(x, y, switches, g, cols, r0, r1, rel);                \
  }
CNNKIT_MAX_POOL_DISPATCH(float)
CNNKIT_MAX_POOL_DISPATCH(double)
#undef CNNKIT_MAX_POOL_DISPATCH

// ---- Switch kernels (max_pool2d backward, max unpooling)

// Scatters one pooled plane (count values) into a zeroed full plane, checking each
// switch before it writes. Returns the offset of the first bad switch or -1.
template <class T, bool kAccumulate>
int64_t scatter_plane(const T* src, const int64_t* sw, int64_t count, T* dst, int64_t plane) {
  std::fill(dst, dst + plane, T(0));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t at = sw[i];
    if (static_cast<uint64_t>(at) >= static_cast<uint64_t>(plane)) return i;
    if (kAccumulate)
      dst[at] += src[i];
    else
      dst[at] = src[i];
  }
  return -1;
}

template <class T>
int64_t gather_plane(const T* src, const int64_t* sw, int64_t count, T* dst, int64_t plane) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t at = sw[i];
    if (static_cast<uint64_t>(at) >= static_cast<uint64_t>(plane)) return i;
    dst[i] = src[at];
  }
  return -1;
}

// Runs plane_fn(p) -> first bad offset in plane p or -1 over all planes and returns
// the flat position of the first bad switch overall, or -1.
template <class F>
int64_t over_switch_planes(const PoolGeometry& g, F&& plane_fn) {
  std::atomic<int64_t> first{std::numeric_limits<int64_t>::max()};
  const int64_t count = g.plane_out();
  parallel_for(g.planes(), grain_for(g.plane_in() + count, kGrainElems), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t bad = plane_fn(p);
      if (bad < 0) continue;
      const int64_t pos = p * count + bad;
      int64_t cur = first.load();
      while (pos < cur && !first.compare_exchange_weak(cur, pos)) {
      }
      break;  // later planes of this range come after pos
    }
  });
  const int64_t f = first.load();
  return f == std::numeric_limits<int64_t>::max() ? -1 : f;
}

template <class T, bool kAccumulate>
int64_t scatter_switches(const T* src, const int64_t* switches, T* dst, const PoolGeometry& g) {
  const int64_t count = g.plane_out(), plane = g.plane_in();
  return over_switch_planes(g, [&](int64_t p) {
    return scatter_plane<T, kAccumulate>(src + p * count, switches + p * count, count,
                                         dst + p * plane, plane);
  });
}

// ---- Window sums (average and Lp pooling)

// Divisor factor of each output column; the row factor is computed the same way.
template <class T>
std::vector<T> column_counts(const PoolGeometry& g, bool count_include_pad) {
  std::vector<T> c(g.wo);
  for (int64_t ow = 0; ow < g.wo; ++ow)
    c[ow] = static_cast<T>(window_count(ow * g.sw - g.pw, g.kw, g.pw, g.w, count_include_pad));
  return c;
}

// kChunk consecutive interior outputs of one row from column k0, S = 1 or 2, with the
// window sums in registers across all taps.
template <class T, int S>
CNNKIT_INLINE void avg_chunk(const T* xp, const PoolGeometry& g, int64_t ih0, Span rows,
                             int64_t k0, T row_count, const T* col_count, T* y) {
  using V = typename Vec<T>::V;
  constexpr int64_t L = kLanes<T>;
  const int64_t origin = ih0 * g.w + k0 * S - g.pw;  // as in max_chunk
  V acc[kUnroll];
  for (int u = 0; u < kUnroll; ++u) acc[u] = V{};
  for (int64_t i = rows.lo; i < rows.hi; ++i)
    for (int64_t j = 0; j < g.kw; ++j)
      for (int u = 0; u < kUnroll; ++u) {
        V v;
        load_columns<S>(xp + (origin + i * g.w + j + u * L * S), v);
        acc[u] += v;
      }
  for (int u = 0; u < kUnroll; ++u) {
    V count;
    vload(col_count + k0 + u * L, count);
    vstore(y + k0 + u * L, acc[u] / (row_count * count));
  }
}

// Output rows [r0, r1): window sums in row-major tap order from zero (PyTorch's
// order), divided by row_count * col_count. Interior columns run in whole vectors
// with the sums in registers (S = 1 or 2), or else one tap at a time across the row.
template <class T, int S>
CNNKIT_INLINE void avg_pool_rows(const T* x, T* y, const PoolGeometry& g, Columns cols,
                                 const T* col_count, bool count_include_pad, int64_t r0,
                                 int64_t r1) {
  constexpr int64_t L = kChunk<T>;
  const int64_t s = S ? S : g.sw;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t oh = row % g.ho;
    const T* xp = x + (row / g.ho) * g.plane_in();
    T* __restrict yr = y + row * g.wo;
    const int64_t ih0 = oh * g.sh - g.ph;
    const Span rows = window_taps(ih0, g.kh, 1, g.h);
    const T row_count = static_cast<T>(window_count(ih0, g.kh, g.ph, g.h, count_include_pad));
    auto window = [&](int64_t ow) {
      const int64_t iw0 = ow * g.sw - g.pw;
      const Span taps = window_taps(iw0, g.kw, 1, g.w);
      T sum = 0;
      for (int64_t i = rows.lo; i < rows.hi; ++i)
        for (int64_t j = taps.lo; j < taps.hi; ++j) sum += xp[(ih0 + i) * g.w + iw0 + j];
      yr[ow] = sum / (row_count * col_count[ow]);
    };
    for (int64_t ow = 0; ow < cols.lo; ++ow) window(ow);
    int64_t done = cols.lo;
    if constexpr (S != 0) {
      // Whole vectors; the last one overlaps its predecessor rather than running short.
      const int64_t end = vector_end(g, cols, row / g.ho, ih0 + rows.hi - 1);
      if (end - cols.lo >= L) {
        for (int64_t k0 = cols.lo; k0 < end; k0 += L)
          avg_chunk<T, S>(xp, g, ih0, rows, std::min(k0, end - L), row_count,
                          col_count, yr);
        done = end;
      }
    }
    const int64_t n = cols.hi - done;
    if (n > 0) {
      T* __restrict acc = yr + done;
      const int64_t origin = ih0 * g.w + done * s - g.pw;
      for (int64_t k = 0; k < n; ++k) acc[k] = 0;
      for (int64_t i = rows.lo; i < rows.hi; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          const T* __restrict src = xp + (origin + i * g.w + j);
          for (int64_t k = 0; k < n; ++k) acc[k] += src[k * s];
        }
      const T* __restrict cc = col_count + done;
      for (int64_t k = 0; k < n; ++k) acc[k] = acc[k] / (row_count * cc[k]);
    }
    for (int64_t ow = cols.hi; ow < g.wo; ++ow) window(ow);
  }
}

// One plane of the average-pooling gradient: each output's share, gy / count,
// added to every input of its window.
template <class T, int S>
CNNKIT_INLINE void avg_backward_plane(const T* gy, T* gx, const PoolGeometry& g, Columns cols,
                                      const T* col_count, bool count_include_pad, T* share) {
  const int64_t s = S ? S : g.sw;
  std::fill(gx, gx + g.plane_in(), T(0));
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    const T* gr = gy + oh * g.wo;
    const int64_t ih0 = oh * g.sh - g.ph;
    const Span rows = window_taps(ih0, g.kh, 1, g.h);
    const T row_count = static_cast<T>(window_count(ih0, g.kh, g.ph, g.h, count_include_pad));
    for (int64_t ow = 0; ow < g.wo; ++ow) share[ow] = gr[ow] / (row_count * col_count[ow]);
    auto window = [&](int64_t ow) {
      const int64_t iw0 = ow * g.sw - g.pw;
      const Span taps = window_taps(iw0, g.kw, 1, g.w);
      for (int64_t i = rows.lo; i < rows.hi; ++i)
        for (int64_t j = taps.lo; j < taps.hi; ++j) gx[(ih0 + i) * g.w + iw0 + j] += share[ow];
    };
    for (int64_t ow = 0; ow < cols.lo; ++ow) window(ow);
    const int64_t n = cols.hi - cols.lo;
    if (n > 0) {
      const T* __restrict sh = share + cols.lo;
      const int64_t origin = ih0 * g.w + cols.lo * s - g.pw;
      for (int64_t i = rows.lo; i < rows.hi; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          T* __restrict dst = gx + (origin + i * g.w + j);
          for (int64_t k = 0; k < n; ++k) dst[k * s] += sh[k];
        }
    }
    for (int64_t ow = cols.hi; ow < g.wo; ++ow) window(ow);
  }
}

#define CNNKIT_AVG_POOL_DISPATCH(T)                                                            \
  CNNKIT_MULTIVERSION void avg_pool_rows_mv(const T* x, T* y, const PoolGeometry& g,           \
                                            Columns cols, const T* col_count,                  \
                                            bool count_include_pad, int64_t r0, int64_t r1) {  \
    if (g.sw == 1)                                                                             \
      avg_pool_rows<T, 1>(x, y, g, cols, col_count, count_include_pad, r0, r1);                \
    else if (g.sw == 2)                                                                        \
      avg_pool_rows<T, 2>(x, y, g, cols, col_count, count_include_pad, r0, r1);                \
    else                                                                                       \
      avg_pool_rows<T, 0>(x, y, g, cols, col_count, count_include_pad, r0, r1);                \
  }                                                                                            \
  CNNKIT_MULTIVERSION void avg_backward_plane_mv(const T* gy, T* gx, const PoolGeometry& g,    \
                                                 Columns cols, const T* col_count,             \
                                                 bool count_include_pad, T* share) {           \
    if (g.sw == 1)                                                                             \
      avg_backward_plane<T, 1>(gy, gx, g, cols, col_count, count_include_pad, share);          \
    else                                                                                       \
      avg_backward_plane<T, 0>(gy, gx, g, cols, col_count, count_include_pad, share);          \
  }
CNNKIT_AVG_POOL_DISPATCH(float)
CNNKIT_AVG_POOL_DISPATCH(double)
#undef CNNKIT_AVG_POOL_DISPATCH

// Applies fn(i) for i in [0, n) in parallel: the elementwise passes of Lp pooling.
template <class F>
void elementwise(int64_t n, F&& fn) {
  parallel_for(n, kGrainElems, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(i);
  });
}

// x^p as torch's pow computes it for the exponents that matter here.
template <class T>
CNNKIT_INLINE T power(T x, double p) {
  if (p == 2) return x * x;
  if (p == 1) return x;
  return static_cast<T>(std::pow(x, static_cast<T>(p)));
}

// sgn(x) with sgn(0) = sgn(NaN) = 0, as torch's abs backward uses it.
template <class T>
CNNKIT_INLINE T sign(T x) {
  return static_cast<T>((x > 0) - (x < 0));
}

// The window power sums of Lp pooling rescaled to the full kernel:
// avg_pool2d(x^p) * kH * kW, PyTorch's intermediate.
template <class T>
std::unique_ptr<T[]> lp_scaled_sums(const T* x, double p, const PoolGeometry& g) {
  const int64_t n_in = g.planes() * g.plane_in(), n_out = g.planes() * g.plane_out();
  auto xp = uninitialized<T>(n_in);
  T* xpp = xp.get();
  elementwise(n_in, [&](int64_t i) { xpp[i] = power(x[i], p); });
  auto out = uninitialized<T>(n_out);
  avg_pool2d_forward<T>(xpp, out.get(), g, true);
  const T k = static_cast<T>(g.kh) * g.kw;  // kh * kw may overflow int64
  T* o = out.get();
  elementwise(n_out, [&](int64_t i) { o[i] *= k; });
  return out;
}

// |x| for p = +inf, -|x| for p = -inf: Lp pooling at infinity is a max pool of these.
template <class T>
std::unique_ptr<T[]> signed_abs(const T* x, double p, int64_t n) {
  auto a = uninitialized<T>(n);
  T* ap = a.get();
  const bool negate = p < 0;
  elementwise(n, [&](int64_t i) { ap[i] = negate ? -std::abs(x[i]) : std::abs(x[i]); });
  return a;
}

}  // namespace

template <class T>
void max_pool2d_forward(const T* x, T* y, int64_t* switches, const PoolGeometry& g) {
  using R = SameWidthInt<T>;
  Columns cols = interior_columns(g);
  // Tap offsets must fit R; a plane too large for that runs on the scalar window path.
  int64_t max_offset;
  if (__builtin_add_overflow(work_product({g.kh - 1, g.dh, g.w}), (g.kw - 1) * g.dw, &max_offset) ||
      max_offset > std::numeric_limits<R>::max())
    cols = {g.wo, g.wo, g.wo};
  const int64_t rows = g.planes() * g.ho;
  parallel_for(rows, grain_for(work_product({g.wo, g.kh, g.kw}), kGrainElems), [&](int64_t r0, int64_t r1) {
    std::vector<R> rel(switches ? g.wo : 0);
    max_pool_rows_mv(x, y, switches, g, cols, r0, r1, rel.data());
  });
}

template <class T>
int64_t max_pool2d_backward(const T* gy, const int64_t* switches, T* gx, const PoolGeometry& g) {
  return scatter_switches<T, true>(gy, switches, gx, g);
}

template <class T>
int64_t max_unpool2d_forward(const T* x, const int64_t* switches, T* y, const PoolGeometry& g) {
  return scatter_switches<T, false>(x, switches, y, g);
}

template <class T>
int64_t max_unpool2d_backward(const T* gy, const int64_t* switches, T* gx,
                              const PoolGeometry& g) {
  const int64_t count = g.plane_out(), plane = g.plane_in();
  return over_switch_planes(g, [&](int64_t p) {
    return gather_plane(gy + p * plane, switches + p * count, count, gx + p * count, plane);
  });
}

template <class T>
void avg_pool2d_forward(const T* x, T* y, const PoolGeometry& g, bool count_include_pad) {
  const Columns cols = interior_columns(g);
  const std::vector<T> col_count = column_counts<T>(g, count_include_pad);
  parallel_for(g.planes() * g.ho, grain_for(work_product({g.wo, g.kh, g.kw}), kGrainElems), [&](int64_t r0, int64_t r1) {
    avg_pool_rows_mv(x, y, g, cols, col_count.data(), count_include_pad, r0, r1);
  });
}

template <class T>
void avg_pool2d_backward(const T* gy, T* gx, const PoolGeometry& g, bool count_include_pad) {
  const Columns cols = interior_columns(g);
  const std::vector<T> col_count = column_counts<T>(g, count_include_pad);
  parallel_for(g.planes(), grain_for(std::max(work_product({g.plane_out(), g.kh, g.kw}), g.plane_in()), kGrainElems),
               [&](int64_t p0, int64_t p1) {
    std::vector<T> share(g.wo);
    for (int64_t p = p0; p < p1; ++p)
      avg_backward_plane_mv(gy + p * g.plane_out(), gx + p * g.plane_in(), g, cols,
                            col_count.data(), count_include_pad, share.data());
  });
}

template <class T>
void lp_pool2d_forward(const T* x, T* y, double p, const PoolGeometry& g) {
  const int64_t n_out = g.planes() * g.plane_out();
  if (std::isinf(p)) {
    auto a = signed_abs(x, p, g.planes() * g.plane_in());
    max_pool2d_forward<T>(a.get(), y, nullptr, g);
    if (p < 0) elementwise(n_out, [&](int64_t i) { y[i] = -y[i]; });
    return;
  }
  auto out = lp_scaled_sums(x, p, g);
  const T* o = out.get();
  // sign(out) * relu(|out|) is out itself, NaN included.
  if (p == 2)
    elementwise(n_out, [&](int64_t i) { y[i] = std::sqrt(o[i]); });
  else
    elementwise(n_out, [&](int64_t i) { y[i] = static_cast<T>(std::pow(o[i], T(1 / p))); });
}

template <class T>
void lp_pool2d_backward(const T* gy, const T* x, T* gx, double p, const PoolGeometry& g) {
  const int64_t n_in = g.planes() * g.plane_in(), n_out = g.planes() * g.plane_out();
  if (std::isinf(p)) {
    // d(+-max(+-|x|))/dx = sgn(x) at the winner, for both signs.
    auto a = signed_abs(x, p, n_in);
    auto y = uninitialized<T>(n_out);
    auto switches = uninitialized<int64_t>(n_out);
    max_pool2d_forward<T>(a.get(), y.get(), switches.get(), g);
    const int64_t count = g.plane_out(), plane = g.plane_in();
    const int64_t* sw = switches.get();
    parallel_for(g.planes(), grain_for(count + plane, kGrainElems), [&](int64_t p0, int64_t p1) {
      for (int64_t q = p0; q < p1; ++q) {
        T* gxp = gx + q * plane;
        const T* xp = x + q * plane;
        std::fill(gxp, gxp + plane, T(0));
        for (int64_t i = q * count; i < (q + 1) * count; ++i)
          gxp[sw[i]] += gy[i] * sign(xp[sw[i]]);
      }
    });
    return;
  }
  auto out = lp_scaled_sums(x, p, g);
  // y = out^(1/p), out = sum(x^p) * K / count: dy/dx = out^(1/p - 1) * K / count * x^(p-1).
  // coef holds gy * K * out^(1/p - 1), zero where out is zero (torch's relu mask).
  auto coef = uninitialized<T>(n_out);
  const T k = static_cast<T>(g.kh) * g.kw;  // kh * kw may overflow int64
  const T e = static_cast<T>(1 / p - 1);
  T *c = coef.get(), *o = out.get();
  elementwise(n_out, [&](int64_t i) {
    const T scale = p == 2 ? T(1) / std::sqrt(o[i]) : static_cast<T>(std::pow(o[i], e));
    c[i] = o[i] != 0 ? gy[i] * k * scale : T(0);
  });
  avg_pool2d_backward<T>(c, gx, g, true);
  elementwise(n_in, [&](int64_t i) { gx[i] *= power(x[i], p - 1); });
}

#define CNNKIT_INSTANTIATE(T)                                                                  \
  template void max_pool2d_forward<T>(const T*, T*, int64_t*, const PoolGeometry&);           \
  template int64_t max_pool2d_backward<T>(const T*, const int64_t*, T*, const PoolGeometry&); \
  template int64_t max_unpool2d_forward<T>(const T*, const int64_t*, T*, const PoolGeometry&); \
  template int64_t max_unpool2d_backward<T>(const T*, const int64_t*, T*,                      \
                                            const PoolGeometry&);                              \
  template void avg_pool2d_forward<T>(const T*, T*, const PoolGeometry&, bool);               \
  template void avg_pool2d_backward<T>(const T*, T*, const PoolGeometry&, bool);              \
  template void lp_pool2d_forward<T>(const T*, T*, double, const PoolGeometry&);              \
  template void lp_pool2d_backward<T>(const T*, const T*, T*, double, const PoolGeometry&);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit
