// The one home of the output-size formulas, shared by the CPU kernels, the CUDA
// kernels (hence host/device) and, through _C, by Python and the tests.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define CNNKIT_HD __host__ __device__
#else
#define CNNKIT_HD
#endif

namespace cnnkit {

CNNKIT_HD inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// The formulas below are host-only and overflow-checked: each stores its result in
// *out and returns nullptr, or returns the name of the argument whose term does not
// fit in int64 (the validators raise a ValueError naming it). Arguments are the
// validated ones: sizes and paddings >= 0, kernel, stride and dilation >= 1.
namespace checked {
inline bool add(int64_t a, int64_t b, int64_t* r) { return !__builtin_add_overflow(a, b, r); }
inline bool sub(int64_t a, int64_t b, int64_t* r) { return !__builtin_sub_overflow(a, b, r); }
inline bool mul(int64_t a, int64_t b, int64_t* r) { return !__builtin_mul_overflow(a, b, r); }
}  // namespace checked

// Extent covered by a dilated kernel: dilation * (k - 1) + 1.
inline const char* dilated_extent(int64_t k, int64_t dilation, int64_t* out) {
  if (!checked::mul(dilation, k - 1, out) || !checked::add(*out, 1, out)) return "dilation";
  return nullptr;
}

// Output length of a convolution along one axis (may be <= 0 for invalid input).
// Padding may differ on the two sides ('same' with an even kernel).
inline const char* conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin,
                                 int64_t pad_end, int64_t dilation, int64_t* out) {
  int64_t extent, padded;
  if (const char* arg = dilated_extent(k, dilation, &extent)) return arg;
  if (!checked::add(in, pad_begin, &padded) || !checked::add(padded, pad_end, &padded))
    return "padding";
  *out = floor_div(padded - extent, stride) + 1;  // both non-negative: no overflow
  return nullptr;
}

// Output length of a transposed convolution along one axis:
// (in - 1) * stride - 2 * pad + dilation * (k - 1) + 1 + output_padding.
inline const char* conv_transpose_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad,
                                           int64_t output_padding, int64_t dilation,
                                           int64_t* out) {
  int64_t strided, extent, pads;
  if (!checked::mul(in - 1, stride, &strided)) return "stride";
  if (const char* arg = dilated_extent(k, dilation, &extent)) return arg;
  if (!checked::mul(pad, 2, &pads)) return "padding";
  if (!checked::add(strided, extent, out))  // blame the larger term
    return strided >= extent ? "stride" : dilation > 1 ? "dilation" : "kernel_size";
  if (!checked::add(*out, output_padding, out)) return "output_padding";
  if (!checked::sub(*out, pads, out)) return "padding";
  return nullptr;
}

// Output length of a pooling window along one axis, with PyTorch's ceil_mode rule:
// the last window must start inside the input or the left padding.
inline const char* pool_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad,
                                 int64_t dilation, bool ceil_mode, int64_t* out) {
  int64_t extent, span;
  if (const char* arg = dilated_extent(k, dilation, &extent)) return arg;
  if (!checked::mul(pad, 2, &span) || !checked::add(span, in, &span)) return "padding";
  span -= extent;  // both non-negative
  int64_t o;
  if (ceil_mode) {
    // ceil(span / stride), without forming span + stride - 1
    const int64_t q = floor_div(span, stride);
    o = q + (span - q * stride != 0 ? 1 : 0) + 1;
    int64_t last_start;
    if (!checked::mul(o - 1, stride, &last_start) || last_start >= in + pad) --o;
  } else {
    o = floor_div(span, stride) + 1;
  }
  *out = o;
  return nullptr;
}

}  // namespace cnnkit

namespace cnnkit {

// Range [lo, hi) of output positions o in [0, out) whose input position
// o * stride + offset falls inside [0, in). Shared by im2col, col2im and the
// direct kernels on both backends.
CNNKIT_HD inline void valid_range(int64_t offset, int64_t stride, int64_t in, int64_t out,
                                  int64_t* lo, int64_t* hi) {
  // Distances in uint64: offset and in - 1 - offset may each be near +-2**63.
  const uint64_t s = static_cast<uint64_t>(stride);
  int64_t l = 0, h = 0;
  if (offset < 0) {
    const uint64_t before = 0 - static_cast<uint64_t>(offset);
    const uint64_t skip = before / s + (before % s != 0);
    l = skip < static_cast<uint64_t>(out) ? static_cast<int64_t>(skip) : out;
  }
  if (offset <= in - 1) {
    const uint64_t span = static_cast<uint64_t>(in - 1) - static_cast<uint64_t>(offset);
    const uint64_t last = span / s;
    h = last < static_cast<uint64_t>(out) ? static_cast<int64_t>(last) + 1 : out;
  }
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

// Divisor factor of a pooling window starting at `start` along one axis: k clipped
// to the padded input (count_include_pad) or to the input. k may be near 2**63.
CNNKIT_HD inline int64_t window_count(int64_t start, int64_t k, int64_t pad, int64_t in,
                                      bool count_include_pad) {
  const int64_t end = count_include_pad ? in + pad : in;
  const int64_t stop = k < end - start ? start + k : end;
  return stop - (count_include_pad || start > 0 ? start : 0);
}

}  // namespace cnnkit
