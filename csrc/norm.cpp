#include "norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/cpu_features.h"
#include "common/threading.h"

namespace cnnkit {

namespace {

// Elements of work below which a parallel_for item is not worth a thread.
constexpr int64_t kGrain = 32768;
// Spatial positions that local_response_norm carries through the channels together.
constexpr int64_t kBlock = 256;

// ---- Dropout

// splitmix64's output for counter i of the stream seed: a counter-based generator,
// so any element's draw is known without generating the ones before it.
CNNKIT_INLINE uint64_t splitmix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// keep_below: (1 - p) * 2^53; the top 53 bits of the hash are uniform on [0, 2^53).
template <class T>
CNNKIT_INLINE void dropout_chunk(const T* x, T* y, uint8_t* keep, int64_t begin, int64_t n,
                                 uint64_t seed, int64_t keep_below, T scale) {
  for (int64_t i = 0; i < n; ++i) {
    const bool k = static_cast<int64_t>(splitmix64(seed, uint64_t(begin + i)) >> 11) < keep_below;
    keep[i] = k;
    // x * 0 rather than 0, so that NaN stays NaN as in torch.
    y[i] = x[i] * (k ? scale : T(0));
  }
}

template <class T>
CNNKIT_INLINE void dropout_backward_chunk(const T* gy, const uint8_t* keep, T* gx, int64_t n,
                                          T scale) {
  for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * (keep[i] ? scale : T(0));
}

// ---- Batch norm: one channel is n planes of s elements, stride apart.

template <class T>
CNNKIT_INLINE double channel_sum(const T* x, int64_t n, int64_t stride, int64_t s) {
  double acc = 0;
  for (int64_t b = 0; b < n; ++b, x += stride) {
    double t = 0;
#pragma omp simd reduction(+ : t)
    for (int64_t i = 0; i < s; ++i) t += double(x[i]);
    acc += t;
  }
  return acc;
}

// Second pass around the mean: exact for data far from zero, unlike E[x^2] - E[x]^2.
template <class T>
CNNKIT_INLINE double channel_squared_deviation(const T* x, int64_t n, int64_t stride, int64_t s,
                                               double mean) {
  double acc = 0;
  for (int64_t b = 0; b < n; ++b, x += stride) {
    double t = 0;
#pragma omp simd reduction(+ : t)
    for (int64_t i = 0; i < s; ++i) {
      const double e = double(x[i]) - mean;
      t += e * e;
    }
    acc += t;
  }
  return acc;
}

template <class T>
CNNKIT_INLINE void channel_affine(const T* x, T* y, int64_t n, int64_t stride, int64_t s,
                                  double mean, double a, double b) {
  for (int64_t p = 0; p < n; ++p, x += stride, y += stride)
    for (int64_t i = 0; i < s; ++i) y[i] = static_cast<T>((double(x[i]) - mean) * a + b);
}

// sum of g and of g * (x - mean).
template <class T>
CNNKIT_INLINE void channel_grad_sums(const T* g, const T* x, int64_t n, int64_t stride,
                                     int64_t s, double mean, double& sum_g, double& sum_gd) {
  double ag = 0, agd = 0;
  for (int64_t p = 0; p < n; ++p, g += stride, x += stride) {
    double tg = 0, tgd = 0;
#pragma omp simd reduction(+ : tg, tgd)
    for (int64_t i = 0; i < s; ++i) {
      tg += double(g[i]);
      tgd += double(g[i]) * (double(x[i]) - mean);
    }
    ag += tg;
    agd += tgd;
  }
  sum_g = ag;
  sum_gd = agd;
}

// gx = c1 * g + c2 * (x - mean) + c3.
template <class T>
CNNKIT_INLINE void channel_grad_input(const T* g, const T* x, T* gx, int64_t n, int64_t stride,
                                      int64_t s, double mean, double c1, double c2, double c3) {
  for (int64_t p = 0; p < n; ++p, g += stride, x += stride, gx += stride)
    for (int64_t i = 0; i < s; ++i)
      gx[i] = static_cast<T>(c1 * double(g[i]) + c2 * (double(x[i]) - mean) + c3);
}

// ---- Local response norm

// s^-beta, with the exponents that AlexNet-style layers use on vectorisable sqrt.
enum class PowKind { general, three_quarters, half, one };

PowKind pow_kind(double beta) {
  if (beta == 0.75) return PowKind::three_quarters;
  if (beta == 0.5) return PowKind::half;
  if (beta == 1.0) return PowKind::one;
  return PowKind::general;
}

template <PowKind K, class P>
CNNKIT_INLINE P inv_pow(P s, P beta) {
  if constexpr (K == PowKind::three_quarters) {
    const P r = P(1) / std::sqrt(s);
    return r * std::sqrt(r);
  } else if constexpr (K == PowKind::half) {
    return P(1) / std::sqrt(s);
  } else if constexpr (K == PowKind::one) {
    return P(1) / s;
  } else {
    return std::pow(s, -beta);
  }
}

template <class T>
CNNKIT_INLINE void add_squares(double* acc, const T* x, int64_t w, double sign) {
  for (int64_t i = 0; i < w; ++i) acc[i] += sign * (double(x[i]) * double(x[i]));
}

CNNKIT_INLINE void add_values(double* acc, const double* t, int64_t w, double sign) {
  for (int64_t i = 0; i < w; ++i) acc[i] += sign * t[i];
}

// Adds x^2 of the channels entering channel c's window [c - before, c + after] and
// drops the one leaving it, so each step costs O(1) per position.
template <class T>
CNNKIT_INLINE void slide_window(double* acc, const T* x, int64_t c, int64_t channels,
                                int64_t stride, int64_t w, int64_t before, int64_t after) {
  if (c + after < channels) add_squares(acc, x + (c + after) * stride, w, 1.0);
  if (c - before - 1 >= 0) add_squares(acc, x + (c - before - 1) * stride, w, -1.0);
}

template <class T>
CNNKIT_INLINE void prime_window(double* acc, const T* x, int64_t channels, int64_t stride,
                                int64_t w, int64_t after) {
  std::fill(acc, acc + w, 0.0);
  for (int64_t j = 0; j < std::min(after, channels); ++j) add_squares(acc, x + j * stride, w, 1.0);
}

struct LrnParams {
  int64_t channels, stride, size;
  double alpha_n, beta, k;  // alpha_n = alpha / size
};

// One sample's w adjacent spatial positions (x, y point at the first), all channels.
template <PowKind K, class T>
CNNKIT_INLINE void lrn_forward_block(const T* x, T* y, int64_t w, const LrnParams& q,
                                     double* acc) {
  const int64_t before = q.size / 2, after = (q.size - 1) / 2;
  prime_window(acc, x, q.channels, q.stride, w, after);
  for (int64_t c = 0; c < q.channels; ++c) {
    slide_window(acc, x, c, q.channels, q.stride, w, before, after);
    const T* xc = x + c * q.stride;
    T* yc = y + c * q.stride;
    // The window sums stay in double (they slide by adding and subtracting); the
    // power runs in T: float's sqrt and divide are twice as wide and correctly rounded.
    for (int64_t i = 0; i < w; ++i)
      yc[i] = xc[i] * inv_pow<K>(static_cast<T>(q.k + q.alpha_n * acc[i]), static_cast<T>(q.beta));
  }
}

// gx_j = g_j s_j^-beta - 2 alpha_n beta x_j sum over {c : j in window(c)} of
// g_c x_c s_c^(-beta-1). That set of c is the mirrored window [j - after, j + before].
// p and t hold s^-beta and g x s^(-beta-1) for every channel (channels x w each).
template <PowKind K, class T>
CNNKIT_INLINE void lrn_backward_block(const T* g, const T* x, T* gx, int64_t w,
                                      const LrnParams& q, double* acc, double* p, double* t) {
  const int64_t before = q.size / 2, after = (q.size - 1) / 2;
  prime_window(acc, x, q.channels, q.stride, w, after);
  for (int64_t c = 0; c < q.channels; ++c) {
    slide_window(acc, x, c, q.channels, q.stride, w, before, after);
    const T* xc = x + c * q.stride;
    const T* gc = g + c * q.stride;
    double* pc = p + c * w;
    double* tc = t + c * w;
    for (int64_t i = 0; i < w; ++i) {
      const double s = q.k + q.alpha_n * acc[i];
      pc[i] = inv_pow<K>(static_cast<T>(s), static_cast<T>(q.beta));
      tc[i] = double(gc[i]) * double(xc[i]) * pc[i] / s;
    }
  }
  std::fill(acc, acc + w, 0.0);
  for (int64_t c = 0; c < std::min(before, q.channels); ++c) add_values(acc, t + c * w, w, 1.0);
  const double coef = 2.0 * q.alpha_n * q.beta;
  for (int64_t j = 0; j < q.channels; ++j) {
    if (j + before < q.channels) add_values(acc, t + (j + before) * w, w, 1.0);
    if (j - after - 1 >= 0) add_values(acc, t + (j - after - 1) * w, w, -1.0);
    const T* xj = x + j * q.stride;
    const T* gj = g + j * q.stride;
    const double* pj = p + j * w;
    T* gxj = gx + j * q.stride;
    for (int64_t i = 0; i < w; ++i)
      gxj[i] = static_cast<T>(double(gj[i]) * pj[i] - coef * double(xj[i]) * acc[i]);
  }
}

#define CNNKIT_NORM_DISPATCH(T)                                                                \
  CNNKIT_MULTIVERSION void dropout_mv(const T* x, T* y, uint8_t* keep, int64_t begin,          \
                                      int64_t n, uint64_t seed, int64_t keep_below, T scale) { \
    dropout_chunk(x, y, keep, begin, n, seed, keep_below, scale);                              \
  }                                                                                            \
  CNNKIT_MULTIVERSION void dropout_backward_mv(const T* gy, const uint8_t* keep, T* gx,        \
                                               int64_t n, T scale) {                           \
    dropout_backward_chunk(gy, keep, gx, n, scale);                                            \
  }                                                                                            \
  CNNKIT_MULTIVERSION double channel_sum_mv(const T* x, int64_t n, int64_t stride, int64_t s) { \
    return channel_sum(x, n, stride, s);                                                       \
  }                                                                                            \
  CNNKIT_MULTIVERSION double channel_squared_deviation_mv(const T* x, int64_t n,               \
                                                          int64_t stride, int64_t s,           \
                                                          double mean) {                       \
    return channel_squared_deviation(x, n, stride, s, mean);                                   \
  }                                                                                            \
  CNNKIT_MULTIVERSION void channel_affine_mv(const T* x, T* y, int64_t n, int64_t stride,      \
                                             int64_t s, double mean, double a, double b) {     \
    channel_affine(x, y, n, stride, s, mean, a, b);                                            \
  }                                                                                            \
  CNNKIT_MULTIVERSION void channel_grad_sums_mv(const T* g, const T* x, int64_t n,             \
                                                int64_t stride, int64_t s, double mean,        \
                                                double& sum_g, double& sum_gd) {               \
    channel_grad_sums(g, x, n, stride, s, mean, sum_g, sum_gd);                                \
  }                                                                                            \
  CNNKIT_MULTIVERSION void channel_grad_input_mv(const T* g, const T* x, T* gx, int64_t n,     \
                                                 int64_t stride, int64_t s, double mean,       \
                                                 double c1, double c2, double c3) {            \
    channel_grad_input(g, x, gx, n, stride, s, mean, c1, c2, c3);                              \
  }                                                                                            \
  CNNKIT_MULTIVERSION void lrn_forward_block_mv(const T* x, T* y, int64_t w,                   \
                                                const LrnParams& q, PowKind kind,              \
                                                double* acc) {                                 \
    switch (kind) {                                                                            \
      case PowKind::three_quarters:                                                            \
        return lrn_forward_block<PowKind::three_quarters>(x, y, w, q, acc);                    \
      case PowKind::half:                                                                      \
        return lrn_forward_block<PowKind::half>(x, y, w, q, acc);                              \
      case PowKind::one:                                                                       \
        return lrn_forward_block<PowKind::one>(x, y, w, q, acc);                               \
      case PowKind::general:                                                                   \
        return lrn_forward_block<PowKind::general>(x, y, w, q, acc);                           \
    }                                                                                          \
  }                                                                                            \
  CNNKIT_MULTIVERSION void lrn_backward_block_mv(const T* g, const T* x, T* gx, int64_t w,     \
                                                 const LrnParams& q, PowKind kind,             \
                                                 double* acc, double* p, double* t) {          \
    switch (kind) {                                                                            \
      case PowKind::three_quarters:                                                            \
        return lrn_backward_block<PowKind::three_quarters>(g, x, gx, w, q, acc, p, t);         \
      case PowKind::half:                                                                      \
        return lrn_backward_block<PowKind::half>(g, x, gx, w, q, acc, p, t);                   \
      case PowKind::one:                                                                       \
        return lrn_backward_block<PowKind::one>(g, x, gx, w, q, acc, p, t);                    \
      case PowKind::general:                                                                   \
        return lrn_backward_block<PowKind::general>(g, x, gx, w, q, acc, p, t);                \
    }                                                                                          \
  }
CNNKIT_NORM_DISPATCH(float)
CNNKIT_NORM_DISPATCH(double)
#undef CNNKIT_NORM_DISPATCH

// Runs fn(sample, first spatial position, w) over every (sample, spatial block) of d,
// with per-chunk scratch of `scratch_per_block` doubles.
template <class F>
void for_each_spatial_block(const DimSplit& d, int64_t scratch_per_block, F&& fn) {
  const int64_t blocks = (d.inner + kBlock - 1) / kBlock;
  const int64_t per_item = d.size * std::min(d.inner, kBlock);
  parallel_for(d.outer * blocks, grain_for(per_item, kGrain), [&](int64_t b, int64_t e) {
    std::vector<double> scratch(static_cast<size_t>(scratch_per_block));
    for (int64_t item = b; item < e; ++item) {
      const int64_t s0 = (item % blocks) * kBlock;
      fn(item / blocks, s0, std::min(kBlock, d.inner - s0), scratch.data());
    }
  });
}

}  // namespace

template <class T>
void dropout_forward(const T* x, T* y, uint8_t* keep, int64_t n, double p, uint64_t seed) {
  const int64_t keep_below = static_cast<int64_t>(std::ldexp(1.0 - p, 53));
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    dropout_mv(x + b, y + b, keep + b, b, e - b, seed, keep_below, scale);
  });
}

