#include "common/vec.h"

#include "common/cpu_features.h"

namespace cnnkit {

namespace {
template <class T>
inline __attribute__((always_inline)) void axpy_impl(T* y, const T* x, T a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

template <class T>
inline __attribute__((always_inline)) T dot_impl(const T* a, const T* b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

CNNKIT_MULTIVERSION void axpy(float* y, const float* x, float a, int64_t n) {
  axpy_impl(y, x, a, n);
}
CNNKIT_MULTIVERSION void axpy(double* y, const double* x, double a, int64_t n) {
  axpy_impl(y, x, a, n);
}
CNNKIT_MULTIVERSION float dot(const float* a, const float* b, int64_t n) {
  return dot_impl(a, b, n);
}
CNNKIT_MULTIVERSION double dot(const double* a, const double* b, int64_t n) {
  return dot_impl(a, b, n);
}

}  // namespace cnnkit
