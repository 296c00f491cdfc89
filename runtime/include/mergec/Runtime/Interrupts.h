//===- Interrupts.h - clean up partial outputs on SIGINT/TERM/HUP -*- C++ -*-===//
// An interrupted merge must not leave a hidden temporary directory the size of a model. Paths
// that exist only while mergec writes them (temporary outputs, lock files) are registered here;
// a signal removes them and exits with 128 + the signal's number. SIGKILL cannot be caught: the
// next run for the same output removes what it leaves (OutputDirectory's stale-temp sweep).
#pragma once
#include <mutex>
#include <string>

namespace mergec::rt {

/// Blocks SIGINT, SIGTERM and SIGHUP and starts a thread that waits for them. Call it in main()
/// before any other thread starts (threads inherit the blocked mask, so only that thread sees
/// the signals). It also becomes MappedInputGuard's fatal cleanup, so an input truncated under a
/// running kernel (SIGBUS) removes the unfinished output too, and exits 1. Idempotent.
void installInterruptCleanup();

/// A path removed (recursively) when a signal arrives while the registration lives.
class TemporaryPath {
public:
  explicit TemporaryPath(std::string path);
  ~TemporaryPath();
  TemporaryPath(const TemporaryPath &) = delete;
  TemporaryPath &operator=(const TemporaryPath &) = delete;
  /// Stops covering the path (it was renamed into place): a later signal leaves it alone.
  void release();
  const std::string &path() const { return path_; }

private:
  std::string path_;
  bool registered_ = false;
};

/// Whether this process has `path` registered (a temporary of ours, not a leftover).
bool isTemporaryOfThisProcess(const std::string &path);

/// Held while renames must not be interleaved with the signal-time cleanup (a commit moving an
/// old output aside and the new one into place): the cleanup waits for it.
std::unique_lock<std::recursive_mutex> holdOffInterruptCleanup();

} // namespace mergec::rt
