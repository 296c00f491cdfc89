//===- OutputDirectory.h - all-or-nothing output directories ----*- C++ -*-===//
#pragma once
#include <string>

namespace mergec::rt {

/// A directory that appears at `finalPath` only when complete. Files are written into
/// `<parent>/.<name>.mergec-tmp-<pid>` (same filesystem, so the final rename is atomic); the
/// destructor removes that directory unless commit() succeeded. Leftover temporaries of
/// earlier runs for the same output (dead pids) are removed on construction.
class OutputDirectory {
public:
  /// Throws RuntimeError when `finalPath` exists and `force` is false, or the parent is
  /// missing or not writable.
  OutputDirectory(const std::string &finalPath, bool force);
  ~OutputDirectory();
  OutputDirectory(const OutputDirectory &) = delete;
  OutputDirectory &operator=(const OutputDirectory &) = delete;

  const std::string &tempPath() const { return temp_; }
  const std::string &finalPath() const { return final_; }
  /// fsyncs the temporary directory, removes an existing finalPath (only with force), renames
  /// the temporary into place and fsyncs the parent.
  void commit();

private:
  std::string final_, temp_;
  bool force_ = false, committed_ = false;
};

/// Copies `name` from `fromDir` into `toDir` when it exists there; returns whether it did.
bool copyFileIfExists(const std::string &fromDir, const std::string &toDir, const std::string &name);

} // namespace mergec::rt
