// Elementwise activations on the CPU: relu, sigmoid and tanh, forward and backward,
// over n contiguous elements. Also the branch-free exp that the activation and
// softmax kernels share: libm's exp is a call that stops loops from vectorising.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>

namespace cnnkit {

template <class T>
void relu_forward(const T* x, T* y, int64_t n);
// Passes grad where x > 0 (and where x is NaN), as torch's threshold_backward.
template <class T>
void relu_backward(const T* gy, const T* x, T* gx, int64_t n);
template <class T>
void sigmoid_forward(const T* x, T* y, int64_t n);
// y is sigmoid's output.
template <class T>
void sigmoid_backward(const T* gy, const T* y, T* gx, int64_t n);
template <class T>
void tanh_forward(const T* x, T* y, int64_t n);
// y is tanh's output.
template <class T>
void tanh_backward(const T* gy, const T* y, T* gx, int64_t n);

namespace vmath {

#define CNNKIT_VMATH inline __attribute__((always_inline))

template <class T>
struct ExpTraits;

template <>
struct ExpTraits<float> {
  using Bits = uint32_t;
  static constexpr int mantissa = 23, bias = 127;
  static constexpr float lo = -104.0f;        // exp rounds to 0 below
  static constexpr float hi = 88.7228391f;    // log(FLT_MAX)
  static constexpr float round = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;  // Cody-Waite split
  // expm1(r) - r - r^2/2 on |r| <= ln2/2 by Taylor terms r^3/3! ... r^7/7!.
  static CNNKIT_VMATH float poly(float r) {
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    return r + r * r * p;
  }
};

template <>
struct ExpTraits<double> {
  using Bits = uint64_t;
  static constexpr int mantissa = 52, bias = 1023;
  static constexpr double lo = -746.0;
  static constexpr double hi = 709.782712893383973;  // log(DBL_MAX)
  static constexpr double round = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double log2e = 1.44269504088896340736;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static CNNKIT_VMATH double poly(double r) {
    double p = 1.0 / 6227020800.0;  // 1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    return r + r * r * p;
  }
};

// 2^m for an integer-valued m in the normal exponent range: m + round holds m in
// its low mantissa bits, which shift straight into the exponent field.
template <class T>
CNNKIT_VMATH T pow2(T m) {
  using E = ExpTraits<T>;
  typename E::Bits b;
  const T shifted = m + E::round;
  std::memcpy(&b, &shifted, sizeof b);
  b = (b + E::bias) << E::mantissa;
  T s;
  std::memcpy(&s, &b, sizeof s);
  return s;
}

// x = n ln2 + r with |r| <= ln2/2; returns expm1(r) and 2^n as two factors, so that
// scales outside the normal range (subnormal results) need no special case.
template <class T>
CNNKIT_VMATH T reduce(T x, T& s1, T& s2) {
  using E = ExpTraits<T>;
  const T n = (x * E::log2e + E::round) - E::round;
  const T n1 = (n * T(0.5) + E::round) - E::round;
  s1 = pow2(n1);
  s2 = pow2(n - n1);
  const T r = (x - n * E::ln2_hi) - n * E::ln2_lo;
  return E::poly(r);
}

// e^x for any x (NaN propagates), within a few ulp.
template <class T>
CNNKIT_VMATH T exp(T x) {
  using E = ExpTraits<T>;
  T xc = x > E::lo ? x : E::lo;  // NaN goes through the clamp as lo, restored below
  xc = xc < E::hi ? xc : E::hi;
  T s1, s2;
  const T q = reduce(xc, s1, s2);
  T y = ((q + T(1)) * s1) * s2;
  y = x > E::hi ? std::numeric_limits<T>::infinity() : y;
  return x != x ? x : y;
}

// e^x for x <= 0 (NaN propagates through the arithmetic): the softmax family's
// x - max and sigmoid's -|x|. Without exp's overflow and NaN selects it is cheaper.
template <class T>
CNNKIT_VMATH T exp_nonpositive(T x) {
  using E = ExpTraits<T>;
  const T xc = x < E::lo ? E::lo : x;  // NaN compares false and passes through
  T s1, s2;
  const T q = reduce(xc, s1, s2);
  return ((q + T(1)) * s1) * s2;
}

// e^x - 1 for x <= 0 (NaN propagates), accurate near 0 where e^x - 1 cancels.
template <class T>
CNNKIT_VMATH T expm1_nonpositive(T x) {
  using E = ExpTraits<T>;
  const T xc = x > E::lo ? x : E::lo;
  T s1, s2;
  const T q = reduce(xc, s1, s2);
  const T s = s1 * s2;
  const T y = s * q + (s - T(1));
  return x != x ? x : y;
}

#undef CNNKIT_VMATH

}  // namespace vmath
}  // namespace cnnkit
