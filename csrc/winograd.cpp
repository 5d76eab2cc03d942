#include "winograd.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <vector>

#include "common/cpu_features.h"
#include "common/gemm.h"
#include "common/sgemm_avx512.h"
#include "common/shapes.h"
#include "common/threading.h"
#include "common/workspace.h"

namespace cnnkit {

namespace {

// Four Winograd algorithms F(m x m, r x r) on 6x6 input tiles (m + r = 7), which share
// the input transform BT (Toom-Cook points 0, +-1, +-2 and infinity): F(4x4, 3x3),
// F(2x2, 5x5), F(3x3, 4x4) and F(5x5, 2x2). Each replaces a tile's m*m*r*r multiplies
// by 36. In float32 their results stay
// within about 1e-5 of the largest output, against 1e-6 for im2col.
constexpr int kAlpha = 6;                  // input tile side
constexpr int kPoints = kAlpha * kAlpha;   // one GEMM per point of the transform domain
constexpr double kBT[kAlpha][kAlpha] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};

struct F4x4_3x3 {
  static constexpr int m = 4, r = 3;  // output tile side, kernel side
  static constexpr double G[kAlpha][r] = {{1.0 / 4, 0, 0},
                                          {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                          {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                          {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                          {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                          {0, 0, 1}};
  static constexpr double AT[m][kAlpha] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

struct F2x2_5x5 {
  static constexpr int m = 2, r = 5;
  static constexpr double G[kAlpha][r] = {{1.0 / 4, 0, 0, 0, 0},
                                          {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
                                          {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6},
                                          {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3},
                                          {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3, 2.0 / 3},
                                          {0, 0, 0, 0, 1}};
  static constexpr double AT[m][kAlpha] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 1}};
};

struct F3x3_4x4 {
  static constexpr int m = 3, r = 4;
  static constexpr double G[kAlpha][r] = {{1.0 / 4, 0, 0, 0},
                                          {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
                                          {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6},
                                          {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3},
                                          {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3},
                                          {0, 0, 0, 1}};
  static constexpr double AT[m][kAlpha] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 1}};
};

struct F5x5_2x2 {
  static constexpr int m = 5, r = 2;
  static constexpr double G[kAlpha][r] = {{1.0 / 4, 0},           {-1.0 / 6, -1.0 / 6},
                                          {-1.0 / 6, 1.0 / 6},    {1.0 / 24, 1.0 / 12},
                                          {1.0 / 24, -1.0 / 12},  {0, 1}};
  static constexpr double AT[m][kAlpha] = {{1, 1, 1, 1, 1, 0},
                                           {0, 1, -1, 2, -2, 0},
                                           {0, 1, 1, 4, 4, 0},
                                           {0, 1, -1, 8, -8, 0},
                                           {0, 1, 1, 16, 16, 1}};
};

// The weight gradient runs the forward's transforms backwards: A = AT^T takes output
// gradient tiles to the transform domain, and G^T takes the products back to filters.
template <size_t R, size_t C>
struct Transposed {
  double m[C][R] = {};
  constexpr explicit Transposed(const double (&a)[R][C]) {
    for (size_t i = 0; i < R; ++i)
      for (size_t j = 0; j < C; ++j) m[j][i] = a[i][j];
  }
};
template <class W>
constexpr Transposed<W::m, kAlpha> kA{W::AT};
template <class W>
constexpr Transposed<kAlpha, W::r> kGT{W::G};

// Tiles are transformed this many at a time, in vectors across tiles. 128 against 64
// pads each input row fewer times where chunks cut tile rows (3x3 dilation-2 forward,
// alternating runs: 5.9-6.7 ms against 7.0-7.4; level elsewhere).
constexpr int64_t kChunk = 128;
// Tile blocks: transformed input and products of this many bytes per pass, or as many
// as the transformed filters take (each pass reads them once), up to the most.
// Measured on AVX-512 with 2 threads (one 32 MiB L3): 8 MiB blocks against 32 ran VGG's
// 3x3 64->128 forward in 5.1 ms against 6.3, a 3x3 dilation-2 one in 4.2 against 6.1,
// AlexNet conv1 in 4.5 against 5.5; AlexNet conv4 (21 MiB of filters) lost with them.
constexpr int64_t kBlockBytes = int64_t(8) << 20, kMaxBlockBytes = int64_t(32) << 20;
// Below this many channels per group the transforms cost more than the GEMMs save.
constexpr int64_t kMinChannels = 16;
constexpr int64_t kGrainElems = 16384;

// How outputs are cut into m x m tiles. A tile covers outputs o + d*{0..m-1} along each
// axis, so with dilation d the tiles of each phase (o mod d) sit side by side, phase
// after phase, and every tile reads one input sub-grid.
struct Tiles {
  std::vector<int64_t> ys;      // first output row of each row of tiles
  std::vector<int64_t> starts;  // tiles of column phase p are [starts[p], starts[p + 1])
  int64_t tiles_x;
  // A padded input row, split by phase: padded positions p, p + dw, p + 2*dw, ... from
  // offsets[p], covering the taps of every tile of phase p.
  std::vector<int64_t> offsets;

  Tiles(const ConvGeometry& g, int64_t m) {
    for (int64_t p = 0; p < std::min(g.dh, g.ho); ++p)
      for (int64_t o = p; o < g.ho; o += m * g.dh) ys.push_back(o);
    const int64_t row_len = g.wo + (kAlpha - 1) * g.dw;
    starts.push_back(0);
    offsets.push_back(0);
    for (int64_t p = 0; p < std::min(g.dw, g.wo); ++p) {
      starts.push_back(starts.back() + (g.wo - p + m * g.dw - 1) / (m * g.dw));
      offsets.push_back(offsets.back() + (row_len - p + g.dw - 1) / g.dw);
    }
    tiles_x = starts.back();
  }
  int64_t tiles_y() const { return ys.size(); }
};

// The run of block tiles from k (row-major, tiles_x per row) to the end of its row,
// its column phase, or k1, whichever comes first: tiles [j0, j1) of row `row`.
struct Run {
  int64_t row, phase, j0, j1;
};

CNNKIT_INLINE Run run_at(const Tiles& tl, int64_t k, int64_t k1) {
  Run r{k / tl.tiles_x, 0, k % tl.tiles_x, 0};
  while (tl.starts[r.phase + 1] <= r.j0) ++r.phase;
  r.j1 = std::min(tl.starts[r.phase + 1], r.j0 + (k1 - k));
  return r;
}

// {base, base + stride, ..., base + (N - 1) * stride}
template <int N, class P>
CNNKIT_INLINE std::array<P, N> strided(P base, int64_t stride) {
  std::array<P, N> a;
  for (int i = 0; i < N; ++i) a[i] = base + i * stride;
  return a;
}

// out[i][j] = sum_k m[i][k] * in[k][j] for j < n. m is a compile-time matrix: once
// the loops are unrolled, its zero and unit entries cost nothing.
template <size_t R, size_t C, class P, class T>
CNNKIT_INLINE void transform(const double (&m)[R][C], const std::array<P, C>& in,
                             const std::array<T*, R>& out, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    T v[C];
#pragma GCC unroll 8
    for (size_t k = 0; k < C; ++k) v[k] = in[k][j];
#pragma GCC unroll 8
    for (size_t i = 0; i < R; ++i) {
      T acc = T(0);
      bool first = true;
#pragma GCC unroll 8
      for (size_t k = 0; k < C; ++k) {
        if (m[i][k] == 0) continue;
        const T term = m[i][k] == 1 ? v[k] : m[i][k] == -1 ? -v[k] : T(m[i][k]) * v[k];
        acc = first ? term : acc + term;
        first = false;
      }
      out[i][j] = acc;
    }
  }
}

// dst[k] = src[first + step * k] where that index lies in [0, in), else zero, for k < len.
template <class T>
CNNKIT_INLINE void copy_padded(const T* src, int64_t first, int64_t step, int64_t in, int64_t len,
                               T* dst) {
  int64_t lo, hi;
  valid_range(first, step, in, len, &lo, &hi);
  for (int64_t k = 0; k < lo; ++k) dst[k] = T(0);
  if (step == 1) {
    for (int64_t k = lo; k < hi; ++k) dst[k] = src[first + k];
  } else if (step == 2) {  // the common dilation and stride: a compile-time one vectorises
#pragma omp simd
    for (int64_t k = lo; k < hi; ++k) dst[k] = src[first + 2 * k];
  } else {
#pragma omp simd
    for (int64_t k = lo; k < hi; ++k) dst[k] = src[first + step * k];
  }
  for (int64_t k = hi; k < len; ++k) dst[k] = T(0);
}

// The rows of channel c of g's input. With strided_layer, g is the space-to-depth form
// of that layer (phase_form) and x the layer's own input: the form's channel
// (c*sh + a)*sw + b at row iy and column q is the layer's channel c at row sh*iy + a - ph
// and column sw*q + b - pw, gathered where it is read (load) rather than stored apart.
// The channel's divisions are done once, not once per row.
template <class T>
struct ChannelRows {
  const T* x;
  const ConvGeometry& g;
  const ConvGeometry* s;
  int64_t channel, row_phase = 0, col_phase = 0;  // the source channel and its phase (a, b)

  ChannelRows(const T* x, const ConvGeometry& g, const ConvGeometry* strided_layer, int64_t c)
      : x(x), g(g), s(strided_layer), channel(c) {
    if (s) {
      channel = c / (s->sh * s->sw);
      row_phase = c / s->sw % s->sh;
      col_phase = c % s->sw;
    }
  }

  // The length of a source row.
  int64_t row_len() const { return s ? s->w : g.w; }

  // Where row iy of image img starts in x, or null where that row is all padding.
  CNNKIT_INLINE const T* row(int64_t img, int64_t iy) const {
    if (iy < 0 || iy >= g.h) return nullptr;
    if (!s) return x + ((img * g.c_in + channel) * g.h + iy) * g.w;
    const int64_t sy = s->sh * iy + row_phase - s->ph;
    if (sy < 0 || sy >= s->h) return nullptr;
    return x + ((img * s->c_in + channel) * s->h + sy) * s->w;
  }

  // dst[i] = position k_first + i (i < len) of phase p's part of a padded input row
  // (see Tiles::offsets), from its source row src: padded position x + pw holds the
  // row's x, and the padding is zero.
  CNNKIT_INLINE void load(const T* src, int64_t p, int64_t k_first, int64_t len, T* dst) const {
    if (!s) return copy_padded(src, p - g.pw + g.dw * k_first, g.dw, g.w, len, dst);
    // The form has one phase and no padding of its own; past its width it is zero.
    const int64_t in_form = std::clamp<int64_t>(g.w - k_first, 0, len);
    copy_padded(src, col_phase - s->pw + s->sw * k_first, s->sw, s->w, in_form, dst);
    std::fill(dst + in_form, dst + len, T(0));
  }
};

// Transforms the input tiles [k0, k1) (at most kChunk, k0 a multiple of it) of a block
// of tile rows starting at global tile row r0, for channel c: point p of block tile k
// goes to v[p * ldv + k / S * panel_stride + k % S], S = kSgemmSliverCols (a panel
// stride of S: v[p * ldv + k]; or the sliver of a packed B operand, packed_b_index).
// strided_layer: see ChannelRows.
template <int M, class T>
CNNKIT_INLINE void input_chunk(const T* x, const ConvGeometry& g,
                               const ConvGeometry* strided_layer, const Tiles& tl, int64_t r0,
                               int64_t k0, int64_t k1, int64_t c, T* v, int64_t ldv,
                               int64_t panel_stride) {
  constexpr int kOver = kAlpha - M;  // taps a tile shares with the next one of its run
  T d[kAlpha][kChunk], half[kAlpha][kAlpha][kChunk];
  // One input row of every tile: tile i's first M taps at taps[M * i], the last kOver
  // ones those of tile i + 1, but for a run's last tile, whose are in over[][run].
  T taps[M * kChunk + kOver], over[kOver][kChunk];
  int64_t run_end[kChunk];  // the last tile of each run
  const int64_t n = k1 - k0;
  const ChannelRows<T> rows(x, g, strided_layer, c);
  // The image and first input row of each block tile row of the chunk (at most n).
  const int64_t tr0 = k0 / tl.tiles_x, tr1 = (k1 - 1) / tl.tiles_x;
  int64_t row_img[kChunk], row_y[kChunk];
  for (int64_t tr = tr0; tr <= tr1; ++tr) {
    row_img[tr - tr0] = (r0 + tr) / tl.tiles_y();
    row_y[tr - tr0] = tl.ys[(r0 + tr) % tl.tiles_y()] - g.ph;
  }
  // Input row t of block tile row tr.
  const auto source = [&](int64_t tr, int t) {
    return rows.row(row_img[tr - tr0], row_y[tr - tr0] + g.dh * t);
  };
  // The rows lie too far apart for the hardware to fetch them ahead: fetch each t's
  // while the one before is transformed.
  const int64_t source_len = rows.row_len();
  const auto fetch_ahead = [&](int t) {
    for (int64_t tr = tr0; tr <= tr1; ++tr)
      if (const T* src = source(tr, t))
        for (int64_t e = 0; e < source_len; e += 64 / int64_t(sizeof(T)))
          __builtin_prefetch(src + e);
  };
  fetch_ahead(0);
  for (int t = 0; t < kAlpha; ++t) {
    if (t + 1 < kAlpha) fetch_ahead(t + 1);
    // Runs in order: each one's taps overwrite the shared ones past the run before.
    int64_t runs = 0;
    for (int64_t k = k0; k < k1; ++runs) {
      const Run r = run_at(tl, k, k1);
      const int64_t len = r.j1 - r.j0, i = k - k0, count = M * len + kOver;
      k += len;
      T* dst = taps + M * i;
      if (const T* src = source(r.row, t))
        rows.load(src, r.phase, M * (r.j0 - tl.starts[r.phase]), count, dst);
      else
        std::fill(dst, dst + count, T(0));
      run_end[runs] = i + len - 1;
      for (int s = 0; s < kOver; ++s) over[s][runs] = dst[M * len + s];
    }
#pragma omp simd
    for (int64_t i = 0; i < n; ++i)
#pragma GCC unroll 8
      for (int s = 0; s < M; ++s) d[s][i] = taps[M * i + s];
    for (int s = M; s < kAlpha; ++s) {
#pragma omp simd
      for (int64_t i = 0; i < n - 1; ++i) d[s][i] = d[s - M][i + 1];
      for (int64_t q = 0; q < runs; ++q) d[s][run_end[q]] = over[s - M][q];
    }
    transform(kBT, strided<kAlpha>(&d[0][0], kChunk), strided<kAlpha>(&half[t][0][0], kChunk), n);
  }
  constexpr int64_t S = kSgemmSliverCols;
  static_assert(kChunk % S == 0, "a chunk is whole slivers");
  // Columns run contiguously for a sliver, or for the whole chunk at a panel stride of S.
  const int64_t run = panel_stride == S ? n : S;
  for (int64_t q = 0; q < n; q += run)
    for (int u = 0; u < kAlpha; ++u)
      transform(kBT, strided<kAlpha>(&half[0][u][q], kAlpha * kChunk),
                strided<kAlpha>(v + u * ldv + (k0 + q) / S * panel_stride, kAlpha * ldv),
                std::min(run, n - q));
}

// Where a stride-1 layer's outputs go: output (row, col) of channel kc goes to channel
// kc / (sh * sw) of y (channels h x w planes per image), at row sh * row + a - ph and
// column sw * col + b - pw for the phase (a, b) = (kc / sw % sh, kc % sw), where that
// lies in the plane. The layer's own outputs are the case sh = sw = 1 without offsets;
// the transpose form spreads its stacked phases straight into place this way.
struct Spread {
  int64_t channels, h, w, sh = 1, sw = 1, ph = 0, pw = 0;
  static Spread of(const ConvGeometry& g) { return {g.c_out, g.ho, g.wo}; }
  int64_t channel(int64_t kc) const { return kc / (sh * sw); }
};

// Writes output row values src[c][i] + bias of the tiles i < n of one phase run to
// y[at + step * j] for their sub-row indices j = M * (jj0 + i) + c in [jlo, jhi).
template <int M, class T>
CNNKIT_INLINE void scatter_row(const std::array<const T*, M>& src, int64_t step, int64_t jj0,
                               int64_t n, int64_t jlo, int64_t jhi, T bias, T* y, int64_t at) {
  // Tiles [first, full) lie wholly inside the range.
  const int64_t first = std::clamp<int64_t>((jlo + M - 1) / M - jj0, 0, n);
  const int64_t full = std::clamp<int64_t>(jhi / M - jj0, first, n);
  const int64_t at0 = at + step * M * jj0;  // may lie before y; only in-plane ones are formed
  if (step == 1) {
#pragma omp simd
    for (int64_t i = first; i < full; ++i)
#pragma GCC unroll 8
      for (int c = 0; c < M; ++c) y[at0 + M * i + c] = src[c][i] + bias;
  } else {
    for (int64_t i = first; i < full; ++i)
#pragma GCC unroll 8
      for (int c = 0; c < M; ++c) y[at0 + step * (M * i + c)] = src[c][i] + bias;
  }
  const auto edge = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int c = 0; c < M; ++c) {
        const int64_t j = M * (jj0 + i) + c;
        if (j >= jlo && j < jhi) y[at + step * j] = src[c][i] + bias;
      }
  };
  edge(0, first);
  edge(full, n);
}

// Transforms output channel kc's products of block tiles [k0, k1) (point p of tile k
// at m[p * ldm + k]) back into output tiles, and writes them plus bias into y where
// sp places them. Returns NaN if an output is not finite, else zero.
template <class W, class T>
CNNKIT_INLINE T output_chunk(const T* m, int64_t ldm, const ConvGeometry& g, const Tiles& tl,
                             const Spread& sp, int64_t r0, int64_t k0, int64_t k1, int64_t kc,
                             T bias, T* y) {
  constexpr int M = W::m;
  T half[M][kAlpha][kChunk], out[M][M][kChunk];
  const int64_t n = k1 - k0;
  for (int u = 0; u < kAlpha; ++u)
    transform(W::AT, strided<kAlpha>(m + u * ldm + k0, kAlpha * ldm),
              strided<M>(&half[0][u][0], kAlpha * kChunk), n);
  for (int r = 0; r < M; ++r)
    transform(W::AT, strided<kAlpha>(&half[r][0][0], kChunk), strided<M>(&out[r][0][0], kChunk), n);
  T probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t j = 0; j < n; ++j)
#pragma GCC unroll 32  // wholly (M * M <= 25): a loop left partly rolled stays scalar
    for (int rc = 0; rc < M * M; ++rc) probe += out[rc / M][rc % M][j] * T(0);
  const int64_t a = kc / sp.sw % sp.sh, b = kc % sp.sw;
  int64_t row_lo, row_hi, col_lo, col_hi;
  valid_range(a - sp.ph, sp.sh, sp.h, g.ho, &row_lo, &row_hi);
  valid_range(b - sp.pw, sp.sw, sp.w, g.wo, &col_lo, &col_hi);
  for (int64_t k = k0; k < k1;) {
    const Run r = run_at(tl, k, k1);
    const int64_t len = r.j1 - r.j0, at = k - k0;
    k += len;
    const int64_t img = (r0 + r.row) / tl.tiles_y(), y0 = tl.ys[(r0 + r.row) % tl.tiles_y()];
    T* plane = y + (img * sp.channels + sp.channel(kc)) * sp.h * sp.w;
    // The phase's sub-row indices j (columns r.phase + dw * j) inside [col_lo, col_hi).
    int64_t jlo, jhi;
    valid_range(r.phase - col_lo, g.dw, col_hi - col_lo, g.wo, &jlo, &jhi);
    for (int i = 0; i < M; ++i) {
      const int64_t row = y0 + g.dh * i;
      if (row < row_lo || row >= row_hi) continue;
      scatter_row<M>(strided<M, const T*>(&out[i][0][at], kChunk), g.dw * sp.sw,
                     r.j0 - tl.starts[r.phase], len, jlo, jhi, bias, plane,
                     (sp.sh * row + a - sp.ph) * sp.w + sp.sw * r.phase + b - sp.pw);
    }
  }
  return probe;
}

