//===- Progress.h - tensors done, rate and ETA on stderr ---------*- C++ -*-===//
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace mergec::rt {

/// Rewrites one status line on a terminal (at most 4 times a second); prints a line every
/// 10 seconds when stderr is a file or pipe, so logs stay short. With --json (events().json()):
/// a "progress" event at most every 0.2 s and for the last tensor.
class Progress {
public:
  /// Tensors done, the total, bytes read: told on every update, quiet or not (a library
  /// caller's progress bar; it may throw to stop the merge).
  using Observer = std::function<void(size_t, size_t, uint64_t)>;
  Progress(size_t totalTensors, uint64_t totalBytes, bool quiet, Observer observer = {});
  void update(size_t tensorsDone, uint64_t bytesDone);
  /// With several `processes`: the whole run's `tensors` and bytes, not this rank's share.
  void finish(double seconds, uint64_t bytesRead, uint64_t bytesWritten, size_t processes = 1,
              size_t tensors = 0);

private:
  size_t totalTensors_;
  uint64_t totalBytes_;
  bool quiet_, tty_;
  Observer observer_;
  std::chrono::steady_clock::time_point start_, last_;
};

} // namespace mergec::rt
