//===- RunOptionsParser.cpp - the run options mergec and executables share -===//
#include "mergec/Runtime/RunOptionsParser.h"
#include "mergec/Runtime/Glob.h"
#include "mergec/Runtime/Number.h"
#include "mergec/Runtime/Size.h"
#include <cctype>
#include <charconv>
#include <cmath>
#include <vector>

namespace mergec::rt {

namespace {

/// A plain decimal integer in [1, max], all of the text: from_chars alone would read "2x" as 2.
std::optional<unsigned> parseCount(const std::string &v, unsigned max) {
  unsigned n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || !std::isdigit(static_cast<unsigned char>(v[0])) || ec != std::errc() ||
      end != v.data() + v.size() || n == 0 || n > max)
    return std::nullopt;
  return n;
}

/// Splits "a,b" at the commas outside braces, so `{q,k}_proj` stays one glob.
std::vector<std::string> splitGlobs(const std::string &text) {
  std::vector<std::string> parts(1);
  int depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size()) {
      parts.back() += c;
      parts.back() += text[++i];
      continue;
    }
    depth += c == '{' ? 1 : c == '}' && depth > 0 ? -1 : 0;
    if (c == ',' && depth == 0)
      parts.emplace_back();
    else
      parts.back() += c;
  }
  return parts;
}

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
  if (name == "--dtype" || name == "--threads" || name == "--device" || name == "--emit-lora" ||
      name == "--sv-epsilon" || name == "--lora-targets")
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
    if (!value)
      return "--threads needs a number from 1 to 1024";
    std::optional<unsigned> n = parseCount(*value, 1024);
    if (!n)
      return "--threads: '" + *value + "' is not a number from 1 to 1024";
    options.threads = *n;
    return "";
  }
  if (name == "--emit-lora") {
    if (!value)
      return "--emit-lora needs a rank (a whole number from 1 to " +
             std::to_string(kMaxEmitLoraRank) + ")";
    std::optional<unsigned> rank = parseCount(*value, kMaxEmitLoraRank);
    if (!rank)
      return "--emit-lora: '" + *value + "' is not a rank (a whole number from 1 to " +
             std::to_string(kMaxEmitLoraRank) + ")";
    options.emitLora.rank = *rank;
    return "";
  }
  if (name == "--sv-epsilon") {
    std::optional<double> eps = value ? parseNumber(*value) : std::nullopt;
    if (!eps || !std::isfinite(*eps) || *eps < 0)
      return "--sv-epsilon: '" + value.value_or("") +
             "' is not a number >= 0 (singular values at or below it are dropped)";
    options.emitLora.svEpsilon = *eps;
    options.emitLora.svEpsilonGiven = true;
    return "";
  }
  if (name == "--lora-targets") {
    if (!value || value->empty())
      return "--lora-targets needs tensor-name globs separated by commas (e.g. "
             "'*.q_proj.weight,*.v_proj.weight')";
    std::vector<std::string> globs = splitGlobs(*value);
    for (const std::string &glob : globs) {
      if (glob.empty())
        return "--lora-targets: '" + *value + "' has an empty glob";
      if (std::optional<std::string> why = globCheck(glob))
        return "--lora-targets: '" + glob + "': " + *why;
    }
    options.emitLora.targets = std::move(globs);
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

std::string checkRunOptions(const RunOptions &options) {
  const RunOptions::EmitLora &lora = options.emitLora;
  if (!lora.rank) {
    if (lora.svEpsilonGiven)
      return "--sv-epsilon applies to --emit-lora RANK";
    if (!lora.targets.empty())
      return "--lora-targets applies to --emit-lora RANK";
    return "";
  }
  // The adapter is written once, at the end, from factors that only exist then: nothing an
  // interrupted run could continue, and no shards for several writers.
  if (options.resume)
    return "--emit-lora cannot --resume (an adapter is written in one piece at the end)";
  if (options.device != DeviceKind::CPU)
    return std::string("--emit-lora runs on the CPU (its SVDs are LAPACK's), not --device ") +
           deviceName(options.device);
  return "";
}

} // namespace mergec::rt
