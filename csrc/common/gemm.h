// The GEMM wrapper: row-major C = alpha * op(A) * op(B) + beta * C on OpenBLAS,
// split across cnnkit's threads. Never call it from inside parallel_for.
#pragma once
#include <cstdint>

namespace cnnkit {

// Pins OpenBLAS to one thread; called once at module load.
void init_blas();
const char* blas_config();

// The single-precision kernel: cnnkit's own AVX-512 one where the CPU has AVX-512F
// (automatic), or OpenBLAS's always. Double precision always runs OpenBLAS.
enum class SgemmKernel { automatic, openblas };
void set_sgemm_kernel(SgemmKernel k);
// "avx512" or "openblas": what a single-precision GEMM runs now.
const char* sgemm_kernel();

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// The same on the calling thread alone, for use inside parallel_for bodies.
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                 int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Whether GEMMs on elements of elem_bytes run cnnkit's own sgemm now (single precision
// where the CPU has AVX-512F, unless 'openblas' was chosen). gemm_batch then also takes
// A packed ahead, in the layout of sgemm_avx512.h's packed_a_index.
bool gemm_runs_own_sgemm(int64_t elem_bytes);

// count independent products C_i = A_i * op(B_i) + beta * C_i (row-major), where
// operand i starts stride_* elements after operand i - 1. Whole products are
// spread over the threads when there are enough of them, else each is split. With
// a_packed (only where gemm_runs_own_sgemm said so), each A_i is packed ahead and lda
// is ignored; with b_packed too, each B_i is (packed_b_index), and trans_b and ldb are.
template <class T>
void gemm_batch(int64_t count, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta,
                T* c, int64_t ldc, int64_t stride_c, bool a_packed = false, bool b_packed = false);

}  // namespace cnnkit
