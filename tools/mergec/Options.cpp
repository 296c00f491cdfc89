//===- Options.cpp - mergec's command line --------------------------------===//
#include "Options.h"
#include "mergec/Runtime/Size.h"
#include <charconv>
#include <cstring>
#include <iostream>

using namespace mergec;

namespace {

const char *kUsage = R"(usage:
  mergec run RECIPE -o OUT [--set NAME=VALUE]... [--model NAME=PATH]... [--dtype f32|bf16|f16]
                    [--threads N] [--shard-size SIZE] [--max-memory SIZE] [--force] [--quiet]
                    [--verbose]
  mergec compile RECIPE --emit=ast|merge|fused|loops|llvm-dialect|llvm [-o FILE]
                    [--set NAME=VALUE]... [--model NAME=PATH]... [--dtype f32|bf16|f16]
  mergec --version
)";

int usageError(const std::string &message) {
  std::cerr << "mergec: error: " << message << "\n" << kUsage;
  return 2;
}

std::optional<std::pair<std::string, std::string>> splitAssignment(const std::string &text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return std::nullopt;
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

std::optional<Emit> parseEmit(const std::string &s) {
  if (s == "ast") return Emit::AST;
  if (s == "merge") return Emit::Merge;
  if (s == "fused") return Emit::Fused;
  if (s == "loops") return Emit::Loops;
  if (s == "llvm-dialect") return Emit::LLVMDialect;
  if (s == "llvm") return Emit::LLVM;
  return std::nullopt;
}

std::optional<rt::DType> parseOutputDType(const std::string &s) {
  if (s == "f32") return rt::DType::F32;
  if (s == "bf16") return rt::DType::BF16;
  if (s == "f16") return rt::DType::F16;
  return std::nullopt;
}

} // namespace

std::optional<int> mergec::parseCommandLine(int argc, char **argv, CommandLine &cl) {
  if (argc < 2)
    return usageError("no command given");
  std::string command = argv[1];
  if (command == "--version" || command == "version") {
    cl.command = Command::Version;
    return std::nullopt;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "run")
    cl.command = Command::Run;
  else if (command == "compile")
    cl.command = Command::Compile;
  else
    return usageError("unknown command '" + command + "'");

  bool sawEmit = false;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    // Accept both `--flag value` and `--flag=value`.
    std::string value;
    bool inlineValue = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      inlineValue = true;
    }
    auto next = [&](std::string &out) -> bool {
      if (inlineValue) {
        out = value;
        return true;
      }
      if (i + 1 >= argc)
        return false;
      out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "-o" || arg == "--output") {
      if (!next(v))
        return usageError(arg + " needs a path");
      (cl.command == Command::Run ? cl.run.output : cl.outputFile) = v;
    } else if (arg == "--set" || arg == "--model") {
      if (!next(v))
        return usageError(arg + " needs NAME=VALUE");
      auto kv = splitAssignment(v);
      if (!kv)
        return usageError(arg + " " + v + ": expected NAME=VALUE");
      auto &list = arg == "--set" ? cl.overrides.params : cl.overrides.models;
      for (auto &[name, previous] : list)
        if (name == kv->first)
          return usageError(arg + " " + name + " given twice ('" + previous + "' and '" +
                            kv->second + "')");
      list.push_back(*kv);
    } else if (arg == "--dtype") {
      if (!next(v) || !parseOutputDType(v))
        return usageError("--dtype must be f32, bf16 or f16");
      cl.dtype = parseOutputDType(v);
      cl.run.dtype = cl.dtype;
    } else if (arg == "--threads") {
      unsigned n = 0;
      if (!next(v) || std::from_chars(v.data(), v.data() + v.size(), n).ec != std::errc() ||
          n == 0 || n > 1024)
        return usageError("--threads needs a number from 1 to 1024");
      cl.run.threads = n;
    } else if (arg == "--shard-size") {
      std::optional<uint64_t> size;
      if (!next(v) || !(size = rt::parseSize(v)) || *size == 0)
        return usageError("--shard-size: '" + v + "' is not a size (e.g. 5GB, 500MiB)");
      cl.run.shardSize = *size;
    } else if (arg == "--max-memory") {
      std::optional<uint64_t> size;
      if (!next(v) || !(size = rt::parseSize(v)) || *size == 0)
        return usageError("--max-memory: '" + v + "' is not a size (e.g. 16GB)");
      cl.run.maxMemory = *size;
    } else if (arg == "--emit") {
      if (!next(v) || !parseEmit(v))
        return usageError("--emit must be ast, merge, fused, loops, llvm-dialect or llvm");
      cl.emit = *parseEmit(v);
      sawEmit = true;
    } else if (arg == "--force" && !inlineValue) {
      cl.run.force = true;
    } else if (arg == "--quiet" && !inlineValue) {
      cl.run.quiet = true;
    } else if (arg == "--verbose" && !inlineValue) {
      cl.verbose = cl.run.verbose = true;
    } else if (inlineValue && (arg == "--force" || arg == "--quiet" || arg == "--verbose")) {
      return usageError(arg + " takes no value");
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      return usageError("unknown option '" + arg + "'");
    } else if (cl.recipe.empty()) {
      cl.recipe = arg;
    } else {
      return usageError("unexpected argument '" + arg + "'");
    }
  }
  if (cl.recipe.empty())
    return usageError("no recipe given");
  if (cl.command == Command::Run && cl.run.output.empty())
    return usageError("run needs -o OUT");
  if (cl.command == Command::Compile && !sawEmit)
    return usageError("compile needs --emit=STAGE");
  return std::nullopt;
}
