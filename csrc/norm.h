// Dropout and normalisation layers on the CPU: dropout, batch_norm and
// local_response_norm, forward and backward. Arrays are C-contiguous; shapes were
// validated by the caller. Statistics accumulate in double for both dtypes.
#pragma once
#include <cstdint>

#include "common/validate.h"

namespace cnnkit {

// Inverted dropout: element i is kept when a hash of (seed, i) falls below 1 - p,
// so the mask depends on seed and i only, not on the thread count or the dtype.
// keep[i] is 1 or 0; y = x * keep / (1 - p), as torch's native_dropout.
template <class T>
void dropout_forward(const T* x, T* y, uint8_t* keep, int64_t n, double p, uint64_t seed);

template <class T>
void dropout_backward(const T* gy, const uint8_t* keep, T* gx, int64_t n, double p);

// x and y are (d.outer = N, d.size = C, d.inner = spatial). gamma, beta, running_mean
// and running_var may be null. Training normalises with the batch's biased variance
// and, when running stats are given, updates them in place with momentum (the
// variance with its unbiased estimate); eval normalises with the running stats.
// mean and invstd receive the C statistics used, which the backward needs.
template <class T>
void batch_norm_forward(const T* x, const T* gamma, const T* beta, T* running_mean,
                        T* running_var, T* y, double* mean, double* invstd, const DimSplit& d,
                        bool training, double momentum, double eps);

// gx, and ggamma/gbeta where not null. training selects the batch-statistics
// gradient; otherwise mean and invstd are constants and the map is affine.
template <class T>
void batch_norm_backward(const T* gy, const T* x, const T* gamma, const double* mean,
                         const double* invstd, T* gx, T* ggamma, T* gbeta, const DimSplit& d,
                         bool training);

// torch's local_response_norm: y = x / (k + alpha/size * sum of x^2 over the channel
// window [c - size/2, c + (size-1)/2]) ^ beta, x seen as (N, C, spatial). Each window
// sum (and each of the backward's) is taken over its own terms only, so its error does
// not depend on the magnitude of channels outside the window.
template <class T>
void local_response_norm_forward(const T* x, T* y, const DimSplit& d, int64_t size, double alpha,
                                 double beta, double k);

template <class T>
void local_response_norm_backward(const T* gy, const T* x, T* gx, const DimSplit& d,
                                  int64_t size, double alpha, double beta, double k);

}  // namespace cnnkit
