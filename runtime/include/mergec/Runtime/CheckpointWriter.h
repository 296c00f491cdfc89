//===- CheckpointWriter.h - streaming sharded safetensors writer -*- C++ -*-===//
#pragma once
#include "mergec/Runtime/DType.h"
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mergec::rt {

struct OutputTensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

/// The shard of each tensor, in order, as CheckpointWriter packs them (below): greedy, a new
/// shard when the next tensor would push the current one past `shardSize` bytes.
std::vector<size_t> planShards(const std::vector<OutputTensorSpec> &tensors, uint64_t shardSize);
/// How many shard files the output will have (1 for no tensor).
size_t shardCount(const std::vector<OutputTensorSpec> &tensors, uint64_t shardSize);

/// Writes tensors, in the order given up front, into `directory` (which must exist):
/// `model.safetensors` when everything fits in one shard, else
/// `model-00001-of-0000N.safetensors`... plus `model.safetensors.index.json`
/// ({"metadata": {"total_size": N}, "weight_map": {name: file}}). Shards are planned before
/// the first write (a header precedes its data): tensors are packed in order, a new shard
/// starting when the next tensor would push the current one past `shardSize` bytes (a tensor
/// larger than shardSize gets a shard of its own). Headers are padded with spaces to a
/// multiple of 8 bytes; `metadata` goes into every header's "__metadata__" (with "format": "pt").
/// I/O errors (ENOSPC included) throw RuntimeError naming the file and the tensor.
class CheckpointWriter {
public:
  CheckpointWriter(std::string directory, std::vector<OutputTensorSpec> tensors,
                   uint64_t shardSize, std::map<std::string, std::string> metadata = {});
  ~CheckpointWriter();

  const std::vector<OutputTensorSpec> &tensors() const { return tensors_; }
  /// Appends tensor `index`'s bytes (exactly its nbytes). Indices must come in order 0,1,2...
  void write(size_t index, const void *data, uint64_t nbytes);
  /// Appends the next piece of tensor `index`'s bytes (a window of a streamed tensor): the
  /// tensor is complete once its pieces add up to its nbytes, and the next index follows.
  void writePiece(size_t index, const void *data, uint64_t nbytes);
  /// Checks every tensor was written, writes the index when sharded (with `index`), fsyncs
  /// every file.
  void finish(bool index = true);
  /// Writes model.safetensors.index.json when sharded and fsyncs the directory (finish() does
  /// this unless told not to).
  void writeIndex();

  // Several processes writing one output (Distributed.h): each writes only its shards.
  /// Which rank (of `ranks`) writes each shard: balanced by bytes, the largest shards first,
  /// each to the rank with the fewest bytes so far. The same on every rank.
  std::vector<size_t> assignShards(size_t ranks) const;
  /// This writer writes only the shards flagged (one flag per shard): write() then takes the
  /// tensors of those shards, in order, and finish() checks only them. Before the first write.
  void restrictTo(std::vector<bool> shards);
  bool ownsShard(size_t shard) const;
  /// Shard file names, in order (known from construction).
  std::vector<std::string> shardFileNames() const;

  // The planned layout, for --resume (Journal.h) to verify what an interrupted run wrote.
  size_t shardCount() const { return shards_.size(); }
  size_t shardOf(size_t index) const { return shardOf_[index]; }
  const std::string &shardFileName(size_t shard) const;
  /// The shard's header bytes (length prefix and padded JSON), as written.
  const std::string &shardHeader(size_t shard) const;
  /// The shard file's size once complete.
  uint64_t shardFileBytes(size_t shard) const;
  /// Where tensor `index`'s bytes start in its shard file.
  uint64_t fileOffset(size_t index) const { return fileOffset_[index]; }
  bool lastInShard(size_t index) const;
  /// Continues an interrupted output whose tensors before `index` are in place (verified):
  /// reopens the shard of `index` (the last shard when every tensor is in place), rewrites its
  /// header, cuts the file at `index`'s offset and writes on from there; later shards are
  /// created anew when reached. Call before the first write().
  void resumeAt(size_t index);
  /// fdatasyncs the shard being written (the journal is synced after it).
  void syncCurrent();

private:
  struct Shard;
  void openShard(size_t shard);
  void startWriteback(const std::string &path, const std::string &what);
  /// Written output goes to the disk in ranges of this many bytes as it comes (sync_file_range).
  static constexpr uint64_t kWritebackBytes = 32ull << 20;
  std::string directory_;
  std::vector<OutputTensorSpec> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<size_t> shardOf_;
  std::vector<uint64_t> fileOffset_;
  void skipNotOwned();
  std::vector<bool> owned_; ///< restrictTo(); empty: every shard
  size_t next_ = 0;
  uint64_t written_ = 0;   ///< bytes of tensor next_ written so far (writePiece)
  uint64_t fileBytes_ = 0; ///< the open shard file's size so far
  /// The open shard's bytes before writebackStarted_ are being written back, those before
  /// writebackWaited_ are on the disk (both 0 after a resume: what is there is already synced).
  uint64_t writebackStarted_ = 0, writebackWaited_ = 0;
  bool finished_ = false;
  int fd_ = -1;
  size_t openShard_ = SIZE_MAX;
};

} // namespace mergec::rt
