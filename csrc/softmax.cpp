#include "softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "activation.h"
#include "common/cpu_features.h"
#include "common/threading.h"

namespace cnnkit {

namespace {

// Elements of work below which a parallel_for item is not worth a thread.
constexpr int64_t kGrain = 32768;
// Inner positions handled together when the softmax dim is strided: the running
// max and sum of a block stay in L1.
constexpr int64_t kBlock = 256;
// Fixed summation blocks of mse_loss: the total does not depend on the thread count.
constexpr int64_t kSumBlock = 4096;

template <class T>
CNNKIT_INLINE T row_max(const T* x, int64_t d) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < d; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// sum of e^(x - m); NaN anywhere in x makes it NaN.
template <class T>
CNNKIT_INLINE T row_sum_exp(const T* x, T m, int64_t d) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < d; ++i) s += vmath::exp_nonpositive(x[i] - m);
  return s;
}

// ---- Contiguous rows (the softmax dim is the last one)

template <class T>
CNNKIT_INLINE void softmax_rows(const T* x, T* y, int64_t rows, int64_t d, bool log) {
  for (int64_t r = 0; r < rows; ++r, x += d, y += d) {
    const T m = row_max(x, d);
    if (log) {
      const T ls = std::log(row_sum_exp(x, m, d));
      for (int64_t i = 0; i < d; ++i) y[i] = (x[i] - m) - ls;
    } else {
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < d; ++i) {
        y[i] = vmath::exp_nonpositive(x[i] - m);
        s += y[i];
      }
      const T inv = T(1) / s;
      for (int64_t i = 0; i < d; ++i) y[i] *= inv;
    }
  }
}

template <class T>
CNNKIT_INLINE void softmax_backward_rows(const T* gy, const T* y, T* gx, int64_t rows, int64_t d,
                                         bool log) {
  for (int64_t r = 0; r < rows; ++r, gy += d, y += d, gx += d) {
    T s = 0;
    if (log) {
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < d; ++i) s += gy[i];
      for (int64_t i = 0; i < d; ++i) gx[i] = gy[i] - vmath::exp(y[i]) * s;
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < d; ++i) s += gy[i] * y[i];
      for (int64_t i = 0; i < d; ++i) gx[i] = y[i] * (gy[i] - s);
    }
  }
}

// ---- Strided: w adjacent inner positions of one outer index, each a softmax over
// d elements inner apart. Loops run along the contiguous inner positions.

template <class T>
CNNKIT_INLINE void softmax_strided(const T* x, T* y, int64_t d, int64_t inner, int64_t w,
                                   bool log) {
  T m[kBlock], s[kBlock];
  for (int64_t i = 0; i < w; ++i) m[i] = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < d; ++k) {
    const T* xr = x + k * inner;
    for (int64_t i = 0; i < w; ++i) m[i] = xr[i] > m[i] ? xr[i] : m[i];
  }
  std::fill(s, s + w, T(0));
  for (int64_t k = 0; k < d; ++k) {
    const T* xr = x + k * inner;
    T* yr = y + k * inner;
    for (int64_t i = 0; i < w; ++i) {
      const T e = vmath::exp_nonpositive(xr[i] - m[i]);
      if (!log) yr[i] = e;
      s[i] += e;
    }
  }
  if (log) {
    for (int64_t i = 0; i < w; ++i) s[i] = std::log(s[i]);
    for (int64_t k = 0; k < d; ++k) {
      const T* xr = x + k * inner;
      T* yr = y + k * inner;
      for (int64_t i = 0; i < w; ++i) yr[i] = (xr[i] - m[i]) - s[i];
    }
  } else {
    for (int64_t i = 0; i < w; ++i) s[i] = T(1) / s[i];
    for (int64_t k = 0; k < d; ++k) {
      T* yr = y + k * inner;
      for (int64_t i = 0; i < w; ++i) yr[i] *= s[i];
    }
  }
}

template <class T>
CNNKIT_INLINE void softmax_backward_strided(const T* gy, const T* y, T* gx, int64_t d,
                                            int64_t inner, int64_t w, bool log) {
  T s[kBlock];
  std::fill(s, s + w, T(0));
  for (int64_t k = 0; k < d; ++k) {
    const T* gr = gy + k * inner;
    const T* yr = y + k * inner;
    if (log)
      for (int64_t i = 0; i < w; ++i) s[i] += gr[i];
    else
      for (int64_t i = 0; i < w; ++i) s[i] += gr[i] * yr[i];
  }
  for (int64_t k = 0; k < d; ++k) {
    const T* gr = gy + k * inner;
    const T* yr = y + k * inner;
    T* gxr = gx + k * inner;
    if (log)
      for (int64_t i = 0; i < w; ++i) gxr[i] = gr[i] - vmath::exp(yr[i]) * s[i];
    else
      for (int64_t i = 0; i < w; ++i) gxr[i] = yr[i] * (gr[i] - s[i]);
  }
}

