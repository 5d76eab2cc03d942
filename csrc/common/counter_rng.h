// The counter-based generator of dropout's masks and of cnnkit.data.augment's crops and
// flips: splitmix64's output for counter i of the stream seed, so that any element's
// draw is known without generating the ones before it (and one seed gives one result
// at any thread count). Plain C, so that the Cython modules (compiled as C) include it
// too; cuda/norm.cu mirrors it for the GPU, and the tests check them bit for bit.
#pragma once
#include <stdint.h>

static inline uint64_t cnnkit_splitmix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
