#include "common/c_abi.h"

#include <cblas.h>

#include <climits>
#include <initializer_list>

#include "common/errors.h"
#include "common/gemm.h"
#include "common/threading.h"

namespace {

template <class F>
int guarded(F&& f) {
  try {
    f();
    return CNNKIT_OK;
  } catch (const cnnkit::ValueError&) {
    return CNNKIT_TOO_LARGE;  // gemm's only ValueError: a dimension past int32
  } catch (...) {
    return CNNKIT_ERROR;
  }
}

int c_parallel_for(int64_t n, int64_t grain, cnnkit_range_fn fn, void* ctx) {
  return guarded([&] { cnnkit::parallel_for(n, grain, [&](int64_t b, int64_t e) { fn(ctx, b, e); }); });
}

template <class T>
int c_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
           const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  return guarded([&] { cnnkit::gemm<T>(ta != 0, tb != 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
}

bool fits(std::initializer_list<int64_t> dims) {
  for (int64_t d : dims)
    if (d > INT_MAX) return false;
  return true;
}

CBLAS_TRANSPOSE op(int t) { return t ? CblasTrans : CblasNoTrans; }

// cnnkit::gemm's serial core, callable from a pool thread (gemm itself would nest
// parallel_for). k == 0 is C = beta * C, as BLAS defines it.
template <class T, class Blas>
int serial(Blas blas, int ta, int tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
           int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return CNNKIT_OK;
  if (!fits({m, n, k, lda, ldb, ldc})) return CNNKIT_TOO_LARGE;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return CNNKIT_OK;
  }
  cnnkit::ForkSafeSection section;
  blas(CblasRowMajor, op(ta), op(tb), int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb),
       beta, c, int(ldc));
  return CNNKIT_OK;
}

int c_sgemm_serial(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                   int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  return serial<float>(scipy_cblas_sgemm, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int c_dgemm_serial(int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                   int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  return serial<double>(scipy_cblas_dgemm, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int c_get_num_threads() { return cnnkit::get_num_threads(); }

const cnnkit_c_abi table = {
    CNNKIT_C_ABI_VERSION, c_get_num_threads, c_parallel_for, c_gemm<float>, c_gemm<double>,
    c_sgemm_serial,       c_dgemm_serial,
};

}  // namespace

extern "C" const cnnkit_c_abi* cnnkit_get_c_abi(void) { return &table; }
