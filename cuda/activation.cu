// Elementwise activations on the GPU: relu, sigmoid and tanh, forward and backward,
// over n contiguous elements, with the semantics of csrc/activation.cpp.
#include "common.cuh"

namespace {

// x < 0 is false for NaN, which passes through as torch's relu does.
struct Relu {
  template <class T>
  __device__ __forceinline__ static T forward(T x) {
    return x < T(0) ? T(0) : x;
  }
  // Passes the gradient where x > 0 and where x is NaN (torch's threshold_backward).
  template <class T>
  __device__ __forceinline__ static T backward(T gy, T x) {
    return x <= T(0) ? T(0) : gy;
  }
};

// Stable for large |x|: only e^-|x| <= 1 is ever formed.
struct Sigmoid {
  template <class T>
  __device__ __forceinline__ static T forward(T x) {
    const T e = ck::exp(-ck::fabs(x));
    const T r = T(1) / (T(1) + e);
    return x >= T(0) ? r : e * r;
  }
  // y is sigmoid's output.
  template <class T>
  __device__ __forceinline__ static T backward(T gy, T y) {
    return gy * y * (T(1) - y);
  }
};

// tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): expm1 keeps the digits of small |x|.
struct Tanh {
  template <class T>
  __device__ __forceinline__ static T forward(T x) {
    const T em = ck::expm1(T(-2) * ck::fabs(x));
    return ck::copysign(-em / (T(2) + em), x);
  }
  // y is tanh's output; 1 - y^2 factored as csrc/activation.cpp does.
  template <class T>
  __device__ __forceinline__ static T backward(T gy, T y) {
    return gy * ((T(1) - y) * (T(1) + y));
  }
};

template <class Op, class T>
__device__ __forceinline__ void forward(const T* __restrict__ x, T* __restrict__ y, i64 n) {
  CK_GRID_STRIDE_LOOP(i, n) y[i] = Op::forward(x[i]);
}

// other is the op's input (relu) or output (sigmoid, tanh).
template <class Op, class T>
__device__ __forceinline__ void backward(const T* __restrict__ gy, const T* __restrict__ other,
                                         T* __restrict__ gx, i64 n) {
  CK_GRID_STRIDE_LOOP(i, n) gx[i] = Op::backward(gy[i], other[i]);
}

}  // namespace

#define CK_ACTIVATION_KERNELS(sfx, T)                                                        \
  extern "C" __global__ void relu_forward_##sfx(const T* x, T* y, i64 n) {                   \
    forward<Relu>(x, y, n);                                                                  \
  }                                                                                          \
  extern "C" __global__ void relu_backward_##sfx(const T* gy, const T* x, T* gx, i64 n) {    \
    backward<Relu>(gy, x, gx, n);                                                            \
  }                                                                                          \
  extern "C" __global__ void sigmoid_forward_##sfx(const T* x, T* y, i64 n) {                \
    forward<Sigmoid>(x, y, n);                                                               \
  }                                                                                          \
  extern "C" __global__ void sigmoid_backward_##sfx(const T* gy, const T* y, T* gx, i64 n) { \
    backward<Sigmoid>(gy, y, gx, n);                                                         \
  }                                                                                          \
  extern "C" __global__ void tanh_forward_##sfx(const T* x, T* y, i64 n) {                   \
    forward<Tanh>(x, y, n);                                                                  \
  }                                                                                          \
  extern "C" __global__ void tanh_backward_##sfx(const T* gy, const T* y, T* gx, i64 n) {    \
    backward<Tanh>(gy, y, gx, n);                                                            \
  }
CK_FOR_FLOAT_TYPES(CK_ACTIVATION_KERNELS)
#undef CK_ACTIVATION_KERNELS
