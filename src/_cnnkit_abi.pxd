# The core's C ABI (csrc/common/c_abi.h): cnnkit's thread pool and GEMM, read from
# the capsule that cnnkit._C exports. Cython modules run their parallel loops here.
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport int64_t

cdef extern from "common/c_abi.h" nogil:
    const char* CNNKIT_C_ABI_NAME
    int CNNKIT_C_ABI_VERSION
    int CNNKIT_OK
    int CNNKIT_TOO_LARGE

    ctypedef void (*cnnkit_range_fn)(void* ctx, int64_t begin, int64_t end) noexcept nogil

    ctypedef struct cnnkit_c_abi:
        int version
        int (*get_num_threads)() noexcept nogil
        int (*parallel_for)(int64_t n, int64_t grain, cnnkit_range_fn fn, void* ctx) noexcept nogil
        int (*sgemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                     float* c, int64_t ldc) noexcept nogil
        int (*dgemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                     const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                     double* c, int64_t ldc) noexcept nogil
        int (*sgemm_serial)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                            const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                            float* c, int64_t ldc) noexcept nogil
        int (*dgemm_serial)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                            const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                            double* c, int64_t ldc) noexcept nogil


cdef inline const cnnkit_c_abi* load_abi() except NULL:
    """The table from cnnkit._C, checked for the version this module was built against."""
    from cnnkit import _C
    cdef const cnnkit_c_abi* abi = <const cnnkit_c_abi*>PyCapsule_GetPointer(_C._c_abi, CNNKIT_C_ABI_NAME)
    if abi.version != CNNKIT_C_ABI_VERSION:
        raise ImportError(f"cnnkit._C has C ABI version {abi.version}, this module needs {CNNKIT_C_ABI_VERSION}")
    return abi
