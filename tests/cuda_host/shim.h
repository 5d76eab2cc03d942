// Host shim: compiles the CUDA kernels of cuda/*.cu as C++20 (g++), so that the tests
// run every kernel on the CPU over its whole launch grid.
//
// A launch runs its blocks one at a time, each with blockDim.x * y * z real threads
// (created once per launch, reused across blocks). So __syncthreads is a true barrier
// among one block's threads, and a __shared__ variable (a function-local static here)
// is exactly the running block's shared memory. Launches are serialised.
#pragma once

#include <math.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define CNNKIT_CUDA_HOST 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __constant__ static const
#define __align__(n) alignas(n)
#define __launch_bounds__(...)

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace cuda_host {
// The running block's barrier and dynamic shared memory, set by the launcher while
// the block's threads wait.
inline std::barrier<>* block_barrier = nullptr;
inline unsigned char* dynamic_shared_memory = nullptr;
inline void* dynamic_shared() { return dynamic_shared_memory; }
}  // namespace cuda_host

inline void __syncthreads() { cuda_host::block_barrier->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() { throw std::runtime_error("__trap() called in a kernel"); }

// ---- Atomics

template <class T>
inline T cuda_host_atomic_add(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
inline int atomicAdd(int* a, int v) { return cuda_host_atomic_add(a, v); }
inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { return cuda_host_atomic_add(a, v); }
inline long long atomicAdd(long long* a, long long v) { return cuda_host_atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return cuda_host_atomic_add(a, v);
}
inline float atomicAdd(float* a, float v) { return cuda_host_atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return cuda_host_atomic_add(a, v); }

template <class T, class F>
inline T cuda_host_atomic_update(T* address, F f) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (!ref.compare_exchange_weak(old, f(old))) {
  }
  return old;
}
#define CUDA_HOST_ATOMIC_MINMAX(T)                                                         \
  inline T atomicMax(T* a, T v) {                                                          \
    return cuda_host_atomic_update(a, [v](T o) { return o < v ? v : o; });                 \
  }                                                                                        \
  inline T atomicMin(T* a, T v) {                                                          \
    return cuda_host_atomic_update(a, [v](T o) { return v < o ? v : o; });                 \
  }                                                                                        \
  inline T atomicExch(T* a, T v) { return std::atomic_ref<T>(*a).exchange(v); }            \
  inline T atomicCAS(T* a, T compare, T v) {                                               \
    std::atomic_ref<T>(*a).compare_exchange_strong(compare, v);                            \
    return compare;                                                                        \
  }
CUDA_HOST_ATOMIC_MINMAX(int)
CUDA_HOST_ATOMIC_MINMAX(unsigned int)
CUDA_HOST_ATOMIC_MINMAX(long long)
CUDA_HOST_ATOMIC_MINMAX(unsigned long long)
#undef CUDA_HOST_ATOMIC_MINMAX
inline float atomicExch(float* a, float v) { return std::atomic_ref<float>(*a).exchange(v); }

// ---- Device intrinsics that have no host spelling

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline unsigned int __float_as_uint(float f) {
  unsigned int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline float __uint_as_float(unsigned int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline double __longlong_as_double(long long i) {
  double d;
  std::memcpy(&d, &i, sizeof d);
  return d;
}
inline long long __double_as_longlong(double d) {
  long long i;
  std::memcpy(&i, &d, sizeof i);
  return i;
}
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return (unsigned int)(((unsigned long long)a * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
// CUDA's global min/max overloads.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- The launcher

namespace cuda_host {

inline std::mutex launch_mutex;

// Runs body() for every thread of every block; returns an error message or "".
template <class Body>
std::string run_grid(const unsigned* g, const unsigned* b, unsigned long long shared_bytes,
                     Body&& body) {
  const dim3 grid(g[0], g[1], g[2]), block(b[0], b[1], b[2]);
  // The limits of every current GPU (compute capability 7.0 and later).
  if (block.x < 1 || block.y < 1 || block.z < 1 || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || (unsigned long long)block.x * block.y * block.z > 1024)
    return "invalid block dimensions (at most 1024 threads, z at most 64)";
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535)
    return "invalid grid dimensions (x in [1, 2**31), y and z in [1, 65535])";
  if (shared_bytes > 48 * 1024) return "more than 48 KiB of dynamic shared memory";

  std::lock_guard<std::mutex> lock(launch_mutex);
  const unsigned threads = block.x * block.y * block.z;
  const unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
  // Uninitialised shared memory reads as NaN (all bits set), as a kernel that reads it
  // before writing deserves.
  std::vector<unsigned char> smem(shared_bytes + 16);
  unsigned char* smem_base = smem.data() + (16 - reinterpret_cast<uintptr_t>(smem.data()) % 16) % 16;

  std::barrier<> gate(threads + 1);  // the block's threads and this one
  std::optional<std::barrier<>> sync;
  unsigned long long current = 0;
  bool done = false;
  std::mutex error_mutex;
  std::string error;

  auto worker = [&](unsigned tid) {
    threadIdx = {tid % block.x, (tid / block.x) % block.y, tid / (block.x * block.y)};
    blockDim = block;
    gridDim = grid;
    for (;;) {
      gate.arrive_and_wait();
      if (done) return;
      const unsigned long long c = current;
      blockIdx = {(unsigned)(c % grid.x), (unsigned)((c / grid.x) % grid.y),
                  (unsigned)(c / ((unsigned long long)grid.x * grid.y))};
      try {
        body();
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> l(error_mutex);
        if (error.empty()) error = e.what();
      }
      // A thread that returned no longer holds back the barrier (as on a GPU).
      sync->arrive_and_drop();
      gate.arrive_and_wait();
    }
  };

  std::vector<std::thread> pool;
  pool.reserve(threads);
  try {
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  } catch (const std::exception& e) {
    // Could not start every thread: stand in for the missing ones, end the others.
    done = true;
    for (size_t t = pool.size(); t < threads; ++t) gate.arrive_and_drop();
    gate.arrive_and_wait();
    for (auto& t : pool) t.join();
    return std::string("could not start the block's threads: ") + e.what();
  }
  for (unsigned long long c = 0; c < blocks && error.empty(); ++c) {
    current = c;
    sync.emplace(threads);
    block_barrier = &*sync;
    std::fill(smem_base, smem_base + shared_bytes, (unsigned char)0xFF);
    dynamic_shared_memory = smem_base;
    gate.arrive_and_wait();  // the block starts
    gate.arrive_and_wait();  // the block has ended
  }
  done = true;
  gate.arrive_and_wait();
  for (auto& t : pool) t.join();
  block_barrier = nullptr;
  dynamic_shared_memory = nullptr;
  return error;
}

template <class... P, std::size_t... I>
void call_kernel(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_cv_t<P>*>(args[I])...);
}

// The entry point of one kernel's generated wrapper: 0, or 1 with the message in err.
template <class... P>
int launch(void (*kernel)(P...), const unsigned* grid, const unsigned* block, void** args,
           unsigned long long shared_bytes, char* err, unsigned long long err_size) {
  std::string e;
  try {
    e = run_grid(grid, block, shared_bytes,
                 [&] { call_kernel(kernel, args, std::index_sequence_for<P...>{}); });
  } catch (const std::exception& ex) {
    e = ex.what();
  }
  if (e.empty()) return 0;
  std::snprintf(err, err_size, "%s", e.c_str());
  return 1;
}

// Parameter type codes for the Python side's argument checks: a scalar is one letter
// (NumPy's: f d b B h H i I q Q ?), a pointer is "p" (written) or "P" (const) and its
// element's letter; "x" is a type the tests cannot pass.
template <class T>
struct scalar_code {
  static constexpr char value = 'x';
};
#define CUDA_HOST_CODE(T, c)              \
  template <>                             \
  struct scalar_code<T> {                 \
    static constexpr char value = c;      \
  };
CUDA_HOST_CODE(float, 'f')
CUDA_HOST_CODE(double, 'd')
CUDA_HOST_CODE(signed char, 'b')
CUDA_HOST_CODE(unsigned char, 'B')
CUDA_HOST_CODE(short, 'h')
CUDA_HOST_CODE(unsigned short, 'H')
CUDA_HOST_CODE(int, 'i')
CUDA_HOST_CODE(unsigned int, 'I')
CUDA_HOST_CODE(long, 'q')
CUDA_HOST_CODE(long long, 'q')
CUDA_HOST_CODE(unsigned long, 'Q')
CUDA_HOST_CODE(unsigned long long, 'Q')
CUDA_HOST_CODE(bool, '?')
#undef CUDA_HOST_CODE

template <class T>
std::string param_code() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_pointer_v<U>) {
    using E = std::remove_pointer_t<U>;
    return std::string(std::is_const_v<E> ? "P" : "p") + scalar_code<std::remove_cv_t<E>>::value;
  } else {
    return std::string(1, scalar_code<U>::value);
  }
}

template <class... P>
std::string signature(void (*)(P...)) {
  std::string s;
  ((s += (s.empty() ? "" : ",") + param_code<P>()), ...);
  return s;
}

}  // namespace cuda_host

// One kernel's exports: host_launch_<name> and host_signature_<name>.
#define CUDA_HOST_EXPORT(name)                                                              \
  extern "C" int host_launch_##name(const unsigned* grid, const unsigned* block, void** args, \
                                    unsigned long long shared_bytes, char* err,             \
                                    unsigned long long err_size) {                          \
    return cuda_host::launch(name, grid, block, args, shared_bytes, err, err_size);         \
  }                                                                                         \
  extern "C" const char* host_signature_##name() {                                          \
    static const std::string s = cuda_host::signature(name);                                \
    return s.c_str();                                                                       \
  }
