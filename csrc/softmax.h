// Softmax family and losses on the CPU: softmax and log_softmax along one dim of any
// array, cross_entropy (fused log-softmax + NLL) and mse_loss, forward and backward.
// Arrays are C-contiguous; shapes were validated by the caller.
#pragma once
#include <cstdint>

#include "common/validate.h"

namespace cnnkit {

// x and y are seen as (d.outer, d.size, d.inner); the softmax runs along d.size.
// log selects log_softmax.
template <class T>
void softmax_forward(const T* x, T* y, const DimSplit& d, bool log);

// y is the forward output (probabilities, or log-probabilities when log).
template <class T>
void softmax_backward(const T* gy, const T* y, T* gx, const DimSplit& d, bool log);

// logits (n, c), target (n,) in [0, c). out holds n losses for Reduction::none,
// else one value (the mean of no losses is NaN, as in torch).
template <class T>
void cross_entropy_forward(const T* logits, const int64_t* target, int64_t n, int64_t c,
                           Reduction reduction, T* out);

// Gradient of the loss (upstream gradient 1, or ones for Reduction::none):
// softmax(logits) - onehot(target), divided by n for the mean.
template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, int64_t n, int64_t c,
                            Reduction reduction, T* grad);

// out holds n squared errors for Reduction::none, else one value. The sum runs in
// double over fixed blocks, so it does not depend on the thread count.
template <class T>
void mse_loss_forward(const T* x, const T* target, int64_t n, Reduction reduction, T* out);

template <class T>
void mse_loss_backward(const T* x, const T* target, int64_t n, Reduction reduction, T* grad);

}  // namespace cnnkit
