//===- OutputDirectory.h - all-or-nothing output directories ----*- C++ -*-===//
#pragma once
#include "mergec/Runtime/InputProtection.h"
#include "mergec/Runtime/Interrupts.h"
#include <optional>
#include <string>
#include <vector>

namespace mergec::rt {

/// The file that marks a directory as mergec's own output; --force replaces nothing else.
inline constexpr const char *kManifestName = "mergec-manifest.json";

/// A directory that appears at `finalPath` only when complete. Files are written into
/// `<parent>/.<name>.mergec-tmp-<pid>` (same filesystem, so the final rename is atomic); the
/// destructor removes that directory unless commit() succeeded, and so does a SIGINT, SIGTERM
/// or SIGHUP (Interrupts.h). `<parent>/.<name>.mergec-lock` is held (flock) from construction
/// to destruction, so a second run for the same output refuses at its start. Leftover
/// temporaries of earlier runs for the same output are removed on construction, except, with
/// `resume`, the one holding a journal (Journal.h): it is kept as resumable() until adopt()
/// takes it over or the run ends (it then stays for a later --resume).
class OutputDirectory {
public:
  /// Everything is checked here, before any work: `finalPath` must not be, contain or lie
  /// inside any of `inputs`; an existing `finalPath` is refused without `force`, and with it
  /// unless it is a directory mergec wrote (it holds a valid mergec-manifest.json) or an empty
  /// directory; another run must not hold the output's lock; the parent must be writable.
  /// Throws RuntimeError with the reason.
  OutputDirectory(const std::string &finalPath, bool force,
                  const std::vector<ProtectedInput> &inputs = {}, bool resume = false);
  /// A merge shared by several processes (Distributed.h): the temporary directory `tempPath`
  /// that the first process's OutputDirectory created for `finalPath`. This one only writes
  /// into it: it takes no lock, creates, removes and commits nothing.
  struct Joined {};
  OutputDirectory(Joined, const std::string &finalPath, const std::string &tempPath);
  ~OutputDirectory();
  OutputDirectory(const OutputDirectory &) = delete;
  OutputDirectory &operator=(const OutputDirectory &) = delete;

  const std::string &tempPath() const { return temp_; }
  const std::string &finalPath() const { return final_; }
  /// With `resume`: the temporary directory an earlier run left, holding a journal with a
  /// header ("" when there is none).
  const std::string &resumable() const { return resumable_; }
  /// How many tensors the journals of the removed temporaries recorded (for the note saying
  /// that --resume would have continued them).
  size_t removedProgress() const { return removedProgress_; }
  /// Makes resumable() this run's temporary directory (an atomic rename over the empty one).
  void adopt();
  /// Checks more inputs found after construction (the files a checkpoint's index names, which
  /// may be links into other directories) the same way as the constructor's.
  void protect(const std::vector<ProtectedInput> &inputs) const;
  /// fsyncs the temporary directory, removes an existing finalPath (only with force, and only
  /// if it is still mergec's output), renames the temporary into place and fsyncs the parent.
  void commit();

private:
  /// An flock'ed lock file, unlinked and closed on destruction (also when the constructor
  /// throws after taking it).
  class Lock {
  public:
    Lock(int fd, std::string path) : fd_(fd), guard_(std::move(path)) {}
    ~Lock();
    Lock(const Lock &) = delete;
    Lock &operator=(const Lock &) = delete;

  private:
    int fd_;
    TemporaryPath guard_;
  };
  void acquireLock(const std::string &lockPath);
  void checkReplaceable() const;

  std::string final_, temp_, resumable_;
  size_t removedProgress_ = 0;
  std::optional<Lock> lock_;
  std::optional<TemporaryPath> tempGuard_;
  bool force_ = false, committed_ = false, joined_ = false;
};

/// Whether `dir` is a directory (not a link to one) holding a mergec-manifest.json that mergec
/// wrote; when not, `why` says what is missing.
bool isMergecOutput(const std::string &dir, std::string *why = nullptr);

} // namespace mergec::rt
