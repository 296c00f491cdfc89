//===- ConfigFuzzer.cpp - libFuzzer target: a model's config.json ---------===//
// Any bytes as config.json: layersFromConfig must return a positive layer count (or the count
// from tensor names) with at most a warning, or throw RuntimeError naming the file; never crash,
// recurse without bound or read out of bounds.
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/ModelConfig.h"
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view text(reinterpret_cast<const char *>(data), size);
  for (int largest : {-1, 31}) {
    std::vector<std::string> warnings;
    try {
      int layers = mergec::rt::layersFromConfig(text, "config.json", "base", largest,
                                                /*used=*/true, warnings);
      if (layers <= 0 && !(largest < 0 && layers == 0))
        std::abort(); // a layer count that is not positive
      for (const std::string &w : warnings)
        if (w.find("config.json") == std::string::npos)
          std::abort(); // a warning that does not name the file
    } catch (const mergec::rt::RuntimeError &e) {
      if (std::string(e.what()).find("config.json") == std::string::npos)
        std::abort();
    }
  }
  return 0;
}