// Filters are transformed in vectors across at most this many lanes.
constexpr int64_t kFilterLanes = 128;
static_assert(kChunk <= kFilterLanes, "a row chunk of filters fits the lanes");

// Transforms outer x inner (<= kFilterLanes) filters of w, each r x r: lane j = a *
// inner + b is the filter at w + (f0 + a * outer_stride + b * inner_stride) * r * r
// (its taps reversed where `reversed`), or a zero filter where b >= n_inner. Point p of
// lane j goes to u[p * ldu + j].
template <class W, class T>
CNNKIT_INLINE void filter_chunk(const T* w, int64_t f0, int64_t outer, int64_t outer_stride,
                                int64_t inner, int64_t inner_stride, int64_t n_inner,
                                bool reversed, T* u, int64_t ldu) {
  constexpr int R = W::r;
  T k[R * R][kFilterLanes], half[kAlpha][R][kFilterLanes];
  for (int64_t a = 0; a < outer; ++a)
    for (int64_t b = 0; b < inner; ++b) {
      const T* src = w + (f0 + a * outer_stride + b * inner_stride) * R * R;
      for (int t = 0; t < R * R; ++t)
        k[t][a * inner + b] = b < n_inner ? src[reversed ? R * R - 1 - t : t] : T(0);
    }
  const int64_t lanes = outer * inner;
  for (int c = 0; c < R; ++c)
    transform(W::G, strided<R>(&k[c][0], R * kFilterLanes),
              strided<kAlpha>(&half[0][c][0], R * kFilterLanes), lanes);
  for (int i = 0; i < kAlpha; ++i)
    transform(W::G, strided<R>(&half[i][0][0], kFilterLanes),
              strided<kAlpha>(u + i * kAlpha * ldu, ldu), lanes);
}

// The adjoint of scatter_row: dst[c][i] = src[d * (M * (jj0 + i) + c)] for the tiles
// i < n of one phase run, zero past last.
template <int M, class T>
CNNKIT_INLINE void gather_row(const T* src, int64_t d, int64_t jj0, int64_t n, int64_t last,
                              const std::array<T*, M>& dst) {
  const int64_t full =
      last >= M - 1 ? std::clamp<int64_t>((last - M + 1) / M + 1 - jj0, 0, n) : 0;
  const T* q = src + d * M * jj0;
  if (d == 1) {
#pragma omp simd
    for (int64_t i = 0; i < full; ++i)
#pragma GCC unroll 8
      for (int c = 0; c < M; ++c) dst[c][i] = q[M * i + c];
  } else {
    for (int64_t i = 0; i < full; ++i)
      for (int c = 0; c < M; ++c) dst[c][i] = q[d * (M * i + c)];
  }
  for (int64_t i = full; i < n; ++i)
    for (int c = 0; c < M; ++c) dst[c][i] = M * (jj0 + i) + c <= last ? q[d * (M * i + c)] : T(0);
}

// The adjoint of output_chunk: output channel kc's gradient tiles [k0, k1) of a block
// of tile rows, clipped to the plane (zero outside), taken to the transform domain
// (A gy A^T): point p of tile k goes to z[p * ldz + k].
template <class W, class T>
CNNKIT_INLINE void grad_chunk(const T* gy, const ConvGeometry& g, const Tiles& tl, int64_t r0,
                              int64_t k0, int64_t k1, int64_t kc, T* z, int64_t ldz) {
  constexpr int M = W::m;
  T in[M][M][kChunk], half[M][kAlpha][kChunk];
  const int64_t n = k1 - k0;
  for (int64_t k = k0; k < k1;) {
    const Run r = run_at(tl, k, k1);
    const int64_t len = r.j1 - r.j0, at = k - k0;
    k += len;
    const int64_t img = (r0 + r.row) / tl.tiles_y(), y0 = tl.ys[(r0 + r.row) % tl.tiles_y()];
    const T* plane = gy + (img * g.c_out + kc) * g.plane_out() + r.phase;
    for (int a = 0; a < M; ++a) {
      const auto dst = strided<M>(&in[a][0][at], kChunk);
      if (y0 + g.dh * a < g.ho)
        gather_row<M>(plane + (y0 + g.dh * a) * g.wo, g.dw, r.j0 - tl.starts[r.phase], len,
                      (g.wo - 1 - r.phase) / g.dw, dst);
      else
        for (auto* o : dst) std::fill(o, o + len, T(0));
    }
  }
  for (int a = 0; a < M; ++a)
    transform(kA<W>.m, strided<M, const T*>(&in[a][0][0], kChunk),
              strided<kAlpha>(&half[a][0][0], kChunk), n);
  for (int u = 0; u < kAlpha; ++u)
    transform(kA<W>.m, strided<M, const T*>(&half[0][u][0], kAlpha * kChunk),
              strided<kAlpha>(z + u * ldz + k0, kAlpha * ldz), n);
}

