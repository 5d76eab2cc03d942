// Direct depthwise convolution (one input channel per group, C_out = mult * C_in) and the
// bias add / bias gradient of every convolution and linear layer, as csrc/conv.cpp.
// Geometry names as ConvGeometry: image side (c_in, h, w), column side (c_out, ho, wo),
// ph and pw the padding before (top, left).
#include "common.cuh"

namespace {

constexpr int kBlock = 256;  // threads of the reduction kernels (the backend's BLOCK)

// One thread per output; every tap is multiplied, padding reading 0, as the CPU's
// zero-padded planes (so a non-finite weight meets the padding alike).
template <class T>
__device__ __forceinline__ void dw_forward(const T* __restrict__ x, const T* __restrict__ wt,
                                           T* __restrict__ y, i64 n, i64 c_in, i64 h, i64 w,
                                           i64 c_out, i64 ho, i64 wo, i64 kh, i64 kw, i64 sh,
                                           i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
  const i64 mult = c_out / c_in, total = n * c_out * ho * wo;
  CK_GRID_STRIDE_LOOP(i, total) {
    const ck::Nchw p = ck::unravel_nchw(i, c_out, ho, wo);
    const i64 s = p.n, co = p.c, oh = p.h, ow = p.w;
    const T* plane = x + (s * c_in + co / mult) * h * w;
    const T* f = wt + co * kh * kw;
    T acc = T(0);
    for (i64 ki = 0; ki < kh; ++ki) {
      const i64 ih = oh * sh - ph + ki * dh;
      const bool row_in = ih >= 0 && ih < h;
      for (i64 kj = 0; kj < kw; ++kj) {
        const i64 iw = ow * sw - pw + kj * dw;
        const T v = (row_in && iw >= 0 && iw < w) ? plane[ih * w + iw] : T(0);
        acc += f[ki * kw + kj] * v;
      }
    }
    y[i] = acc;
  }
}

// Input gradient as a gather: one thread per input element sums, over its mult output
// channels and the taps that land on it, weight * grad_output.
template <class T>
__device__ __forceinline__ void dw_backward_data(const T* __restrict__ gy,
                                                 const T* __restrict__ wt, T* __restrict__ gx,
                                                 i64 n, i64 c_in, i64 h, i64 w, i64 c_out,
                                                 i64 ho, i64 wo, i64 kh, i64 kw, i64 sh, i64 sw,
                                                 i64 ph, i64 pw, i64 dh, i64 dw) {
  const i64 mult = c_out / c_in, total = n * c_in * h * w;
  CK_GRID_STRIDE_LOOP(i, total) {
    const ck::Nchw p = ck::unravel_nchw(i, c_in, h, w);
    const i64 s = p.n, ci = p.c, ih = p.h, iw = p.w;
    T acc = T(0);
    for (i64 co = ci * mult; co < (ci + 1) * mult; ++co) {
      const T* g = gy + (s * c_out + co) * ho * wo;
      const T* f = wt + co * kh * kw;
      for (i64 ki = 0; ki < kh; ++ki) {
        const i64 th = ih + ph - ki * dh;
        if (th < 0 || th % sh != 0 || th / sh >= ho) continue;
        for (i64 kj = 0; kj < kw; ++kj) {
          const i64 tw = iw + pw - kj * dw;
          if (tw < 0 || tw % sw != 0 || tw / sw >= wo) continue;
          acc += f[ki * kw + kj] * g[(th / sh) * wo + tw / sw];
        }
      }
    }
    gx[i] = acc;
  }
}

// Weight gradient: one block per tap (co, ki, kj) reduces grad_output * input over
// N * Ho * Wo through shared memory.
template <class T>
__device__ __forceinline__ void dw_backward_weight(const T* __restrict__ x,
                                                   const T* __restrict__ gy, T* __restrict__ gw,
                                                   i64 n, i64 c_in, i64 h, i64 w, i64 c_out,
                                                   i64 ho, i64 wo, i64 kh, i64 kw, i64 sh,
                                                   i64 sw, i64 ph, i64 pw, i64 dh, i64 dw) {
  __shared__ T smem[kBlock];
  const i64 mult = c_out / c_in, taps = c_out * kh * kw, len = n * ho * wo, plane = ho * wo;
  for (i64 t = blockIdx.x; t < taps; t += gridDim.x) {
    const i64 kj = t % kw, ki = (t / kw) % kh, co = t / (kh * kw);
    T acc = T(0);
    for (i64 m = threadIdx.x; m < len; m += kBlock) {
      const i64 s = m / plane, p = m % plane;
      const i64 ih = (p / wo) * sh - ph + ki * dh, iw = (p % wo) * sw - pw + kj * dw;
      const T v = (ih >= 0 && ih < h && iw >= 0 && iw < w)
                      ? x[((s * c_in + co / mult) * h + ih) * w + iw]
                      : T(0);
      acc += gy[(s * c_out + co) * plane + p] * v;
    }
    acc = ck::block_sum<kBlock>(acc, smem);
    if (threadIdx.x == 0) gw[t] = acc;
  }
}

// y (n, c, plane) += bias[c].
template <class T>
__device__ __forceinline__ void bias_add(T* __restrict__ y, const T* __restrict__ b, i64 total,
                                         i64 c, i64 plane) {
  CK_GRID_STRIDE_LOOP(i, total) y[i] += b[(i / plane) % c];
}

// gb[c] = the sum of gy (n, c, plane) over n and plane: one block per channel.
template <class T>
__device__ __forceinline__ void bias_grad(const T* __restrict__ gy, T* __restrict__ gb, i64 n,
                                          i64 c, i64 plane) {
  __shared__ T smem[kBlock];
  const i64 len = n * plane;
  for (i64 ch = blockIdx.x; ch < c; ch += gridDim.x) {
    T acc = T(0);
    for (i64 m = threadIdx.x; m < len; m += kBlock) acc += gy[((m / plane) * c + ch) * plane + m % plane];
    acc = ck::block_sum<kBlock>(acc, smem);
    if (threadIdx.x == 0) gb[ch] = acc;
  }
}

}  // namespace

