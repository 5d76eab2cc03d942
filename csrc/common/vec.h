// Small vector primitives with run-time SIMD dispatch (see cpu_features.h).
#pragma once
#include <cstdint>

namespace cnnkit {

// y[i] += a * x[i] for i in [0, n).
void axpy(float* y, const float* x, float a, int64_t n);
void axpy(double* y, const double* x, double a, int64_t n);

// out[t] += sum of g[i] * x[i + offset[t]] for i in [0, n), for each of the taps: the
// weight gradient of a correlation whose taps are flat offsets. Up to eight taps at a time
// share each load of g.
void taps_dot(const float* g, const float* x, const int64_t* offset, int64_t taps, int64_t n,
              float* out);
void taps_dot(const double* g, const double* x, const int64_t* offset, int64_t taps, int64_t n,
              double* out);

// y[i] += sum over t of w[t] * x[i + offset[t]] for i in [0, n): a correlation
// whose taps are flat offsets. Accumulates in registers across taps.
void taps_accumulate(float* y, const float* x, const int64_t* offset, const float* w,
                     int64_t taps, int64_t n);
void taps_accumulate(double* y, const double* x, const int64_t* offset, const double* w,
                     int64_t taps, int64_t n);
// y[i] = start + the same sum: no separate pass to initialise y.
void taps_assign(float* y, const float* x, const int64_t* offset, const float* w, int64_t taps,
                 int64_t n, float start);
void taps_assign(double* y, const double* x, const int64_t* offset, const double* w,
                 int64_t taps, int64_t n, double start);

}  // namespace cnnkit
