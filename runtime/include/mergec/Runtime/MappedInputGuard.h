//===- MappedInputGuard.h - a clear error when a mapped input shrinks -*- C++ -*-===//
// Inputs are read through mmap. When a file is truncated while it is mapped (a download still
// running, a checkpoint being rewritten), touching a page past its new end raises SIGBUS, which
// used to kill mergec without a word. Every mapping is registered here; a SIGBUS inside one
// prints "mergec: error: FILE: changed while mergec was reading it ..." and exits with status
// 1. Kernels run on a thread pool, so the fault can hit any thread: the handler does not
// unwind, it reports and exits with async-signal-safe calls only.
#pragma once
#include <cstddef>
#include <string>

namespace mergec::rt {

/// Registers [data, data + size) as a mapping of `path` for as long as it lives. The first one
/// installs the SIGBUS handler; a SIGBUS outside every registered mapping goes to the handler
/// that was there before (by default: the process dies as it would have).
class MappedInputGuard {
public:
  MappedInputGuard(const void *data, size_t size, const std::string &path);
  ~MappedInputGuard();
  MappedInputGuard(const MappedInputGuard &) = delete;
  MappedInputGuard &operator=(const MappedInputGuard &) = delete;

private:
  void *slot_;
};

/// `fn` runs inside the SIGBUS handler, after the message and before _exit(1): it may only do
/// what is async-signal-safe (unlink, rmdir, write, ...), e.g. remove the unfinished output.
/// Null removes it.
void setFatalCleanup(void (*fn)());

} // namespace mergec::rt