template <class T>
void dropout_backward(const T* gy, const uint8_t* keep, T* gx, int64_t n, double p) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  parallel_for(n, kGrain,
               [&](int64_t b, int64_t e) { dropout_backward_mv(gy + b, keep + b, gx + b, e - b, scale); });
}

template <class T>
void batch_norm_forward(const T* x, const T* gamma, const T* beta, T* running_mean,
                        T* running_var, T* y, double* mean, double* invstd, const DimSplit& d,
                        bool training, double momentum, double eps) {
  const int64_t n = d.outer, channels = d.size, s = d.inner, stride = channels * s;
  const int64_t count = n * s;
  parallel_for(channels, grain_for(count, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const T* xc = x + c * s;
      double mu, var;
      if (!training) {
        mu = double(running_mean[c]);
        var = double(running_var[c]);
      } else if (count == 0) {
        mu = 0, var = 0;  // nothing to normalise; running stats stay as they are, as in torch
      } else {
        mu = channel_sum_mv(xc, n, stride, s) / double(count);
        var = channel_squared_deviation_mv(xc, n, stride, s, mu) / double(count);
        if (running_mean)
          running_mean[c] = static_cast<T>((1 - momentum) * double(running_mean[c]) + momentum * mu);
        if (running_var)
          running_var[c] = static_cast<T>((1 - momentum) * double(running_var[c]) +
                                          momentum * var * double(count) / double(count - 1));
      }
      const double is = 1.0 / std::sqrt(var + eps);
      mean[c] = mu;
      invstd[c] = is;
      const double a = is * (gamma ? double(gamma[c]) : 1.0);
      channel_affine_mv(xc, y + c * s, n, stride, s, mu, a, beta ? double(beta[c]) : 0.0);
    }
  });
}

