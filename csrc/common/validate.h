// The one home of argument validation for the kernels. Every public op checks its
// shapes and values here, once, and the messages name the argument.
#pragma once
#include <cstdint>

#include "common/errors.h"

namespace cnnkit {

// Geometry of a 2-D convolution seen as "image side" (input) and "column side"
// (output). A transposed convolution is described by the convolution it is the
// adjoint of, so both share every kernel.
struct ConvGeometry {
  int64_t n, c_in, h, w;           // image side
  int64_t c_out, ho, wo;           // column side
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;  // ph, pw: padding before (top, left)
  int64_t groups;
  int64_t c_in_g() const { return c_in / groups; }
  int64_t c_out_g() const { return c_out / groups; }
  int64_t k_g() const { return c_in_g() * kh * kw; }
  int64_t plane_in() const { return h * w; }
  int64_t plane_out() const { return ho * wo; }
  // Some operand or result has a zero-size dim: every sum a result holds is empty.
  bool degenerate() const {
    return n == 0 || c_in_g() == 0 || c_out_g() == 0 || plane_in() == 0 || plane_out() == 0;
  }
  bool pointwise() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
  }
};

struct Pair {
  int64_t h, w;
};

// Padding as (top, bottom, left, right): 'same' can be asymmetric.
struct Padding {
  int64_t top, bottom, left, right;
};

void check_ndim(const char* op, const char* name, const Shape& s, size_t ndim, const char* layout);
void check_shape(const char* op, const char* name, const Shape& got, const Shape& expected);
void check_positive(const char* op, const char* name, Pair v);
void check_non_negative(const char* op, const char* name, Pair v);

// conv2d: x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or null.
ConvGeometry conv2d_geometry(const char* op, const Shape& x, const Shape& weight, const Shape* bias, Pair stride,
                             Padding padding, Pair dilation, int64_t groups);

// conv_transpose2d: x (N, C_in, H, W), weight (C_in, C_out/groups, kH, kW).
// The result describes the adjoint convolution: its image side is the output.
ConvGeometry conv_transpose2d_geometry(const char* op, const Shape& x, const Shape& weight, const Shape* bias,
                                       Pair stride, Pair padding, Pair output_padding,
                                       int64_t groups, Pair dilation);

// linear: x (N, in), weight (out, in), bias (out,) or null.
void check_linear(const char* op, const Shape& x, const Shape& weight, const Shape* bias);

// ---- Pooling

// Geometry of a 2-D pooling: n * c planes, each (h, w) on the input side and (ho, wo)
// on the pooled side. max_unpool2d is described by the pooling it inverts: its
// input is the pooled side and its output the input side.
struct PoolGeometry {
  int64_t n, c, h, w, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  bool ceil_mode;
  int64_t planes() const { return n * c; }
  int64_t plane_in() const { return h * w; }
  int64_t plane_out() const { return ho * wo; }
};

// max_pool2d, avg_pool2d, lp_pool2d: x (N, C, H, W); stride as resolved by the caller
// (None is kernel_size). Checks PyTorch's rules: positive kernel_size, stride and
// dilation, padding at most half of kernel_size, and a positive output size.
PoolGeometry pool2d_geometry(const char* op, const Shape& x, Pair kernel, Pair stride,
                             Pair padding, Pair dilation, bool ceil_mode);

// The input_shape argument of a pooling backward: 4 non-negative values (N, C, H, W).
Shape pool2d_input_shape(const char* op, const std::vector<int64_t>& input_shape);

// max_pool2d_backward (pooled: grad_output, full: input_shape) and max_unpool2d_backward
// (pooled: switches, full: grad_output): two (N, C, ., .) shapes with the same N and C,
// the switches of the pooled planes indexing the full planes. Kernel fields are unset.
PoolGeometry switches_geometry(const char* op, const char* pooled_name, const Shape& pooled,
                               const char* full_name, const Shape& full);

// max_unpool2d: x (N, C, H, W) pooled; output_size null (PyTorch's default
// (H - 1) * stride - 2 * padding + kernel_size), (H_out, W_out) or (N, C, H_out, W_out),
// each within stride of the default, as PyTorch requires.
PoolGeometry max_unpool2d_geometry(const char* op, const Shape& x, Pair kernel, Pair stride,
                                   Pair padding, const std::vector<int64_t>* output_size);

// Raises if position >= 0: switches (of the given shape) holds at that flat position
// the value, which is not in [0, plane), the size of the plane it indexes.
void check_switch(const char* op, const Shape& switches, int64_t position, int64_t value,
                  int64_t plane);

// lp_pool2d: a non-zero norm_type (finite, or +-inf for the max of |x| / the min of |x|).
void check_norm_type(const char* op, double norm_type);

// ---- Activations, softmax, losses and normalisation

// An array seen as (outer, size, inner) around one of its dims.
struct DimSplit {
  int64_t outer, size, inner;
};

// dim of an ndim-D array (a 0-D array counts as 1-D, as in torch) wrapped to
// [0, ndim); out of range throws std::out_of_range, which Python sees as IndexError.
int64_t wrap_dim(const char* op, int64_t dim, size_t ndim);
DimSplit split_at_dim(const Shape& s, int64_t dim);

enum class Reduction { none, mean, sum };
Reduction parse_reduction(const char* op, const std::string& reduction);

// cross_entropy: logits (N, C), target (N,) of class indices in [0, C).
void check_cross_entropy(const char* op, const Shape& logits, const Shape& target);
void check_class_indices(const char* op, const char* name, const int64_t* target, int64_t n,
                         int64_t classes);

// A probability in [0, 1).
void check_dropout_p(const char* op, double p);

// batch_norm: x (N, C, ...) with at least 2 dims, per-channel arrays (C,) or null.
// Returns x as (N, C, spatial).
DimSplit check_batch_norm_input(const char* op, const Shape& x, const Shape* gamma,
                                const Shape* beta);
// The forward's checks: the above, plus running stats (required in eval), eps and,
// in training, more than one value per channel.
DimSplit check_batch_norm(const char* op, const Shape& x, const Shape* gamma, const Shape* beta,
                          const Shape* running_mean, const Shape* running_var, bool training,
                          double eps);

// local_response_norm: x (N, C, ...) with at least 3 dims, size >= 1. Returns x as
// (N, C, spatial).
DimSplit check_local_response_norm(const char* op, const Shape& x, int64_t size);

}  // namespace cnnkit
