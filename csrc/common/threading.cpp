#include "common/threading.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>


namespace cnnkit {
namespace {

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// Forks in progress (prepared, not yet returned in the parent) and sections running.
std::atomic<int> forks_pending{0};
std::atomic<int64_t> sections_running{0};

// Spins for up to about this long before blocking: a kernel issues several
// parallel_for calls back to back, and waking a sleeping thread (in a VM, a halted
// vCPU) costs tens of microseconds each time. OpenBLAS runs single-threaded, so a
// spinning worker takes no cycles from it.
constexpr auto kSpin = std::chrono::microseconds(200);

template <class Ready>
bool spin_until(Ready&& ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

// Workers spin briefly, then sleep on a condition variable between jobs.
class Pool {
 public:
  // A child of fork() inherits the pool but not its worker threads: it builds a new
  // pool of the same size on first use. The fork handlers hold the registry's lock
  // across fork() so that the child never inherits it locked by a thread it does not
  // have; the child then drops the parent's pool, whose own locks may be held by
  // threads gone in the child. Pools are leaked on purpose (no teardown at exit, and
  // a forked child cannot join its parent's threads).
  static Pool& instance() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lk(r.lock);
    if (!r.pool) r.pool = new Pool(r.threads > 0 ? r.threads : default_threads());
    return *r.pool;
  }

  int threads() const { return threads_.load(); }

  static void install_fork_handlers() {
    static std::once_flag once;
    std::call_once(once, [] {
      pthread_atfork(
          [] {
            forks_pending.fetch_add(1);
            while (sections_running.load() != 0) std::this_thread::yield();
            registry().lock.lock();
          },
          [] {
            registry().lock.unlock();
            forks_pending.fetch_sub(1);
          },
          [] {
            Registry& r = registry();
            if (r.pool) r.threads = r.pool->threads();
            r.pool = nullptr;
            r.lock.unlock();
            forks_pending.store(0);
          });
    });
  }

  void resize(int n) {
    std::lock_guard<std::mutex> busy(busy_);
    stop_workers();
    threads_ = n;
    // New workers must not mistake an earlier job's generation for a new one.
    const uint64_t start = generation_;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, start] { work(start); });
  }

  // The caller and the workers claim chunks from a shared counter, so a worker that
  // is slow to wake (its vCPU descheduled) never holds the caller up: the caller
  // runs the chunks nobody has claimed and waits only for those being run.
  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    int nt = threads_.load();
    int64_t chunks = std::min<int64_t>(nt, std::max<int64_t>(1, n / std::max<int64_t>(grain, 1)));
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (chunks <= 1 || !busy.owns_lock()) {
      fn(0, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = &fn;
      n_ = n;
      chunks_ = chunks;
      next_ = 0;
      done_ = 0;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    run_chunks(fn, n, chunks);
    auto finished = [this, chunks] {
      return done_.load(std::memory_order_acquire) == chunks &&
             entered_.load(std::memory_order_acquire) == 0;
    };
    spin_until(finished);
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, finished);
    fn_ = nullptr;  // retired: a worker waking late finds no job
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Registry {
    std::mutex lock;
    Pool* pool = nullptr;
    int threads = 0;  // the size a child's pool takes over from its parent's
  };
  static Registry& registry() {
    static Registry r;
    return r;
  }

  explicit Pool(int threads) { resize(threads); }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
  }

  // Runs unclaimed chunks of the current job until none is left.
  void run_chunks(const std::function<void(int64_t, int64_t)>& fn, int64_t n, int64_t chunks) {
    for (;;) {
      const int64_t c = next_.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      const int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
      try {
        if (begin < end) fn(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void work(uint64_t seen) {
    for (;;) {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
      const std::function<void(int64_t, int64_t)>* fn;
      int64_t n, chunks;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (!fn_) continue;
        // The caller does not retire the job while a worker that entered it runs.
        ++entered_;
        fn = fn_;
        n = n_;
        chunks = chunks_;
      }
      run_chunks(*fn, n, chunks);
      std::lock_guard<std::mutex> lk(m_);
      if (--entered_ == 0) done_cv_.notify_one();
    }
  }

  std::atomic<int> threads_{1};
  std::vector<std::thread> workers_;
  std::mutex busy_, m_;
  std::condition_variable cv_, done_cv_;
  // The current job; fn_ is null between jobs. Written under m_.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunks_ = 0;
  // Chunks claimed and chunks finished, and workers inside the job: atomic so that
  // claiming and spinning need no lock.
  std::atomic<int64_t> next_{0}, done_{0};
  std::atomic<int> entered_{0};
  // Written under m_; atomic so that spinning workers can read it without it.
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  std::exception_ptr error_;
};

// Registered when the library loads, before any thread can hold the registry's lock.
const bool fork_handlers_installed = (Pool::install_fork_handlers(), true);

}  // namespace

// Sequentially consistent on both sides: a section either sees the fork pending and
// backs out, or the fork's handler sees the section running and waits for it.
ForkSafeSection::ForkSafeSection() {
  for (;;) {
    while (forks_pending.load() != 0) std::this_thread::yield();
    sections_running.fetch_add(1);
    if (forks_pending.load() == 0) return;
    sections_running.fetch_sub(1);
  }
}

ForkSafeSection::~ForkSafeSection() { sections_running.fetch_sub(1); }

int get_num_threads() { return Pool::instance().threads(); }

void set_num_threads(int n) {
  Pool::instance().resize(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  Pool::instance().run(n, grain, fn);
}

}  // namespace cnnkit

// A C ABI for the pool, exported from _C so that tools that find thread pools among
// the loaded libraries (threadpoolctl, see cnnkit/_threadpoolctl.py) can read and cap it.
extern "C" {
__attribute__((visibility("default"))) int cnnkit_get_num_threads(void) {
  return cnnkit::get_num_threads();
}
__attribute__((visibility("default"))) void cnnkit_set_num_threads(int n) {
  cnnkit::set_num_threads(n < 1 ? 1 : n);
}
}
