#include "common/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <type_traits>

#include "common/errors.h"
#include "common/sgemm_avx512.h"
#include "common/threading.h"

namespace cnnkit {

// OpenBLAS always runs single-threaded: cnnkit's pool splits each GEMM instead,
// so there is one level of parallelism and no OpenBLAS threads left spinning
// after a call to steal cores from the next kernel.
void init_blas() { scipy_openblas_set_num_threads(1); }

const char* blas_config() { return scipy_openblas_get_config(); }

namespace {
std::atomic<SgemmKernel> sgemm_choice{SgemmKernel::automatic};

// Where cnnkit's own kernel runs: on AVX-512 CPUs unless told otherwise, except for a
// zero alpha (BLAS then skips A * B, NaN included).
bool own_sgemm(float alpha) {
  const SgemmKernel k = sgemm_choice.load(std::memory_order_relaxed);
  return k != SgemmKernel::openblas && alpha != 0.f && sgemm_avx512_supported();
}
}  // namespace

void set_sgemm_kernel(SgemmKernel k) { sgemm_choice = k; }

const char* sgemm_kernel() { return own_sgemm(1.f) ? "avx512" : "openblas"; }

namespace {
blasint checked(int64_t v) {
  if (v > INT_MAX) raise_value("GEMM dimension ", v, " exceeds OpenBLAS's 32-bit index range");
  return static_cast<blasint>(v);
}
CBLAS_TRANSPOSE op(bool t) { return t ? CblasTrans : CblasNoTrans; }

void blas_serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // Either kernel keeps OpenBLAS's limits, so that a shape is refused alike.
  const blasint dims[] = {checked(m), checked(n), checked(k), checked(lda), checked(ldb),
                          checked(ldc)};
  if (own_sgemm(alpha)) return sgemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  ForkSafeSection section;
  scipy_cblas_sgemm(CblasRowMajor, op(ta), op(tb), dims[0], dims[1], dims[2], alpha, a, dims[3],
                    b, dims[4], beta, c, dims[5]);
}

void blas_serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                 double* c, int64_t ldc) {
  ForkSafeSection section;
  scipy_cblas_dgemm(CblasRowMajor, op(ta), op(tb), checked(m), checked(n), checked(k), alpha, a,
                    checked(lda), b, checked(ldb), beta, c, checked(ldc));
}

// Panels are split on multiples of this many columns, or of kSgemmSliverRows rows
// (whole micro-tiles of the own kernel). Finer than a thread's share, so that shares
// stay even: 576 columns over 2 threads in 64-column panels went 5 : 4, and ran at
// 310-321 GFLOPS against 348-351 for 512 or 640.
constexpr int64_t kPanel = 32;
static_assert(kPanel % kSgemmSliverCols == 0, "a column panel of a packed B is whole slivers");
// Below this many multiply-adds per thread a split costs more than it saves.
constexpr int64_t kMinWork = int64_t(1) << 18;

// C = beta * C, the product over an empty inner dimension (which OpenBLAS refuses:
// it wants lda >= 1). A zero beta ignores what C held, NaN included, as BLAS does.
template <class T>
void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}
}  // namespace

template <class T>
void gemm_serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                 int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_c(m, n, beta, c, ldc);
  blas_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace {
// op(A), or the rows of it from a given one on.
template <class T>
struct OperandA {
  const T* a;
  int64_t lda;
  bool trans, packed;
  OperandA from_row(int64_t i, int64_t k) const {
    return {packed ? a + packed_a_index(i, 0, k) : trans ? a + i : a + i * lda, lda, trans,
            packed};
  }
};

// op(B), or packed ahead (packed_b_index; with a packed A only).
template <class T>
struct OperandB {
  const T* b;
  int64_t ldb;
  bool trans, packed;
  OperandB from_col(int64_t j, int64_t k) const {
    return {packed ? b + packed_b_index(0, j, k) : trans ? b + j * ldb : b + j, ldb, trans,
            packed};
  }
};

template <class T>
void serial(const OperandA<T>& a, const OperandB<T>& b, int64_t m, int64_t n, int64_t k, T alpha,
            T beta, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (a.packed)
      return sgemm_avx512_packed_a(b.trans, m, n, k, alpha, a.a, b.b, b.ldb, b.packed, beta, c,
                                   ldc);
  }
  blas_serial(a.trans, b.trans, m, n, k, alpha, a.a, a.lda, b.b, b.ldb, beta, c, ldc);
}

