//===- Checkpoint.cpp - single-file and sharded checkpoints ---------------===//
#include "Support.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Safetensors.h"

#include <cerrno>
#include <set>
#include <sys/stat.h>

namespace mergec::rt {

using detail::fail;
using detail::joinPath;
using nlohmann::json;

namespace {
constexpr const char *kSingleFile = "model.safetensors";
constexpr const char *kIndexFile = "model.safetensors.index.json";
/// An index lists one line per tensor; even huge models stay far below this.
constexpr uint64_t kMaxIndexBytes = 100'000'000;

enum class Kind { Missing, File, Directory, Other };

Kind statKind(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return Kind::Missing;
  if (S_ISREG(st.st_mode))
    return Kind::File;
  if (S_ISDIR(st.st_mode))
    return Kind::Directory;
  return Kind::Other;
}

std::string parentDirectory(const std::string &path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  if (slash == 0)
    return "/";
  return path.substr(0, slash);
}

/// A shard name must stay inside the checkpoint directory.
bool isSafeShardName(const std::string &name) {
  if (name.empty() || name.front() == '/')
    return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos)
      slash = name.size();
    if (name.compare(start, slash - start, "..") == 0 && slash - start == 2)
      return false;
    start = slash + 1;
  }
  return true;
}

/// weight_map, read from the index: tensor name -> shard file name.
std::map<std::string, std::string> readWeightMap(const std::string &indexPath) {
  std::string text = detail::readSmallFile(indexPath, kMaxIndexBytes);
  json index = detail::parseStrictJson(text, indexPath, "index");
  if (!index.is_object())
    fail(indexPath, "index must be a JSON object, not " + std::string(index.type_name()));
  auto it = index.find("weight_map");
  if (it == index.end())
    fail(indexPath, "index has no 'weight_map'");
  if (!it->is_object())
    fail(indexPath, "'weight_map' must be an object, not " + std::string(it->type_name()));
  if (auto meta = index.find("metadata"); meta != index.end() && !meta->is_object())
    fail(indexPath, "'metadata' must be an object, not " + std::string(meta->type_name()));
  std::map<std::string, std::string> weightMap;
  for (const auto &[name, file] : it->items()) {
    if (!file.is_string())
      fail(indexPath,
           "weight_map: tensor '" + name + "' must map to a file name, not " + file.type_name());
    std::string shard = file.get<std::string>();
    if (!isSafeShardName(shard))
      fail(indexPath, "weight_map: tensor '" + name + "' maps to '" + shard +
                          "', which is not a file inside the checkpoint directory");
    weightMap.emplace(name, shard);
  }
  if (weightMap.empty())
    fail(indexPath, "weight_map names no tensors");
  return weightMap;
}
} // namespace

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string &path) {
  auto ckpt = std::make_unique<Checkpoint>();
  ckpt->path_ = path;
  Kind kind = statKind(path);
  if (kind == Kind::Missing)
    fail(path, "no such file or directory");
  if (kind == Kind::Other)
    fail(path, "not a file or directory");

  std::map<std::string, std::string> weightMap;
  std::string indexPath;
  if (kind == Kind::File) {
    ckpt->directory_ = parentDirectory(path);
    ckpt->files_.push_back(SafetensorsFile::open(path));
  } else {
    ckpt->directory_ = path;
    // Like transformers, a single model.safetensors wins over an index next to it.
    std::string single = joinPath(path, kSingleFile);
    indexPath = joinPath(path, kIndexFile);
    Kind singleKind = statKind(single);
    // A FIFO, device or socket is refused (by open) rather than passed over for the index.
    if (singleKind == Kind::File || singleKind == Kind::Other) {
      ckpt->files_.push_back(SafetensorsFile::open(single));
    } else if (statKind(indexPath) != Kind::Missing) {
      weightMap = readWeightMap(indexPath);
      // std::set orders the shards by file name.
      std::set<std::string> shards;
      for (const auto &[name, shard] : weightMap)
        shards.insert(shard);
      for (const std::string &shard : shards) {
        std::string shardPath = joinPath(path, shard);
        if (statKind(shardPath) == Kind::Missing)
          fail(indexPath,
               "shard '" + shard + "' (named in weight_map) does not exist: " + shardPath);
        ckpt->files_.push_back(SafetensorsFile::open(shardPath));
      }
    } else {
      fail(path, std::string("holds neither ") + kSingleFile + " nor " + kIndexFile);
    }
  }

  for (const auto &file : ckpt->files_) {
    for (const TensorInfo &t : file->tensors()) {
      auto [it, inserted] = ckpt->byName_.emplace(t.name, &t);
      if (!inserted)
        fail(path, "tensor '" + t.name + "' appears in two shards: " + it->second->file->path() +
                       " and " + file->path());
      ckpt->order_.push_back(&t);
    }
  }
  for (const auto &[name, shard] : weightMap) {
    const TensorInfo *t = ckpt->find(name);
    std::string shardPath = joinPath(path, shard);
    if (!t || t->file->path() != shardPath)
      fail(indexPath, "weight_map: tensor '" + name + "' is mapped to shard '" + shard +
                          "', which does not contain it");
  }
  return ckpt;
}

const TensorInfo *Checkpoint::find(const std::string &name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? nullptr : it->second;
}

void Checkpoint::setView(std::vector<const TensorInfo *> tensors) {
  byName_.clear();
  for (const TensorInfo *t : tensors)
    byName_[t->name] = t;
  order_ = std::move(tensors);
}

uint64_t Checkpoint::totalBytes() const {
  uint64_t total = 0;
  for (const auto &file : files_)
    total += file->fileSize();
  return total;
}

} // namespace mergec::rt
