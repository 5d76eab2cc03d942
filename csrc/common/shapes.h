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

// Extent covered by a dilated kernel.
CNNKIT_HD inline int64_t dilated_extent(int64_t k, int64_t dilation) {
  return dilation * (k - 1) + 1;
}

// Output length of a convolution along one axis (may be <= 0 for invalid input).
// Padding may differ on the two sides ('same' with an even kernel).
CNNKIT_HD inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin,
                                       int64_t pad_end, int64_t dilation) {
  return floor_div(in + pad_begin + pad_end - dilated_extent(k, dilation), stride) + 1;
}

// Output length of a transposed convolution along one axis.
CNNKIT_HD inline int64_t conv_transpose_out_size(int64_t in, int64_t k, int64_t stride,
                                                 int64_t pad, int64_t output_padding,
                                                 int64_t dilation) {
  return (in - 1) * stride - 2 * pad + dilated_extent(k, dilation) + output_padding;
}

// Output length of a pooling window along one axis, with PyTorch's ceil_mode rule:
// the last window must start inside the input or the left padding.
CNNKIT_HD inline int64_t pool_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad,
                                       int64_t dilation, bool ceil_mode) {
  int64_t span = in + 2 * pad - dilated_extent(k, dilation);
  int64_t out = (ceil_mode ? floor_div(span + stride - 1, stride) : floor_div(span, stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

}  // namespace cnnkit

namespace cnnkit {

// Range [lo, hi) of output positions o in [0, out) whose input position
// o * stride + offset falls inside [0, in). Shared by im2col, col2im and the
// direct kernels on both backends.
CNNKIT_HD inline void valid_range(int64_t offset, int64_t stride, int64_t in, int64_t out,
                                  int64_t* lo, int64_t* hi) {
  int64_t l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t h = in - 1 - offset >= 0 ? (in - 1 - offset) / stride + 1 : 0;
  if (h > out) h = out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

}  // namespace cnnkit
