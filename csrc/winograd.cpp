#include "winograd.h"

#include <algorithm>
#include <vector>

#include "common/cpu_features.h"
#include "common/gemm.h"
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

// First outputs of the tiles along an axis of `out` outputs with dilation d. A tile
// covers outputs o + d*{0..3}, so with d > 1 the tiles of each phase (o mod d) are
// laid side by side, phase after phase, and every tile reads one input sub-grid.
std::vector<int64_t> tile_origins(int64_t out, int64_t d) {
  std::vector<int64_t> o;
  for (int64_t phase = 0; phase < std::min(d, out); ++phase)
    for (int64_t p = phase; p < out; p += kOut * d) o.push_back(p);
  return o;
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

// Transforms the input tiles of one tile row of one channel plane. Tile j reads rows
// y0 - ph + dh*t and columns xo[j] - pw + dw*s (t, s < 6), zero outside the plane,
// and its 36 values go to v[point * ldv + j].
template <class T>
CNNKIT_INLINE void input_tiles(const T* plane, const ConvGeometry& g, int64_t y0,
                               const int64_t* xo, int64_t tiles, T* v, int64_t ldv) {
  T d[kAlpha][kChunk], rows[kAlpha][kAlpha][kChunk];
  for (int64_t j0 = 0; j0 < tiles; j0 += kChunk) {
    const int64_t n = std::min(kChunk, tiles - j0);
    const int64_t* x0 = xo + j0;
    for (int t = 0; t < kAlpha; ++t) {
      const int64_t iy = y0 - g.ph + g.dh * t;
      if (iy < 0 || iy >= g.h) {
        for (auto& r : rows[t]) std::fill(r, r + n, T(0));
        continue;
      }
      const T* src = plane + iy * g.w;
      for (int s = 0; s < kAlpha; ++s) {
        const int64_t shift = g.dw * s - g.pw;
        for (int64_t j = 0; j < n; ++j) {
          const int64_t ix = x0[j] + shift;
          d[s][j] = ix >= 0 && ix < g.w ? src[ix] : T(0);
        }
      }
      transform(kBT, {d[0], d[1], d[2], d[3], d[4], d[5]},
                {rows[t][0], rows[t][1], rows[t][2], rows[t][3], rows[t][4], rows[t][5]}, n);
    }
    for (int u = 0; u < kAlpha; ++u) {
      T* o = v + u * ldv + j0;
      const int64_t a = kAlpha * ldv;
      transform(kBT, {rows[0][u], rows[1][u], rows[2][u], rows[3][u], rows[4][u], rows[5][u]},
                {o, o + a, o + 2 * a, o + 3 * a, o + 4 * a, o + 5 * a}, n);
    }
  }
}

// Transforms one output channel's products of one tile row back into its 4x4 output
// tiles (point p of tile j at m[p * ldm + j]) and writes them, plus bias, into the
// output plane, clipped to its edges.
template <class T>
CNNKIT_INLINE void output_tiles(const T* m, int64_t ldm, const ConvGeometry& g, int64_t y0,
                                const int64_t* xo, int64_t tiles, T bias, T* plane) {
  T half[kOut][kAlpha][kChunk], out[kOut][kOut][kChunk];
  for (int64_t j0 = 0; j0 < tiles; j0 += kChunk) {
    const int64_t n = std::min(kChunk, tiles - j0);
    const int64_t* x0 = xo + j0;
    for (int u = 0; u < kAlpha; ++u) {
      const T* p = m + u * ldm + j0;
      const int64_t a = kAlpha * ldm;
      transform(kAT, {p, p + a, p + 2 * a, p + 3 * a, p + 4 * a, p + 5 * a},
                {half[0][u], half[1][u], half[2][u], half[3][u]}, n);
    }
    for (int r = 0; r < kOut; ++r)
      transform(kAT, {half[r][0], half[r][1], half[r][2], half[r][3], half[r][4], half[r][5]},
                {out[r][0], out[r][1], out[r][2], out[r][3]}, n);
    for (int r = 0; r < kOut; ++r) {
      const int64_t oy = y0 + g.dh * r;
      if (oy >= g.ho) break;
      T* dst = plane + oy * g.wo;
      for (int c = 0; c < kOut; ++c)
        for (int64_t j = 0; j < n; ++j) {
          const int64_t ox = x0[j] + g.dw * c;
          if (ox < g.wo) dst[ox] = out[r][c][j] + bias;
        }
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
  CNNKIT_MULTIVERSION void input_tiles_mv(const T* plane, const ConvGeometry& g, int64_t y0, \
                                          const int64_t* xo, int64_t tiles, T* v,            \
                                          int64_t ldv) {                                     \
    input_tiles(plane, g, y0, xo, tiles, v, ldv);                                            \
  }                                                                                          \
  CNNKIT_MULTIVERSION void output_tiles_mv(const T* m, int64_t ldm, const ConvGeometry& g,   \
                                           int64_t y0, const int64_t* xo, int64_t tiles,     \
                                           T bias, T* plane) {                               \
    output_tiles(m, ldm, g, y0, xo, tiles, bias, plane);                                     \
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
  const int64_t tiles_y = tile_origins(g.ho, g.dh).size(), tiles_x = tile_origins(g.wo, g.dw).size();
  // Tiles hanging far over the plane's edge waste what the transform saves.
  if (kOut * kOut * tiles_y * tiles_x > 2 * g.plane_out()) return false;
  return (filter_elems(g) + row_elems(g, tiles_x)) * elem_bytes <= workspace_bytes;
}

template <class T>
void winograd_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g,
                      int64_t workspace_bytes) {
  const std::vector<int64_t> ys = tile_origins(g.ho, g.dh), xs = tile_origins(g.wo, g.dw);
  const int64_t tiles_y = ys.size(), tiles_x = xs.size(), total_rows = g.n * tiles_y;
  if (total_rows == 0) return;
  const int64_t cig = g.c_in_g(), cog = g.c_out_g();
  // Tile rows per pass, as many as fit beside the filters, in passes of equal size.
  const int64_t budget =
      std::min(kBlockBytes, workspace_bytes - filter_elems(g) * int64_t(sizeof(T)));
  const int64_t max_rows =
      std::clamp<int64_t>(budget / int64_t(sizeof(T)) / row_elems(g, tiles_x), 1, total_rows);
  const int64_t passes = (total_rows + max_rows - 1) / max_rows;
  const int64_t block_rows = (total_rows + passes - 1) / passes;
  T* u = workspace<T>(0, filter_elems(g) + block_rows * row_elems(g, tiles_x));
  T* v = u + filter_elems(g);
  T* m = v + kPoints * g.c_in * block_rows * tiles_x;
  transform_filters(w, g, u);
  for (int64_t r0 = 0; r0 < total_rows; r0 += block_rows) {
    const int64_t rows = std::min(block_rows, total_rows - r0), tiles = rows * tiles_x;
    parallel_for(g.c_in * rows, grain_for(kPoints * tiles_x, kGrainElems),
                 [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t c = i / rows, row = i % rows, n = (r0 + row) / tiles_y;
        input_tiles_mv(x + (n * g.c_in + c) * g.plane_in(), g, ys[(r0 + row) % tiles_y],
                       xs.data(), tiles_x, v + c * tiles + row * tiles_x, g.c_in * tiles);
      }
    });
    gemm_batch<T>(kPoints * g.groups, cog, tiles, cig, u, cig, cog * cig, v, tiles, cig * tiles,
                  m, tiles, cog * tiles);
    parallel_for(g.c_out * rows, grain_for(kPoints * tiles_x, kGrainElems),
                 [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t k = i / rows, row = i % rows, n = (r0 + row) / tiles_y;
        output_tiles_mv(m + k * tiles + row * tiles_x, g.c_out * tiles, g,
                        ys[(r0 + row) % tiles_y], xs.data(), tiles_x, bias ? bias[k] : T(0),
                        y + (n * g.c_out + k) * g.plane_out());
      }
    });
  }
}

template void winograd_forward<float>(const float*, const float*, const float*, float*,
                                      const ConvGeometry&, int64_t);
template void winograd_forward<double>(const double*, const double*, const double*, double*,
                                       const ConvGeometry&, int64_t);

}  // namespace cnnkit
