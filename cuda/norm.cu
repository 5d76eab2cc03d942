// Dropout, batch norm and local response norm on the GPU, with the semantics of
// csrc/norm.cpp: the same dropout mask for a seed, double accumulation of the batch
// statistics, and direct (never sliding) window sums for LRN.
#include "common.cuh"

// Threads per block of the per-channel reduction kernels (the backend launches this many).
#define CK_NORM_BLOCK 256

namespace {

typedef unsigned long long u64;

// splitmix64's output for counter i of the stream seed, as csrc/common/counter_rng.h: a function of
// (seed, i) only, so any element's draw is known without the ones before it.
__host__ __device__ __forceinline__ u64 splitmix64(u64 seed, u64 i) {
  u64 z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// keep_below: (1 - p) * 2^53; the top 53 bits of the hash are uniform on [0, 2^53).
__host__ __device__ __forceinline__ bool dropout_keep(u64 seed, i64 i, i64 keep_below) {
  return (i64)(splitmix64(seed, (u64)i) >> 11) < keep_below;
}

template <class T>
__device__ __forceinline__ void dropout_forward(const T* __restrict__ x, T* __restrict__ y,
                                                unsigned char* __restrict__ keep, i64 n, u64 seed,
                                                i64 keep_below, T scale) {
  CK_GRID_STRIDE_LOOP(i, n) {
    const bool k = dropout_keep(seed, i, keep_below);
    keep[i] = k ? 1 : 0;
    // x * 0 rather than 0, so that NaN stays NaN as in torch.
    y[i] = x[i] * (k ? scale : T(0));
  }
}

template <class T>
__device__ __forceinline__ void dropout_backward(const T* __restrict__ gy,
                                                 const unsigned char* __restrict__ keep,
                                                 T* __restrict__ gx, i64 n, T scale) {
  CK_GRID_STRIDE_LOOP(i, n) gx[i] = gy[i] * (keep[i] ? scale : T(0));
}

// ---- Batch norm: x is (n, channels, s); one block per channel (grid-stride over
// channels), its threads over the channel's n * s values.

template <class T>
__device__ __forceinline__ T channel_value(const T* x, i64 c, i64 j, i64 channels, i64 s) {
  const i64 b = j / s;
  return x[(b * channels + c) * s + (j - b * s)];
}

// mean, invstd of every channel; in training the batch's (biased variance, two passes
// around the mean as on the CPU) and the in-place running-stat update, else the running
// stats' own.
template <class T>
__device__ __forceinline__ void batch_norm_stats(const T* __restrict__ x, T* running_mean,
                                                 T* running_var, double* __restrict__ mean,
                                                 double* __restrict__ invstd, i64 n, i64 channels,
                                                 i64 s, int training, int has_running_mean,
                                                 int has_running_var, double momentum,
                                                 double eps) {
  __shared__ double smem[CK_NORM_BLOCK];
  const i64 count = n * s;
  for (i64 c = blockIdx.x; c < channels; c += gridDim.x) {
    double mu, var;
    if (!training) {
      mu = double(running_mean[c]);
      var = double(running_var[c]);
    } else if (count == 0) {
      mu = 0, var = 0;  // nothing to normalise; running stats stay as they are, as in torch
    } else {
      double acc = 0;
      for (i64 j = threadIdx.x; j < count; j += blockDim.x)
        acc += double(channel_value(x, c, j, channels, s));
      mu = ck::block_sum<CK_NORM_BLOCK>(acc, smem) / double(count);
      acc = 0;
      for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
        const double e = double(channel_value(x, c, j, channels, s)) - mu;
        acc += e * e;
      }
      var = ck::block_sum<CK_NORM_BLOCK>(acc, smem) / double(count);
      if (threadIdx.x == 0) {
        if (has_running_mean)
          running_mean[c] = static_cast<T>((1 - momentum) * double(running_mean[c]) + momentum * mu);
        if (has_running_var)
          running_var[c] = static_cast<T>((1 - momentum) * double(running_var[c]) +
                                          momentum * var * double(count) / double(count - 1));
      }
    }
    if (threadIdx.x == 0) {
      mean[c] = mu;
      invstd[c] = 1.0 / ck::sqrt(var + eps);
    }
  }
}

template <class T>
__device__ __forceinline__ void batch_norm_affine(const T* __restrict__ x,
                                                  const T* __restrict__ gamma,
                                                  const T* __restrict__ beta,
                                                  const double* __restrict__ mean,
                                                  const double* __restrict__ invstd,
                                                  T* __restrict__ y, i64 total, i64 channels, i64 s,
                                                  int has_gamma, int has_beta) {
  CK_GRID_STRIDE_LOOP(i, total) {
    const i64 c = (i / s) % channels;
    const double a = invstd[c] * (has_gamma ? double(gamma[c]) : 1.0);
    const double b = has_beta ? double(beta[c]) : 0.0;
    y[i] = static_cast<T>((double(x[i]) - mean[c]) * a + b);
  }
}

// Per channel: grad_gamma, grad_beta, and coef = (c1, c2, c3) of
// gx = c1 * g + c2 * (x - mean) + c3.
template <class T>
__device__ __forceinline__ void batch_norm_backward_sums(
    const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ gamma,
    const double* __restrict__ mean, const double* __restrict__ invstd, T* __restrict__ ggamma,
    T* __restrict__ gbeta, double* __restrict__ coef, i64 n, i64 channels, i64 s, int training,
    int has_gamma, int has_beta) {
  __shared__ double smem[CK_NORM_BLOCK];
  const i64 count = n * s;
  for (i64 c = blockIdx.x; c < channels; c += gridDim.x) {
    const double mu = mean[c], is = invstd[c];
    double ag = 0, agd = 0;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
      const double gj = double(channel_value(g, c, j, channels, s));
      ag += gj;
      agd += gj * (double(channel_value(x, c, j, channels, s)) - mu);
    }
    const double sum_g = ck::block_sum<CK_NORM_BLOCK>(ag, smem);
    const double sum_gxhat = ck::block_sum<CK_NORM_BLOCK>(agd, smem) * is;  // sum of g * x_hat
    if (threadIdx.x == 0) {
      if (has_gamma) ggamma[c] = static_cast<T>(sum_gxhat);
      if (has_beta) gbeta[c] = static_cast<T>(sum_g);
      const double c1 = is * (has_gamma ? double(gamma[c]) : 1.0);
      double c2 = 0, c3 = 0;
      // Training: x_hat depends on x through the batch mean and variance too.
      if (training && count > 0) {
        c2 = -c1 * is * sum_gxhat / double(count);
        c3 = -c1 * sum_g / double(count);
      }
      coef[3 * c] = c1;
      coef[3 * c + 1] = c2;
      coef[3 * c + 2] = c3;
    }
  }
}

template <class T>
__device__ __forceinline__ void batch_norm_backward_input(const T* __restrict__ g,
                                                          const T* __restrict__ x,
                                                          const double* __restrict__ mean,
                                                          const double* __restrict__ coef,
                                                          T* __restrict__ gx, i64 total,
                                                          i64 channels, i64 s) {
  CK_GRID_STRIDE_LOOP(i, total) {
    const i64 c = (i / s) % channels;
    const double* k = coef + 3 * c;
    gx[i] = static_cast<T>(k[0] * double(g[i]) + k[1] * (double(x[i]) - mean[c]) + k[2]);
  }
}

// ---- Local response norm, all in double: x is (n, channels, s), one thread per output.
// Channel c's window is [c - size / 2, c + (size - 1) / 2], clipped; every window sum is
// taken directly over its own terms, from zero, in channel order (a sliding sum keeps
// the rounding error of a large channel after it has left the window).

struct Lrn {
  i64 channels, s, size;
  double alpha_n, beta, k;  // alpha_n = alpha / size
  __device__ __forceinline__ i64 lo(i64 c) const { return ck::max(0, c - size / 2); }
  __device__ __forceinline__ i64 hi(i64 c) const { return ck::min(channels - 1, c + (size - 1) / 2); }
};

// s = k + alpha_n * (sum of x^2 over channel c's window); base points at channel 0.
template <class T>
__device__ __forceinline__ double lrn_denominator(const T* base, i64 c, const Lrn& q) {
  double acc = 0;
  for (i64 j = q.lo(c); j <= q.hi(c); ++j) {
    const double v = double(base[j * q.s]);
    acc += v * v;
  }
  return q.k + q.alpha_n * acc;
}

// s^-beta (and r, as csrc/norm.cpp's pow_base) with the exponents AlexNet-style layers use.
__device__ __forceinline__ double lrn_pow(double s, double beta, double* r) {
  if (beta == 0.75) {
    *r = 1.0 / ck::sqrt(s);
    return *r * ck::sqrt(*r);
  }
  if (beta == 0.5) return *r = 1.0 / ck::sqrt(s);
  if (beta == 1.0) return *r = 1.0 / s;
  return *r = ck::pow(s, -beta);
}

// s^(-beta-1) from p = s^-beta and r, as pow_q.
__device__ __forceinline__ double lrn_pow_q(double p, double r, double s, double beta) {
  if (beta == 0.75 || beta == 0.5) return p * (r * r);
  if (beta == 1.0) return p * r;
  return p / s;
}

__device__ __forceinline__ void lrn_split(i64 i, const Lrn& q, i64* base, i64* c) {
  const i64 pos = i % q.s, rest = i / q.s;
  *c = rest % q.channels;
  *base = (rest / q.channels) * q.channels * q.s + pos;
}

template <class T>
__device__ __forceinline__ void lrn_forward(const T* __restrict__ x, T* __restrict__ y,
                                            i64 total, Lrn q) {
  CK_GRID_STRIDE_LOOP(i, total) {
    i64 base, c;
    lrn_split(i, q, &base, &c);
    double r;
    const double p = lrn_pow(lrn_denominator(x + base, c, q), q.beta, &r);
    y[i] = static_cast<T>(double(x[i]) * p);
  }
}

// First pass of the backward: p = s^-beta and t = g x s^(-beta-1) of every element.
template <class T>
__device__ __forceinline__ void lrn_backward_terms(const T* __restrict__ g,
                                                   const T* __restrict__ x,
                                                   double* __restrict__ p,
                                                   double* __restrict__ t, i64 total, Lrn q) {
  CK_GRID_STRIDE_LOOP(i, total) {
    i64 base, c;
    lrn_split(i, q, &base, &c);
    const double s = lrn_denominator(x + base, c, q);
    double r;
    const double pi = lrn_pow(s, q.beta, &r);
    p[i] = pi;
    t[i] = double(g[i]) * double(x[i]) * lrn_pow_q(pi, r, s, q.beta);
  }
}

// gx_j = g_j p_j - 2 alpha_n beta x_j (sum of t_c over the c whose window holds j:
// [j - (size - 1) / 2, j + size / 2], clipped), that sum direct from zero.
template <class T>
__device__ __forceinline__ void lrn_backward_input(const T* __restrict__ g,
                                                   const T* __restrict__ x,
                                                   const double* __restrict__ p,
                                                   const double* __restrict__ t,
                                                   T* __restrict__ gx, i64 total, Lrn q) {
  const double coef = 2.0 * q.alpha_n * q.beta;
  CK_GRID_STRIDE_LOOP(i, total) {
    i64 base, j;
    lrn_split(i, q, &base, &j);
    const i64 lo = ck::max(0, j - (q.size - 1) / 2), hi = ck::min(q.channels - 1, j + q.size / 2);
    double acc = 0;
    for (i64 c = lo; c <= hi; ++c) acc += t[base + c * q.s];
    gx[i] = static_cast<T>(double(g[i]) * p[i] - coef * double(x[i]) * acc);
  }
}

__device__ __forceinline__ Lrn lrn_params(i64 channels, i64 s, i64 size, double alpha, double beta,
                                          double k) {
  Lrn q;
  q.channels = channels;
  q.s = s;
  q.size = size;
  q.alpha_n = alpha / double(size);
  q.beta = beta;
  q.k = k;
  return q;
}

}  // namespace

