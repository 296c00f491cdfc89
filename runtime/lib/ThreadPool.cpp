//===- ThreadPool.cpp - fixed pool for chunked kernels --------------------===//
#include "mergec/Runtime/ThreadPool.h"

#include <algorithm>
#include <utility>

namespace mergec::rt {

namespace {
/// The pool whose chunk the current thread is running, if any; a nested parallelFor on the
/// same pool would wait for workers that are busy waiting for it.
thread_local const ThreadPool *currentPool = nullptr;

class ScopedCurrentPool {
public:
  explicit ScopedCurrentPool(const ThreadPool *pool) : saved_(currentPool) { currentPool = pool; }
  ~ScopedCurrentPool() { currentPool = saved_; }

private:
  const ThreadPool *saved_;
};
} // namespace

ThreadPool::ThreadPool(unsigned threads)
    : numThreads_(threads ? threads : std::max(1u, std::thread::hardware_concurrency())) {
  // The caller of parallelFor is one of the numThreads_ threads.
  workers_.reserve(numThreads_ - 1);
  for (unsigned i = 1; i < numThreads_; ++i)
    workers_.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread &t : workers_)
    t.join();
}

void ThreadPool::runChunks(const std::function<void(size_t)> &fn, size_t numChunks) {
  for (;;) {
    size_t chunk = next_.fetch_add(1, std::memory_order_relaxed);
    if (chunk >= numChunks)
      return;
    try {
      fn(chunk);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_)
        error_ = std::current_exception();
      next_.store(numChunks, std::memory_order_relaxed);
    }
  }
}

void ThreadPool::workerLoop() {
  ScopedCurrentPool inside(this);
  size_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_)
      return;
    seen = generation_;
    const std::function<void(size_t)> *job = job_;
    size_t numChunks = numChunks_;
    lock.unlock();
    runChunks(*job, numChunks);
    lock.lock();
    // Every worker checks in once per generation, so the caller knows the job is no longer
    // referenced when active_ reaches zero.
    if (--active_ == 0)
      done_.notify_one();
  }
}

void ThreadPool::parallelFor(size_t numChunks, const std::function<void(size_t)> &fn) {
  if (numChunks == 0)
    return;
  if (workers_.empty() || numChunks == 1 || currentPool == this) {
    for (size_t chunk = 0; chunk < numChunks; ++chunk)
      fn(chunk);
    return;
  }
  std::lock_guard<std::mutex> call(callMutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    numChunks_ = numChunks;
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    active_ = workers_.size();
    ++generation_;
  }
  wake_.notify_all();
  {
    ScopedCurrentPool inside(this);
    runChunks(fn, numChunks);
  }
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_ == 0; });
    job_ = nullptr;
    error = std::exchange(error_, nullptr);
  }
  if (error)
    std::rethrow_exception(error);
}

} // namespace mergec::rt