// Splits the larger of C's dimensions into panels; each task is a serial GEMM.
template <class T>
void split(const OperandA<T>& a, const OperandB<T>& b, int64_t m, int64_t n, int64_t k, T alpha,
           T beta, T* c, int64_t ldc) {
  const bool by_cols = n >= m;
  const int64_t panel = by_cols ? kPanel : kSgemmSliverRows;
  const int64_t panels = ((by_cols ? n : m) + panel - 1) / panel;
  const int64_t grain = std::max<int64_t>(1, kMinWork / std::max<int64_t>(1, panel * (by_cols ? m : n) * k));
  parallel_for(panels, grain, [&](int64_t p0, int64_t p1) {
    const int64_t lo = p0 * panel, hi = std::min(p1 * panel, by_cols ? n : m);
    if (by_cols)
      serial(a, b.from_col(lo, k), m, hi - lo, k, alpha, beta, c + lo, ldc);
    else
      serial(a.from_row(lo, k), b, hi - lo, n, k, alpha, beta, c + lo * ldc, ldc);
  });
}
}  // namespace

bool gemm_runs_own_sgemm(int64_t elem_bytes) { return elem_bytes == 4 && own_sgemm(1.f); }

template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_c(m, n, beta, c, ldc);
  split(OperandA<T>{a, lda, ta, false}, OperandB<T>{b, ldb, tb, false}, m, n, k, alpha, beta, c,
        ldc);
}

template <class T>
void gemm_batch(int64_t count, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta,
                T* c, int64_t ldc, int64_t stride_c, bool a_packed, bool b_packed) {
  if (a_packed && !(std::is_same_v<T, float> && sgemm_avx512_supported()))
    raise_value("gemm_batch: a packed A operand needs cnnkit's own single-precision kernel");
  if (b_packed && !a_packed) raise_value("gemm_batch: a packed B operand needs a packed A");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < count; ++i) scale_c(m, n, beta, c + i * stride_c, ldc);
    return;
  }
  const auto operand_a = [&](int64_t i) {
    return OperandA<T>{a + i * stride_a, lda, false, a_packed};
  };
  const auto operand_b = [&](int64_t i) {
    return OperandB<T>{b + i * stride_b, ldb, trans_b, b_packed};
  };
  if (count < 2 * get_num_threads()) {
    for (int64_t i = 0; i < count; ++i)
      split(operand_a(i), operand_b(i), m, n, k, T(1), beta, c + i * stride_c, ldc);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kMinWork / std::max<int64_t>(1, m * n * k));
  parallel_for(count, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      serial(operand_a(i), operand_b(i), m, n, k, T(1), beta, c + i * stride_c, ldc);
  });
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                           int64_t, const double*, int64_t, double, double*, int64_t);
template void gemm_serial<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                 int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm_serial<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                  int64_t, const double*, int64_t, double, double*, int64_t);
template void gemm_batch<float>(int64_t, bool, int64_t, int64_t, int64_t, const float*, int64_t,
                                int64_t, const float*, int64_t, int64_t, float, float*, int64_t,
                                int64_t, bool, bool);
template void gemm_batch<double>(int64_t, bool, int64_t, int64_t, int64_t, const double*, int64_t,
                                 int64_t, const double*, int64_t, int64_t, double, double*,
                                 int64_t, int64_t, bool, bool);

}  // namespace cnnkit
