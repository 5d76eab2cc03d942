#include "common/gemm.h"

#include <cblas.h>

#include <climits>

#include "common/errors.h"

namespace cnnkit {

void set_blas_threads(int n) { scipy_openblas_set_num_threads(n); }

const char* blas_config() { return scipy_openblas_get_config(); }

namespace {
blasint checked(int64_t v) {
  if (v > INT_MAX) raise_value("GEMM dimension ", v, " exceeds OpenBLAS's 32-bit index range");
  return static_cast<blasint>(v);
}
CBLAS_TRANSPOSE op(bool t) { return t ? CblasTrans : CblasNoTrans; }
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_sgemm(CblasRowMajor, op(ta), op(tb), checked(m), checked(n), checked(k), alpha, a,
                    checked(lda), b, checked(ldb), beta, c, checked(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                  const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                  double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_dgemm(CblasRowMajor, op(ta), op(tb), checked(m), checked(n), checked(k), alpha, a,
                    checked(lda), b, checked(ldb), beta, c, checked(ldc));
}

}  // namespace cnnkit