// ---- Losses

// Per-sample cross-entropy: logsumexp(x) - x[t], computed as (m - x[t]) + log(sum)
// so that large logits lose no digits.
template <class T>
CNNKIT_INLINE void cross_entropy_rows(const T* x, const int64_t* target, int64_t rows,
                                      int64_t c, double* loss) {
  for (int64_t r = 0; r < rows; ++r, x += c) {
    const T m = row_max(x, c);
    const T s = row_sum_exp(x, m, c);
    loss[r] = (double(m) - double(x[target[r]])) + std::log(double(s));
  }
}

template <class T>
CNNKIT_INLINE void cross_entropy_grad_rows(const T* x, const int64_t* target, int64_t rows,
                                           int64_t c, T scale, T* g) {
  for (int64_t r = 0; r < rows; ++r, x += c, g += c) {
    const T m = row_max(x, c);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < c; ++i) {
      g[i] = vmath::exp_nonpositive(x[i] - m);
      s += g[i];
    }
    const T k = scale / s;
    for (int64_t i = 0; i < c; ++i) g[i] *= k;
    g[target[r]] -= scale;
  }
}

template <class T>
CNNKIT_INLINE double squared_error_sum(const T* x, const T* t, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const double e = double(x[i]) - double(t[i]);
    s += e * e;
  }
  return s;
}

template <class T>
CNNKIT_INLINE void squared_error(const T* x, const T* t, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T e = x[i] - t[i];
    y[i] = e * e;
  }
}

template <class T>
CNNKIT_INLINE void scaled_difference(const T* x, const T* t, T* g, int64_t n, T scale) {
  for (int64_t i = 0; i < n; ++i) g[i] = scale * (x[i] - t[i]);
}

#define CNNKIT_SOFTMAX_DISPATCH(T)                                                             \
  CNNKIT_MULTIVERSION void softmax_rows_mv(const T* x, T* y, int64_t rows, int64_t d,          \
                                           bool log) {                                         \
    softmax_rows(x, y, rows, d, log);                                                          \
  }                                                                                            \
  CNNKIT_MULTIVERSION void softmax_backward_rows_mv(const T* gy, const T* y, T* gx,            \
                                                    int64_t rows, int64_t d, bool log) {       \
    softmax_backward_rows(gy, y, gx, rows, d, log);                                            \
  }                                                                                            \
  CNNKIT_MULTIVERSION void softmax_strided_mv(const T* x, T* y, int64_t d, int64_t inner,      \
                                              int64_t w, bool log) {                           \
    softmax_strided(x, y, d, inner, w, log);                                                   \
  }                                                                                            \
  CNNKIT_MULTIVERSION void softmax_backward_strided_mv(const T* gy, const T* y, T* gx,         \
                                                       int64_t d, int64_t inner, int64_t w,    \
                                                       bool log) {                             \
    softmax_backward_strided(gy, y, gx, d, inner, w, log);                                     \
  }                                                                                            \
  CNNKIT_MULTIVERSION void cross_entropy_rows_mv(const T* x, const int64_t* target,            \
                                                 int64_t rows, int64_t c, double* loss) {      \
    cross_entropy_rows(x, target, rows, c, loss);                                              \
  }                                                                                            \
  CNNKIT_MULTIVERSION void cross_entropy_grad_rows_mv(const T* x, const int64_t* target,       \
                                                      int64_t rows, int64_t c, T scale, T* g) { \
    cross_entropy_grad_rows(x, target, rows, c, scale, g);                                     \
  }                                                                                            \
  CNNKIT_MULTIVERSION double squared_error_sum_mv(const T* x, const T* t, int64_t n) {          \
    return squared_error_sum(x, t, n);                                                         \
  }                                                                                            \
  CNNKIT_MULTIVERSION void squared_error_mv(const T* x, const T* t, T* y, int64_t n) {         \
    squared_error(x, t, y, n);                                                                 \
  }                                                                                            \
  CNNKIT_MULTIVERSION void scaled_difference_mv(const T* x, const T* t, T* g, int64_t n,       \
                                                T scale) {                                     \
    scaled_difference(x, t, g, n, scale);                                                      \
  }
CNNKIT_SOFTMAX_DISPATCH(float)
CNNKIT_SOFTMAX_DISPATCH(double)
#undef CNNKIT_SOFTMAX_DISPATCH

