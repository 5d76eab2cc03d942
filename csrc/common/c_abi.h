/* The core's C ABI for the Cython modules (src/): cnnkit's thread pool and GEMM, so
   that they run on the one pool that cnnkit.set_num_threads governs. _C exports the
   table as the PyCapsule cnnkit._C._c_abi, named CNNKIT_C_ABI_NAME (src/_cnnkit.pxd
   reads it). Plain C: no exception crosses it; a call returns 0 or an error code. */
#ifndef CNNKIT_C_ABI_H
#define CNNKIT_C_ABI_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CNNKIT_C_ABI_NAME "cnnkit._C.c_abi"
#define CNNKIT_C_ABI_VERSION 1

enum { CNNKIT_OK = 0, CNNKIT_ERROR = 1, CNNKIT_TOO_LARGE = 2 };

/* Runs with the GIL released; must not raise or call back into the pool. */
typedef void (*cnnkit_range_fn)(void* ctx, int64_t begin, int64_t end);

typedef struct cnnkit_c_abi {
  int version;
  int (*get_num_threads)(void);
  /* fn(ctx, begin, end) on disjoint sub-ranges covering [0, n), as cnnkit::parallel_for. */
  int (*parallel_for)(int64_t n, int64_t grain, cnnkit_range_fn fn, void* ctx);
  /* Row-major C = alpha * op(A) * op(B) + beta * C split over the pool: never from
     inside a parallel_for body. CNNKIT_TOO_LARGE: a dimension past OpenBLAS's int32. */
  int (*sgemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc);
  int (*dgemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
               const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
               double* c, int64_t ldc);
  /* The same on the calling thread alone: for use inside parallel_for bodies. */
  int (*sgemm_serial)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc);
  int (*dgemm_serial)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                      const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                      double* c, int64_t ldc);
} cnnkit_c_abi;

const cnnkit_c_abi* cnnkit_get_c_abi(void);

#ifdef __cplusplus
}
#endif
#endif
