//===- ThreadPool.h - fixed pool for chunked kernels ------------*- C++ -*-===//
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mergec::rt {

/// A fixed set of workers that run `fn(chunk)` for chunk in [0, numChunks) and return when
/// all are done; the calling thread works too. Chunks are handed out through an atomic counter,
/// so which thread runs a chunk varies but the work of each chunk does not.
class ThreadPool {
public:
  /// threads = 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(unsigned threads);
  ~ThreadPool();
  unsigned size() const { return numThreads_; }
  /// The first exception thrown by `fn` stops further chunks from starting and is rethrown
  /// here once the running ones have finished. A call made from inside `fn` runs its chunks
  /// serially on that thread instead of deadlocking.
  void parallelFor(size_t numChunks, const std::function<void(size_t)> &fn);

private:
  void workerLoop();
  /// Runs chunks from the shared counter until none are left; the first exception is kept
  /// in error_ and stops further chunks from being handed out.
  void runChunks(const std::function<void(size_t)> &fn, size_t numChunks);
  unsigned numThreads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t)> *job_ = nullptr;
  size_t numChunks_ = 0;
  size_t generation_ = 0;
  size_t active_ = 0;
  bool stop_ = false;
  std::exception_ptr error_; ///< first exception of the current parallelFor, under mutex_
  std::mutex callMutex_;     ///< serializes parallelFor calls made from different threads
  alignas(64) std::atomic<size_t> next_{0};
};

} // namespace mergec::rt