// The adjoint of filter_chunk: filters [f0, f0 + n) of gw (each r x r) from their
// transform-domain gradients s (point p of filter f at s[p * filters + f]), G^T s G.
// Returns NaN if a result is not finite, else zero.
template <class W, class T>
CNNKIT_INLINE T filter_grad_chunk(const T* s, int64_t f0, int64_t n, int64_t filters, T* gw) {
  constexpr int R = W::r;
  T half[R][kAlpha][kChunk], k[R * R][kChunk];
  for (int b = 0; b < kAlpha; ++b)
    transform(kGT<W>.m, strided<kAlpha>(s + b * filters + f0, kAlpha * filters),
              strided<R>(&half[0][b][0], kAlpha * kChunk), n);
  for (int i = 0; i < R; ++i)
    transform(kGT<W>.m, strided<kAlpha, const T*>(&half[i][0][0], kChunk),
              strided<R>(&k[i * R][0], kChunk), n);
  T probe = 0;
  for (int64_t j = 0; j < n; ++j)
    for (int t = 0; t < R * R; ++t) {
      gw[(f0 + j) * R * R + t] = k[t][j];
      probe += k[t][j] * T(0);
    }
  return probe;
}

#define CNNKIT_WINOGRAD_DISPATCH(W, T)                                                        \
  CNNKIT_MULTIVERSION void input_chunk_mv(W, const T* x, const ConvGeometry& g,               \
                                          const ConvGeometry* strided_layer, const Tiles& tl,  \
                                          int64_t r0, int64_t k0, int64_t k1, int64_t c, T* v, \
                                          int64_t ldv, int64_t panel_stride) {                 \
    input_chunk<W::m>(x, g, strided_layer, tl, r0, k0, k1, c, v, ldv, panel_stride);          \
  }                                                                                           \
  CNNKIT_MULTIVERSION T output_chunk_mv(W, const T* m, int64_t ldm, const ConvGeometry& g,  \
                                        const Tiles& tl, const Spread& sp, int64_t r0,        \
                                        int64_t k0, int64_t k1, int64_t kc, T bias, T* y) {   \
    return output_chunk<W>(m, ldm, g, tl, sp, r0, k0, k1, kc, bias, y);                       \
  }                                                                                           \
  CNNKIT_MULTIVERSION void filter_chunk_mv(W, const T* w, int64_t f0, int64_t outer,          \
                                           int64_t outer_stride, int64_t inner,               \
                                           int64_t inner_stride, int64_t n_inner,             \
                                           bool reversed, T* u, int64_t ldu) {                \
    filter_chunk<W>(w, f0, outer, outer_stride, inner, inner_stride, n_inner, reversed, u,    \
                    ldu);                                                                     \
  }                                                                                           \
  CNNKIT_MULTIVERSION void grad_chunk_mv(W, const T* gy, const ConvGeometry& g,               \
                                         const Tiles& tl, int64_t r0, int64_t k0, int64_t k1,   \
                                         int64_t kc, T* z, int64_t ldz) {                     \
    grad_chunk<W>(gy, g, tl, r0, k0, k1, kc, z, ldz);                                         \
  }                                                                                           \
  CNNKIT_MULTIVERSION T filter_grad_chunk_mv(W, const T* s, int64_t f0, int64_t n,            \
                                             int64_t filters, T* gw) {                        \
    return filter_grad_chunk<W>(s, f0, n, filters, gw);                                       \
  }
CNNKIT_WINOGRAD_DISPATCH(F4x4_3x3, float)
CNNKIT_WINOGRAD_DISPATCH(F4x4_3x3, double)
CNNKIT_WINOGRAD_DISPATCH(F2x2_5x5, float)
CNNKIT_WINOGRAD_DISPATCH(F2x2_5x5, double)
CNNKIT_WINOGRAD_DISPATCH(F3x3_4x4, float)
CNNKIT_WINOGRAD_DISPATCH(F3x3_4x4, double)
CNNKIT_WINOGRAD_DISPATCH(F5x5_2x2, float)
CNNKIT_WINOGRAD_DISPATCH(F5x5_2x2, double)
#undef CNNKIT_WINOGRAD_DISPATCH

int64_t filter_elems(const ConvGeometry& g) { return kPoints * g.c_out * g.c_in_g(); }

// The transformed filters of the forward: one A operand per point and group, each with
// the group's output channels as rows (rounded up to whole slivers where packed).
int64_t filter_rows(const ConvGeometry& g, bool packed) {
  return packed ? packed_a_rows(g.c_out_g()) : g.c_out_g();
}
int64_t transformed_filter_elems(const ConvGeometry& g, bool packed) {
  return kPoints * g.groups * filter_rows(g, packed) * g.c_in_g();
}

// u[point][group] = the transform of each filter of the group (G w G^T), as a
// row-major c_out_g x c_in_g matrix, or packed for the sgemm (packed_a_index). Filter
// (r, c) of a group is w's own ([c_out][c_in_g]), or with `adjoint` that of the
// convolution g is the adjoint of, transposed and reversed (w then [c_in][c_out_g]).
template <class W, class T>
void transform_filters(const T* w, const ConvGeometry& g, bool packed, bool adjoint, T* u) {
  const int64_t cig = g.c_in_g(), cog = g.c_out_g(), rows = filter_rows(g, packed);
  const int64_t ldu = g.groups * rows * cig;
  // Where filter (r, c) of group grp lies in w, in filters, and the step along r and c.
  const int64_t row_stride = adjoint ? 1 : cig, col_stride = adjoint ? cog : 1;
  const auto at = [&](int64_t grp, int64_t r, int64_t c) {
    return grp * cog * cig + r * row_stride + c * col_stride;
  };
  if (!packed) {  // chunks along a row
    const int64_t chunks = (cig + kChunk - 1) / kChunk;
    parallel_for(g.c_out * chunks, grain_for(kPoints * kChunk, kGrainElems),
                 [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t c = i % chunks * kChunk, r = i / chunks % cog, grp = i / chunks / cog;
        const int64_t n = std::min(kChunk, cig - c);
        filter_chunk_mv(W{}, w, at(grp, r, c), 1, 0, n, col_stride, n, adjoint,
                        u + (grp * cog + r) * cig + c, ldu);
      }
    });
    return;
  }
  // Chunks of one sliver's rows (output channels) at a few input channels: each
  // point's values are then one contiguous run of the packed layout, of whole vectors.
  constexpr int64_t R = kSgemmSliverRows, kCols = 8;
  static_assert(R * kCols <= kFilterLanes, "a chunk fits the lanes");
  const int64_t slivers = rows / R, col_chunks = (cig + kCols - 1) / kCols;
  parallel_for(g.groups * slivers * col_chunks, grain_for(kPoints * R * kCols, kGrainElems),
               [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t c = i % col_chunks * kCols, s = i / col_chunks % slivers;
      const int64_t grp = i / col_chunks / slivers, r = s * R;
      filter_chunk_mv(W{}, w, at(grp, r, c), std::min(kCols, cig - c), col_stride, R,
                      row_stride, std::min(R, cog - r), adjoint,
                      u + grp * rows * cig + packed_a_index(r, c, cig), ldu);
    }
  });
}

// Transformed input and products of one row of tiles.
int64_t row_elems(const ConvGeometry& g, int64_t tiles_x) {
  return kPoints * (g.c_in + g.c_out) * tiles_x;
}

// What the forward's transformed input takes beyond its tiles' row_elems share when
// it is written as packed B operands (packed): each point's columns padded to slivers.
int64_t sliver_slack(const ConvGeometry& g, bool packed) {
  return packed ? kPoints * g.c_in * (kSgemmSliverCols - 1) : 0;
}

// The algorithm for g's kernel size, if there is one: 0 when none.
int64_t tile_side(const ConvGeometry& g) {
  if (g.kh != g.kw) return 0;
  if (g.kh == F4x4_3x3::r) return F4x4_3x3::m;
  if (g.kh == F2x2_5x5::r) return F2x2_5x5::m;
  if (g.kh == F3x3_4x4::r) return F3x3_4x4::m;
  if (g.kh == F5x5_2x2::r) return F5x5_2x2::m;
  return 0;
}

// Tile rows per pass: as many as fit in budget_bytes and the block bound for
// filter_bytes of transformed filters (or sums), in passes of equal size.
int64_t rows_per_pass(const ConvGeometry& g, const Tiles& tl, int64_t elem_bytes,
                      int64_t filter_bytes, int64_t budget_bytes) {
  const int64_t total_rows = g.n * tl.tiles_y();
  const int64_t block_bytes = std::clamp(filter_bytes, kBlockBytes, kMaxBlockBytes);
  const int64_t max_rows = std::clamp<int64_t>(
      std::min(block_bytes, budget_bytes) / elem_bytes / row_elems(g, tl.tiles_x), 1, total_rows);
  const int64_t passes = (total_rows + max_rows - 1) / max_rows;
  return (total_rows + passes - 1) / passes;
}

