#include "common/sgemm_avx512.h"

#include <algorithm>
#include <array>
#include <utility>

#include "common/workspace.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CNNKIT_SGEMM_AVX512 1
#define CNNKIT_AVX512 __attribute__((target("avx512f")))
#endif

namespace cnnkit {

#ifdef CNNKIT_SGEMM_AVX512
namespace {

// A micro-tile is MR rows by NR columns of C, held in 28 of the 32 zmm registers. A is
// packed in blocks of MC x KC (MR-row slivers, [k][MR]; or packed ahead, in whole-K
// slivers), B in KC x NC ([k][NR] slivers): a B sliver stays in L1 while the A block
// streams from L2.
constexpr int64_t MR = kSgemmSliverRows, NR = kSgemmSliverCols;
constexpr int64_t KC = 256, MC = 16 * MR, NC = 2048;
static_assert(MR <= 14 && NR == 32, "a micro-tile's accumulators fit 28 registers");

// Element (i, j) of op(X) for a row-major X with leading dimension ld.
inline const float* at(const float* x, bool trans, int64_t ld, int64_t i, int64_t j) {
  return trans ? x + j * ld + i : x + i * ld + j;
}

// r[0..15] = its transpose, in four levels of swapping the off-diagonal b x b blocks
// of every 2b x 2b block (b = 8, 4, 2, 1).
CNNKIT_AVX512 inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
#pragma GCC unroll 4
  for (int b = 8; b >= 1; b /= 2) {
    alignas(64) int lo[16], hi[16];
    for (int l = 0; l < 16; ++l) {
      lo[l] = (l & b) ? 16 + l - b : l;
      hi[l] = (l & b) ? 16 + l : l + b;
    }
    const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      if (i & b) continue;
      const __m512 top = r[i], bottom = r[i + b];
      r[i] = _mm512_permutex2var_ps(top, ilo, bottom);
      r[i + b] = _mm512_permutex2var_ps(top, ihi, bottom);
    }
  }
}

// dst[q * ld + j] = src[j * lds + q] for j < rows (zero for rows <= j < 16) and q <
// cols <= 16, storing the lanes of `store` of each of the cols rows of dst.
// Unrolled with constant indices throughout, so that r stays in registers.
CNNKIT_AVX512 inline __attribute__((always_inline)) void transpose_block(
    const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ld,
    __mmask16 store) {
  const __mmask16 load = cols >= 16 ? 0xFFFF : (1u << cols) - 1;
  __m512 r[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j)
    r[j] = j < rows ? _mm512_maskz_loadu_ps(load, src + j * lds) : _mm512_setzero_ps();
  transpose16(r);
#pragma GCC unroll 16
  for (int q = 0; q < 16; ++q) {
    if (q >= cols) break;
    _mm512_mask_storeu_ps(dst + q * ld, store, r[q]);
  }
}

// Rows [i0, i0 + mc) x columns [p0, p0 + kc) of op(A) into MR-row slivers ([k][MR]),
// zero rows past mc.
CNNKIT_AVX512 void pack_a(const float* a, bool ta, int64_t lda, int64_t i0, int64_t mc,
                          int64_t p0, int64_t kc, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    const int64_t mr = std::min(MR, mc - ir);
    if (ta) {  // op(A) = A^T: a sliver's column p is a contiguous run of A's row p
      const __mmask16 rows = (1u << mr) - 1;
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(dst + p * MR, (1u << MR) - 1,
                              _mm512_maskz_loadu_ps(rows, at(a, true, lda, i0 + ir, p0 + p)));
    } else {  // each sliver row is a row of A: transpose 16-column blocks
      for (int64_t p = 0; p < kc; p += 16)
        transpose_block(at(a, false, lda, i0 + ir, p0 + p), lda, mr, std::min<int64_t>(16, kc - p),
                        dst + p * MR, MR, (1u << MR) - 1);
    }
  }
}

// Rows [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into NR-column slivers ([k][NR]),
// zero columns past nc.
CNNKIT_AVX512 void pack_b(const float* b, bool tb, int64_t ldb, int64_t p0, int64_t kc,
                          int64_t j0, int64_t nc, float* dst) {
  if (tb) {  // op(B) = B^T: each sliver column is a row of B: transpose 16 x 16 blocks
    for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc) {
      const int64_t nr = std::min(NR, nc - jr);
      for (int64_t half = 0; half < NR; half += 16)
        for (int64_t p = 0; p < kc; p += 16)
          transpose_block(at(b, true, ldb, p0 + p, j0 + jr + half), ldb,
                          std::clamp<int64_t>(nr - half, 0, 16), std::min<int64_t>(16, kc - p),
                          dst + p * NR + half, NR, 0xFFFF);
    }
    return;
  }
  // Row by row across all slivers: the reads run along B's rows, which the hardware
  // fetches ahead (a sliver at a time, each of kc rows began a new page: 28% of a
  // 1x1 convolution's forward, 256 x 1568 blocks of 3136-wide rows).
  const int64_t full = nc / NR * NR;
  const __mmask16 m0 = nc - full >= 16 ? 0xFFFF : (1u << (nc - full)) - 1;
  const __mmask16 m1 = nc - full > 16 ? (1u << (nc - full - 16)) - 1 : 0;
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = at(b, false, ldb, p0 + p, j0);
    float* d = dst + p * NR;
    for (int64_t jr = 0; jr < full; jr += NR, d += NR * kc) {
      _mm512_storeu_ps(d, _mm512_loadu_ps(src + jr));
      _mm512_storeu_ps(d + 16, _mm512_loadu_ps(src + jr + 16));
    }
    if (full < nc) {
      _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m0, src + full));
      _mm512_storeu_ps(d + 16, _mm512_maskz_loadu_ps(m1, src + full + 16));
    }
  }
}

// C[0:R, 0:nr] = alpha * (A sliver x B sliver) + beta * C, for nr <= 16 * H: a partial
// micro-tile computes only its own rows and 16-column halves (M = 128 in slivers of 14
// rows computed 140 rows with one full kernel; a tile block's last sliver is often half).
template <int R, int H>
CNNKIT_AVX512 void micro_kernel(int64_t kc, const float* ap, const float* bp, float* c,
                                int64_t ldc, int64_t nr, float alpha, float beta) {
  __m512 acc[R][H];
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h) acc[r][h] = _mm512_setzero_ps();
  // C's rows are touched only after the k loop, and the next k steps' A may come
  // from past L2: fetch both ahead (2048^3 on one thread: 170 -> 190 GFLOPS).
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h)
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16 * h), _MM_HINT_T0);
  for (int64_t p = 0; p < kc; ++p, ap += MR, bp += NR) {
    _mm_prefetch(reinterpret_cast<const char*>(ap + 8 * MR), _MM_HINT_T0);
    __m512 b[H];
    for (int h = 0; h < H; ++h) b[h] = _mm512_loadu_ps(bp + 16 * h);
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(ap[r]);
      for (int h = 0; h < H; ++h) acc[r][h] = _mm512_fmadd_ps(av, b[h], acc[r][h]);
    }
  }
  __mmask16 mask[H];
  for (int h = 0; h < H; ++h) {
    const int64_t cols = std::clamp<int64_t>(nr - 16 * h, 0, 16);
    mask[h] = cols == 16 ? 0xFFFF : (1u << cols) - 1;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    for (int h = 0; h < H; ++h) {
      __m512 v = _mm512_mul_ps(va, acc[r][h]);
      if (beta != 0.f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[h], cr + 16 * h), v);
      _mm512_mask_storeu_ps(cr + 16 * h, mask[h], v);
    }
  }
}

using MicroKernel = void (*)(int64_t, const float*, const float*, float*, int64_t, int64_t, float,
                             float);
template <int H, int... R>
constexpr std::array<MicroKernel, MR> kernels_of_rows(std::integer_sequence<int, R...>) {
  return {&micro_kernel<R + 1, H>...};
}
// The micro-kernel for mr rows and nr columns: kMicroKernels[nr > 16][mr - 1].
constexpr std::array<MicroKernel, MR> kMicroKernels[2] = {
    kernels_of_rows<1>(std::make_integer_sequence<int, MR>{}),
    kernels_of_rows<2>(std::make_integer_sequence<int, MR>{})};

// The blocked product; A is packed here unless a_packed (packed_a_index), B unless
// b_packed (packed_b_index).
CNNKIT_AVX512 void blocked(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                           const float* a, int64_t lda, bool a_packed, const float* b,
                           int64_t ldb, bool b_packed, float beta, float* c, int64_t ldc) {
  const int64_t nc_max = b_packed ? 0 : std::min(NC, (n + NR - 1) / NR * NR);
  const int64_t mc_max = a_packed ? 0 : std::min(MC, (m + MR - 1) / MR * MR);
  const int64_t kc_max = std::min(KC, k);
  float* bpack = workspace<float>(2, kc_max * (nc_max + mc_max));
  float* apack = bpack + kc_max * nc_max;
  for (int64_t j0 = 0; j0 < n; j0 += NC) {
    const int64_t nc = std::min(NC, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += KC) {
      const int64_t kc = std::min(KC, k - p0);
      // Later K blocks add to what the first wrote.
      const float beta_k = p0 == 0 ? beta : 1.f;
      // Slivers of this block start b_sliver_elems (of A: a_sliver_elems) apart.
      const float* bblock = bpack;
      int64_t b_sliver_elems = NR * kc;
      if (b_packed) {
        bblock = b + packed_b_index(p0, j0, k);
        b_sliver_elems = NR * k;
      } else {
        pack_b(b, tb, ldb, p0, kc, j0, nc, bpack);
      }
      for (int64_t i0 = 0; i0 < m; i0 += MC) {
        const int64_t mc = std::min(MC, m - i0);
        const float* ablock = apack;
        int64_t a_sliver_elems = MR * kc;
        if (a_packed) {
          ablock = a + packed_a_index(i0, p0, k);
          a_sliver_elems = MR * k;
        } else {
          pack_a(a, ta, lda, i0, mc, p0, kc, apack);
        }
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = std::min(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR)
            kMicroKernels[nr > 16][std::min(MR, mc - ir) - 1](
                kc, ablock + ir / MR * a_sliver_elems, bblock + jr / NR * b_sliver_elems,
                c + (i0 + ir) * ldc + j0 + jr, ldc, nr, alpha, beta_k);
        }
      }
    }
  }
}

}  // namespace

bool sgemm_avx512_supported() {
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return supported;
}

void sgemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  blocked(ta, tb, m, n, k, alpha, a, lda, false, b, ldb, false, beta, c, ldc);
}

void sgemm_avx512_packed_a(bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                           const float* a_packed, const float* b, int64_t ldb, bool b_packed,
                           float beta, float* c, int64_t ldc) {
  blocked(false, tb, m, n, k, alpha, a_packed, k, true, b, ldb, b_packed, beta, c, ldc);
}

#else

bool sgemm_avx512_supported() { return false; }

void sgemm_avx512(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                  const float*, int64_t, float, float*, int64_t) {}

void sgemm_avx512_packed_a(bool, int64_t, int64_t, int64_t, float, const float*, const float*,
                           int64_t, bool, float, float*, int64_t) {}

#endif

}  // namespace cnnkit
