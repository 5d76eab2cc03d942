// Pooling family on the CPU: max pooling with switches, max unpooling, average and
// power-average (Lp) pooling, forward and backward, with torch.nn.functional's
// semantics. Arrays are C-contiguous NCHW; the geometry was validated by the caller
// (pool2d_geometry and friends in common/validate.h). Every kernel runs over (n, c)
// planes or output rows with parallel_for.
#pragma once
#include <cstdint>

#include "common/validate.h"

namespace cnnkit {

// y (N, C, Ho, Wo) = max over each window; padding never wins. switches, when not
// null, receives the flat index h * W + w of the winner within its plane: the first
// maximum in row-major window order, or the last NaN when the window holds NaNs
// (PyTorch's rule). With switches null no index is computed.
template <class T>
void max_pool2d_forward(const T* x, T* y, int64_t* switches, const PoolGeometry& g);

// Switch kernels. g.h, g.w: the planes the switches index; g.ho, g.wo: the planes of
// the switches. Each returns -1, or the flat position in switches of the first index
// outside [0, h * w) it met, in which case the output is undefined.

// gx (N, C, H, W) = gy scattered through the switches, overlapping windows adding up.
template <class T>
int64_t max_pool2d_backward(const T* gy, const int64_t* switches, T* gx, const PoolGeometry& g);

// y (N, C, H, W) = zeros with x written at the switches; on duplicate switches the
// last one in row-major order wins, as on PyTorch's CPU.
template <class T>
int64_t max_unpool2d_forward(const T* x, const int64_t* switches, T* y, const PoolGeometry& g);

// gx (N, C, Ho, Wo) = gy gathered at the switches.
template <class T>
int64_t max_unpool2d_backward(const T* gy, const int64_t* switches, T* gx,
                              const PoolGeometry& g);

// Window mean. The divisor counts the window clipped to the padded input when
// count_include_pad, else only the input elements in it (PyTorch's rules, which
// matter for ceil_mode windows that run past the padded input).
template <class T>
void avg_pool2d_forward(const T* x, T* y, const PoolGeometry& g, bool count_include_pad);

template <class T>
void avg_pool2d_backward(const T* gy, T* gx, const PoolGeometry& g, bool count_include_pad);

// PyTorch's lp_pool2d: (avg_pool2d(x^p) * kH * kW)^(1/p) with padding 0 and
// count_include_pad, so a ceil_mode window clipped by the input is rescaled to the
// full kernel; p = +inf is the max of |x| and p = -inf the min of |x|.
template <class T>
void lp_pool2d_forward(const T* x, T* y, double p, const PoolGeometry& g);

// Windows whose power sum is zero pass no gradient, as in PyTorch.
template <class T>
void lp_pool2d_backward(const T* gy, const T* x, T* gx, double p, const PoolGeometry& g);

}  // namespace cnnkit
