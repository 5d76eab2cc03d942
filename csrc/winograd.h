// Winograd convolution: F(4x4, 3x3), F(2x2, 5x5), F(3x3, 4x4) and F(5x5, 2x2) for
// stride-1 layers with any padding, dilation and groups. Input tiles and filters are
// taken to a 6x6 transform domain, where the convolution is 36 independent GEMMs with a
// quarter to a third of im2col's multiplies, and the products are transformed back; the
// weight gradient runs the same transforms backwards. Strided layers whose kernel has
// the same taps per stride phase along both axes (AlexNet's 11x11 stride 4: 3) run
// through their space-to-depth form, strided transposed convolutions through the
// stride-1 convolution of their stacked output phases, and stride-1 transposed ones
// (and input gradients) as the stride-1 convolution by the reversed, transposed kernel.
#pragma once
#include <cstdint>

#include "common/validate.h"

namespace cnnkit {

// Whether the Winograd path is valid for g, pays off, and fits its transformed
// filters plus one row of tiles in workspace_bytes.
bool winograd_applies(const ConvGeometry& g, int64_t elem_bytes, int64_t workspace_bytes);

// y = conv2d(x, w) + bias (bias may be null), within workspace_bytes of scratch.
// Returns false, with y unfinished, when an output comes out NaN or infinite: a NaN or
// infinity in x or w spreads over whole tiles in the transform domain, further than
// it reaches in a direct convolution, so the caller must run another path.
template <class T>
bool winograd_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g,
                      int64_t workspace_bytes);

// gw = conv2d's weight gradient for input x and output gradient gy, on the path
// winograd_forward takes for g (valid where winograd_applies), within workspace_bytes of
// scratch. Returns false, with gw unfinished, when a result comes out NaN or infinite.
template <class T>
bool winograd_weight_grad(const T* x, const T* gy, T* gw, const ConvGeometry& g,
                          int64_t workspace_bytes);

// The same for conv_transpose2d; g is the adjoint geometry (see conv.h).
bool winograd_transpose_applies(const ConvGeometry& g, int64_t elem_bytes,
                                int64_t workspace_bytes);

template <class T>
bool winograd_transpose_forward(const T* x, const T* w, const T* bias, T* y,
                                const ConvGeometry& g, int64_t workspace_bytes);

}  // namespace cnnkit