// Runs fn(x_offset, w) over every (outer, block of inner positions) of d's layout.
template <class F>
void for_each_strided_block(const DimSplit& d, F&& fn) {
  const int64_t blocks = (d.inner + kBlock - 1) / kBlock;
  const int64_t per_item = d.size * std::min(d.inner, kBlock);
  parallel_for(d.outer * blocks, grain_for(per_item, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t o = item / blocks, i0 = (item % blocks) * kBlock;
      fn(o * d.size * d.inner + i0, std::min(kBlock, d.inner - i0));
    }
  });
}

}  // namespace

template <class T>
void softmax_forward(const T* x, T* y, const DimSplit& d, bool log) {
  if (d.size == 0) return;
  if (d.inner == 1) {
    parallel_for(d.outer, grain_for(d.size, kGrain), [&](int64_t b, int64_t e) {
      softmax_rows_mv(x + b * d.size, y + b * d.size, e - b, d.size, log);
    });
  } else {
    for_each_strided_block(d, [&](int64_t off, int64_t w) {
      softmax_strided_mv(x + off, y + off, d.size, d.inner, w, log);
    });
  }
}

template <class T>
void softmax_backward(const T* gy, const T* y, T* gx, const DimSplit& d, bool log) {
  if (d.size == 0) return;
  if (d.inner == 1) {
    parallel_for(d.outer, grain_for(d.size, kGrain), [&](int64_t b, int64_t e) {
      const int64_t off = b * d.size;
      softmax_backward_rows_mv(gy + off, y + off, gx + off, e - b, d.size, log);
    });
  } else {
    for_each_strided_block(d, [&](int64_t off, int64_t w) {
      softmax_backward_strided_mv(gy + off, y + off, gx + off, d.size, d.inner, w, log);
    });
  }
}

template <class T>
void cross_entropy_forward(const T* logits, const int64_t* target, int64_t n, int64_t c,
                           Reduction reduction, T* out) {
  std::vector<double> loss(static_cast<size_t>(n));
  double* lp = loss.data();
  parallel_for(n, grain_for(c, kGrain), [&](int64_t b, int64_t e) {
    cross_entropy_rows_mv(logits + b * c, target + b, e - b, c, lp + b);
  });
  if (reduction == Reduction::none) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(lp[i]);
    return;
  }
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += lp[i];
  out[0] = static_cast<T>(reduction == Reduction::mean ? total / double(n) : total);
}

template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, int64_t n, int64_t c,
                            Reduction reduction, T* grad) {
  const T scale = reduction == Reduction::mean ? static_cast<T>(1.0 / double(n)) : T(1);
  parallel_for(n, grain_for(c, kGrain), [&](int64_t b, int64_t e) {
    cross_entropy_grad_rows_mv(logits + b * c, target + b, e - b, c, scale, grad + b * c);
  });
}

template <class T>
void mse_loss_forward(const T* x, const T* target, int64_t n, Reduction reduction, T* out) {
  if (reduction == Reduction::none) {
    parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      squared_error_mv(x + b, target + b, out + b, e - b);
    });
    return;
  }
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
  double* pp = partial.data();
  parallel_for(blocks, grain_for(kSumBlock, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t i0 = k * kSumBlock;
      pp[k] = squared_error_sum_mv(x + i0, target + i0, std::min(kSumBlock, n - i0));
    }
  });
  double total = 0;
  for (int64_t k = 0; k < blocks; ++k) total += pp[k];
  out[0] = static_cast<T>(reduction == Reduction::mean ? total / double(n) : total);
}

template <class T>
void mse_loss_backward(const T* x, const T* target, int64_t n, Reduction reduction, T* grad) {
  const T scale = reduction == Reduction::mean ? static_cast<T>(2.0 / double(n)) : T(2);
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    scaled_difference_mv(x + b, target + b, grad + b, e - b, scale);
  });
}

#define CNNKIT_INSTANTIATE(T)                                                                 \
  template void softmax_forward<T>(const T*, T*, const DimSplit&, bool);                      \
  template void softmax_backward<T>(const T*, const T*, T*, const DimSplit&, bool);           \
  template void cross_entropy_forward<T>(const T*, const int64_t*, int64_t, int64_t,          \
                                         Reduction, T*);                                      \
  template void cross_entropy_backward<T>(const T*, const int64_t*, int64_t, int64_t,         \
                                          Reduction, T*);                                     \
  template void mse_loss_forward<T>(const T*, const T*, int64_t, Reduction, T*);              \
  template void mse_loss_backward<T>(const T*, const T*, int64_t, Reduction, T*);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit
