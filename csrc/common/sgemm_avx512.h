// cnnkit's own single-precision GEMM for AVX-512 CPUs: packed panels and a 14x32
// register-blocked micro-kernel. It runs on one thread (cnnkit::gemm splits the work)
// and only where the CPU has AVX-512F; elsewhere OpenBLAS does.
#pragma once
#include <cstdint>

namespace cnnkit {

// Whether this CPU can run sgemm_avx512 (checked once).
bool sgemm_avx512_supported();

// Row-major C = alpha * op(A) * op(B) + beta * C on the calling thread; m, n, k > 0. A
// zero beta ignores what C held, NaN included, as BLAS does.
void sgemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc);

// A micro-tile's rows: a packed A operand holds slivers of this many rows.
constexpr int64_t kSgemmSliverRows = 14;

// An m x k matrix packed ahead for sgemm_avx512_packed_a: whole-K slivers of
// kSgemmSliverRows rows, each [k][rows]; the last sliver's missing rows are zero. Rows
// [i, m) from i a multiple of kSgemmSliverRows start at packed_a_index(i, 0, k).
inline int64_t packed_a_rows(int64_t m) {
  return (m + kSgemmSliverRows - 1) / kSgemmSliverRows * kSgemmSliverRows;
}
inline int64_t packed_a_index(int64_t i, int64_t p, int64_t k) {
  return (i - i % kSgemmSliverRows) * k + p * kSgemmSliverRows + i % kSgemmSliverRows;
}

// A micro-tile's columns: a packed B operand holds slivers of this many columns.
constexpr int64_t kSgemmSliverCols = 32;

// A k x n matrix packed ahead as B: whole-K slivers of kSgemmSliverCols columns, each
// [k][cols]; the last sliver's missing columns are never read into C. Columns [j, n)
// from j a multiple of kSgemmSliverCols start at packed_b_index(0, j, k).
inline int64_t packed_b_cols(int64_t n) {
  return (n + kSgemmSliverCols - 1) / kSgemmSliverCols * kSgemmSliverCols;
}
inline int64_t packed_b_index(int64_t p, int64_t j, int64_t k) {
  return (j - j % kSgemmSliverCols) * k + p * kSgemmSliverCols + j % kSgemmSliverCols;
}

// sgemm_avx512 with A packed ahead (packed_a_index), and B too where b_packed
// (packed_b_index; trans_b and ldb are then ignored), so that a matrix written once in
// that layout and used once is not copied again.
void sgemm_avx512_packed_a(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           const float* a_packed, const float* b, int64_t ldb, bool b_packed,
                           float beta, float* c, int64_t ldc);

}  // namespace cnnkit
