// im2col and col2im on the GPU for any stride, padding, dilation and channel count, as
// csrc/im2col.cpp: the column matrix of a block of samples is (C*kH*kW, nb, rows, Wo),
// the block's samples side by side, for output rows [oh0, oh0 + rows). ph and pw are the
// padding before (top, left); the padding after only shapes Ho and Wo.
#include "common.cuh"

namespace {

// One thread per column entry; taps on the padding read 0 (a NaN weight still meets
// them in the GEMM, as on the CPU).
template <class T>
__device__ __forceinline__ void im2col(const T* __restrict__ x, T* __restrict__ col, i64 nb, i64 c,
                                       i64 h, i64 w, i64 wo, i64 kh, i64 kw, i64 sh, i64 sw,
                                       i64 ph, i64 pw, i64 dh, i64 dw, i64 oh0, i64 rows) {
  const i64 total = c * kh * kw * nb * rows * wo;
  CK_GRID_STRIDE_LOOP(i, total) {
    i64 r = i;
    const i64 ow = r % wo;
    r /= wo;
    const i64 oh = r % rows + oh0;
    r /= rows;
    const i64 s = r % nb;
    r /= nb;
    const i64 kj = r % kw;
    r /= kw;
    const i64 ki = r % kh;
    const i64 ch = r / kh;
    const i64 ih = oh * sh - ph + ki * dh;
    const i64 iw = ow * sw - pw + kj * dw;
    col[i] = (ih >= 0 && ih < h && iw >= 0 && iw < w) ? x[((s * c + ch) * h + ih) * w + iw] : T(0);
  }
}

// The adjoint as a gather: one thread per image element sums the column entries that
// map to it, in a fixed order (deterministic, no atomics). Every element of the block's
// samples is written: assigned, or added to when accumulate (later row blocks).
template <class T>
__device__ __forceinline__ void col2im(const T* __restrict__ col, T* __restrict__ x, i64 nb, i64 c,
                                       i64 h, i64 w, i64 ho, i64 wo, i64 kh, i64 kw, i64 sh,
                                       i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, i64 oh0, i64 rows,
                                       i64 accumulate) {
  const i64 total = nb * c * h * w;
  const i64 oh1 = ck::min(oh0 + rows, ho);
  CK_GRID_STRIDE_LOOP(i, total) {
    const ck::Nchw p = ck::unravel_nchw(i, c, h, w);
    const i64 s = p.n, ch = p.c, ih = p.h, iw = p.w;
    T acc = T(0);
    for (i64 ki = 0; ki < kh; ++ki) {
      const i64 th = ih + ph - ki * dh;
      if (th < 0 || th % sh != 0) continue;
      const i64 oh = th / sh;
      if (oh < oh0 || oh >= oh1) continue;
      for (i64 kj = 0; kj < kw; ++kj) {
        const i64 tw = iw + pw - kj * dw;
        if (tw < 0 || tw % sw != 0) continue;
        const i64 ow = tw / sw;
        if (ow >= wo) continue;
        acc += col[((((ch * kh + ki) * kw + kj) * nb + s) * rows + (oh - oh0)) * wo + ow];
      }
    }
    x[i] = accumulate ? x[i] + acc : acc;
  }
}

}  // namespace

#define CK_IM2COL_KERNELS(sfx, T)                                                              \
  extern "C" __global__ void im2col_##sfx(const T* x, T* col, i64 nb, i64 c, i64 h, i64 w,     \
                                          i64 wo, i64 kh, i64 kw, i64 sh, i64 sw, i64 ph,      \
                                          i64 pw, i64 dh, i64 dw, i64 oh0, i64 rows) {         \
    im2col(x, col, nb, c, h, w, wo, kh, kw, sh, sw, ph, pw, dh, dw, oh0, rows);                \
  }                                                                                            \
  extern "C" __global__ void col2im_##sfx(const T* col, T* x, i64 nb, i64 c, i64 h, i64 w,     \
                                          i64 ho, i64 wo, i64 kh, i64 kw, i64 sh, i64 sw,      \
                                          i64 ph, i64 pw, i64 dh, i64 dw, i64 oh0, i64 rows,   \
                                          i64 accumulate) {                                    \
    col2im(col, x, nb, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, oh0, rows, accumulate); \
  }
CK_FOR_FLOAT_TYPES(CK_IM2COL_KERNELS)
#undef CK_IM2COL_KERNELS
