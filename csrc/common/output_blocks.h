// Memory for the large outputs handed to Python, kept for reuse once Python frees them.
// glibc gives a freed block of several MiB back to the kernel (munmap, or a heap trim
// once two such blocks lie free at the top), so that the next call's output faults
// its pages in again: a ReLU's forward and backward over two 9 MiB tensors took six
// times as long as the kernels themselves.
#pragma once
#include <cstddef>

namespace cnnkit {

// Outputs under this size come from numpy's allocator: malloc reuses them without faults.
constexpr size_t kKeptOutputMinBytes = size_t(1) << 20;
// The most bytes of freed blocks kept (a larger block is not kept); beyond it the oldest
// go back to malloc.
constexpr size_t kKeptOutputMaxBytes = size_t(128) << 20;

// A 64-byte aligned block of at least `bytes` (rounded up to whole pages), a kept one of
// that rounded size where there is one; nullptr when the allocation fails.
void* acquire_output_block(size_t bytes);
// Returns a block from acquire_output_block; kept for reuse or freed.
void release_output_block(void* block);
// Frees every kept block (for tests and for callers that want the memory back).
void free_kept_output_blocks();
// Bytes of freed blocks kept now.
size_t kept_output_bytes();

}  // namespace cnnkit
