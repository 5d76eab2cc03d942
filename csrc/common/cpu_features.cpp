#include "common/cpu_features.h"

namespace cnnkit {

std::string simd_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2, FMA)";
  return "baseline";
#else
  return "baseline";
#endif
}

}  // namespace cnnkit
