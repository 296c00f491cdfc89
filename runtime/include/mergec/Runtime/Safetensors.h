//===- Safetensors.h - mmap'd safetensors reader ----------------*- C++ -*-===//
// Reads single .safetensors files and sharded checkpoints (model.safetensors.index.json),
// validating the header strictly before any tensor is touched.
#pragma once
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/MappedInputGuard.h"
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace mergec::rt {

class SafetensorsFile;

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t offset = 0;            ///< byte offset of the data from the start of the file
  uint64_t nbytes = 0;            ///< = numel * dtypeSize(dtype), checked when parsed
  const uint8_t *data = nullptr;  ///< inside the file's mapping
  const SafetensorsFile *file = nullptr;

  int64_t numel() const;
  /// "[4096, 11008]"
  std::string shapeString() const;
};

/// One mmap'd .safetensors file.
class SafetensorsFile {
public:
  /// Maps and validates `path`. Throws RuntimeError naming the file (and the tensor, where
  /// one is at fault) when: the file is missing or shorter than 8 bytes; the header length is
  /// larger than the file or over 100 MB; the header is not valid UTF-8 JSON or not an object;
  /// a tensor entry lacks dtype/shape/data_offsets or has the wrong JSON types; a dtype is
  /// unknown; a dimension is negative; offsets are reversed, out of bounds, overlap another
  /// tensor, or do not cover the data region exactly (no gaps, no trailing bytes); the byte
  /// length differs from shape x dtype size. "__metadata__" must map strings to strings.
  static std::unique_ptr<SafetensorsFile> open(const std::string &path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;

  const std::string &path() const { return path_; }
  /// Tensors sorted by data offset (the order they lie in the file).
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  const TensorInfo *find(const std::string &name) const;
  const std::map<std::string, std::string> &metadata() const { return metadata_; }
  uint64_t fileSize() const { return size_; }
  /// The modification time when opened, in nanoseconds since the epoch.
  int64_t mtimeNanoseconds() const { return mtimeSeconds_ * 1'000'000'000 + mtimeNanoseconds_; }

  /// Hints that a tensor's pages will be read soon (madvise WILLNEED).
  void prefetch(const TensorInfo &t) const;
  /// Drops a tensor's pages from this process's resident set (madvise DONTNEED on the
  /// page-aligned interior of its range), so streaming a model never holds all of it.
  void release(const TensorInfo &t) const;
  /// Drops the pages of bytes [from, to) of a tensor's data (a window already computed).
  void release(const TensorInfo &t, uint64_t from, uint64_t to) const;

  /// Throws RuntimeError naming the file when its size or modification time is not what it
  /// was when opened: it was truncated or rewritten in place (a download still running), and
  /// what was read from it may be a mix of old and new bytes. One fstat.
  void checkUnchanged() const;

private:
  SafetensorsFile() = default;
  std::string path_;
  int fd_ = -1;
  const uint8_t *map_ = nullptr;
  uint64_t size_ = 0;
  int64_t mtimeSeconds_ = 0, mtimeNanoseconds_ = 0;
  std::unique_ptr<MappedInputGuard> guard_; ///< reports a SIGBUS in the mapping
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> byName_;
  std::map<std::string, std::string> metadata_;
};

/// A model: a directory holding model.safetensors, or model.safetensors.index.json and its
/// shards, or a path to a single .safetensors file.
class Checkpoint {
public:
  /// Throws RuntimeError naming the path when it does not exist, holds neither layout, the
  /// index is malformed, names a shard that is missing, or names a tensor its shard lacks;
  /// or when a tensor name appears in two shards.
  static std::unique_ptr<Checkpoint> open(const std::string &path);

  const std::string &path() const { return path_; }
  /// The directory holding config.json etc. (the file's directory for a single file).
  const std::string &directory() const { return directory_; }
  /// Every tensor: shards in the order of their file names, each shard's tensors in offset order.
  const std::vector<const TensorInfo *> &tensors() const { return order_; }
  const TensorInfo *find(const std::string &name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>> &files() const { return files_; }
  /// Sum of the shard file sizes in bytes.
  uint64_t totalBytes() const;
  /// Shows `tensors` (in that order, found by their names) instead of the files' own: a bundle
  /// member's view of the bundle (BundleInput.h). The caller keeps them alive.
  void setView(std::vector<const TensorInfo *> tensors);

private:
  std::string path_, directory_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<const TensorInfo *> order_;
  std::unordered_map<std::string, const TensorInfo *> byName_;
};

} // namespace mergec::rt