template <class T>
void batch_norm_backward(const T* gy, const T* x, const T* gamma, const double* mean,
                         const double* invstd, T* gx, T* ggamma, T* gbeta, const DimSplit& d,
                         bool training) {
  const int64_t n = d.outer, channels = d.size, s = d.inner, stride = channels * s;
  const int64_t count = n * s;
  parallel_for(channels, grain_for(count, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t off = c * s;
      const double mu = mean[c], is = invstd[c];
      double sum_g, sum_gd;
      channel_grad_sums_mv(gy + off, x + off, n, stride, s, mu, sum_g, sum_gd);
      const double sum_gxhat = sum_gd * is;  // sum of g * x_hat
      if (ggamma) ggamma[c] = static_cast<T>(sum_gxhat);
      if (gbeta) gbeta[c] = static_cast<T>(sum_g);
      const double c1 = is * (gamma ? double(gamma[c]) : 1.0);
      double c2 = 0, c3 = 0;
      // Training: x_hat depends on x through the batch mean and variance too.
      if (training && count > 0) {
        c2 = -c1 * is * sum_gxhat / double(count);
        c3 = -c1 * sum_g / double(count);
      }
      channel_grad_input_mv(gy + off, x + off, gx + off, n, stride, s, mu, c1, c2, c3);
    }
  });
}

