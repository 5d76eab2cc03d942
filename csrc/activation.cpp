#include "activation.h"

#include <cmath>

#include "common/cpu_features.h"
#include "common/threading.h"

namespace cnnkit {

namespace {

// Elements per parallel_for item: below this an array runs inline.
constexpr int64_t kGrain = 32768;

template <class T>
CNNKIT_INLINE void relu_chunk(const T* x, T* y, int64_t n) {
  // x < 0 is false for NaN, which passes through as torch's relu does.
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
CNNKIT_INLINE void relu_backward_chunk(const T* gy, const T* x, T* gx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gx[i] = x[i] <= T(0) ? T(0) : gy[i];
}

// Stable for large |x|: only e^-|x| <= 1 is ever formed.
template <class T>
CNNKIT_INLINE void sigmoid_chunk(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T e = vmath::exp_nonpositive(-std::fabs(x[i]));
    const T r = T(1) / (T(1) + e);
    y[i] = x[i] >= T(0) ? r : e * r;
  }
}

template <class T>
CNNKIT_INLINE void sigmoid_backward_chunk(const T* gy, const T* y, T* gx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * y[i] * (T(1) - y[i]);
}

// tanh|x| = (1 - e^-2|x|) / (1 + e^-2|x|), with expm1 so that small |x| keeps its digits.
template <class T>
CNNKIT_INLINE void tanh_chunk(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T em = vmath::expm1_nonpositive(T(-2) * std::fabs(x[i]));
    y[i] = std::copysign(-em / (T(2) + em), x[i]);
  }
}

// 1 - y^2 as (1 - y)(1 + y): exact near |y| = 1, and no product for a compiler to fuse
// into an FMA, so that the CPU and the GPU round alike.
template <class T>
CNNKIT_INLINE void tanh_backward_chunk(const T* gy, const T* y, T* gx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * ((T(1) - y[i]) * (T(1) + y[i]));
}

#define CNNKIT_ACTIVATION_DISPATCH(T)                                                    \
  CNNKIT_MULTIVERSION void relu_mv(const T* x, T* y, int64_t n) { relu_chunk(x, y, n); } \
  CNNKIT_MULTIVERSION void relu_backward_mv(const T* gy, const T* x, T* gx, int64_t n) { \
    relu_backward_chunk(gy, x, gx, n);                                                   \
  }                                                                                      \
  CNNKIT_MULTIVERSION void sigmoid_mv(const T* x, T* y, int64_t n) {                     \
    sigmoid_chunk(x, y, n);                                                              \
  }                                                                                      \
  CNNKIT_MULTIVERSION void sigmoid_backward_mv(const T* gy, const T* y, T* gx,           \
                                               int64_t n) {                              \
    sigmoid_backward_chunk(gy, y, gx, n);                                                \
  }                                                                                      \
  CNNKIT_MULTIVERSION void tanh_mv(const T* x, T* y, int64_t n) { tanh_chunk(x, y, n); } \
  CNNKIT_MULTIVERSION void tanh_backward_mv(const T* gy, const T* y, T* gx, int64_t n) { \
    tanh_backward_chunk(gy, y, gx, n);                                                   \
  }
CNNKIT_ACTIVATION_DISPATCH(float)
CNNKIT_ACTIVATION_DISPATCH(double)
#undef CNNKIT_ACTIVATION_DISPATCH

}  // namespace

template <class T>
void relu_forward(const T* x, T* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { relu_mv(x + b, y + b, e - b); });
}

template <class T>
void relu_backward(const T* gy, const T* x, T* gx, int64_t n) {
  parallel_for(n, kGrain,
               [&](int64_t b, int64_t e) { relu_backward_mv(gy + b, x + b, gx + b, e - b); });
}

template <class T>
void sigmoid_forward(const T* x, T* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { sigmoid_mv(x + b, y + b, e - b); });
}

template <class T>
void sigmoid_backward(const T* gy, const T* y, T* gx, int64_t n) {
  parallel_for(n, kGrain,
               [&](int64_t b, int64_t e) { sigmoid_backward_mv(gy + b, y + b, gx + b, e - b); });
}

template <class T>
void tanh_forward(const T* x, T* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { tanh_mv(x + b, y + b, e - b); });
}

template <class T>
void tanh_backward(const T* gy, const T* y, T* gx, int64_t n) {
  parallel_for(n, kGrain,
               [&](int64_t b, int64_t e) { tanh_backward_mv(gy + b, y + b, gx + b, e - b); });
}

#define CNNKIT_INSTANTIATE(T)                                           \
  template void relu_forward<T>(const T*, T*, int64_t);                 \
  template void relu_backward<T>(const T*, const T*, T*, int64_t);      \
  template void sigmoid_forward<T>(const T*, T*, int64_t);              \
  template void sigmoid_backward<T>(const T*, const T*, T*, int64_t);   \
  template void tanh_forward<T>(const T*, T*, int64_t);                 \
  template void tanh_backward<T>(const T*, const T*, T*, int64_t);
CNNKIT_INSTANTIATE(float)
CNNKIT_INSTANTIATE(double)
#undef CNNKIT_INSTANTIATE

}  // namespace cnnkit
