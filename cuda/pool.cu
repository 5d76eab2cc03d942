// Pooling on the GPU: max pooling with switches, switch scatter/gather (max_pool2d
// backward, max unpooling and its backward), average and Lp pooling, forward and
// backward, with the semantics of csrc/pool.cpp. Arrays are C-contiguous NCHW; the
// geometry was validated by _C (pool2d_geometry and friends) and comes as i64 scalars.
#include "common.cuh"

#define CK_POOL_BLOCK 256  // threads of the per-plane switch kernel (the backend's block)

// The geometry parameters of a pooling kernel and the struct built from them.
#define CK_POOL_GEOM_PARAMS \
  i64 planes, i64 h, i64 w, i64 ho, i64 wo, i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw
#define CK_POOL_GEOM {planes, h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw}

namespace {

struct Geom {
  i64 planes, h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw;
  __device__ i64 plane_in() const { return h * w; }
  __device__ i64 plane_out() const { return ho * wo; }
};

// The CPU's rule (not ck::greater): a strictly greater value or any NaN takes the
// window, so ties keep the first maximum and the last NaN wins.
template <class T>
__device__ __forceinline__ bool takes_max(T v, T m) {
  return v > m || v != v;
}

// What a max window compares: x, |x| (lp_pool2d at +inf) or -|x| (at -inf).
enum Transform { kPlain = 0, kAbs = 1, kNegAbs = 2 };

template <int Tr, class T>
__device__ __forceinline__ T transformed(T v) {
  if (Tr == kAbs) return ck::fabs(v);
  if (Tr == kNegAbs) return -ck::fabs(v);
  return v;
}

// Max over output o's window of plane xp (clipped to the input), and the flat index of
// the winner as the CPU's max_window computes it.
template <int Tr, class T>
__device__ __forceinline__ T max_window(const T* __restrict__ xp, const Geom& g, i64 oh, i64 ow,
                                        i64* best_out) {
  const i64 ih0 = oh * g.sh - g.ph, iw0 = ow * g.sw - g.pw;
  i64 rlo, rhi, clo, chi;
  ck::valid_range(ih0, g.dh, g.h, g.kh, &rlo, &rhi);
  ck::valid_range(iw0, g.dw, g.w, g.kw, &clo, &chi);
  T m = -ck::infinity<T>();
  i64 best = (ih0 + rlo * g.dh) * g.w + iw0 + clo * g.dw;
  for (i64 i = rlo; i < rhi; ++i) {
    const i64 row = (ih0 + i * g.dh) * g.w;
    for (i64 j = clo; j < chi; ++j) {
      const i64 at = row + iw0 + j * g.dw;
      const T v = transformed<Tr>(xp[at]);
      if (takes_max(v, m)) {
        m = v;
        best = at;
      }
    }
  }
  *best_out = best;
  return m;
}

template <int Tr, class T>
__device__ __forceinline__ void max_pool(const T* __restrict__ x, T* __restrict__ y,
                                         i64* __restrict__ switches, int with_switches,
                                         const Geom g) {
  const i64 n = g.planes * g.plane_out();
  CK_GRID_STRIDE_LOOP(o, n) {
    const i64 p = o / g.plane_out(), r = o - p * g.plane_out();
    i64 best;
    const T m = max_window<Tr>(x + p * g.plane_in(), g, r / g.wo, r % g.wo, &best);
    if (y) y[o] = Tr == kNegAbs ? -m : m;
    if (with_switches) switches[o] = best;
  }
}

// Output positions [lo, hi] (clipped to [0, out)) of the stride-1-dilation windows of
// size k (stride s, padding pad) that contain input position i.
__device__ __forceinline__ void windows_containing(i64 i, i64 k, i64 s, i64 pad, i64 out, i64* lo,
                                                   i64* hi) {
  *lo = ck::max(ck::floor_div(i + pad - k, s) + 1, 0);
  *hi = ck::min((i + pad) / s, out - 1);
}

template <class T>
__device__ __forceinline__ T divisor(const Geom& g, i64 oh, i64 ow, int count_include_pad) {
  const T rc = static_cast<T>(ck::window_count(oh * g.sh - g.ph, g.kh, g.ph, g.h, count_include_pad));
  const T cc = static_cast<T>(ck::window_count(ow * g.sw - g.pw, g.kw, g.pw, g.w, count_include_pad));
  return rc * cc;
}

// Window sum (row-major taps from zero, as the CPU) of f(x) over output (oh, ow).
template <class T, class F>
__device__ __forceinline__ T window_sum(const T* __restrict__ xp, const Geom& g, i64 oh, i64 ow, F f) {
  const i64 ih0 = oh * g.sh - g.ph, iw0 = ow * g.sw - g.pw;
  i64 rlo, rhi, clo, chi;
  ck::valid_range(ih0, 1, g.h, g.kh, &rlo, &rhi);
  ck::valid_range(iw0, 1, g.w, g.kw, &clo, &chi);
  T sum = T(0);
  for (i64 i = rlo; i < rhi; ++i)
    for (i64 j = clo; j < chi; ++j) sum += f(xp[(ih0 + i) * g.w + iw0 + j]);
  return sum;
}

// Gather of input element e (plane p, row ih, column iw): the sum of share(p, oh, ow)
// over the windows (oh, ow) holding it, in row-major output order.
template <class T, class F>
__device__ __forceinline__ T window_gather(const Geom& g, i64 ih, i64 iw, F share) {
  i64 olo, ohi, wlo, whi;
  windows_containing(ih, g.kh, g.sh, g.ph, g.ho, &olo, &ohi);
  windows_containing(iw, g.kw, g.sw, g.pw, g.wo, &wlo, &whi);
  T acc = T(0);
  for (i64 oh = olo; oh <= ohi; ++oh)
    for (i64 ow = wlo; ow <= whi; ++ow) acc += share(oh, ow);
  return acc;
}

// x^p as the CPU's power().
template <class T>
__device__ __forceinline__ T power(T x, double p) {
  if (p == 2) return x * x;
  if (p == 1) return x;
  return ck::pow(x, static_cast<T>(p));
}

// sgn(x) with sgn(0) = sgn(NaN) = 0.
template <class T>
__device__ __forceinline__ T sign(T x) {
  return static_cast<T>((x > T(0)) - (x < T(0)));
}

template <class T>
struct Power {
  double p;
  __device__ T operator()(T v) const { return power(v, p); }
};

template <class T>
struct Identity {
  __device__ T operator()(T v) const { return v; }
};

// ---- Switch kernels

// gx = zeros with gy added at the switches, plane p by block (grid-stride over planes).
// The switches carry no window geometry, so a gather over windows is impossible; a
// float atomicAdd scatter would add in a timing-dependent order. Instead each block
// takes its plane's switches in order, 256 at a time: the first thread of each group
// of equal targets in the chunk adds the group's gradients in order. So every input
// gets its sum in ascending switch order, the CPU's exact sequence of additions.
// Out-of-range switches are skipped (the backend reports the first one).
template <class T>
__device__ __forceinline__ void switch_scatter_add(const T* __restrict__ gy, const i64* __restrict__ switches,
                                                   T* __restrict__ gx, i64 planes, i64 count, i64 plane) {
  __shared__ i64 s_at[CK_POOL_BLOCK];
  __shared__ T s_g[CK_POOL_BLOCK];
  const int t = (int)threadIdx.x;
  for (i64 p = blockIdx.x; p < planes; p += gridDim.x) {
    T* gxp = gx + p * plane;
    for (i64 k = t; k < plane; k += CK_POOL_BLOCK) gxp[k] = T(0);
    __syncthreads();
    for (i64 base = 0; base < count; base += CK_POOL_BLOCK) {
      const int len = (int)ck::min(CK_POOL_BLOCK, count - base);
      i64 at = -1;
      T g = T(0);
      if (t < len) {
        at = switches[p * count + base + t];
        if ((unsigned long long)at >= (unsigned long long)plane) at = -1;
        g = gy[p * count + base + t];
      }
      s_at[t] = at;
      s_g[t] = g;
      __syncthreads();
      if (at >= 0) {
        bool first = true;
        for (int u = 0; u < t; ++u)
          if (s_at[u] == at) {
            first = false;
            break;
          }
        if (first) {
          T v = gxp[at];
          for (int u = t; u < len; ++u)
            if (s_at[u] == at) v += s_g[u];
          gxp[at] = v;
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace

// found[0] = min(found[0], the flat positions of switches outside [0, plane)); the
// backend fills it with n first.
extern "C" __global__ void switches_first_bad(const i64* switches, i64 n, i64 plane, i64* found) {
  CK_GRID_STRIDE_LOOP(i, n) {
    if ((unsigned long long)switches[i] >= (unsigned long long)plane) atomicMin(found, i);
  }
}

// found[1] = the value of the first bad switch (0 if none): one thread.
extern "C" __global__ void switches_report(const i64* switches, i64 n, i64* found) {
  if (blockIdx.x == 0 && threadIdx.x == 0) found[1] = found[0] < n ? switches[found[0]] : 0;
}

// winner[p * plane + s] = the last position (within plane p's count switches) whose
// switch is s: max_unpool2d's rule for duplicates. winner is filled with -1 first;
// integer maxima do not depend on the order of the atomics.
extern "C" __global__ void max_unpool2d_winners(const i64* switches, i64* winner, i64 n, i64 count,
                                                i64 plane) {
  CK_GRID_STRIDE_LOOP(i, n) {
    const i64 s = switches[i];
    if ((unsigned long long)s < (unsigned long long)plane) {
      const i64 p = i / count;
      atomicMax(winner + p * plane + s, i - p * count);
    }
  }
}

#define CK_POOL_KERNELS(sfx, T)                                                                       \
  extern "C" __global__ void max_pool2d_forward_##sfx(const T* x, T* y, i64* switches,              \
                                                      int with_switches, CK_POOL_GEOM_PARAMS) {     \
    max_pool<kPlain>(x, y, switches, with_switches, Geom CK_POOL_GEOM);                            \
  }                                                                                                 \
  extern "C" __global__ void __launch_bounds__(CK_POOL_BLOCK)                                       \
      max_pool2d_backward_##sfx(const T* gy, const i64* switches, T* gx, i64 planes, i64 count,     \
                                i64 plane) {                                                        \
    switch_scatter_add(gy, switches, gx, planes, count, plane);                                     \
  }                                                                                                 \
  /* y (total elements of the full planes) from the winners of max_unpool2d_winners. */            \
  extern "C" __global__ void max_unpool2d_forward_##sfx(const T* x, const i64* winner, T* y,        \
                                                        i64 total, i64 count, i64 plane) {          \
    CK_GRID_STRIDE_LOOP(j, total) {                                                                 \
      const i64 k = winner[j];                                                                      \
      y[j] = k >= 0 ? x[(j / plane) * count + k] : T(0);                                            \
    }                                                                                               \
  }                                                                                                 \
  /* gx (n switch positions) = gy gathered at the switches; 0 at a bad one. */                      \
  extern "C" __global__ void max_unpool2d_backward_##sfx(const T* gy, const i64* switches, T* gx,   \
                                                         i64 n, i64 count, i64 plane) {             \
    CK_GRID_STRIDE_LOOP(i, n) {                                                                     \
      const i64 s = switches[i];                                                                    \
      gx[i] = (unsigned long long)s < (unsigned long long)plane ? gy[(i / count) * plane + s]       \
                                                                : T(0);                             \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void avg_pool2d_forward_##sfx(const T* x, T* y, int count_include_pad,      \
                                                      CK_POOL_GEOM_PARAMS) {                        \
    const Geom g CK_POOL_GEOM;                                                                      \
    CK_GRID_STRIDE_LOOP(o, g.planes * g.plane_out()) {                                              \
      const i64 p = o / g.plane_out(), r = o - p * g.plane_out(), oh = r / g.wo, ow = r % g.wo;     \
      y[o] = window_sum(x + p * g.plane_in(), g, oh, ow, Identity<T>()) /                           \
             divisor<T>(g, oh, ow, count_include_pad);                                              \
    }                                                                                               \
  }                                                                                                 \
  /* One thread per input element, gathering the shares of the windows holding it. */              \
  extern "C" __global__ void avg_pool2d_backward_##sfx(const T* gy, T* gx, int count_include_pad,   \
                                                       CK_POOL_GEOM_PARAMS) {                       \
    const Geom g CK_POOL_GEOM;                                                                      \
    CK_GRID_STRIDE_LOOP(e, g.planes * g.plane_in()) {                                               \
      const i64 p = e / g.plane_in(), r = e - p * g.plane_in();                                     \
      const T* gp = gy + p * g.plane_out();                                                         \
      gx[e] = window_gather<T>(g, r / g.w, r % g.w, [&](i64 oh, i64 ow) {                           \
        return gp[oh * g.wo + ow] / divisor<T>(g, oh, ow, count_include_pad);                       \
      });                                                                                           \
    }                                                                                               \
  }                                                                                                 \
  /* PyTorch's (avg_pool2d(x^p) * kH * kW)^(1/p); p = +-inf: +-max(+-|x|). */                        \
  extern "C" __global__ void lp_pool2d_forward_##sfx(const T* x, T* y, double p,                    \
                                                     CK_POOL_GEOM_PARAMS) {                         \
    const Geom g CK_POOL_GEOM;                                                                      \
    if (p == ck::infinity<double>()) {                                                              \
      max_pool<kAbs>(x, y, (i64*)0, 0, g);                                                          \
      return;                                                                                       \
    }                                                                                               \
    if (p == -ck::infinity<double>()) {                                                             \
      max_pool<kNegAbs>(x, y, (i64*)0, 0, g);                                                       \
      return;                                                                                       \
    }                                                                                               \
    const T k = static_cast<T>(g.kh) * g.kw, inv = static_cast<T>(1 / p);                           \
    CK_GRID_STRIDE_LOOP(o, g.planes * g.plane_out()) {                                              \
      const i64 q = o / g.plane_out(), r = o - q * g.plane_out(), oh = r / g.wo, ow = r % g.wo;     \
      T s = window_sum(x + q * g.plane_in(), g, oh, ow, Power<T>{p}) / divisor<T>(g, oh, ow, 1);    \
      s *= k;                                                                                       \
      y[o] = p == 2 ? ck::sqrt(s) : ck::pow(s, inv);                                                \
    }                                                                                               \
  }                                                                                                 \
  /* Finite p: coef = gy * kH * kW * out^(1/p - 1), 0 where the power sum out is 0. */              \
  extern "C" __global__ void lp_pool2d_backward_coef_##sfx(const T* gy, const T* x, T* coef,        \
                                                           double p, CK_POOL_GEOM_PARAMS) {         \
    const Geom g CK_POOL_GEOM;                                                                      \
    const T k = static_cast<T>(g.kh) * g.kw, e = static_cast<T>(1 / p - 1);                         \
    CK_GRID_STRIDE_LOOP(o, g.planes * g.plane_out()) {                                              \
      const i64 q = o / g.plane_out(), r = o - q * g.plane_out(), oh = r / g.wo, ow = r % g.wo;     \
      T s = window_sum(x + q * g.plane_in(), g, oh, ow, Power<T>{p}) / divisor<T>(g, oh, ow, 1);    \
      s *= k;                                                                                       \
      const T scale = p == 2 ? T(1) / ck::sqrt(s) : ck::pow(s, e);                                  \
      coef[o] = s != T(0) ? gy[o] * k * scale : T(0);                                               \
    }                                                                                               \
  }                                                                                                 \
  /* Finite p: gx = (avg_pool2d backward of coef) * x^(p-1). */                                     \
  extern "C" __global__ void lp_pool2d_backward_input_##sfx(const T* coef, const T* x, T* gx,       \
                                                            double p, CK_POOL_GEOM_PARAMS) {        \
    const Geom g CK_POOL_GEOM;                                                                      \
    CK_GRID_STRIDE_LOOP(e, g.planes * g.plane_in()) {                                               \
      const i64 q = e / g.plane_in(), r = e - q * g.plane_in();                                     \
      const T* cp = coef + q * g.plane_out();                                                       \
      const T acc = window_gather<T>(g, r / g.w, r % g.w, [&](i64 oh, i64 ow) {                     \
        return cp[oh * g.wo + ow] / divisor<T>(g, oh, ow, 1);                                       \
      });                                                                                           \
      gx[e] = acc * power(x[e], p - 1);                                                             \
    }                                                                                               \
  }                                                                                                 \
  /* p = +-inf: the switches of the max pool of +-|x|. */                                           \
  extern "C" __global__ void lp_pool2d_switches_##sfx(const T* x, i64* switches, double p,          \
                                                      CK_POOL_GEOM_PARAMS) {                        \
    if (p > 0)                                                                                      \
      max_pool<kAbs>(x, (T*)0, switches, 1, Geom CK_POOL_GEOM);                                     \
    else                                                                                            \
      max_pool<kNegAbs>(x, (T*)0, switches, 1, Geom CK_POOL_GEOM);                                  \
  }                                                                                                 \
  /* p = +-inf: gx = the sum of gy * sgn(x) over the windows that x wins. */                        \
  extern "C" __global__ void lp_pool2d_backward_inf_##sfx(const T* gy, const i64* switches,         \
                                                          const T* x, T* gx, CK_POOL_GEOM_PARAMS) { \
    const Geom g CK_POOL_GEOM;                                                                      \
    CK_GRID_STRIDE_LOOP(e, g.planes * g.plane_in()) {                                               \
      const i64 q = e / g.plane_in(), r = e - q * g.plane_in();                                     \
      const i64* sp = switches + q * g.plane_out();                                                 \
      const T* gp = gy + q * g.plane_out();                                                         \
      const T s = sign(x[e]);                                                                       \
      gx[e] = window_gather<T>(g, r / g.w, r % g.w, [&](i64 oh, i64 ow) {                           \
        const i64 o = oh * g.wo + ow;                                                               \
        return sp[o] == r ? gp[o] * s : T(0);                                                       \
      });                                                                                           \
    }                                                                                               \
  }

CK_FOR_FLOAT_TYPES(CK_POOL_KERNELS)
#undef CK_POOL_KERNELS
