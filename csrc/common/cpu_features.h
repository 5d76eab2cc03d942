// Run-time SIMD dispatch. The default build targets baseline x86-64; functions
// marked CNNKIT_MULTIVERSION get AVX2 and AVX-512 clones, and the loader picks
// one from the CPU's features (GCC/Clang ifunc). The default clone is the
// generic path that always exists.
#pragma once
#include <string>

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define CNNKIT_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CNNKIT_MULTIVERSION
#endif

// Helpers of multiversioned kernels are forced inline, so that each clone gets its own
// vectorised copy instead of a call into the baseline one.
#define CNNKIT_INLINE inline __attribute__((always_inline))

namespace cnnkit {
// The widest SIMD level the multiversioned kernels use on this CPU.
std::string simd_level();
}  // namespace cnnkit
