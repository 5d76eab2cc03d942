// Winograd F(4x4, 3x3) forward convolution for 3x3 stride-1 layers, any padding,
// dilation and groups. Input tiles and filters are taken to a 6x6 transform domain,
// where the convolution is 36 independent GEMMs on OpenBLAS with a quarter of
// im2col's multiplies, and the products are transformed back into 4x4 output tiles.
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

}  // namespace cnnkit
