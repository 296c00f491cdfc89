//===- CommandLineFuzzer.cpp - libFuzzer target: mergec's argument parser -===//
// Any bytes, split at NUL bytes into arguments after "mergec": parseCommandLine must return a
// usage status or a command line, never crash. Sizes, numbers and NAME=VALUE pairs are the
// parsers reached here; whatever it accepts must be usable (a run has an output, a recipe).
#include "../../tools/mergec/Options.h"
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // Usage errors are printed on every rejected input: keep the fuzzer's output readable.
  std::cout.rdbuf(nullptr);
  std::cerr.rdbuf(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  constexpr size_t kMaxArgs = 64;
  std::vector<std::string> args = {"mergec"};
  std::string current;
  for (size_t i = 0; i < size && args.size() < kMaxArgs; ++i) {
    if (data[i] == 0) {
      args.push_back(current);
      current.clear();
    } else {
      current += static_cast<char>(data[i]);
    }
  }
  if (args.size() < kMaxArgs)
    args.push_back(current);
  std::vector<char *> argv;
  for (auto &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  mergec::CommandLine cl;
  auto status = mergec::parseCommandLine(static_cast<int>(args.size()), argv.data(), cl);
  if (!status && cl.command != mergec::Command::Version) {
    if (cl.recipe.empty())
      std::abort(); // accepted without a recipe
    if (cl.command == mergec::Command::Run && (cl.run.output.empty() || cl.run.shardSize == 0))
      std::abort();
  }
  return 0;
}
