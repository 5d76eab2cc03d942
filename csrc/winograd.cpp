#include "winograd.h"

#include <algorithm>
#include <vector>

#include "common/cpu_features.h"
#include "common/gemm.h"
#include "common/shapes.h"
#include "common/threading.h"
#include "common/workspace.h"

namespace cnnkit {

namespace {

// Lavin & Gray's F(4x4, 3x3), points 0, +-1, +-2, +-1/2: float32 results stay within
// about 1e-5 of the largest output, against 1e-6 for im2col.
constexpr int kAlpha = 6;                  // input tile side
constexpr int kOut = 4;                    // output tile side
constexpr int kPoints = kAlpha * kAlpha;   // one GEMM per point of the transform domain
constexpr double kBT[kAlpha][kAlpha] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
constexpr double kG[kAlpha][3] = {{1.0 / 4, 0, 0},
                                  {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}};
constexpr double kAT[kOut][kAlpha] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

// Tiles along a row are transformed this many at a time, in vectors across tiles.
constexpr int64_t kChunk = 64;
// Tile blocks: transformed input and products of this many bytes per pass.
constexpr int64_t kBlockBytes = int64_t(32) << 20;
// Below this many channels per group the transforms cost more than the GEMMs save.
constexpr int64_t kMinChannels = 16;
constexpr int64_t kGrainElems = 16384;

// How outputs are cut into 4x4 tiles. A tile covers outputs o + d*{0..3} along each
// axis, so with dilation d the tiles of each phase (o mod d) sit side by side, phase
// after phase, and every tile reads one input sub-grid.
struct Tiles {
  std::vector<int64_t> ys;      // first output row of each row of tiles
  std::vector<int64_t> starts;  // tiles of column phase p are [starts[p], starts[p + 1])
  int64_t tiles_x;
  // A padded input row, split by phase: padded positions p, p + dw, p + 2*dw, ... from
  // offsets[p], covering the taps of every tile of phase p.
  std::vector<int64_t> offsets;

  explicit Tiles(const ConvGeometry& g) {
    for (int64_t p = 0; p < std::min(g.dh, g.ho); ++p)
      for (int64_t o = p; o < g.ho; o += kOut * g.dh) ys.push_back(o);
    const int64_t row_len = g.wo + (kAlpha - 1) * g.dw;
    starts.push_back(0);
    offsets.push_back(0);
    for (int64_t p = 0; p < std::min(g.dw, g.wo); ++p) {
      starts.push_back(starts.back() + (g.wo - p + kOut * g.dw - 1) / (kOut * g.dw));
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

// out[i][j] = sum_k m[i][k] * in[k][j] for j < n. m is a compile-time matrix: once
// the loops are unrolled, its zero and unit entries cost nothing.
template <int R, int C, class T>
CNNKIT_INLINE void transform(const double (&m)[R][C], const T* const (&in)[C],
                             T* const (&out)[R], int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    T v[C];
#pragma GCC unroll 8
    for (int k = 0; k < C; ++k) v[k] = in[k][j];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      T acc = T(0);
      bool first = true;
#pragma GCC unroll 8
      for (int k = 0; k < C; ++k) {
        if (m[i][k] == 0) continue;
        const T term = m[i][k] == 1 ? v[k] : m[i][k] == -1 ? -v[k] : T(m[i][k]) * v[k];
        acc = first ? term : acc + term;
        first = false;
      }
      out[i][j] = acc;
    }
  }
}

// Fills the phase-split padded row (see Tiles::offsets) from input row src: padded
// position x + pw holds src[x], and the padding is zero.
template <class T>
CNNKIT_INLINE void pad_row(const T* src, const ConvGeometry& g, const Tiles& tl, T* row) {
  for (size_t p = 0; p + 1 < tl.offsets.size(); ++p) {
    T* dst = row + tl.offsets[p];
    const int64_t len = tl.offsets[p + 1] - tl.offsets[p], first = int64_t(p) - g.pw;
    int64_t lo, hi;
    valid_range(first, g.dw, g.w, len, &lo, &hi);
    for (int64_t k = 0; k < lo; ++k) dst[k] = T(0);
    if (g.dw == 1) {
      for (int64_t k = lo; k < hi; ++k) dst[k] = src[first + k];
    } else if (g.dw == 2) {  // the common dilation: a compile-time stride vectorises
#pragma omp simd
      for (int64_t k = lo; k < hi; ++k) dst[k] = src[first + 2 * k];
    } else {
#pragma omp simd
      for (int64_t k = lo; k < hi; ++k) dst[k] = src[first + g.dw * k];
    }
    for (int64_t k = hi; k < len; ++k) dst[k] = T(0);
  }
}

// dst[s][i] = tap s (< 6) along one input row of tile i < n of a run of tiles whose
// phase sub-row starts at q (tile i's taps are q[4i .. 4i + 5]).
template <class T>
CNNKIT_INLINE void gather_taps(const T* q, int64_t n, T* const (&dst)[kAlpha]) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    dst[0][i] = q[4 * i];
    dst[1][i] = q[4 * i + 1];
    dst[2][i] = q[4 * i + 2];
    dst[3][i] = q[4 * i + 3];
  }
  // Taps 4 and 5 are taps 0 and 1 of the next tile.
  for (int64_t i = 0; i + 1 < n; ++i) {
    dst[4][i] = dst[0][i + 1];
    dst[5][i] = dst[1][i + 1];
  }
  dst[4][n - 1] = q[4 * n];
  dst[5][n - 1] = q[4 * n + 1];
}

// Transforms the input tiles [k0, k1) (at most kChunk) of a block of tile rows starting
// at global tile row r0, for channel c: point p of block tile k goes to v[p * ldv + k].
// row is scratch of tl.offsets.back() elements.
template <class T>
CNNKIT_INLINE void input_chunk(const T* x, const ConvGeometry& g, const Tiles& tl, int64_t r0,
                               int64_t k0, int64_t k1, int64_t c, T* v, int64_t ldv, T* row) {
  T d[kAlpha][kChunk], rows[kAlpha][kAlpha][kChunk];
  const int64_t n = k1 - k0;
  for (int t = 0; t < kAlpha; ++t) {
    int64_t padded = -1;  // the tile row whose input row t is in `row`
    for (int64_t k = k0; k < k1;) {
      const Run r = run_at(tl, k, k1);
      const int64_t len = r.j1 - r.j0, at = k - k0;
      k += len;
      T* const dst[kAlpha] = {d[0] + at, d[1] + at, d[2] + at, d[3] + at, d[4] + at, d[5] + at};
      const int64_t img = (r0 + r.row) / tl.tiles_y();
      const int64_t iy = tl.ys[(r0 + r.row) % tl.tiles_y()] - g.ph + g.dh * t;
      if (iy < 0 || iy >= g.h) {
        for (auto* o : dst) std::fill(o, o + len, T(0));
        continue;
      }
      if (padded != r.row) {
        pad_row(x + ((img * g.c_in + c) * g.h + iy) * g.w, g, tl, row);
        padded = r.row;
      }
      gather_taps(row + tl.offsets[r.phase] + kOut * (r.j0 - tl.starts[r.phase]), len, dst);
    }
    transform(kBT, {d[0], d[1], d[2], d[3], d[4], d[5]},
              {rows[t][0], rows[t][1], rows[t][2], rows[t][3], rows[t][4], rows[t][5]}, n);
  }
  for (int u = 0; u < kAlpha; ++u) {
    T* o = v + u * ldv + k0;
    const int64_t a = kAlpha * ldv;
    transform(kBT, {rows[0][u], rows[1][u], rows[2][u], rows[3][u], rows[4][u], rows[5][u]},
              {o, o + a, o + 2 * a, o + 3 * a, o + 4 * a, o + 5 * a}, n);
  }
}

// Writes output row values src[c][i] + bias of the tiles i < n of one phase run to
// dst[d * (4 * (jj0 + i) + c)], clipped at last, the last index of the phase's sub-row.
template <class T>
CNNKIT_INLINE void scatter_row(const T* const (&src)[kOut], int64_t d, int64_t jj0, int64_t n,
                               int64_t last, T bias, T* dst) {
  // Tiles before `full` lie wholly inside the row.
  const int64_t full = last >= kOut - 1 ? std::clamp<int64_t>((last - kOut + 1) / kOut + 1 - jj0, 0, n) : 0;
  T* q = dst + d * kOut * jj0;
  if (d == 1) {
#pragma omp simd
    for (int64_t i = 0; i < full; ++i) {
      q[4 * i] = src[0][i] + bias;
      q[4 * i + 1] = src[1][i] + bias;
      q[4 * i + 2] = src[2][i] + bias;
      q[4 * i + 3] = src[3][i] + bias;
    }
  } else {
    for (int64_t i = 0; i < full; ++i)
      for (int c = 0; c < kOut; ++c) q[d * (kOut * i + c)] = src[c][i] + bias;
  }
  for (int64_t i = full; i < n; ++i)
    for (int c = 0; c < kOut && kOut * (jj0 + i) + c <= last; ++c)
      q[d * (kOut * i + c)] = src[c][i] + bias;
}

// Transforms output channel kc's products of block tiles [k0, k1) (point p of tile k
// at m[p * ldm + k]) back into 4x4 output tiles, and writes them plus bias into y,
// clipped to the plane.
template <class T>
CNNKIT_INLINE void output_chunk(const T* m, int64_t ldm, const ConvGeometry& g, const Tiles& tl,
                                int64_t r0, int64_t k0, int64_t k1, int64_t kc, T bias, T* y) {
  T half[kOut][kAlpha][kChunk], out[kOut][kOut][kChunk];
  const int64_t n = k1 - k0;
  for (int u = 0; u < kAlpha; ++u) {
    const T* p = m + u * ldm + k0;
    const int64_t a = kAlpha * ldm;
    transform(kAT, {p, p + a, p + 2 * a, p + 3 * a, p + 4 * a, p + 5 * a},
              {half[0][u], half[1][u], half[2][u], half[3][u]}, n);
  }
  for (int r = 0; r < kOut; ++r)
    transform(kAT, {half[r][0], half[r][1], half[r][2], half[r][3], half[r][4], half[r][5]},
              {out[r][0], out[r][1], out[r][2], out[r][3]}, n);
  for (int64_t k = k0; k < k1;) {
    const Run r = run_at(tl, k, k1);
    const int64_t len = r.j1 - r.j0, at = k - k0;
    k += len;
    const int64_t img = (r0 + r.row) / tl.tiles_y(), y0 = tl.ys[(r0 + r.row) % tl.tiles_y()];
    T* plane = y + (img * g.c_out + kc) * g.plane_out() + r.phase;
    for (int a = 0; a < kOut && y0 + g.dh * a < g.ho; ++a) {
      const T* const src[kOut] = {out[a][0] + at, out[a][1] + at, out[a][2] + at, out[a][3] + at};
      scatter_row(src, g.dw, r.j0 - tl.starts[r.phase], len, (g.wo - 1 - r.phase) / g.dw, bias,
                  plane + (y0 + g.dh * a) * g.wo);
    }
  }
}

// Transforms filters [f0, f0 + n) of w (n <= kChunk, each 3x3): point p of filter f
// goes to u[p * filters + f].
template <class T>
CNNKIT_INLINE void filter_tiles(const T* w, int64_t f0, int64_t n, int64_t filters, T* u) {
  T k[9][kChunk], half[kAlpha][3][kChunk];
  for (int64_t j = 0; j < n; ++j)
    for (int t = 0; t < 9; ++t) k[t][j] = w[(f0 + j) * 9 + t];
  for (int c = 0; c < 3; ++c)
    transform(kG, {k[c], k[3 + c], k[6 + c]},
              {half[0][c], half[1][c], half[2][c], half[3][c], half[4][c], half[5][c]}, n);
  for (int r = 0; r < kAlpha; ++r) {
    T* o = u + r * kAlpha * filters + f0;
    transform(kG, {half[r][0], half[r][1], half[r][2]},
              {o, o + filters, o + 2 * filters, o + 3 * filters, o + 4 * filters, o + 5 * filters}, n);
  }
}

#define CNNKIT_WINOGRAD_DISPATCH(T)                                                          \
  CNNKIT_MULTIVERSION void input_chunk_mv(const T* x, const ConvGeometry& g, const Tiles& tl,  \
                                          int64_t r0, int64_t k0, int64_t k1, int64_t c, T* v, \
                                          int64_t ldv, T* row) {                             \
    input_chunk(x, g, tl, r0, k0, k1, c, v, ldv, row);                                       \
  }                                                                                          \
  CNNKIT_MULTIVERSION void output_chunk_mv(const T* m, int64_t ldm, const ConvGeometry& g,   \
                                           const Tiles& tl, int64_t r0, int64_t k0,          \
                                           int64_t k1, int64_t kc, T bias, T* y) {           \
    output_chunk(m, ldm, g, tl, r0, k0, k1, kc, bias, y);                                    \
  }                                                                                          \
  CNNKIT_MULTIVERSION void filter_tiles_mv(const T* w, int64_t f0, int64_t n, int64_t filters, \
                                           T* u) {                                           \
    filter_tiles(w, f0, n, filters, u);                                                      \
  }
CNNKIT_WINOGRAD_DISPATCH(float)
CNNKIT_WINOGRAD_DISPATCH(double)
#undef CNNKIT_WINOGRAD_DISPATCH

// u[point][k][c] = (G w[k][c] G^T)[point], for every filter of every group.
template <class T>
void transform_filters(const T* w, const ConvGeometry& g, T* u) {
  const int64_t filters = g.c_out * g.c_in_g(), chunks = (filters + kChunk - 1) / kChunk;
  parallel_for(chunks, grain_for(kPoints * kChunk, kGrainElems), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      filter_tiles_mv(w, c * kChunk, std::min(kChunk, filters - c * kChunk), filters, u);
  });
}

int64_t filter_elems(const ConvGeometry& g) { return kPoints * g.c_out * g.c_in_g(); }

// Transformed input and products of one row of tiles.
int64_t row_elems(const ConvGeometry& g, int64_t tiles_x) {
  return kPoints * (g.c_in + g.c_out) * tiles_x;
}

}  // namespace

bool winograd_applies(const ConvGeometry& g, int64_t elem_bytes, int64_t workspace_bytes) {
  if (g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1) return false;
  if (g.c_in_g() < kMinChannels || g.c_out_g() < kMinChannels) return false;
  const Tiles tl(g);
  // Tiles hanging far over the plane's edge waste what the transform saves.
  if (kOut * kOut * tl.tiles_y() * tl.tiles_x > 2 * g.plane_out()) return false;
  return (filter_elems(g) + row_elems(g, tl.tiles_x)) * elem_bytes <= workspace_bytes;
}

template <class T>
void winograd_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g,
                      int64_t workspace_bytes) {
  const Tiles tl(g);
  const int64_t total_rows = g.n * tl.tiles_y();
  if (total_rows == 0) return;
  const int64_t cig = g.c_in_g(), cog = g.c_out_g();
  // Tile rows per pass, as many as fit beside the filters, in passes of equal size.
  const int64_t budget =
      std::min(kBlockBytes, workspace_bytes - filter_elems(g) * int64_t(sizeof(T)));
  const int64_t max_rows = std::clamp<int64_t>(
      budget / int64_t(sizeof(T)) / row_elems(g, tl.tiles_x), 1, total_rows);
  const int64_t passes = (total_rows + max_rows - 1) / max_rows;
  const int64_t block_rows = (total_rows + passes - 1) / passes;
  T* u = workspace<T>(0, filter_elems(g) + block_rows * row_elems(g, tl.tiles_x));
  T* v = u + filter_elems(g);
  T* m = v + kPoints * g.c_in * block_rows * tl.tiles_x;
  transform_filters(w, g, u);
  for (int64_t r0 = 0; r0 < total_rows; r0 += block_rows) {
    const int64_t tiles = std::min(block_rows, total_rows - r0) * tl.tiles_x;
    const int64_t chunks = (tiles + kChunk - 1) / kChunk;
    const int64_t grain = grain_for(kPoints * kChunk, kGrainElems);
    parallel_for(g.c_in * chunks, grain, [&](int64_t i0, int64_t i1) {
      std::vector<T> row(tl.offsets.back());
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t c = i / chunks, k0 = i % chunks * kChunk;
        input_chunk_mv(x, g, tl, r0, k0, std::min(tiles, k0 + kChunk), c, v + c * tiles,
                       g.c_in * tiles, row.data());
      }
    });
    gemm_batch<T>(kPoints * g.groups, cog, tiles, cig, u, cig, cog * cig, v, tiles, cig * tiles,
                  m, tiles, cog * tiles);
    parallel_for(g.c_out * chunks, grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t k = i / chunks, k0 = i % chunks * kChunk;
        output_chunk_mv(m + k * tiles, g.c_out * tiles, g, tl, r0, k0,
                        std::min(tiles, k0 + kChunk), k, bias ? bias[k] : T(0), y);
      }
    });
  }
}

template void winograd_forward<float>(const float*, const float*, const float*, float*,
                                      const ConvGeometry&, int64_t);
template void winograd_forward<double>(const double*, const double*, const double*, double*,
                                       const ConvGeometry&, int64_t);

}  // namespace cnnkit
