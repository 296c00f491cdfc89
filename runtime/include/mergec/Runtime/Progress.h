//===- Progress.h - tensors done, rate and ETA on stderr ---------*- C++ -*-===//
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace mergec::rt {

/// Rewrites one status line on a terminal (at most 4 times a second); prints a line every
/// 10 seconds when stderr is a file or pipe, so logs stay short. With --json (events().json()):
/// a "progress" event at most every 0.2 s and for the last tensor.
class Progress {
public:
  Progress(size_t totalTensors, uint64_t totalBytes, bool quiet);
  void update(size_t tensorsDone, uint64_t bytesDone);
  /// With several `processes`: the whole run's `tensors` and bytes, not this rank's share.
  void finish(double seconds, uint64_t bytesRead, uint64_t bytesWritten, size_t processes = 1,
              size_t tensors = 0);

private:
  size_t totalTensors_;
  uint64_t totalBytes_;
  bool quiet_, tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

} // namespace mergec::rt
