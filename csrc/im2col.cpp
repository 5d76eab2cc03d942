#include "im2col.h"

#include <algorithm>

#include "common/cpu_features.h"
#include "common/shapes.h"

namespace cnnkit {

namespace {
template <class T>
inline __attribute__((always_inline)) void im2col_kernel_row_impl(
    const T* plane, const ConvGeometry& g, int64_t oh0, int64_t oh1, int64_t ki, T* col,
    int64_t ld) {
  const int64_t rows = oh1 - oh0, wo = g.wo, sw = g.sw;
  for (int64_t kj = 0; kj < g.kw; ++kj) {
    T* dst = col + kj * ld;
    const int64_t off = kj * g.dw - g.pw;
    int64_t lo, hi;
    valid_range(off, sw, g.w, wo, &lo, &hi);
    for (int64_t r = 0; r < rows; ++r) {
      T* d = dst + r * wo;
      const int64_t ih = (oh0 + r) * g.sh - g.ph + ki * g.dh;
      // Inline loops rather than memcpy/memset: rows of small layers are a few dozen
      // bytes, where a library call costs more than the copy.
      if (ih < 0 || ih >= g.h) {
        for (int64_t ow = 0; ow < wo; ++ow) d[ow] = T(0);
        continue;
      }
      const T* src = plane + ih * g.w + off;
      for (int64_t ow = 0; ow < lo; ++ow) d[ow] = T(0);
      // Constant strides for the common cases, so that the gathers vectorise.
      switch (sw) {
        case 1: for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow]; break;
        case 2: for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * 2]; break;
        case 4: for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * 4]; break;
        default: for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * sw];
      }
      for (int64_t ow = hi; ow < wo; ++ow) d[ow] = T(0);
    }
  }
}

}  // namespace

// Multiversioned: the strided gathers (stride > 1) vectorise only with AVX2/AVX-512.
CNNKIT_MULTIVERSION void im2col_kernel_row(const float* plane, const ConvGeometry& g,
                                           int64_t oh0, int64_t oh1, int64_t ki, float* col,
                                           int64_t ld) {
  im2col_kernel_row_impl(plane, g, oh0, oh1, ki, col, ld);
}
CNNKIT_MULTIVERSION void im2col_kernel_row(const double* plane, const ConvGeometry& g,
                                           int64_t oh0, int64_t oh1, int64_t ki, double* col,
                                           int64_t ld) {
  im2col_kernel_row_impl(plane, g, oh0, oh1, ki, col, ld);
}

template <class T>
void col2im_channel(const T* col, int64_t ld, const ConvGeometry& g, int64_t oh0, int64_t oh1,
                    T* plane, int64_t ih0, int64_t ih1) {
  for (int64_t ih = ih0; ih < ih1; ++ih) {
    T* d = plane + ih * g.w;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      // The output row whose tap ki lands on input row ih, if any.
      const int64_t t = ih + g.ph - ki * g.dh;
      if (t < 0 || t % g.sh != 0) continue;
      const int64_t oh = t / g.sh;
      if (oh < oh0 || oh >= oh1) continue;
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T* s = col + (ki * g.kw + kj) * ld + (oh - oh0) * g.wo;
        const int64_t off = kj * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(off, g.sw, g.w, g.wo, &lo, &hi);
        if (g.sw == 1) {
          for (int64_t ow = lo; ow < hi; ++ow) d[ow + off] += s[ow];
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) d[ow * g.sw + off] += s[ow];
        }
      }
    }
  }
}

template void col2im_channel<float>(const float*, int64_t, const ConvGeometry&, int64_t,
                                    int64_t, float*, int64_t, int64_t);
template void col2im_channel<double>(const double*, int64_t, const ConvGeometry&, int64_t,
                                     int64_t, double*, int64_t, int64_t);

}  // namespace cnnkit
