//===- Progress.cpp - tensors done, rate and ETA on stderr ----------------===//
#include "mergec/Runtime/Progress.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/Size.h"
#include <cstdio>
#include <string>
#include <unistd.h>

namespace mergec::rt {

namespace {
/// A transfer rate in the unit that reads best: GB/s from 1 GB/s up (a GPU merge from the page
/// cache), MB/s below (a merge reading from disk).
std::string formatRate(double bytesPerSecond) {
  char text[32];
  if (bytesPerSecond >= 1e9)
    std::snprintf(text, sizeof text, "%.2f GB/s", bytesPerSecond / 1e9);
  else
    std::snprintf(text, sizeof text, "%.1f MB/s", bytesPerSecond / 1e6);
  return text;
}
} // namespace

Progress::Progress(size_t totalTensors, uint64_t totalBytes, bool quiet, Observer observer)
    : totalTensors_(totalTensors), totalBytes_(totalBytes), quiet_(quiet),
      tty_(isatty(STDERR_FILENO)), observer_(std::move(observer)),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

void Progress::update(size_t tensorsDone, uint64_t bytesDone) {
  if (observer_)
    observer_(tensorsDone, totalTensors_, bytesDone);
  if (quiet_)
    return;
  auto now = std::chrono::steady_clock::now();
  double sinceLast = std::chrono::duration<double>(now - last_).count();
  bool json = events().json();
  // --json: a "progress" event at most every 0.2 s, and one for the last tensor.
  if (sinceLast < (json ? 0.2 : tty_ ? 0.25 : 10.0) && tensorsDone < totalTensors_)
    return;
  last_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double rate = elapsed > 0 ? bytesDone / elapsed : 0;
  if (json) {
    events().emit("progress", {{"tensors_done", tensorsDone},
                               {"tensors", totalTensors_},
                               {"bytes_read", bytesDone},
                               {"seconds", elapsed},
                               {"rate_bytes_per_s", rate}});
    return;
  }
  double fraction = totalBytes_ ? static_cast<double>(bytesDone) / totalBytes_ : 1.0;
  double eta = fraction > 0 && fraction < 1 ? elapsed * (1 - fraction) / fraction : 0;
  std::fprintf(stderr, "%s[%zu/%zu tensors] %s read, %s, ETA %.0f s%s",
               tty_ ? "\r" : "", tensorsDone, totalTensors_, formatSize(bytesDone).c_str(),
               formatRate(rate).c_str(), eta, tty_ ? "   " : "\n");
  std::fflush(stderr);
}

void Progress::finish(double seconds, uint64_t bytesRead, uint64_t bytesWritten,
                      size_t processes, size_t tensors) {
  if (quiet_ || events().json()) // --json: the "done" event says it
    return;
  if (processes > 1) {
    // Several processes (Distributed.h): the bar was this rank's share, the line is the run's.
    std::fprintf(stderr, "%smerged %zu tensors with %zu processes: %s read, %s written in %.2f s\n",
                 tty_ ? "\r" : "", tensors, processes, formatSize(bytesRead).c_str(),
                 formatSize(bytesWritten).c_str(), seconds);
    return;
  }
  std::fprintf(stderr, "%smerged %zu tensors: %s read, %s written in %.2f s (%s)\n",
               tty_ ? "\r" : "", totalTensors_, formatSize(bytesRead).c_str(),
               formatSize(bytesWritten).c_str(), seconds,
               formatRate(seconds > 0 ? bytesRead / seconds : 0.0).c_str());
}

} // namespace mergec::rt
