// Lowering between an image (C, H, W) and its column matrix (C*kH*kW, rows*Wo),
// for output rows [oh0, oh1) of one sample.
#pragma once
#include <cstdint>

#include "common/validate.h"

namespace cnnkit {

// Writes the kW column-matrix rows of kernel row ki of one channel; col points at
// row (c*kH + ki)*kW and rows are ld apart.
void im2col_kernel_row(const float* plane, const ConvGeometry& g, int64_t oh0, int64_t oh1,
                       int64_t ki, float* col, int64_t ld);
void im2col_kernel_row(const double* plane, const ConvGeometry& g, int64_t oh0, int64_t oh1,
                       int64_t ki, double* col, int64_t ld);

// Adds the kH*kW rows of channel c back into input rows [ih0, ih1) of its plane (the
// adjoint of im2col_kernel_row over every ki). Disjoint row ranges can run in parallel.
template <class T>
void col2im_channel(const T* col, int64_t ld, const ConvGeometry& g, int64_t oh0, int64_t oh1,
                    T* plane, int64_t ih0, int64_t ih1);

}  // namespace cnnkit
