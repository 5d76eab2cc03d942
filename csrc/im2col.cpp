#include "im2col.h"

#include <algorithm>
#include <cstring>

#include "common/shapes.h"

namespace cnnkit {

template <class T>
void im2col_channel(const T* plane, const ConvGeometry& g, int64_t oh0, int64_t oh1, T* col,
                    int64_t ld) {
  const int64_t rows = oh1 - oh0;
  for (int64_t ki = 0; ki < g.kh; ++ki) {
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      T* dst = col + (ki * g.kw + kj) * ld;
      const int64_t off = kj * g.dw - g.pw;
      int64_t lo, hi;
      valid_range(off, g.sw, g.w, g.wo, &lo, &hi);
      for (int64_t r = 0; r < rows; ++r) {
        T* d = dst + r * g.wo;
        const int64_t ih = (oh0 + r) * g.sh - g.ph + ki * g.dh;
        if (ih < 0 || ih >= g.h) {
          std::fill(d, d + g.wo, T(0));
          continue;
        }
        const T* src = plane + ih * g.w + off;
        std::fill(d, d + lo, T(0));
        if (g.sw == 1) {
          std::memcpy(d + lo, src + lo, sizeof(T) * (hi - lo));
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * g.sw];
        }
        std::fill(d + hi, d + g.wo, T(0));
      }
    }
  }
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

template void im2col_channel<float>(const float*, const ConvGeometry&, int64_t, int64_t, float*,
                                    int64_t);
template void im2col_channel<double>(const double*, const ConvGeometry&, int64_t, int64_t,
                                     double*, int64_t);
template void col2im_channel<float>(const float*, int64_t, const ConvGeometry&, int64_t,
                                    int64_t, float*, int64_t, int64_t);
template void col2im_channel<double>(const double*, int64_t, const ConvGeometry&, int64_t,
                                     int64_t, double*, int64_t, int64_t);

}  // namespace cnnkit
