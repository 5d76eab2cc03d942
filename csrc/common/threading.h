// cnnkit's own worker threads, the only parallelism in the package: OpenBLAS runs
// single-threaded and gemm() splits its work over this pool (see gemm.h), so
// parallel_for bodies must not call gemm().
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>

namespace cnnkit {

int get_num_threads();
// n >= 1.
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint sub-ranges of [0, n) covering it, in parallel
// when n / grain > 1. Runs inline when the pool is busy (a concurrent caller),
// so calls from several Python threads never oversubscribe or deadlock.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// A section of code that fork() waits for. OpenBLAS's allocator takes a lock that
// a child forked while another thread holds it would inherit held for ever, so every
// OpenBLAS call runs inside one: the fork handlers hold new sections back and wait
// until none is running, and the child starts with none.
class ForkSafeSection {
 public:
  ForkSafeSection();
  ~ForkSafeSection();
  ForkSafeSection(const ForkSafeSection&) = delete;
  ForkSafeSection& operator=(const ForkSafeSection&) = delete;
};

// The grain for items of elems_per_item elements each, so that no thread gets fewer
// than min_elems elements: below that, waking a thread costs more than it saves.
inline int64_t grain_for(int64_t elems_per_item, int64_t min_elems) {
  const int64_t per = elems_per_item > 1 ? elems_per_item : 1;
  return min_elems / per > 1 ? min_elems / per : 1;
}

// a * b * ... saturating at INT64_MAX, for work estimates of non-negative counts
// (a pooling window's size may not fit int64).
inline int64_t work_product(std::initializer_list<int64_t> factors) {
  int64_t r = 1;
  for (int64_t f : factors)
    if (__builtin_mul_overflow(r, f, &r)) return INT64_MAX;
  return r;
}

}  // namespace cnnkit
