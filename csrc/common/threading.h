// cnnkit's own worker threads, the only parallelism in the package: OpenBLAS runs
// single-threaded and gemm() splits its work over this pool (see gemm.h), so
// parallel_for bodies must not call gemm().
#pragma once
#include <cstdint>
#include <functional>

namespace cnnkit {

int get_num_threads();
// n >= 1.
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint sub-ranges of [0, n) covering it, in parallel
// when n / grain > 1. Runs inline when the pool is busy (a concurrent caller),
// so calls from several Python threads never oversubscribe or deadlock.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cnnkit
