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

// Row panels of this many rows fill whole micro-tiles (cnnkit::gemm's split).
constexpr int64_t kSgemmRowPanel = 56;

}  // namespace cnnkit