// sp: where the outputs go in y (Spread); strided_layer: see ChannelRows.
template <class W, class T>
bool forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g,
             int64_t workspace_bytes, bool adjoint_filters, const Spread& sp,
             const ConvGeometry* strided_layer) {
  const Tiles tl(g, W::m);
  const int64_t total_rows = g.n * tl.tiles_y();
  if (total_rows == 0) return true;
  const int64_t cig = g.c_in_g(), cog = g.c_out_g();
  const bool packed = gemm_runs_own_sgemm(sizeof(T));
  const int64_t filters = transformed_filter_elems(g, packed), slack = sliver_slack(g, packed);
  const int64_t filter_bytes = filters * int64_t(sizeof(T));
  const int64_t block_rows = rows_per_pass(g, tl, sizeof(T), filter_bytes,
                                           workspace_bytes - (filters + slack) * int64_t(sizeof(T)));
  T* u = workspace<T>(0, filters + block_rows * row_elems(g, tl.tiles_x) + slack);
  T* v = u + filters;
  // With the own sgemm, the input transform writes each point's B operand packed, its
  // columns (tiles) padded to whole slivers.
  const auto b_cols = [&](int64_t tiles) { return packed ? packed_b_cols(tiles) : tiles; };
  T* m = v + kPoints * g.c_in * b_cols(block_rows * tl.tiles_x);
  transform_filters<W>(w, g, packed, adjoint_filters, u);
  const int64_t grain = grain_for(kPoints * kChunk, kGrainElems);
  std::atomic<bool> finite{true};
  for (int64_t r0 = 0; r0 < total_rows; r0 += block_rows) {
    const int64_t tiles = std::min(block_rows, total_rows - r0) * tl.tiles_x;
    const int64_t chunks = (tiles + kChunk - 1) / kChunk;
    const int64_t cols = b_cols(tiles);
    parallel_for(g.c_in * chunks, grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t c = i / chunks, k0 = i % chunks * kChunk;
        T* vc = packed ? v + c / cig * cig * cols + packed_b_index(c % cig, 0, cig) : v + c * tiles;
        input_chunk_mv(W{}, x, g, strided_layer, tl, r0, k0, std::min(tiles, k0 + kChunk), c, vc,
                       g.c_in * cols, packed ? kSgemmSliverCols * cig : kSgemmSliverCols);
      }
    });
    gemm_batch<T>(kPoints * g.groups, false, cog, tiles, cig, u, cig, filter_rows(g, packed) * cig,
                  v, tiles, cig * cols, T(0), m, tiles, cog * tiles, packed, packed);
    parallel_for(g.c_out * chunks, grain, [&](int64_t i0, int64_t i1) {
      T probe = 0;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t k = i / chunks, k0 = i % chunks * kChunk;
        probe += output_chunk_mv(W{}, m + k * tiles, g.c_out * tiles, g, tl, sp, r0, k0,
                                 std::min(tiles, k0 + kChunk), k,
                                 bias ? bias[sp.channel(k)] : T(0), y);
      }
      if (probe != T(0)) finite = false;
    });
    if (!finite) return false;
  }
  return true;
}

// s[point][k][c] = the transform-domain weight gradient of x and gy: for each point,
// the sum over tiles of the transformed output gradient times the transformed input,
// one batched GEMM per block of tile rows. The tiles take at most workspace_bytes;
// strided_layer: see ChannelRows.
template <class W, class T>
void weight_grad_core(const T* x, const T* gy, T* s, const ConvGeometry& g,
                      const ConvGeometry* strided_layer, int64_t workspace_bytes) {
  const Tiles tl(g, W::m);
  const int64_t total_rows = g.n * tl.tiles_y();
  const int64_t cig = g.c_in_g(), cog = g.c_out_g();
  if (total_rows == 0) {
    std::fill(s, s + filter_elems(g), T(0));
    return;
  }
  const int64_t block_rows =
      rows_per_pass(g, tl, sizeof(T), filter_elems(g) * int64_t(sizeof(T)), workspace_bytes);
  T* v = workspace<T>(0, block_rows * row_elems(g, tl.tiles_x));
  T* z = v + kPoints * g.c_in * block_rows * tl.tiles_x;
  const int64_t grain = grain_for(kPoints * kChunk, kGrainElems);
  for (int64_t r0 = 0; r0 < total_rows; r0 += block_rows) {
    const int64_t tiles = std::min(block_rows, total_rows - r0) * tl.tiles_x;
    const int64_t chunks = (tiles + kChunk - 1) / kChunk;
    parallel_for((g.c_in + g.c_out) * chunks, grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t c = i / chunks, k0 = i % chunks * kChunk, k1 = std::min(tiles, k0 + kChunk);
        if (c < g.c_in)
          input_chunk_mv(W{}, x, g, strided_layer, tl, r0, k0, k1, c, v + c * tiles,
                         g.c_in * tiles, kSgemmSliverCols);
        else
          grad_chunk_mv(W{}, gy, g, tl, r0, k0, k1, c - g.c_in, z + (c - g.c_in) * tiles,
                        g.c_out * tiles);
      }
    });
    gemm_batch<T>(kPoints * g.groups, true, cog, cig, tiles, z, tiles, cog * tiles, v, tiles,
                  cig * tiles, r0 > 0 ? T(1) : T(0), s, cig, cog * cig);
  }
}

// gw (c_out x c_in_g x r x r) = G^T s G for every filter. False if a result is not finite.
template <class W, class T>
bool weight_grad_finish(const T* s, T* gw, const ConvGeometry& g) {
  const int64_t filters = g.c_out * g.c_in_g();
  const int64_t chunks = (filters + kChunk - 1) / kChunk;
  std::atomic<bool> finite{true};
  parallel_for(chunks, grain_for(kPoints * kChunk, kGrainElems), [&](int64_t c0, int64_t c1) {
    T probe = 0;
    for (int64_t c = c0; c < c1; ++c)
      probe += filter_grad_chunk_mv(W{}, s, c * kChunk, std::min(kChunk, filters - c * kChunk),
                                    filters, gw);
    if (probe != T(0)) finite = false;
  });
  return finite;
}

// f(W{}) for the algorithm W of g's kernel size (tile_side).
template <class F>
decltype(auto) with_algorithm(const ConvGeometry& g, F&& f) {
  switch (tile_side(g)) {
    case F4x4_3x3::m: return f(F4x4_3x3{});
    case F2x2_5x5::m: return f(F2x2_5x5{});
    case F3x3_4x4::m: return f(F3x3_4x4{});
    default: return f(F5x5_2x2{});
  }
}

// The stride-1 path's transform-domain weight gradient of every sample, into s
// (filter_elems(g)), and the filters from it. strided_layer: see ChannelRows.
template <class T>
void core_weight_sums(const T* x, const T* gy, T* s, const ConvGeometry& g,
                      const ConvGeometry* strided_layer, int64_t workspace_bytes) {
  with_algorithm(g, [&](auto w) {
    weight_grad_core<decltype(w)>(x, gy, s, g, strided_layer, workspace_bytes);
  });
}

template <class T>
bool core_weight_filters(const T* s, T* gw, const ConvGeometry& g) {
  return with_algorithm(g, [&](auto w) { return weight_grad_finish<decltype(w)>(s, gw, g); });
}

// ---- Rearranged layers: both forms below stack the stride phases of a kernel as
// channels (c*sh + a)*sw + b, and need the same number t of taps in every phase.

bool stacks_phases(const ConvGeometry& g) {
  return g.dh == 1 && g.dw == 1 && g.groups == 1 &&
         (g.kh - 1) / g.sh == (g.kw - 1) / g.sw;  // equal ceil(k / s)
}

// The dense filters of a stacked form with t x t taps, from g's kernel w, laid out as
// [g.c_out][phase channel] (the space-to-depth form) or [phase channel][g.c_out] (the
// transpose form). Tap (u, v) of phase (a, b) is w's tap (a + sh*u, b + sw*v), or with
// the taps reversed (u -> t - 1 - u) for the transpose form; zero past the kernel.
template <class T>
void stacked_filters(const T* w, const ConvGeometry& g, int64_t t, bool transpose, T* dst) {
  const int64_t phases = g.c_in * g.sh * g.sw, taps = t * t;
  // Where tap q of phase (a, b) lies in a kernel, or -1 where it is padding.
  std::vector<int64_t> tap_at(g.sh * g.sw * taps);
  for (int64_t ab = 0; ab < g.sh * g.sw; ++ab)
    for (int64_t u = 0; u < t; ++u)
      for (int64_t v = 0; v < t; ++v) {
        const int64_t ki = ab / g.sw + g.sh * (transpose ? t - 1 - u : u);
        const int64_t kj = ab % g.sw + g.sw * (transpose ? t - 1 - v : v);
        tap_at[ab * taps + u * t + v] = ki < g.kh && kj < g.kw ? ki * g.kw + kj : -1;
      }
  // A task takes a block of stacked channels for every output channel: both w's
  // filters and each destination row are then read and written in order.
  constexpr int64_t kBlock = 8;
  const int64_t blocks = (phases + kBlock - 1) / kBlock;
  parallel_for(blocks, grain_for(kBlock * g.c_out * taps, kGrainElems), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t ch0 = i * kBlock, ch1 = std::min(phases, ch0 + kBlock);
      for (int64_t o = 0; o < g.c_out; ++o)
        for (int64_t ch = ch0; ch < ch1; ++ch) {
          const T* src = w + (o * g.c_in + ch / (g.sh * g.sw)) * g.kh * g.kw;
          const int64_t* at = &tap_at[ch % (g.sh * g.sw) * taps];
          T* d = dst + (transpose ? ch * g.c_out + o : o * phases + ch) * taps;
          for (int64_t q = 0; q < taps; ++q) d[q] = at[q] < 0 ? T(0) : src[at[q]];
        }
    }
  });
}

// ---- Strided layers, through their space-to-depth form. With stride s, kernel tap
// k = s*u + a reads input phase a (rows a, a + s, ...) at offset u. A layer whose kernel
// has r = ceil(k / s) taps per phase along both axes (AlexNet's 11x11 stride 4: r = 3)
// is the stride-1 r x r convolution of its rearranged input, whose channels are the
// stacked phases.

bool has_phase_form(const ConvGeometry& g) { return (g.sh > 1 || g.sw > 1) && stacks_phases(g); }

// The stride-1 layer of the space-to-depth form of n samples of g, whose input rows
// ChannelRows::load gathers from g's input, padding included.
ConvGeometry phase_form(const ConvGeometry& g, int64_t n) {
  const int64_t r = (g.kh - 1) / g.sh + 1;
  ConvGeometry p = g;
  p.n = n;
  p.c_in = g.c_in * g.sh * g.sw;
  p.h = g.ho + r - 1;
  p.w = g.wo + r - 1;
  p.kh = p.kw = r;
  p.sh = p.sw = 1;
  p.ph = p.pw = 0;
  return p;
}

// Filters of a groups-1 layer.
int64_t dense_filter_elems(const ConvGeometry& g) { return g.c_out * g.c_in * g.kh * g.kw; }

// Filters and one row of tiles: the least the stride-1 path runs in.
int64_t core_bytes(const ConvGeometry& g, int64_t elem_bytes) {
  const bool packed = gemm_runs_own_sgemm(elem_bytes);
  const int64_t row = row_elems(g, Tiles(g, tile_side(g)).tiles_x);
  return (transformed_filter_elems(g, packed) + row + sliver_slack(g, packed)) * elem_bytes;
}

bool core_applies(const ConvGeometry& g, int64_t elem_bytes, int64_t workspace_bytes) {
  const int64_t m = tile_side(g);
  if (m == 0 || g.sh != 1 || g.sw != 1) return false;
  if (g.c_in_g() < kMinChannels || g.c_out_g() < kMinChannels) return false;
  const Tiles tl(g, m);
  // Tiles hanging far over the plane's edge waste what the transform saves.
  if (m * m * tl.tiles_y() * tl.tiles_x > 2 * g.plane_out()) return false;
  return core_bytes(g, elem_bytes) <= workspace_bytes;
}

// adjoint_filters: w holds the filters of the convolution g is the adjoint of
// (transform_filters). sp: where the outputs go (Spread), g's own plane by default.
// strided_layer: see ChannelRows.
template <class T>
bool core_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g,
                  int64_t workspace_bytes, bool adjoint_filters = false,
                  const Spread* sp = nullptr, const ConvGeometry* strided_layer = nullptr) {
  return with_algorithm(g, [&](auto a) {
    return forward<decltype(a)>(x, w, bias, y, g, workspace_bytes, adjoint_filters,
                                sp ? *sp : Spread::of(g), strided_layer);
  });
}

// ---- Stride-1 adjoints. The adjoint of a stride-1 convolution g (its input gradient,
// or the conv_transpose2d that g stands for) is itself a stride-1 convolution, with
// g's dilation and groups: of g's column side, by g's kernel transposed and reversed,
// with top and left padding d * (k - 1) - p (and the bottom and right ones that give
// g's image side). It runs on the stride-1 path, reading w in place.
bool has_adjoint_core(const ConvGeometry& g) {
  return g.sh == 1 && g.sw == 1 && g.dh * (g.kh - 1) >= g.ph && g.dw * (g.kw - 1) >= g.pw;
}

ConvGeometry adjoint_core(const ConvGeometry& g) {
  ConvGeometry z = g;
  z.c_in = g.c_out;
  z.h = g.ho;
  z.w = g.wo;
  z.c_out = g.c_in;
  z.ho = g.h;
  z.wo = g.w;
  z.ph = g.dh * (g.kh - 1) - g.ph;
  z.pw = g.dw * (g.kw - 1) - g.pw;
  return z;
}

// ---- Transposed convolutions, through their phase form. Output row i of a stride-s
// transposed convolution with padding p takes kernel taps k = a + s*t from input rows
// q - t, where i + p = s*q + a: for each output phase a it is a stride-1 correlation
// of the input with phase a's taps, reversed. Stacking the phases as channels
// (c*sh + a)*sw + b gives one stride-1 T x T convolution (T = ceil(k / s), padding
// T - 1), whose output transform writes each phase straight into place. g is the adjoint
// convolution's geometry (conv.h): x on its column side, y on its image side.

ConvGeometry transpose_form(const ConvGeometry& g, int64_t n) {
  const int64_t t = (g.kh - 1) / g.sh + 1;
  ConvGeometry z = g;
  z.n = n;
  z.c_in = g.c_out;
  z.h = g.ho;
  z.w = g.wo;
  z.c_out = g.c_in * g.sh * g.sw;
  z.ho = g.ho + t - 1;
  z.wo = g.wo + t - 1;
  z.kh = z.kw = t;
  z.sh = z.sw = 1;
  z.ph = z.pw = t - 1;
  return z;
}

// Where the transpose form z of g puts its outputs in y: each stacked phase straight
// into place. g's image side.
Spread transpose_spread(const ConvGeometry& g) {
  return {g.c_in, g.h, g.w, g.sh, g.sw, g.ph, g.pw};
}

// Sets the outputs of y past the reach of the transpose form z (rows and columns of
// phase rows q >= z.ho, which only an output padding gives) to the bias alone.
template <class T>
void fill_unreached(const ConvGeometry& g, const ConvGeometry& z, const T* bias, T* y) {
  const int64_t row0 = std::clamp(g.sh * z.ho - g.ph, int64_t(0), g.h);
  const int64_t col0 = std::clamp(g.sw * z.wo - g.pw, int64_t(0), g.w);
  if (row0 == g.h && col0 == g.w) return;
  parallel_for(g.n * g.c_in, grain_for(g.plane_in(), kGrainElems), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T b = bias ? bias[i % g.c_in] : T(0);
      T* plane = y + i * g.plane_in();
      for (int64_t row = 0; row < g.h; ++row)
        std::fill(plane + row * g.w + (row < row0 ? col0 : 0), plane + (row + 1) * g.w, b);
    }
  });
}

// The stacked form of n samples of g: the space-to-depth one, or the transpose one
// (g then the adjoint geometry).
ConvGeometry stacked_form(const ConvGeometry& g, bool transpose, int64_t n) {
  return transpose ? transpose_form(g, n) : phase_form(g, n);
}

bool stacked_applies(const ConvGeometry& g, bool transpose, int64_t elem_bytes,
                     int64_t workspace_bytes) {
  const ConvGeometry f = stacked_form(g, transpose, 1);
  return core_applies(f, elem_bytes, workspace_bytes - dense_filter_elems(f) * elem_bytes);
}

// Runs g through a stacked form with the stride-1 path: the transpose form writing
// its phases into place, the space-to-depth one gathering them from x (ChannelRows::load).
template <class T>
bool stacked_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g,
                     bool transpose, int64_t workspace_bytes) {
  const ConvGeometry f = stacked_form(g, transpose, g.n);
  const int64_t filters = dense_filter_elems(f);
  const int64_t rest = workspace_bytes - filters * int64_t(sizeof(T));
  T* wf = workspace<T>(1, filters);
  stacked_filters(w, g, f.kh, transpose, wf);
  if (!transpose) return core_forward(x, wf, bias, y, f, rest, false, nullptr, &g);
  // x lies on g's column side, y on its image side
  const Spread sp = transpose_spread(g);
  if (!core_forward(x, wf, bias, y, f, rest, false, &sp)) return false;
  fill_unreached(g, f, bias, y);
  return true;
}

// The adjoint of stacked_filters for the space-to-depth form: each tap of g's kernel is
// one tap of the dense stacked filters wf (t x t taps); the others are padding.
template <class T>
void unstack_filters(const T* wf, const ConvGeometry& g, int64_t t, T* gw) {
  const int64_t phases = g.c_in * g.sh * g.sw;
  parallel_for(phases, grain_for(g.c_out * t * t, kGrainElems), [&](int64_t ch0, int64_t ch1) {
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const int64_t c = ch / (g.sh * g.sw), a = ch / g.sw % g.sh, b = ch % g.sw;
      for (int64_t o = 0; o < g.c_out; ++o) {
        const T* src = wf + (o * phases + ch) * t * t;
        T* d = gw + (o * g.c_in + c) * g.kh * g.kw;
        for (int64_t ki = a, u = 0; ki < g.kh; ki += g.sh, ++u)
          for (int64_t kj = b, v = 0; kj < g.kw; kj += g.sw, ++v)
            d[ki * g.kw + kj] = src[u * t + v];
      }
    }
  });
}

// The weight gradient of a strided layer through its space-to-depth form.
template <class T>
bool stacked_weight_grad(const T* x, const T* gy, T* gw, const ConvGeometry& g,
                         int64_t workspace_bytes) {
  const ConvGeometry f = phase_form(g, g.n);
  const int64_t sums = filter_elems(f), filters = dense_filter_elems(f);
  T* s = workspace<T>(1, sums + filters);
  T* wf = s + sums;
  core_weight_sums(x, gy, s, f, &g, workspace_bytes - (sums + filters) * int64_t(sizeof(T)));
  if (!core_weight_filters(s, wf, f)) return false;
  unstack_filters(wf, g, f.kh, gw);
  return true;
}

// Whether Winograd saves enough over the GEMM path for g, run as the stride-1 layer f
// (g itself, or a stacked form). 36*sh*sw / (m*m*kH*kW) of a direct convolution's
// multiplies are left, counting the zero taps a stacked form pads in: measured on
// AVX-512 with 2 threads, a share above 0.4 (3x3 stride 2: 0.64) lost to im2col, and
// so did F(5x5, 2x2) on stride-1 layers. On strided layers' stacked forms it wins in
// both directions (4x4 stride 2: 9.5 ms against 11.9 for a transposed layer's input
// gradient).
bool pays_off(const ConvGeometry& g, const ConvGeometry& f) {
  const int64_t m = tile_side(f);
  if (m == 0) return false;
  if (f.kh == F5x5_2x2::r && g.sh == 1 && g.sw == 1) return false;
  return work_product({5 * kPoints, g.sh, g.sw}) <= 2 * m * m * g.kh * g.kw;
}

}  // namespace

bool winograd_transpose_applies(const ConvGeometry& g, int64_t elem_bytes,
                                int64_t workspace_bytes) {
  if (has_adjoint_core(g)) {
    const ConvGeometry z = adjoint_core(g);
    return pays_off(g, z) && core_applies(z, elem_bytes, workspace_bytes);
  }
  return stacks_phases(g) && pays_off(g, transpose_form(g, 1)) &&
         stacked_applies(g, true, elem_bytes, workspace_bytes);
}

template <class T>
bool winograd_transpose_forward(const T* x, const T* w, const T* bias, T* y,
                                const ConvGeometry& g, int64_t workspace_bytes) {
  if (has_adjoint_core(g))
    return core_forward(x, w, bias, y, adjoint_core(g), workspace_bytes, true);
  return stacked_forward(x, w, bias, y, g, true, workspace_bytes);
}

bool winograd_applies(const ConvGeometry& g, int64_t elem_bytes, int64_t workspace_bytes) {
  if (has_phase_form(g))
    return pays_off(g, phase_form(g, 1)) &&
           stacked_applies(g, false, elem_bytes, workspace_bytes);
  return pays_off(g, g) && core_applies(g, elem_bytes, workspace_bytes);
}

template <class T>
bool winograd_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g,
                      int64_t workspace_bytes) {
  if (has_phase_form(g)) return stacked_forward(x, w, bias, y, g, false, workspace_bytes);
  return core_forward(x, w, bias, y, g, workspace_bytes);
}

template <class T>
bool winograd_weight_grad(const T* x, const T* gy, T* gw, const ConvGeometry& g,
                          int64_t workspace_bytes) {
  if (has_phase_form(g)) return stacked_weight_grad(x, gy, gw, g, workspace_bytes);
  const int64_t sums = filter_elems(g);
  T* s = workspace<T>(1, sums);
  core_weight_sums(x, gy, s, g, nullptr, workspace_bytes - sums * int64_t(sizeof(T)));
  return core_weight_filters(s, gw, g);
}

template bool winograd_forward<float>(const float*, const float*, const float*, float*,
                                      const ConvGeometry&, int64_t);
template bool winograd_forward<double>(const double*, const double*, const double*, double*,
                                       const ConvGeometry&, int64_t);
template bool winograd_transpose_forward<float>(const float*, const float*, const float*, float*,
                                                const ConvGeometry&, int64_t);
template bool winograd_transpose_forward<double>(const double*, const double*, const double*,
                                                 double*, const ConvGeometry&, int64_t);

template bool winograd_weight_grad<float>(const float*, const float*, float*, const ConvGeometry&,
                                          int64_t);
template bool winograd_weight_grad<double>(const double*, const double*, double*,
                                           const ConvGeometry&, int64_t);

}  // namespace cnnkit
