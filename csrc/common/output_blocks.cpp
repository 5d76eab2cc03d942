#include "output_blocks.h"

#include <cstdlib>
#include <mutex>
#include <vector>

namespace cnnkit {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kPage = 4096;

struct Cache {
  std::mutex lock;
  std::vector<void*> blocks;  // oldest first
  size_t bytes = 0;
};

// Never destroyed: an array freed during interpreter or process shutdown may still
// return its block after static destructors would have run.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

// Each block follows a header of one alignment unit that holds its usable size.
size_t& block_bytes(void* block) { return *reinterpret_cast<size_t*>(static_cast<char*>(block) - kAlign); }

void free_block(void* block) { std::free(static_cast<char*>(block) - kAlign); }

}  // namespace

void* acquire_output_block(size_t bytes) {
  const size_t rounded = (bytes + kPage - 1) / kPage * kPage;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> g(c.lock);
    for (size_t i = c.blocks.size(); i-- > 0;) {  // newest first: likeliest still in cache
      if (block_bytes(c.blocks[i]) == rounded) {
        void* block = c.blocks[i];
        c.blocks.erase(c.blocks.begin() + static_cast<std::ptrdiff_t>(i));
        c.bytes -= rounded;
        return block;
      }
    }
  }
  void* raw = std::aligned_alloc(kAlign, rounded + kAlign);
  if (!raw) return nullptr;
  void* block = static_cast<char*>(raw) + kAlign;
  block_bytes(block) = rounded;
  return block;
}

void release_output_block(void* block) {
  const size_t bytes = block_bytes(block);
  if (bytes > kKeptOutputMaxBytes) {
    free_block(block);
    return;
  }
  std::vector<void*> evicted;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> g(c.lock);
    c.blocks.push_back(block);
    c.bytes += bytes;
    size_t oldest = 0;
    while (c.bytes > kKeptOutputMaxBytes) {
      evicted.push_back(c.blocks[oldest]);
      c.bytes -= block_bytes(c.blocks[oldest]);
      ++oldest;
    }
    c.blocks.erase(c.blocks.begin(), c.blocks.begin() + static_cast<std::ptrdiff_t>(oldest));
  }
  for (void* b : evicted) free_block(b);
}

void free_kept_output_blocks() {
  std::vector<void*> blocks;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> g(c.lock);
    blocks.swap(c.blocks);
    c.bytes = 0;
  }
  for (void* b : blocks) free_block(b);
}

size_t kept_output_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> g(c.lock);
  return c.bytes;
}

}  // namespace cnnkit