template <class T>
void local_response_norm_forward(const T* x, T* y, const DimSplit& d, int64_t size, double alpha,
                                 double beta, double k) {
  const LrnParams q{d.size, d.inner, size, alpha / double(size), beta, k};
  const PowKind kind = pow_kind(beta);
  const int64_t sample = d.size * d.inner;
  for_each_spatial_block(d, kBlock, [&](int64_t nb, int64_t s0, int64_t w, double* acc) {
    const int64_t off = nb * sample + s0;
    lrn_forward_block_mv(x + off, y + off, w, q, kind, acc);
  });
}

template <class T>
void local_response_norm_backward(const T* gy, const T* x, T* gx, const DimSplit& d,
                                  int64_t size, double alpha, double beta, double k) {
  const LrnParams q{d.size, d.inner, size, alpha / double(size), beta, k};
  const PowKind kind = pow_kind(beta);
  const int64_t sample = d.size * d.inner;
  const int64_t plane = d.size * kBlock;
  for_each_spatial_block(d, kBlock + 2 * plane, [&](int64_t nb, int64_t s0, int64_t w, double* scratch) {
    const int64_t off = nb * sample + s0;
    lrn_backward_block_mv(gy + off, x + off, gx + off, w, q, kind, scratch, scratch + kBlock,
                          scratch + kBlock + plane);
  });
}

#define CNNKIT_INSTANTIATE(T)                                                                  \
  template void dropout_forward<T>(const T*, T*, uint8_t*, int64_t, double, uint64_t);         \
  template void dropout_backward<T>(const T*, const uint8_t*, T*, int64_t, double);            \
  template void batch_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, double*,       \
                                      double*, const DimSplit&, bool, double, double);         \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const double*,            \
                                       const double*, T*, T*, T*, const DimSplit&, bool);      \
  template void local_response_norm_forward<T>(const T*, T*, const DimSplit&, int64_t, double, \
                                               double, double);                                \
  template void local_response_norm_backward<T>(const T*, const T*, T*, const DimSplit&,      \
                                                int64_t, double, double, double);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit
