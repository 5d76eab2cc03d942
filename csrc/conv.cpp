#include "conv.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "common/cpu_features.h"
#include "common/gemm.h"
#include "common/shapes.h"
#include "common/threading.h"
#include "common/vec.h"
#include "common/workspace.h"
#include "im2col.h"
#include "winograd.h"

namespace cnnkit {

namespace {

std::atomic<int64_t> workspace_bytes{int64_t(64) << 20};

// Small output planes are batched until one GEMM has about this many columns.
constexpr int64_t kTargetCols = 4096;
// Column blocks of at most this many bytes. With cnnkit's own sgemm, blocks that stay
// in cache win (2 threads, 8 MiB against 32: a 4x4 stride-2 transposed layer's input
// gradient 5.3 ms against 6.4, its weight gradient 5.8-6.5 against 6.7; equal on AlexNet
// conv1 and dilated layers); OpenBLAS's sgemm had wanted 32 MiB on AlexNet conv3, which
// now runs Winograd.
constexpr int64_t kBlockBytes = int64_t(8) << 20;
// Elements of work below which a parallel_for item is not worth a thread.
constexpr int64_t kGrainElems = 16384;

template <class T>
std::unique_ptr<T[]> uninitialized(int64_t n) {
  return std::unique_ptr<T[]>(n > 0 ? new T[n] : nullptr);
}

template <class T>
void fill_zero(T* p, int64_t n) {
  parallel_for(n, kGrainElems, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, T(0)); });
}

// How the column side of a convolution is cut into GEMMs: either nb whole samples
// (nb > 1, staged through a buffer), or rows [oh0, oh0 + rows) of one sample.
struct Plan {
  int64_t nb, rows;
  bool direct;  // 1x1 with one sample per GEMM: the image itself is the column matrix
};

struct Block {
  int64_t n0, nb, oh0, oh1;
};

template <class T>
Plan make_plan(const ConvGeometry& g) {
  const int64_t plane = g.plane_out();
  const int64_t per_col = (g.c_in * g.kh * g.kw + g.c_out) * int64_t(sizeof(T));
  const int64_t budget = std::min(kBlockBytes, workspace_bytes.load());
  const int64_t max_cols = std::max(g.wo, budget / per_col);
  Plan p{1, g.ho, false};
  if (plane < kTargetCols && 2 * plane <= max_cols && g.n > 1) {
    p.nb = std::max<int64_t>(1, std::min({g.n, std::min(kTargetCols, max_cols) / plane}));
  }
  if (p.nb == 1) p.rows = std::clamp<int64_t>(max_cols / g.wo, 1, g.ho);
  p.direct = g.pointwise() && p.nb == 1;
  return p;
}

int64_t block_cols(const Plan& p, const ConvGeometry& g) {
  return p.nb > 1 ? p.nb * g.plane_out() : p.rows * g.wo;
}

template <class F>
void for_each_block(const ConvGeometry& g, const Plan& p, F&& fn) {
  if (p.nb > 1) {
    for (int64_t n0 = 0; n0 < g.n; n0 += p.nb) fn(Block{n0, std::min(p.nb, g.n - n0), 0, g.ho});
    return;
  }
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oh0 = 0; oh0 < g.ho; oh0 += p.rows)
      fn(Block{n, 1, oh0, std::min(g.ho, oh0 + p.rows)});
}

// Column matrix of block b: (C_in*kH*kW, cols), samples side by side. Tasks are
// (sample, channel, kernel row), so layers with few input channels still spread out.
template <class T>
void lower(const T* x, const ConvGeometry& g, const Block& b, T* col, int64_t cols) {
  const int64_t rows = b.oh1 - b.oh0;
  parallel_for(b.nb * g.c_in * g.kh, grain_for(g.kw * rows * g.wo, kGrainElems),
               [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t ki = i % g.kh, sc = i / g.kh;
      const int64_t s = sc / g.c_in, c = sc % g.c_in;
      im2col_kernel_row(x + ((b.n0 + s) * g.c_in + c) * g.plane_in(), g, b.oh0, b.oh1, ki,
                        col + (c * g.kh + ki) * g.kw * cols + s * g.plane_out(), cols);
    }
  });
}

// Adds block b's column matrix back into x. Tasks are (sample, channel, band of
// input rows): bands are disjoint, so layers with few channels still spread out.
template <class T>
void raise(const T* col, int64_t cols, const ConvGeometry& g, const Block& b, T* x) {
  const int64_t kk = g.kh * g.kw, rows = b.oh1 - b.oh0;
  const int64_t bands = std::min<int64_t>(g.h, std::max<int64_t>(1, 8 / (b.nb * g.c_in)));
  parallel_for(b.nb * g.c_in * bands, grain_for(kk * rows * g.wo / bands, kGrainElems),
               [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t band = i % bands, sc = i / bands;
      const int64_t s = sc / g.c_in, c = sc % g.c_in;
      col2im_channel(col + c * kk * cols + s * g.plane_out(), cols, g, b.oh0, b.oh1,
                     x + ((b.n0 + s) * g.c_in + c) * g.plane_in(), g.h * band / bands,
                     g.h * (band + 1) / bands);
    }
  });
}

// Copies between a column-side tensor (N, C_out, plane) and its staging matrix
// (C_out, nb*plane) for a multi-sample block.
template <class T>
void stage(const T* t, const ConvGeometry& g, const Block& b, T* buf, bool to_buffer,
           T* t_out = nullptr) {
  const int64_t plane = g.plane_out(), cols = b.nb * plane;
  parallel_for(b.nb * g.c_out, grain_for(plane, kGrainElems), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t s = i / g.c_out, c = i % g.c_out;
      const int64_t off = ((b.n0 + s) * g.c_out + c) * plane;
      if (to_buffer)
        std::memcpy(buf + c * cols + s * plane, t + off, sizeof(T) * plane);
      else
        std::memcpy(t_out + off, buf + c * cols + s * plane, sizeof(T) * plane);
    }
  });
}

// One pass over the column blocks of a convolution. Any of y (the forward output),
// gw (the weight gradient, from gy) and gx (the input gradient, from gy) may be
// requested; y and gw share each block's lowered copy of x, and the block's staging
// buffer is used by one of them at a time.
template <class T>
void gemm_conv(const T* x, const T* w, const T* gy, T* y, T* gx, T* gw, const ConvGeometry& g) {
  const Plan p = make_plan<T>(g);
  const int64_t K = g.k_g(), M = g.c_out_g(), plane = g.plane_out(), max_cols = block_cols(p, g);
  T* col = workspace<T>(0, p.direct ? 0 : g.c_in * g.kh * g.kw * max_cols);
  T* buf = workspace<T>(1, p.nb > 1 ? g.c_out * max_cols : 0);
  if (gw) fill_zero(gw, g.c_out * K);
  if (gx && !p.direct) fill_zero(gx, g.n * g.c_in * g.plane_in());
  for_each_block(g, p, [&](const Block& b) {
    const int64_t cols = b.nb * (b.oh1 - b.oh0) * g.wo;
    const int64_t img_off = b.n0 * g.c_in * g.plane_in() + b.oh0 * g.w;
    const int64_t col_off = b.n0 * g.c_out * plane + b.oh0 * g.wo;
    // The column matrix of x: the image itself for direct 1x1, else lowered.
    const T* src = p.direct ? x + img_off : col;
    const int64_t ldb = p.direct ? g.plane_in() : cols;
    if ((y || gw) && !p.direct) lower(x, g, b, col, cols);
    if (y) {
      T* dst = p.nb > 1 ? buf : y + col_off;
      const int64_t ldc = p.nb > 1 ? cols : plane;
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm<T>(false, false, M, cols, K, T(1), w + gi * M * K, K, src + gi * K * ldb, ldb,
                T(0), dst + gi * M * ldc, ldc);
      if (p.nb > 1) stage<T>(nullptr, g, b, buf, false, y);
    }
    if (!gw && !gx) return;
    const T* gyb = gy + col_off;
    int64_t ldg = plane;
    if (p.nb > 1) {
      stage(gy, g, b, buf, true);
      gyb = buf;
      ldg = cols;
    }
    if (gw) {
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm<T>(false, true, M, K, cols, T(1), gyb + gi * M * ldg, ldg, src + gi * K * ldb, ldb,
                T(1), gw + gi * M * K, K);
    }
    if (gx) {
      T* dst = p.direct ? gx + img_off : col;
      const int64_t ldd = p.direct ? g.plane_in() : cols;
      for (int64_t gi = 0; gi < g.groups; ++gi)
        gemm<T>(true, false, K, cols, M, T(1), w + gi * M * K, K, gyb + gi * M * ldg, ldg, T(0),
                dst + gi * K * ldd, ldd);
      if (!p.direct) raise(col, cols, g, b, gx);
    }
  });
}

// ---- Direct kernels: vectorised loops over whole planes. Each input plane is first copied into a zero-padded buffer covering every tap,
// so the inner loops run over whole output rows with no bounds checks.

struct PaddedPlane {
  int64_t hp, wp;
  explicit PaddedPlane(const ConvGeometry& g)
      : hp((g.ho - 1) * g.sh + (g.kh - 1) * g.dh + 1),
        wp((g.wo - 1) * g.sw + (g.kw - 1) * g.dw + 1) {}
  int64_t size() const { return hp * wp; }
  // With stride 1, output row oh starts at oh * wp of a buffer as wide as the padded
  // plane, and every tap is one flat shift: a whole plane is one long vector loop.
  int64_t flat_len(const ConvGeometry& g) const { return (g.ho - 1) * wp + g.wo; }
};

// Flat offset of each tap in a padded plane; mirrored (max - offset) for the
// gather form of the input gradient.
std::vector<int64_t> tap_shifts(const ConvGeometry& g, const PaddedPlane& pp, bool mirrored) {
  std::vector<int64_t> s(g.kh * g.kw);
  for (int64_t t = 0; t < g.kh * g.kw; ++t) s[t] = (t / g.kw) * g.dh * pp.wp + (t % g.kw) * g.dw;
  if (mirrored)
    for (auto& v : s) v = (g.kh - 1) * g.dh * pp.wp + (g.kw - 1) * g.dw - v;
  return s;
}

template <class T>
std::unique_ptr<T[]> zeroed(int64_t n) {
  auto buf = uninitialized<T>(n);
  std::fill(buf.get(), buf.get() + n, T(0));
  return buf;
}

// Row copies are inline loops rather than memcpy: rows of small planes are a few
// dozen bytes, where a library call costs more than the copy.
template <class T>
CNNKIT_INLINE void copy_row(const T* src, int64_t n, T* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

// Copies an (ho, wo) plane into the first wo columns of each wp-wide row; the
// other columns of dst are left as they are (zero).
template <class T>
void widen_rows(const T* src, const ConvGeometry& g, const PaddedPlane& pp, T* dst) {
  for (int64_t oh = 0; oh < g.ho; ++oh) copy_row(src + oh * g.wo, g.wo, dst + oh * pp.wp);
}

// Copies x into the interior of a padded plane whose border is already zero (the
// buffers come from zeroed() and only their interiors are ever written).
template <class T>
CNNKIT_INLINE void pad_plane(const T* x, const ConvGeometry& g, const PaddedPlane& pp, T* xp) {
  const int64_t c0 = std::min(pp.wp, g.pw), c1 = std::min(pp.wp, g.pw + g.w);
  const int64_t r1 = std::min(pp.hp, g.ph + g.h);
  for (int64_t r = g.ph; r < r1; ++r) copy_row(x + (r - g.ph) * g.w, c1 - c0, xp + r * pp.wp + c0);
}

// gx = the interior of a padded gradient plane (the adjoint of pad_plane); zero where
// the plane does not reach (inputs no tap reads).
template <class T>
void unpad_plane(const T* xp, const ConvGeometry& g, const PaddedPlane& pp, T* gx) {
  const int64_t covered = std::clamp<int64_t>(pp.wp - g.pw, 0, g.w);
  for (int64_t ih = 0; ih < g.h; ++ih) {
    const int64_t r = ih + g.ph;
    T* d = gx + ih * g.w;
    const int64_t cols = r < pp.hp ? covered : 0;
    if (cols > 0) copy_row(xp + r * pp.wp + g.pw, cols, d);
    std::fill(d + cols, d + g.w, T(0));
  }
}

// Adds the correlation of one padded input plane with one kH x kW filter into y.
template <class T>
CNNKIT_INLINE void direct_forward_plane(const T* xp, int64_t wp, const T* w, T* y,
                                        const ConvGeometry& g) {
  const int64_t wo = g.wo, sw = g.sw;
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    T* yr = y + oh * wo;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      const T* xr = xp + (oh * g.sh + ki * g.dh) * wp;
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T wv = w[ki * g.kw + kj];
        const T* xk = xr + kj * g.dw;
        if (sw == 1) {
          for (int64_t ow = 0; ow < wo; ++ow) yr[ow] += wv * xk[ow];
        } else {
          for (int64_t ow = 0; ow < wo; ++ow) yr[ow] += wv * xk[ow * sw];
        }
      }
    }
  }
}

// Adds the input gradient of one output plane through one filter into a padded plane.
template <class T>
CNNKIT_INLINE void direct_backward_data_plane(const T* gy, const T* w, T* gxp, int64_t wp,
                                              const ConvGeometry& g) {
  const int64_t wo = g.wo, sw = g.sw;
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    const T* gr = gy + oh * wo;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      T* xr = gxp + (oh * g.sh + ki * g.dh) * wp;
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T wv = w[ki * g.kw + kj];
        T* xk = xr + kj * g.dw;
        if (sw == 1) {
          for (int64_t ow = 0; ow < wo; ++ow) xk[ow] += wv * gr[ow];
        } else {
          for (int64_t ow = 0; ow < wo; ++ow) xk[ow * sw] += wv * gr[ow];
        }
      }
    }
  }
}

// Adds the weight gradient of one (output plane, padded input plane) pair into gw[kH*kW].
template <class T>
CNNKIT_INLINE void direct_backward_weight_plane(const T* gy, const T* xp, int64_t wp, T* gw,
                                                const ConvGeometry& g) {
  const int64_t wo = g.wo, sw = g.sw;
  for (int64_t ki = 0; ki < g.kh; ++ki) {
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      T acc = 0;
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        const T* gr = gy + oh * wo;
        const T* xk = xp + (oh * g.sh + ki * g.dh) * wp + kj * g.dw;
        T s = 0;
        if (sw == 1) {
#pragma omp simd reduction(+ : s)
          for (int64_t ow = 0; ow < wo; ++ow) s += gr[ow] * xk[ow];
        } else {
#pragma omp simd reduction(+ : s)
          for (int64_t ow = 0; ow < wo; ++ow) s += gr[ow] * xk[ow * sw];
        }
        acc += s;
      }
      gw[ki * g.kw + kj] += acc;
    }
  }
}

// One stride-1 output plane from cig padded input planes in the flat form: every
// tap is one shift of a whole plane, accumulated in ybuf (rows wp wide), whose
// first wo columns of each row are then the output.
template <class T>
CNNKIT_INLINE void flat_forward_plane(const T* xp, int64_t cig, const int64_t* shifts,
                                      const T* w, T b, T* ybuf, T* y, const ConvGeometry& g,
                                      const PaddedPlane& pp) {
  const int64_t n = pp.flat_len(g), kk = g.kh * g.kw;
  taps_assign(ybuf, xp, shifts, w, kk, n, b);
  for (int64_t c = 1; c < cig; ++c) taps_accumulate(ybuf, xp + c * pp.size(), shifts, w + c * kk, kk, n);
  for (int64_t oh = 0; oh < g.ho; ++oh) copy_row(ybuf + oh * pp.wp, g.wo, y + oh * g.wo);
}

#define CNNKIT_DIRECT_DISPATCH(T)                                                            \
  CNNKIT_MULTIVERSION void direct_forward_plane_mv(const T* xp, int64_t wp, const T* w, T* y, \
                                                   const ConvGeometry& g) {                 \
    direct_forward_plane(xp, wp, w, y, g);                                                  \
  }                                                                                         \
  CNNKIT_MULTIVERSION void direct_backward_data_plane_mv(const T* gy, const T* w, T* gxp,    \
                                                         int64_t wp, const ConvGeometry& g) { \
    direct_backward_data_plane(gy, w, gxp, wp, g);                                          \
  }                                                                                         \
  CNNKIT_MULTIVERSION void direct_backward_weight_plane_mv(const T* gy, const T* xp,         \
                                                           int64_t wp, T* gw,               \
                                                           const ConvGeometry& g) {         \
    direct_backward_weight_plane(gy, xp, wp, gw, g);                                        \
  }                                                                                         \
  CNNKIT_MULTIVERSION void pad_plane_mv(const T* x, const ConvGeometry& g,                   \
                                        const PaddedPlane& pp, T* xp) {                     \
    pad_plane(x, g, pp, xp);                                                                \
  }                                                                                         \
  CNNKIT_MULTIVERSION void flat_forward_plane_mv(const T* xp, int64_t cig, const int64_t* shifts, \
                                                 const T* w, T b, T* ybuf, T* y,            \
                                                 const ConvGeometry& g, const PaddedPlane& pp) { \
    flat_forward_plane(xp, cig, shifts, w, b, ybuf, y, g, pp);                              \
  }
CNNKIT_DIRECT_DISPATCH(float)
CNNKIT_DIRECT_DISPATCH(double)
#undef CNNKIT_DIRECT_DISPATCH

// Depthwise convolutions (one input channel per group) and tiny GEMMs (LeNet's
// first layer) run direct: a GEMM with so few rows or so short a K wastes BLAS.
// They copy each input plane into a buffer covering every tap: huge padding or
// dilation with a large stride would make it far larger than the planes it serves.
bool use_direct(const ConvGeometry& g) {
  const PaddedPlane pp(g);
  int64_t padded;
  const bool small_buffer = checked::mul(pp.hp, pp.wp, &padded) &&
                            padded <= 4 * (g.plane_in() + g.plane_out()) + 4096;
  return small_buffer &&
         ((g.c_in_g() == 1 && g.groups > 1) || (g.k_g() <= 32 && g.c_out_g() <= 16));
}

template <class T>
void direct_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  const int64_t cig = g.c_in_g(), cog = g.c_out_g(), kk = g.kh * g.kw;
  const PaddedPlane pp(g);
  const bool flat = g.sh == 1 && g.sw == 1;
  const int64_t flat_len = pp.flat_len(g);
  const std::vector<int64_t> shifts = tap_shifts(g, pp, false);
  // One task is one (sample, group): its input planes are padded once for all its filters.
  parallel_for(g.n * g.groups, grain_for(g.plane_out() * kk * cig * cog, kGrainElems),
               [&](int64_t i0, int64_t i1) {
    auto xp = zeroed<T>(cig * pp.size());
    auto ybuf = uninitialized<T>(flat ? flat_len : 0);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / g.groups, gi = i % g.groups;
      for (int64_t c = 0; c < cig; ++c)
        pad_plane_mv(x + (n * g.c_in + gi * cig + c) * g.plane_in(), g, pp, xp.get() + c * pp.size());
      for (int64_t co = gi * cog; co < (gi + 1) * cog; ++co) {
        T* yp = y + (n * g.c_out + co) * g.plane_out();
        const T b = bias ? bias[co] : T(0);
        if (flat) {
          flat_forward_plane_mv(xp.get(), cig, shifts.data(), w + co * cig * kk, b, ybuf.get(), yp,
                                g, pp);
        } else {
          std::fill(yp, yp + g.plane_out(), b);
          for (int64_t c = 0; c < cig; ++c)
            direct_forward_plane_mv(xp.get() + c * pp.size(), pp.wp, w + (co * cig + c) * kk,
                                    yp, g);
        }
      }
    }
  });
}

template <class T>
void direct_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, const ConvGeometry& g) {
  const int64_t cig = g.c_in_g(), cog = g.c_out_g(), kk = g.kh * g.kw;
  const int64_t work = g.plane_out() * kk * cig * cog;
  const PaddedPlane pp(g);
  const bool flat = g.sh == 1 && g.sw == 1;
  const int64_t flat_len = pp.flat_len(g);
  const std::vector<int64_t> shifts = tap_shifts(g, pp, false);
  const std::vector<int64_t> back_shifts = tap_shifts(g, pp, true);
  const int64_t max_shift = shifts.back();
  if (gx) {
    parallel_for(g.n * g.groups, grain_for(work, kGrainElems), [&](int64_t i0, int64_t i1) {
      auto gxp = uninitialized<T>(cig * pp.size());
      auto gybuf = zeroed<T>(flat ? max_shift + pp.size() : 0);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t n = i / g.groups, gi = i % g.groups;
        if (!flat) std::fill(gxp.get(), gxp.get() + cig * pp.size(), T(0));
        for (int64_t co = gi * cog; co < (gi + 1) * cog; ++co) {
          const T* gyp = gy + (n * g.c_out + co) * g.plane_out();
          // Gather form: gxp[p] += w[t] * gy_wide[p - shift[t]], with gy_wide placed
          // max_shift zeros into gybuf.get() so every offset is non-negative; the group's
          // first filter assigns gxp.
          if (flat) widen_rows(gyp, g, pp, gybuf.get() + max_shift);
          for (int64_t c = 0; c < cig; ++c) {
            const T* wc = w + (co * cig + c) * kk;
            T* gxc = gxp.get() + c * pp.size();
            if (flat && co == gi * cog) {
              taps_assign(gxc, gybuf.get(), back_shifts.data(), wc, kk, pp.size(), T(0));
            } else if (flat) {
              taps_accumulate(gxc, gybuf.get(), back_shifts.data(), wc, kk, pp.size());
            } else {
              direct_backward_data_plane_mv(gyp, wc, gxc, pp.wp, g);
            }
          }
        }
        for (int64_t c = 0; c < cig; ++c) {
          T* gxi = gx + (n * g.c_in + gi * cig + c) * g.plane_in();
          unpad_plane(gxp.get() + c * pp.size(), g, pp, gxi);
        }
      }
    });
  }
  if (gw && g.groups == 1) {
    // A tiny dense layer (at most 16 filters of at most 32 taps): tasks are blocks of
    // samples of a size set by the batch alone, so that the sums' order does not depend
    // on the thread count. Each pads a sample's planes once for all its filters and sums
    // into its own copy of gw; the copies are added in order after.
    const int64_t filters = g.c_out * g.k_g();
    const int64_t per_block = std::max<int64_t>(8, (g.n + 63) / 64);
    const int64_t blocks = (g.n + per_block - 1) / per_block;
    std::vector<T> partial(blocks * filters, T(0));
    parallel_for(blocks, grain_for(per_block * work, kGrainElems), [&](int64_t b0, int64_t b1) {
      auto xp = zeroed<T>(cig * pp.size());
      auto gybuf = zeroed<T>(flat ? pp.size() : 0);
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t n = b * per_block; n < std::min(g.n, (b + 1) * per_block); ++n) {
          for (int64_t c = 0; c < cig; ++c)
            pad_plane_mv(x + (n * g.c_in + c) * g.plane_in(), g, pp, xp.get() + c * pp.size());
          for (int64_t co = 0; co < g.c_out; ++co) {
            const T* gyp = gy + (n * g.c_out + co) * g.plane_out();
            if (flat) widen_rows(gyp, g, pp, gybuf.get());
            for (int64_t c = 0; c < cig; ++c) {
              T* gwc = partial.data() + b * filters + (co * cig + c) * kk;
              if (flat)
                taps_dot(gybuf.get(), xp.get() + c * pp.size(), shifts.data(), kk, flat_len, gwc);
              else
                direct_backward_weight_plane_mv(gyp, xp.get() + c * pp.size(), pp.wp, gwc, g);
            }
          }
        }
    });
    for (int64_t i = 0; i < filters; ++i) {
      T sum = 0;
      for (int64_t b = 0; b < blocks; ++b) sum += partial[b * filters + i];
      gw[i] = sum;
    }
  } else if (gw) {
    // One task owns one output channel's filters, so its sums need no locks.
    parallel_for(g.c_out, grain_for(g.n * work / std::max<int64_t>(1, cog), kGrainElems),
                 [&](int64_t c0, int64_t c1) {
      auto xp = zeroed<T>(pp.size());
      auto gybuf = zeroed<T>(flat ? pp.size() : 0);
      for (int64_t co = c0; co < c1; ++co) {
        const int64_t gi = co / cog;
        std::fill(gw + co * cig * kk, gw + (co + 1) * cig * kk, T(0));
        for (int64_t n = 0; n < g.n; ++n)
          for (int64_t c = 0; c < cig; ++c) {
            const T* gyp = gy + (n * g.c_out + co) * g.plane_out();
            pad_plane_mv(x + (n * g.c_in + gi * cig + c) * g.plane_in(), g, pp, xp.get());
            T* gwc = gw + (co * cig + c) * kk;
            if (flat) {
              if (c == 0) widen_rows(gyp, g, pp, gybuf.get());
              taps_dot(gybuf.get(), xp.get(), shifts.data(), kk, flat_len, gwc);
            } else {
              direct_backward_weight_plane_mv(gyp, xp.get(), pp.wp, gwc, g);
            }
          }
      }
    });
  }
}

// ---- Bias helpers over (N, C, plane) tensors.

template <class T>
void add_bias(T* y, const T* bias, int64_t n, int64_t c, int64_t plane) {
  parallel_for(n * c, grain_for(plane, kGrainElems), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T b = bias[i % c];
      T* p = y + i * plane;
      for (int64_t j = 0; j < plane; ++j) p[j] += b;
    }
  });
}

template <class T>
void sum_channels(const T* gy, T* gb, int64_t n, int64_t c, int64_t plane) {
  parallel_for(c, grain_for(n * plane, kGrainElems), [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      T acc = 0;
      for (int64_t s = 0; s < n; ++s) {
        const T* p = gy + (s * c + ch) * plane;
        T part = 0;
#pragma omp simd reduction(+ : part)
        for (int64_t j = 0; j < plane; ++j) part += p[j];
        acc += part;
      }
      gb[ch] = acc;
    }
  });
}

// Whether a pass runs as a convolution of g's direction (else as its transpose): a
// forward in its own direction, an input gradient in the other, a weight gradient as
// the convolution's (of the adjoint, for conv_transpose2d).
bool conv_direction(ConvPass pass, bool transposed) {
  return pass == ConvPass::grad_weight || (pass == ConvPass::forward) != transposed;
}

// The one home of the Winograd choice for a pass of conv2d (transposed: of
// conv_transpose2d, g the adjoint geometry), for layers that do not run direct.
bool winograd_pass(const ConvGeometry& g, int64_t elem_bytes, bool transposed, ConvPass pass,
                   int64_t cap) {
  return conv_direction(pass, transposed) ? winograd_applies(g, elem_bytes, cap)
                                          : winograd_transpose_applies(g, elem_bytes, cap);
}

// Runs a pass on Winograd where it takes it: out = the convolution of a with b (an
// image-side input and filters) in the pass's direction, or for a weight gradient the
// filters' gradient for image-side a and column-side b. False when the pass does not
// take Winograd or it gave up on non-finite values: out is then the caller's to compute.
template <class T>
bool run_winograd(ConvPass pass, bool transposed, const T* a, const T* b, const T* bias, T* out,
                  const ConvGeometry& g) {
  const int64_t cap = workspace_bytes;
  if (!winograd_pass(g, sizeof(T), transposed, pass, cap)) return false;
  if (pass == ConvPass::grad_weight) return winograd_weight_grad(a, b, out, g, cap);
  return conv_direction(pass, transposed) ? winograd_forward(a, b, bias, out, g, cap)
                                          : winograd_transpose_forward(a, b, bias, out, g, cap);
}

const char* algorithm(const ConvGeometry& g, int64_t elem_bytes, bool transposed, ConvPass pass) {
  if (use_direct(g)) return "direct";
  return winograd_pass(g, elem_bytes, transposed, pass, workspace_bytes) ? "winograd" : "gemm";
}

}  // namespace

void set_workspace_bytes(int64_t bytes) { workspace_bytes = bytes; }
int64_t get_workspace_bytes() { return workspace_bytes.load(); }

const char* conv2d_algorithm(const ConvGeometry& g, int64_t elem_bytes, ConvPass pass) {
  return algorithm(g, elem_bytes, false, pass);
}

const char* conv_transpose2d_algorithm(const ConvGeometry& g, int64_t elem_bytes, ConvPass pass) {
  return algorithm(g, elem_bytes, true, pass);
}

// The results of a degenerate geometry: its outputs are bias (or zero) and its
// gradients zero, so no kernel (which may assume non-empty planes) runs.
template <class T>
void fill_bias(T* y, const T* bias, int64_t n, int64_t c, int64_t plane) {
  fill_zero(y, n * c * plane);
  if (bias) add_bias(y, bias, n, c, plane);
}

template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  if (g.degenerate()) {
    fill_bias(y, bias, g.n, g.c_out, g.plane_out());
  } else if (use_direct(g)) {
    direct_forward(x, w, bias, y, g);
  } else if (!run_winograd(ConvPass::forward, false, x, w, bias, y, g)) {
    gemm_conv<T>(x, w, nullptr, y, nullptr, nullptr, g);
    if (bias) add_bias(y, bias, g.n, g.c_out, g.plane_out());
  }
}

