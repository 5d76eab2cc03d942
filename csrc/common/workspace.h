// The calling thread's scratch buffers for the GEMM-backed kernels, kept between
// calls: a fresh multi-MiB allocation per call would page-fault its way through
// every block. Slot 0 holds the lowered operand (im2col columns, Winograd filters and
// tiles), slot 1 a staging buffer (or a Winograd form's rearranged operand), slot 2 the
// packed panels of cnnkit's own sgemm (which runs inside the other slots' kernels).
#pragma once
#include <cstdint>
#include <vector>

namespace cnnkit {

template <class T>
T* workspace(int slot, int64_t n) {
  thread_local std::vector<unsigned char> buffers[3];
  auto& b = buffers[slot];
  const size_t bytes = static_cast<size_t>(n) * sizeof(T);
  if (b.size() < bytes) {
    b.clear();
    b.shrink_to_fit();
    b.resize(bytes);
  }
  return reinterpret_cast<T*>(b.data());
}

}  // namespace cnnkit
