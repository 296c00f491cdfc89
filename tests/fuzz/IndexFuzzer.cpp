//===- IndexFuzzer.cpp - libFuzzer target: model.safetensors.index.json ---===//
// Any bytes as the index of a sharded checkpoint whose two shards exist and are valid:
// Checkpoint::open must accept it, with every tensor found in the shard the index names, or
// throw RuntimeError; never crash, hang or read out of bounds. The shards are real so that
// indexes naming them reach the cross-checks (tensors missing, listed twice, in the wrong shard).
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Safetensors.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace {

void writeBytes(const std::string &path, const void *data, size_t size) {
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f)
    std::abort();
  std::fwrite(data, 1, size, f);
  std::fclose(f);
}

/// A .safetensors image holding one F32 tensor `name` of shape [2].
void writeShard(const std::string &path, const std::string &name) {
  std::string header = "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  uint64_t n = header.size();
  std::string image(reinterpret_cast<const char *>(&n), 8);
  image += header;
  image += std::string(8, '\0');
  writeBytes(path, image.data(), image.size());
}

/// A directory of its own per process (fuzzing jobs run in parallel), in memory when possible.
const std::string &checkpointDir() {
  static const std::string dir = [] {
    struct stat st;
    std::string root = ::stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
    std::string d = root + "/mergec-index-fuzz-" + std::to_string(::getpid());
    ::mkdir(d.c_str(), 0755);
    writeShard(d + "/model-00001-of-00002.safetensors", "model.embed_tokens.weight");
    writeShard(d + "/model-00002-of-00002.safetensors", "lm_head.weight");
    return d;
  }();
  return dir;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string &dir = checkpointDir();
  writeBytes(dir + "/model.safetensors.index.json", data, size);
  try {
    auto checkpoint = mergec::rt::Checkpoint::open(dir);
    for (const auto *t : checkpoint->tensors()) {
      if (checkpoint->find(t->name) != t)
        std::abort(); // a tensor that find() does not return
      if (t->offset + t->nbytes > t->file->fileSize())
        std::abort();
    }
  } catch (const mergec::rt::RuntimeError &) {
  }
  return 0;
}
