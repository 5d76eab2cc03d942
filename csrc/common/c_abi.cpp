#include "common/c_abi.h"

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

// cnnkit::gemm's serial core, callable from a pool thread (gemm itself would nest
// parallel_for).
template <class T>
int c_gemm_serial(int ta, int tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                  int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  return guarded(
      [&] { cnnkit::gemm_serial<T>(ta != 0, tb != 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
}

int c_get_num_threads() { return cnnkit::get_num_threads(); }

const cnnkit_c_abi table = {
    CNNKIT_C_ABI_VERSION, c_get_num_threads, c_parallel_for, c_gemm<float>, c_gemm<double>,
    c_gemm_serial<float>, c_gemm_serial<double>,
};

}  // namespace

extern "C" const cnnkit_c_abi* cnnkit_get_c_abi(void) { return &table; }