#define CK_DW_ARGS                                                                          \
  i64 n, i64 c_in, i64 h, i64 w, i64 c_out, i64 ho, i64 wo, i64 kh, i64 kw, i64 sh, i64 sw, \
      i64 ph, i64 pw, i64 dh, i64 dw
#define CK_DW_PASS n, c_in, h, w, c_out, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw

#define CK_CONV_KERNELS(sfx, T)                                                                \
  extern "C" __global__ void depthwise_forward_##sfx(const T* x, const T* wt, T* y,             \
                                                     CK_DW_ARGS) {                              \
    dw_forward(x, wt, y, CK_DW_PASS);                                                          \
  }                                                                                            \
  extern "C" __global__ void depthwise_backward_data_##sfx(const T* gy, const T* wt, T* gx,     \
                                                           CK_DW_ARGS) {                        \
    dw_backward_data(gy, wt, gx, CK_DW_PASS);                                                  \
  }                                                                                            \
  extern "C" __global__ void depthwise_backward_weight_##sfx(const T* x, const T* gy, T* gw,    \
                                                             CK_DW_ARGS) {                      \
    dw_backward_weight(x, gy, gw, CK_DW_PASS);                                                 \
  }                                                                                            \
  extern "C" __global__ void bias_add_##sfx(T* y, const T* b, i64 total, i64 c, i64 plane) {   \
    bias_add(y, b, total, c, plane);                                                           \
  }                                                                                            \
  extern "C" __global__ void bias_grad_##sfx(const T* gy, T* gb, i64 n, i64 c, i64 plane) {    \
    bias_grad(gy, gb, n, c, plane);                                                            \
  }
CK_FOR_FLOAT_TYPES(CK_CONV_KERNELS)
#undef CK_CONV_KERNELS
#undef CK_DW_ARGS
#undef CK_DW_PASS
