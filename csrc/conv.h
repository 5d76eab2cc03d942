// Convolution family on the CPU: conv2d, conv_transpose2d and linear, forward and
// backward. GEMM-backed (im2col + the sgemm of common/gemm.h), with a direct 1x1 path
// (no im2col), direct vectorised kernels for depthwise and tiny-GEMM layers, and
// Winograd forwards and weight gradients (winograd.h). Arrays are C-contiguous; shapes
// were validated by the caller.
#pragma once
#include <cstdint>

#include "common/validate.h"

namespace cnnkit {

// Upper bound, in bytes, of the im2col workspace of one call (default 64 MiB).
void set_workspace_bytes(int64_t bytes);
int64_t get_workspace_bytes();

// A convolution's passes: the forward, and the two gradients of its backward.
enum class ConvPass { forward, grad_input, grad_weight };

// The kernel a pass of conv2d runs for g with elements of elem_bytes: "direct"
// (vectorised loops over planes), "winograd" or "gemm" (im2col, or the image itself
// for 1x1, times the sgemm).
const char* conv2d_algorithm(const ConvGeometry& g, int64_t elem_bytes, ConvPass pass);

template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g);

// Any of gx, gw, gb may be null to skip that gradient.
template <class T>
void conv2d_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                     const ConvGeometry& g);

// The same for conv_transpose2d, with g the adjoint geometry (below).
const char* conv_transpose2d_algorithm(const ConvGeometry& g, int64_t elem_bytes, ConvPass pass);

// g is the adjoint convolution's geometry (see conv_transpose2d_geometry):
// the transposed input x lives on its column side, the output y on its image side.
template <class T>
void conv_transpose2d_forward(const T* x, const T* w, const T* bias, T* y,
                              const ConvGeometry& g);

template <class T>
void conv_transpose2d_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                               const ConvGeometry& g);

template <class T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t n, int64_t in,
                    int64_t out);

template <class T>
void linear_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, int64_t n,
                     int64_t in, int64_t out);

}  // namespace cnnkit
