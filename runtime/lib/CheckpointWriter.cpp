//===- CheckpointWriter.cpp - streaming sharded safetensors writer --------===//
// Every shard's header is built in the constructor: a safetensors header precedes its data,
// so the whole layout must be known before the first byte of a tensor is written.
#include "mergec/Runtime/CheckpointWriter.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <algorithm>
#include <set>
#include <unistd.h>

namespace mergec::rt {

using detail::fail;
using nlohmann::json;
using nlohmann::ordered_json;

struct CheckpointWriter::Shard {
  std::string fileName;
  std::vector<size_t> tensors; ///< indices into tensors_, in write order
  uint64_t dataBytes = 0;
  std::string header; ///< the 8-byte length followed by the padded JSON
};

uint64_t OutputTensorSpec::nbytes() const {
  uint64_t n = dtypeSize(dtype);
  for (int64_t d : shape)
    n *= static_cast<uint64_t>(d);
  return n;
}

namespace {
void validateSpec(const OutputTensorSpec &spec, const std::string &directory) {
  auto bad = [&](const std::string &why) {
    fail(directory, "cannot write tensor '" + spec.name + "': " + why);
  };
  if (spec.name.empty())
    bad("the name is empty");
  if (spec.name == "__metadata__")
    bad("the name is reserved by the safetensors format");
  uint64_t n = dtypeSize(spec.dtype);
  for (int64_t d : spec.shape) {
    if (d < 0)
      bad("shape dimension " + std::to_string(d) + " is negative");
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
      bad("the shape is too large");
  }
}

std::string shardName(size_t index, size_t count) {
  if (count == 1)
    return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return buf;
}

/// The JSON header of one shard, padded with spaces to a multiple of 8 and preceded by its
/// little-endian length.
std::string buildHeader(const std::vector<OutputTensorSpec> &tensors,
                        const std::vector<size_t> &members,
                        const std::map<std::string, std::string> &metadata,
                        const std::string &directory) {
  // __metadata__ first and the tensors in file order make the headers easy to read; readers
  // do not depend on key order. The object is written entry by entry: an ordered_json object
  // finds each new key by a linear search, quadratic in the tensor count (50,000: 3 s).
  ordered_json meta = ordered_json::object();
  for (const auto &[key, value] : metadata)
    meta[key] = value;
  if (!meta.contains("format"))
    meta["format"] = "pt";
  std::string text;
  try {
    text = "{\"__metadata__\":" + meta.dump();
    uint64_t offset = 0;
    for (size_t i : members) {
      const OutputTensorSpec &t = tensors[i];
      uint64_t end = offset + t.nbytes();
      ordered_json entry = {
          {"dtype", dtypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
      text += "," + json(t.name).dump() + ":" + entry.dump();
      offset = end;
    }
    text += "}";
  } catch (const json::exception &e) {
    // dump() refuses strings that are not valid UTF-8.
    fail(directory, std::string("cannot build a safetensors header: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  return out + text;
}
} // namespace

std::vector<size_t> planShards(const std::vector<OutputTensorSpec> &tensors, uint64_t shardSize) {
  // Greedy packing in the given order; an oversized tensor simply fills a shard alone.
  std::vector<size_t> shardOf;
  size_t shard = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t n = tensors[i].nbytes();
    if (i > 0 && bytes + n > shardSize) {
      ++shard;
      bytes = 0;
    }
    bytes += n;
    shardOf.push_back(shard);
  }
  return shardOf;
}

size_t shardCount(const std::vector<OutputTensorSpec> &tensors, uint64_t shardSize) {
  std::vector<size_t> shardOf = planShards(tensors, shardSize);
  return shardOf.empty() ? 1 : shardOf.back() + 1;
}

CheckpointWriter::CheckpointWriter(std::string directory, std::vector<OutputTensorSpec> tensors,
                                   uint64_t shardSize, std::map<std::string, std::string> metadata)
    : directory_(std::move(directory)), tensors_(std::move(tensors)),
      metadata_(std::move(metadata)) {
  if (shardSize == 0)
    fail(directory_, "the shard size must be at least 1 byte");
  std::set<std::string> names;
  for (const auto &spec : tensors_) {
    validateSpec(spec, directory_);
    if (!names.insert(spec.name).second)
      fail(directory_, "cannot write tensor '" + spec.name + "' twice");
  }

  shardOf_ = planShards(tensors_, shardSize);
  std::vector<std::vector<size_t>> plan(rt::shardCount(tensors_, shardSize));
  std::vector<uint64_t> planBytes(plan.size(), 0);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    plan[shardOf_[i]].push_back(i);
    planBytes[shardOf_[i]] += tensors_[i].nbytes();
  }
  for (size_t s = 0; s < plan.size(); ++s) {
    auto shard = std::make_unique<Shard>();
    shard->fileName = shardName(s, plan.size());
    shard->tensors = std::move(plan[s]);
    shard->dataBytes = planBytes[s];
    shard->header = buildHeader(tensors_, shard->tensors, metadata_, directory_);
    shards_.push_back(std::move(shard));
  }
  fileOffset_.resize(tensors_.size());
  for (const auto &shard : shards_) {
    uint64_t offset = shard->header.size();
    for (size_t i : shard->tensors) {
      fileOffset_[i] = offset;
      offset += tensors_[i].nbytes();
    }
  }
}

const std::string &CheckpointWriter::shardFileName(size_t shard) const {
  return shards_[shard]->fileName;
}

const std::string &CheckpointWriter::shardHeader(size_t shard) const {
  return shards_[shard]->header;
}

uint64_t CheckpointWriter::shardFileBytes(size_t shard) const {
  return shards_[shard]->header.size() + shards_[shard]->dataBytes;
}

bool CheckpointWriter::lastInShard(size_t index) const {
  return shards_[shardOf_[index]]->tensors.back() == index;
}

void CheckpointWriter::resumeAt(size_t index) {
  if (next_ != 0 || fd_ >= 0)
    fail(directory_, "internal: resumeAt() after the first write");
  if (index > tensors_.size())
    fail(directory_, "internal: resumeAt() past the last tensor");
  if (tensors_.empty() || index == 0)
    return; // nothing to keep: written from the start as usual
  size_t shard = index < tensors_.size() ? shardOf_[index] : shards_.size() - 1;
  uint64_t offset = index < tensors_.size() ? fileOffset_[index] : shardFileBytes(shard);
  std::string path = detail::joinPath(directory_, shards_[shard]->fileName);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0)
    fail(path, "cannot open: " + detail::errnoText(errno));
  openShard_ = shard;
  const std::string &header = shards_[shard]->header;
  if (::pwrite(fd_, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size()) ||
      ::ftruncate(fd_, static_cast<off_t>(offset)) != 0 ||
      ::lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0)
    fail(path, "cannot continue the interrupted shard: " + detail::errnoText(errno));
  fileBytes_ = offset;
  writebackStarted_ = writebackWaited_ = 0;
  next_ = index;
}

void CheckpointWriter::syncCurrent() {
  if (fd_ >= 0)
    detail::syncFd(fd_, detail::joinPath(directory_, shards_[openShard_]->fileName));
}

CheckpointWriter::~CheckpointWriter() {
  // An unfinished output is incomplete anyway; OutputDirectory removes it.
  if (fd_ >= 0)
    ::close(fd_);
}

std::vector<std::string> CheckpointWriter::shardFileNames() const {
  std::vector<std::string> names;
  for (const auto &s : shards_)
    names.push_back(s->fileName);
  return names;
}

/// Closes the current shard (fsynced, so a finished shard never sits only in the page cache
/// while later ones are written) and opens `shard`, writing its header.
void CheckpointWriter::openShard(size_t shard) {
  if (fd_ >= 0) {
    std::string current = detail::joinPath(directory_, shards_[openShard_]->fileName);
    int fd = fd_;
    fd_ = -1;
    try {
      detail::syncFd(fd, current);
    } catch (...) {
      ::close(fd);
      throw;
    }
    if (::close(fd) != 0)
      fail(current, "close failed: " + detail::errnoText(errno));
  }
  std::string path = detail::joinPath(directory_, shards_[shard]->fileName);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0)
    fail(path, "cannot create: " + detail::errnoText(errno));
  openShard_ = shard;
  const Shard &s = *shards_[shard];
  fileBytes_ = s.header.size();
  writebackStarted_ = writebackWaited_ = 0;
  std::string what = "header";
  if (!s.tensors.empty())
    what += ", before tensor '" + tensors_[s.tensors.front()].name + "'";
  detail::writeAll(fd_, s.header.data(), s.header.size(), path, what);
}

void CheckpointWriter::write(size_t index, const void *data, uint64_t nbytes) {
  // Out of order or out of range: writePiece says so.
  if (index == next_ && index < tensors_.size()) {
    const OutputTensorSpec &spec = tensors_[index];
    if (written_)
      fail(directory_, "tensor '" + spec.name + "' written whole after " +
                           std::to_string(written_) + " of its bytes came in pieces");
    if (nbytes != spec.nbytes())
      fail(directory_, "tensor '" + spec.name + "': got " + std::to_string(nbytes) +
                           " bytes, expected " + std::to_string(spec.nbytes()));
  }
  writePiece(index, data, nbytes);
}

void CheckpointWriter::writePiece(size_t index, const void *data, uint64_t nbytes) {
  if (index >= tensors_.size())
    fail(directory_, "tensor index " + std::to_string(index) + " out of range (" +
                         std::to_string(tensors_.size()) + " tensors)");
  const OutputTensorSpec &spec = tensors_[index];
  if (index != next_)
    fail(directory_, "tensor '" + spec.name + "' written out of order (index " +
                         std::to_string(index) + ", expected " + std::to_string(next_) + ")");
  if (nbytes > spec.nbytes() - written_)
    fail(directory_, "tensor '" + spec.name + "': got " + std::to_string(written_ + nbytes) +
                         " bytes, expected " + std::to_string(spec.nbytes()));
  if (shardOf_[index] != openShard_)
    openShard(shardOf_[index]);
  std::string path = detail::joinPath(directory_, shards_[openShard_]->fileName);
  std::string what = "tensor '" + spec.name + "'";
  detail::writeAll(fd_, data, nbytes, path, what);
  fileBytes_ += nbytes;
  startWriteback(path, what);
  written_ += nbytes;
  if (written_ < spec.nbytes())
    return;
  written_ = 0;
  ++next_;
  skipNotOwned();
}

void CheckpointWriter::startWriteback(const std::string &path, const std::string &what) {
  // The kernel would start writing dirty pages back only when they age or pile up, leaving
  // most of the output to the final fsync, which the merge then waits for. Instead each
  // kWritebackBytes written is sent to the disk at once, and the range before it is waited for:
  // the disk works while the merge computes, and the dirty pages stay a few ranges.
  if (fileBytes_ - writebackStarted_ < kWritebackBytes)
    return;
  // Errors of the write back (a disk that filled up under delayed allocation, an I/O error)
  // surface here as they would at the final fsync; others (a filesystem without it) do not
  // matter, since the fsync writes what is left.
  if (writebackWaited_ < writebackStarted_ &&
      ::sync_file_range(fd_, static_cast<off_t>(writebackWaited_),
                        static_cast<off_t>(writebackStarted_ - writebackWaited_),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
    if (errno == ENOSPC)
      throw RuntimeError("no space left on device writing " + path + " (" + what + ")");
    if (errno == EIO)
      fail(path, "writing back failed: " + detail::errnoText(errno) + " (" + what + ")");
  }
  writebackWaited_ = writebackStarted_;
  // Only a hint: where the filesystem does not support it, the final fsync writes everything.
  ::sync_file_range(fd_, static_cast<off_t>(writebackStarted_),
                    static_cast<off_t>(fileBytes_ - writebackStarted_), SYNC_FILE_RANGE_WRITE);
  writebackStarted_ = fileBytes_;
}

bool CheckpointWriter::ownsShard(size_t shard) const {
  return owned_.empty() || owned_[shard];
}

void CheckpointWriter::skipNotOwned() {
  while (next_ < tensors_.size() && !ownsShard(shardOf_[next_]))
    ++next_;
}

void CheckpointWriter::restrictTo(std::vector<bool> shards) {
  if (next_ != 0 || fd_ >= 0)
    fail(directory_, "internal: restrictTo() after the first write");
  if (shards.size() != shards_.size())
    fail(directory_, "internal: restrictTo() with " + std::to_string(shards.size()) +
                         " flags for " + std::to_string(shards_.size()) + " shards");
  owned_ = std::move(shards);
  skipNotOwned();
}

std::vector<size_t> CheckpointWriter::assignShards(size_t ranks) const {
  // Largest first, each to the rank with the fewest bytes so far (the lower rank on a tie): the
  // same assignment on every rank, since it depends only on the layout.
  std::vector<size_t> order(shards_.size()), owner(shards_.size(), 0);
  for (size_t s = 0; s < order.size(); ++s)
    order[s] = s;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return shardFileBytes(a) > shardFileBytes(b);
  });
  std::vector<uint64_t> load(std::max<size_t>(ranks, 1), 0);
  for (size_t s : order) {
    size_t r = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[s] = r;
    load[r] += shardFileBytes(s);
  }
  return owner;
}

void CheckpointWriter::finish(bool index) {
  if (next_ != tensors_.size())
    fail(directory_, "output incomplete: " + std::to_string(next_) + " of " +
                         std::to_string(tensors_.size()) + " tensors written" +
                         (written_ ? " (and " + std::to_string(written_) + " bytes of tensor '" +
                                         tensors_[next_].name + "')"
                                   : ""));
  if (finished_)
    fail(directory_, "finish() called twice");
  finished_ = true;
  // Only an empty model reaches here without its (single) shard open; a process that owns no
  // shard (restrictTo) has none to close.
  if (openShard_ == SIZE_MAX && ownsShard(0))
    openShard(0);
  if (fd_ >= 0) {
    std::string last = detail::joinPath(directory_, shards_[openShard_]->fileName);
    int fd = fd_;
    fd_ = -1;
    try {
      detail::syncFd(fd, last);
    } catch (...) {
      ::close(fd);
      throw;
    }
    if (::close(fd) != 0)
      fail(last, "close failed: " + detail::errnoText(errno));
  }
  if (index)
    writeIndex();
  else
    detail::syncPath(directory_);
}

void CheckpointWriter::writeIndex() {
  if (shards_.size() > 1) {
    json weightMap = json::object();
    uint64_t total = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      weightMap[tensors_[i].name] = shards_[shardOf_[i]]->fileName;
      total += tensors_[i].nbytes();
    }
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weightMap}};
    std::string text = index.dump(2) + "\n";
    std::string path = detail::joinPath(directory_, "model.safetensors.index.json");
    int ifd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ifd < 0)
      fail(path, "cannot create: " + detail::errnoText(errno));
    try {
      detail::writeAll(ifd, text.data(), text.size(), path, "index");
      detail::syncFd(ifd, path);
    } catch (...) {
      ::close(ifd);
      throw;
    }
    if (::close(ifd) != 0)
      fail(path, "close failed: " + detail::errnoText(errno));
  }
  detail::syncPath(directory_);
}

} // namespace mergec::rt
