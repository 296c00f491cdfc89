//===- SafetensorsFuzzer.cpp - libFuzzer target: safetensors headers ------===//
// Arbitrary bytes as a .safetensors file: open() must either accept it, with every tensor's
// bytes inside the file, or throw RuntimeError; never read out of bounds.
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Safetensors.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // In memory when possible: the file is rewritten for every input.
  static const std::string path =
      std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/mergec-fuzz-" +
      std::to_string(getpid()) + ".safetensors";
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f)
    std::abort();
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    auto file = mergec::rt::SafetensorsFile::open(path);
    uint64_t checksum = 0;
    for (const auto &t : file->tensors()) {
      if (t.offset + t.nbytes > file->fileSize())
        std::abort(); // accepted a tensor that runs past the end of the file
      if (t.nbytes)
        checksum += t.data[0] + t.data[t.nbytes - 1]; // touch both ends: ASan checks the bounds
    }
    (void)checksum;
  } catch (const mergec::rt::RuntimeError &) {
  }
  return 0;
}