// The host tests check the generator itself against the CPU's masks.
extern "C" __global__ void dropout_mask_bits(unsigned long long* out, const long long* index,
                                             i64 n, unsigned long long seed) {
  CK_GRID_STRIDE_LOOP(i, n) out[i] = splitmix64(seed, (u64)index[i]);
}

#define CK_NORM_KERNELS(sfx, T)                                                                   \
  extern "C" __global__ void dropout_forward_##sfx(const T* x, T* y, unsigned char* keep, i64 n,  \
                                                   unsigned long long seed, i64 keep_below,       \
                                                   T scale) {                                     \
    dropout_forward(x, y, keep, n, seed, keep_below, scale);                                      \
  }                                                                                               \
  extern "C" __global__ void dropout_backward_##sfx(const T* gy, const unsigned char* keep,       \
                                                    T* gx, i64 n, T scale) {                      \
    dropout_backward(gy, keep, gx, n, scale);                                                     \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(CK_NORM_BLOCK)                                     \
      batch_norm_stats_##sfx(const T* x, T* running_mean, T* running_var, double* mean,           \
                             double* invstd, i64 n, i64 channels, i64 s, int training,            \
                             int has_running_mean, int has_running_var, double momentum,          \
                             double eps) {                                                        \
    batch_norm_stats(x, running_mean, running_var, mean, invstd, n, channels, s, training,        \
                     has_running_mean, has_running_var, momentum, eps);                           \
  }                                                                                               \
  extern "C" __global__ void batch_norm_affine_##sfx(const T* x, const T* gamma, const T* beta,   \
                                                     const double* mean, const double* invstd,    \
                                                     T* y, i64 total, i64 channels, i64 s,        \
                                                     int has_gamma, int has_beta) {               \
    batch_norm_affine(x, gamma, beta, mean, invstd, y, total, channels, s, has_gamma, has_beta);  \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(CK_NORM_BLOCK) batch_norm_backward_sums_##sfx(     \
      const T* g, const T* x, const T* gamma, const double* mean, const double* invstd,           \
      T* ggamma, T* gbeta, double* coef, i64 n, i64 channels, i64 s, int training, int has_gamma, \
      int has_beta) {                                                                             \
    batch_norm_backward_sums(g, x, gamma, mean, invstd, ggamma, gbeta, coef, n, channels, s,      \
                             training, has_gamma, has_beta);                                      \
  }                                                                                               \
  extern "C" __global__ void batch_norm_backward_input_##sfx(                                     \
      const T* g, const T* x, const double* mean, const double* coef, T* gx, i64 total,           \
      i64 channels, i64 s) {                                                                      \
    batch_norm_backward_input(g, x, mean, coef, gx, total, channels, s);                          \
  }                                                                                               \
  extern "C" __global__ void lrn_forward_##sfx(const T* x, T* y, i64 total, i64 channels, i64 s,  \
                                               i64 size, double alpha, double beta, double k) {   \
    lrn_forward(x, y, total, lrn_params(channels, s, size, alpha, beta, k));                      \
  }                                                                                               \
  extern "C" __global__ void lrn_backward_terms_##sfx(const T* g, const T* x, double* p,          \
                                                      double* t, i64 total, i64 channels, i64 s,  \
                                                      i64 size, double alpha, double beta,        \
                                                      double k) {                                 \
    lrn_backward_terms(g, x, p, t, total, lrn_params(channels, s, size, alpha, beta, k));         \
  }                                                                                               \
  extern "C" __global__ void lrn_backward_input_##sfx(                                            \
      const T* g, const T* x, const double* p, const double* t, T* gx, i64 total, i64 channels,   \
      i64 s, i64 size, double alpha, double beta, double k) {                                     \
    lrn_backward_input(g, x, p, t, gx, total, lrn_params(channels, s, size, alpha, beta, k));     \
  }
CK_FOR_FLOAT_TYPES(CK_NORM_KERNELS)
#undef CK_NORM_KERNELS