// The input gradient of a convolution is the transposed convolution of gy, and the
// other way round, so each backward's gx can take the other direction's Winograd path.
template <class T>
void conv2d_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                     const ConvGeometry& g) {
  if (g.degenerate()) {
    if (gx) fill_zero(gx, g.n * g.c_in * g.plane_in());
    if (gw) fill_zero(gw, g.c_out * g.k_g());
  } else if (use_direct(g)) {
    direct_backward(gy, x, w, gx, gw, g);
  } else {
    const T* none = nullptr;
    if (gx && run_winograd(ConvPass::grad_input, false, gy, w, none, gx, g)) gx = nullptr;
    if (gw && run_winograd(ConvPass::grad_weight, false, x, gy, none, gw, g)) gw = nullptr;
    if (gx || gw) gemm_conv<T>(x, w, gy, nullptr, gx, gw, g);
  }
  if (gb) sum_channels(gy, gb, g.n, g.c_out, g.plane_out());
}

template <class T>
void conv_transpose2d_forward(const T* x, const T* w, const T* bias, T* y,
                              const ConvGeometry& g) {
  if (g.degenerate()) {
    fill_bias(y, bias, g.n, g.c_in, g.plane_in());
    return;
  } else if (use_direct(g)) {
    direct_backward<T>(x, nullptr, w, y, nullptr, g);
  } else if (run_winograd(ConvPass::forward, true, x, w, bias, y, g)) {
    return;
  } else {
    gemm_conv<T>(nullptr, w, x, nullptr, y, nullptr, g);
  }
  if (bias) add_bias(y, bias, g.n, g.c_in, g.plane_in());
}

// Without Winograd, the adjoint's forward (gx) and weight gradient (gw) share gy's
// column matrix.
template <class T>
void conv_transpose2d_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                               const ConvGeometry& g) {
  if (g.degenerate()) {
    if (gx) fill_zero(gx, g.n * g.c_out * g.plane_out());
    if (gw) fill_zero(gw, g.c_out * g.k_g());
  } else if (use_direct(g)) {
    if (gx) direct_forward<T>(gy, w, nullptr, gx, g);
    if (gw) direct_backward<T>(x, gy, w, nullptr, gw, g);
  } else {
    const T* none = nullptr;
    if (gx && run_winograd(ConvPass::grad_input, true, gy, w, none, gx, g)) gx = nullptr;
    if (gw && run_winograd(ConvPass::grad_weight, true, gy, x, none, gw, g)) gw = nullptr;
    if (gx || gw) gemm_conv<T>(gy, w, x, gx, nullptr, gw, g);
  }
  if (gb) sum_channels(gy, gb, g.n, g.c_in, g.plane_in());
}

template <class T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t n, int64_t in,
                    int64_t out) {
  gemm<T>(false, true, n, out, in, T(1), x, in, w, in, T(0), y, out);
  if (bias) add_bias(y, bias, n, out, 1);
}

template <class T>
void linear_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, int64_t n,
                     int64_t in, int64_t out) {
  if (gx) gemm<T>(false, false, n, in, out, T(1), gy, out, w, in, T(0), gx, in);
  if (gw) {
    if (n == 0)
      fill_zero(gw, out * in);
    else
      gemm<T>(true, false, out, in, n, T(1), gy, out, x, in, T(0), gw, in);
  }
  if (gb) sum_channels(gy, gb, n, out, 1);
}

#define CNNKIT_INSTANTIATE(T)                                                                  \
  template void conv2d_forward<T>(const T*, const T*, const T*, T*, const ConvGeometry&);     \
  template void conv2d_backward<T>(const T*, const T*, const T*, T*, T*, T*,                 \
                                   const ConvGeometry&);                                     \
  template void conv_transpose2d_forward<T>(const T*, const T*, const T*, T*,                 \
                                            const ConvGeometry&);                            \
  template void conv_transpose2d_backward<T>(const T*, const T*, const T*, T*, T*, T*,       \
                                             const ConvGeometry&);                           \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t,        \
                                  int64_t);                                                  \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, \
                                   int64_t);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit
