//===- TestUtil.h - temp directories and raw files for unit tests -*- C++ -*-===//
#pragma once
#include "mergec/Runtime/Error.h"
#include <gtest/gtest.h>
#include <cstdint>
#include <string>
#include <string_view>

namespace mergec::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }
  /// path() + "/" + name.
  std::string file(const std::string &name) const;

private:
  std::string path_;
};

/// Writes `bytes` to `path` exactly (truncating).
void writeFile(const std::string &path, std::string_view bytes);
/// The whole content of `path`.
std::string readFile(const std::string &path);
bool pathExists(const std::string &path);

/// The 8-byte little-endian encoding of `v`.
std::string le64(uint64_t v);
/// A safetensors file image: length prefix, `header` verbatim, then `data`.
std::string safetensorsImage(std::string_view header, std::string_view data);

/// The message of the RuntimeError `fn` throws; fails the test when it throws nothing.
template <typename Fn> std::string errorOf(Fn &&fn) {
  try {
    fn();
  } catch (const mergec::rt::RuntimeError &e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a RuntimeError";
  return "";
}

} // namespace mergec::test
