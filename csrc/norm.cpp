#include "norm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "common/counter_rng.h"
#include "common/cpu_features.h"
#include "common/threading.h"

namespace cnnkit {

namespace {

// Elements of work below which a parallel_for item is not worth a thread.
constexpr int64_t kGrain = 32768;
// Spatial positions that local_response_norm carries through the channels together.
constexpr int64_t kBlock = 256;

// ---- Dropout

// keep_below: (1 - p) * 2^53; the top 53 bits of the hash are uniform on [0, 2^53).
template <class T>
CNNKIT_INLINE void dropout_chunk(const T* x, T* y, uint8_t* keep, int64_t begin, int64_t n,
                                 uint64_t seed, int64_t keep_below, T scale) {
  for (int64_t i = 0; i < n; ++i) {
    const bool k = static_cast<int64_t>(cnnkit_splitmix64(seed, uint64_t(begin + i)) >> 11) < keep_below;
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
//
// Every window sum is taken directly over its own terms, from zero. A sliding sum (add
// the entering channel, subtract the leaving one) keeps the rounding error of a large
// channel after it has left the window, where it can swamp small neighbours' sums.

// s^-beta, with the exponents that AlexNet-style layers use on vectorisable sqrt.
enum class PowKind { general, three_quarters, half, one };

PowKind pow_kind(double beta) {
  if (beta == 0.75) return PowKind::three_quarters;
  if (beta == 0.5) return PowKind::half;
  if (beta == 1.0) return PowKind::one;
  return PowKind::general;
}

// s^-beta from r = pow_base(s): 1/sqrt(s), 1/s or s^-beta itself.
template <PowKind K, class P>
CNNKIT_INLINE P pow_base(P s, P beta) {
  if constexpr (K == PowKind::three_quarters || K == PowKind::half) {
    return P(1) / std::sqrt(s);
  } else if constexpr (K == PowKind::one) {
    return P(1) / s;
  } else {
    return std::pow(s, -beta);
  }
}

template <PowKind K, class P>
CNNKIT_INLINE P pow_p(P r) {
  if constexpr (K == PowKind::three_quarters) return r * std::sqrt(r);
  return r;
}

// s^(-beta-1) from p = s^-beta and r, without a second square root or divide.
template <PowKind K, class P>
CNNKIT_INLINE P pow_q(P p, P r, P s) {
  if constexpr (K == PowKind::three_quarters || K == PowKind::half) {
    return p * (r * r);
  } else if constexpr (K == PowKind::one) {
    return p * r;
  } else {
    return p / s;
  }
}

struct LrnParams {
  int64_t channels, stride, size;
  double alpha_n, beta, k;  // alpha_n = alpha / size
  // Rows of the backward's rings of per-channel scratch (see lrn_backward_block).
  int64_t ring() const { return std::max<int64_t>(1, std::min(size, channels)); }
  int64_t before() const { return size / 2; }
  int64_t after() const { return (size - 1) / 2; }
  // Channel c's window, clipped; j is in the windows of [j - after, j + before].
  int64_t lo(int64_t c) const { return std::max<int64_t>(0, c - before()); }
  int64_t hi(int64_t c) const { return std::min(channels - 1, c + after()); }
};

// Float's sqrt and divide are twice as wide as double's, so float32 takes s^-beta and
// s^(-beta-1) in float while s is well inside float's range; a block with any s
// outside it (k ~ 0 with tiny inputs, huge inputs, NaN) takes them in double, and so
// does a general beta that float does not hold exactly (its rounding would scale
// with log s). Where s^-beta itself leaves float's range, so does the result.
struct FloatRange {
  double lo, hi;
  FloatRange(PowKind kind, double beta) {
    const double e = std::min(60.0, std::floor(120.0 / (std::fabs(beta) + 1.0)));
    lo = std::ldexp(1.0, -int(e));
    hi = std::ldexp(1.0, int(e));
    const bool exact = std::fabs(beta) <= 1e30 && double(float(beta)) == beta;
    if (kind == PowKind::general && !exact) lo = hi = NAN;
  }
  // Whether every s[i] is in [lo, hi] (NaN is not).
  CNNKIT_INLINE bool holds(const double* s, int64_t w) const {
    int64_t out = 0;
    for (int64_t i = 0; i < w; ++i) out |= int64_t(!(s[i] >= lo)) | int64_t(!(s[i] <= hi));
    return out == 0;
  }
};

// Lambdas called from the vectorised loops of the kernels are inlined into each clone.
#define CNNKIT_LAMBDA_INLINE __attribute__((always_inline))

// Positions of one row whose window sums stay in registers (plain loops over a local
// array: GCC keeps it in vector registers under SSE, AVX2 and AVX-512 alike).
constexpr int64_t kChunk = 16;

// acc[l] += f(p[l]) summed over `count` rows `stride` apart from p; f squares or not.
template <bool Square, class U>
CNNKIT_INLINE void add_rows(double* acc, const U* p, int64_t stride, int64_t count) {
  for (int64_t m = 0; m < count; ++m, p += stride) {
#pragma omp simd
    for (int64_t l = 0; l < kChunk; ++l) {
      const double v = p[l];
      acc[l] += Square ? v * v : v;
    }
  }
}

// out[i] = k + a * (sum of f(row[i]) over n rows `stride` apart from p), in row order,
// from zero.
template <bool Square, class U>
CNNKIT_INLINE void rows_sum(double* out, const U* p, int64_t n, int64_t stride, int64_t w,
                            double k, double a) {
  int64_t i = 0;
  for (; i + kChunk <= w; i += kChunk) {
    double acc[kChunk];
#pragma omp simd
    for (int64_t l = 0; l < kChunk; ++l) acc[l] = 0;
    add_rows<Square>(acc, p + i, stride, n);
#pragma omp simd
    for (int64_t l = 0; l < kChunk; ++l) out[i + l] = k + a * acc[l];
  }
  for (; i < w; ++i) {
    double acc = 0;
    for (int64_t m = 0; m < n; ++m) {
      const double v = p[m * stride + i];
      acc += Square ? v * v : v;
    }
    out[i] = k + a * acc;
  }
}

// s = k + alpha_n * (sum of x^2 over channel c's window), straight from x.
template <class T>
CNNKIT_INLINE void lrn_denominator(double* s, const T* x, int64_t c, int64_t w,
                                   const LrnParams& q) {
  rows_sum<true>(s, x + q.lo(c) * q.stride, q.hi(c) - q.lo(c) + 1, q.stride, w, q.k, q.alpha_n);
}

// Calls f(i, s_i) for every position i of channel c, s = k + alpha_n * window sum of
// x^2, each chunk's s straight from the registers that summed it. Float64 takes its
// powers this way; float32 measured faster with a row of s first (lrn_denominator),
// whose range it checks before taking the powers in float.
template <class F>
CNNKIT_INLINE void each_denominator(const double* x, int64_t c, int64_t w, const LrnParams& q,
                                    double* s, F&& f) {
  const int64_t n = q.hi(c) - q.lo(c) + 1, stride = q.stride;
  const double* r = x + q.lo(c) * stride;
  int64_t i = 0;
  for (; i + kChunk <= w; i += kChunk) {
    double acc[kChunk];
#pragma omp simd
    for (int64_t l = 0; l < kChunk; ++l) acc[l] = 0;
    add_rows<true>(acc, r + i, stride, n);
#pragma omp simd
    for (int64_t l = 0; l < kChunk; ++l) f(i + l, q.k + q.alpha_n * acc[l]);
  }
  if (i < w) {
    rows_sum<true>(s, r + i, n, stride, w - i, q.k, q.alpha_n);
    for (int64_t l = 0; l < w - i; ++l) f(i + l, s[l]);
  }
}

// One sample's w adjacent spatial positions (x, y point at the first), all channels;
// s is w doubles of scratch.
template <PowKind K, class T>
CNNKIT_INLINE void lrn_forward_block(const T* x, T* y, int64_t w, const LrnParams& q,
                                     const FloatRange& fr, double* s) {
  for (int64_t c = 0; c < q.channels; ++c) {
    const T* xc = x + c * q.stride;
    T* yc = y + c * q.stride;
    if constexpr (std::is_same_v<T, double>) {
      each_denominator(x, c, w, q, s, [&](int64_t i, double sd) CNNKIT_LAMBDA_INLINE {
        yc[i] = xc[i] * pow_p<K>(pow_base<K>(sd, q.beta));
      });
    } else {
      lrn_denominator(s, x, c, w, q);
      if (fr.holds(s, w)) {
        const float beta = float(q.beta);
#pragma omp simd
        for (int64_t i = 0; i < w; ++i)
          yc[i] = xc[i] * pow_p<K>(pow_base<K>(static_cast<float>(s[i]), beta));
      } else {
        for (int64_t i = 0; i < w; ++i)
          yc[i] = static_cast<float>(double(xc[i]) * pow_p<K>(pow_base<K>(s[i], q.beta)));
      }
    }
  }
}

// gx_j = g_j s_j^-beta - 2 alpha_n beta x_j (sum over {c : j in window(c)} of
// g_c x_c s_c^(-beta-1)), that set of c being [j - after, j + before].
template <class T>
CNNKIT_INLINE void lrn_grad_channel(const T* g, const T* x, T* gx, int64_t j, int64_t w,
                                    const LrnParams& q, double* s, const double* p,
                                    const double* t) {
  const int64_t ring = q.ring();
  const int64_t lo = std::max<int64_t>(0, j - q.after());
  const int64_t n = std::min(q.channels - 1, j + q.before()) - lo + 1;
  rows_sum<false>(s, t + (lo % ring) * w, n, w, w, 0.0, 1.0);
  const double coef = 2.0 * q.alpha_n * q.beta;
  const T* xj = x + j * q.stride;
  const T* gj = g + j * q.stride;
  const double* pj = p + (j % ring) * w;
  T* gxj = gx + j * q.stride;
  for (int64_t i = 0; i < w; ++i)
    gxj[i] = static_cast<T>(double(gj[i]) * pj[i] - coef * double(xj[i]) * s[i]);
}

// Rings p and t hold each channel's s^-beta and g x s^(-beta-1) in row c % ring; t
// also in row c % ring + ring, so that the rows of any window lie in one run. Channel
// j's gradient follows `before` channels behind, once the last t it sums exists,
// while every row it reads is still live.
template <PowKind K, class T>
CNNKIT_INLINE void lrn_backward_block(const T* g, const T* x, T* gx, int64_t w,
                                      const LrnParams& q, const FloatRange& fr, double* s,
                                      double* p, double* t) {
  const int64_t ring = q.ring();
  for (int64_t c = 0; c < q.channels; ++c) {
    const T* xc = x + c * q.stride;
    const T* gc = g + c * q.stride;
    double* pc = p + (c % ring) * w;
    double* tc = t + (c % ring) * w;
    double* tc2 = tc + ring * w;
    if constexpr (std::is_same_v<T, double>) {
      each_denominator(x, c, w, q, s, [&](int64_t i, double sd) CNNKIT_LAMBDA_INLINE {
        const double r = pow_base<K>(sd, q.beta), pd = pow_p<K>(r);
        pc[i] = pd;
        tc[i] = tc2[i] = gc[i] * xc[i] * pow_q<K>(pd, r, sd);
      });
    } else {
      lrn_denominator(s, x, c, w, q);
      if (fr.holds(s, w)) {
        const float beta = float(q.beta);
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) {
          const float sf = static_cast<float>(s[i]), r = pow_base<K>(sf, beta);
          const float pf = pow_p<K>(r);
          pc[i] = pf;
          tc[i] = tc2[i] = double(gc[i]) * double(xc[i]) * double(pow_q<K>(pf, r, sf));
        }
      } else {
        for (int64_t i = 0; i < w; ++i) {
          const double r = pow_base<K>(s[i], q.beta), pd = pow_p<K>(r);
          pc[i] = pd;
          tc[i] = tc2[i] = double(gc[i]) * double(xc[i]) * pow_q<K>(pd, r, s[i]);
        }
      }
    }
    if (c >= q.before()) lrn_grad_channel(g, x, gx, c - q.before(), w, q, s, p, t);
  }
  for (int64_t j = std::max<int64_t>(0, q.channels - q.before()); j < q.channels; ++j)
    lrn_grad_channel(g, x, gx, j, w, q, s, p, t);
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
                                                const FloatRange& fr, double* s) {             \
    switch (kind) {                                                                            \
      case PowKind::three_quarters:                                                            \
        return lrn_forward_block<PowKind::three_quarters>(x, y, w, q, fr, s);              \
      case PowKind::half:                                                                      \
        return lrn_forward_block<PowKind::half>(x, y, w, q, fr, s);                        \
      case PowKind::one:                                                                       \
        return lrn_forward_block<PowKind::one>(x, y, w, q, fr, s);                         \
      case PowKind::general:                                                                   \
        return lrn_forward_block<PowKind::general>(x, y, w, q, fr, s);                     \
    }                                                                                          \
  }                                                                                            \
  CNNKIT_MULTIVERSION void lrn_backward_block_mv(const T* g, const T* x, T* gx, int64_t w,     \
                                                 const LrnParams& q, PowKind kind,             \
                                                 const FloatRange& fr, double* s, double* p,   \
                                                 double* t) {                                  \
    switch (kind) {                                                                            \
      case PowKind::three_quarters:                                                            \
        return lrn_backward_block<PowKind::three_quarters>(g, x, gx, w, q, fr, s, p, t);   \
      case PowKind::half:                                                                      \
        return lrn_backward_block<PowKind::half>(g, x, gx, w, q, fr, s, p, t);             \
      case PowKind::one:                                                                       \
        return lrn_backward_block<PowKind::one>(g, x, gx, w, q, fr, s, p, t);              \
      case PowKind::general:                                                                   \
        return lrn_backward_block<PowKind::general>(g, x, gx, w, q, fr, s, p, t);          \
    }                                                                                          \
  }
CNNKIT_NORM_DISPATCH(float)
CNNKIT_NORM_DISPATCH(double)
#undef CNNKIT_NORM_DISPATCH

// Runs fn(sample, first spatial position, w) over every (sample, spatial block of
// `block` positions) of d, with per-chunk scratch of `scratch` doubles.
template <class F>
void for_each_spatial_block(const DimSplit& d, int64_t block, int64_t scratch, F&& fn) {
  const int64_t blocks = (d.inner + block - 1) / block;
  const int64_t per_item = d.size * std::min(d.inner, block);
  parallel_for(d.outer * blocks, grain_for(per_item, kGrain), [&](int64_t b, int64_t e) {
    std::vector<double> buffer(static_cast<size_t>(scratch));
    for (int64_t item = b; item < e; ++item) {
      const int64_t s0 = (item % blocks) * block;
      fn(item / blocks, s0, std::min(block, d.inner - s0), buffer.data());
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
  const FloatRange fr(kind, beta);
  const int64_t sample = d.size * d.inner;
  for_each_spatial_block(d, kBlock, kBlock, [&](int64_t nb, int64_t s0, int64_t w,
                                                 double* s) {
    const int64_t off = nb * sample + s0;
    lrn_forward_block_mv(x + off, y + off, w, q, kind, fr, s);
  });
}

template <class T>
void local_response_norm_backward(const T* gy, const T* x, T* gx, const DimSplit& d,
                                  int64_t size, double alpha, double beta, double k) {
  const LrnParams q{d.size, d.inner, size, alpha / double(size), beta, k};
  const PowKind kind = pow_kind(beta);
  const FloatRange fr(kind, beta);
  // Narrower blocks for wide rings: 3 rings stay within 1.5 MiB up to 4096 rows.
  const int64_t block =
      std::clamp<int64_t>(kBlock * 256 / q.ring() / kChunk * kChunk, kChunk, kBlock);
  const int64_t sample = d.size * d.inner, rows = q.ring() * block;
  for_each_spatial_block(d, block, block + 3 * rows, [&](int64_t nb, int64_t s0, int64_t w,
                                                         double* s) {
    const int64_t off = nb * sample + s0;
    lrn_backward_block_mv(gy + off, x + off, gx + off, w, q, kind, fr, s, s + block,
                          s + block + rows);
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
