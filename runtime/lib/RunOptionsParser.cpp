//===- RunOptionsParser.cpp - the run options mergec and executables share -===//
#include "mergec/Runtime/RunOptionsParser.h"
#include "mergec/Runtime/Size.h"
#include <cctype>
#include <charconv>

namespace mergec::rt {

namespace {

struct SizeOption {
  std::string_view name, example;
  uint64_t RunOptions::*field;
};
constexpr SizeOption kSizes[] = {
    {"--shard-size", "5GB, 500MiB", &RunOptions::shardSize},
    {"--max-memory", "16GB", &RunOptions::maxMemory},
    {"--max-gpu-memory", "8GB", &RunOptions::maxGpuMemory},
};

struct FlagOption {
  std::string_view name;
  bool RunOptions::*field;
};
constexpr FlagOption kFlags[] = {
    {"--force", &RunOptions::force},
    {"--json", &RunOptions::json},
    {"--quiet", &RunOptions::quiet},
    {"--resume", &RunOptions::resume},
    {"--strict", &RunOptions::strict},
    {"--verbose", &RunOptions::verbose},
};

} // namespace

RunOptionArity runOptionArity(std::string_view name) {
  if (name == "--no-model-card")
    return RunOptionArity::Flag;
  for (const FlagOption &f : kFlags)
    if (name == f.name)
      return RunOptionArity::Flag;
  for (const SizeOption &s : kSizes)
    if (name == s.name)
      return RunOptionArity::Value;
  if (name == "--dtype" || name == "--threads" || name == "--device")
    return RunOptionArity::Value;
  return RunOptionArity::NotARunOption;
}

std::string applyRunOption(std::string_view name, const std::optional<std::string> &value,
                           RunOptions &options) {
  std::string arg(name);
  if (name == "--no-model-card") {
    if (value)
      return arg + " takes no value";
    options.modelCard = false;
    return "";
  }
  for (const FlagOption &f : kFlags)
    if (name == f.name) {
      if (value)
        return arg + " takes no value";
      options.*f.field = true;
      return "";
    }
  for (const SizeOption &s : kSizes)
    if (name == s.name) {
      std::optional<uint64_t> size;
      if (!value || !(size = parseSize(*value)) || *size == 0)
        return arg + ": '" + value.value_or("") + "' is not a size (e.g. " + std::string(s.example) +
               ")";
      options.*s.field = *size;
      return "";
    }
  if (name == "--dtype") {
    if (!value || (*value != "f32" && *value != "bf16" && *value != "f16"))
      return "--dtype must be f32, bf16 or f16";
    options.dtype = *value == "f32" ? DType::F32 : *value == "bf16" ? DType::BF16 : DType::F16;
    return "";
  }
  if (name == "--threads") {
    // A plain decimal integer, all of it: from_chars alone would read "2x" as 2.
    if (!value)
      return "--threads needs a number from 1 to 1024";
    const std::string &v = *value;
    unsigned n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || !std::isdigit(static_cast<unsigned char>(v[0])) || ec != std::errc() ||
        end != v.data() + v.size() || n == 0 || n > 1024)
      return "--threads: '" + v + "' is not a number from 1 to 1024";
    options.threads = n;
    return "";
  }
  if (name == "--device") {
    std::optional<DeviceKind> kind = value ? parseDeviceKind(*value) : std::nullopt;
    if (!kind)
      return "--device must be one of: " + deviceNames();
    options.device = *kind;
    return "";
  }
  return "unknown option '" + arg + "'";
}

} // namespace mergec::rt
