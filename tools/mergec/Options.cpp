//===- Options.cpp - mergec's command line --------------------------------===//
#include "Options.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/RunOptionsParser.h"
#include "mergec/Runtime/Size.h"
#include <cctype>
#include <cstdlib>
#include <charconv>
#include <cstring>
#include <iostream>

using namespace mergec;

namespace {

const char *kUsage = R"(usage:
  mergec run RECIPE -o OUT [--set NAME=VALUE]... [--model NAME=PATH]... [--dtype f32|bf16|f16]
                    [--threads N] [--shard-size SIZE] [--max-memory SIZE] [--force] [--resume]
                    [--strict] [--quiet] [--verbose] [--json] [--cache-dir DIR | --no-cache]
                    [--device cpu|cuda] [--gpu-arch sm_NN] [--max-gpu-memory SIZE]
                    [--no-model-card] [--emit-lora RANK [--sv-epsilon E] [--lora-targets GLOB,...]]
  mergec compile RECIPE --emit=STAGE [-o FILE] [--set NAME=VALUE]... [--model NAME=PATH]...
                    [--dtype f32|bf16|f16] [--cache-dir DIR | --no-cache]
                    [--device cpu|cuda] [--gpu-arch sm_NN] [--cpu NAME]
      STAGE: @STAGES@
             (--emit= alone lists them)
  mergec import CONFIG.yml [-o FILE] [--model NAME=PATH]...
      a mergekit configuration as a recipe; run and compile take CONFIG.yml too
  mergec inspect BASE MODEL... [--png FILE] [--json] [--density D] [--threads N]
                    [--cache-dir DIR | --no-cache]
      per layer and tensor kind, how the models' task vectors (MODEL - BASE) compare
  mergec --version
)";


std::string stageListing(); // below, beside the table of stages

/// kUsage with the stage names from the table of stages.
std::string usage() {
  std::string text = kUsage;
  text.replace(text.find("@STAGES@"), 8, emitNames());
  return text;
}

int usageError(const std::string &message) {
  rt::events().error(message);
  if (!rt::events().json()) // --json: the error event alone
    std::cerr << usage();
  return 2;
}

std::optional<std::pair<std::string, std::string>> splitAssignment(const std::string &text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return std::nullopt;
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
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
    std::cout << usage();
    return 0;
  }
  if (command == "run")
    cl.command = Command::Run;
  else if (command == "compile")
    cl.command = Command::Compile;
  else if (command == "import")
    cl.command = Command::Import;
  else if (command == "inspect")
    cl.command = Command::Inspect;
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
    if (cl.command == Command::Inspect) {
      // inspect's own options; of the run options only those that apply to reading models.
      if (arg == "--png") {
        if (!next(v) || v.empty())
          return usageError("--png needs a file");
        cl.pngFile = v;
      } else if (arg == "--json") {
        if (inlineValue)
          return usageError(arg + " takes no value");
        cl.inspectJson = true;
      } else if (arg == "--density") {
        char *end = nullptr;
        if (!next(v) || v.empty())
          return usageError("--density needs a number in (0, 1]");
        double d = std::strtod(v.c_str(), &end);
        if (*end != '\0' || !(d > 0 && d <= 1))
          return usageError("--density needs a number in (0, 1], not '" + v + "'");
        cl.inspectDensity = d;
      } else if (arg == "--threads" || arg == "--quiet" || arg == "--verbose") {
        std::optional<std::string> optionValue;
        if (arg == "--threads" ? next(v) : inlineValue)
          optionValue = arg == "--threads" ? v : value;
        if (std::string error = rt::applyRunOption(arg, optionValue, cl.run); !error.empty())
          return usageError(error);
      } else if (arg == "--cache-dir") {
        if (!next(v) || v.empty())
          return usageError("--cache-dir needs a directory");
        cl.cacheDir = v;
      } else if (arg == "--no-cache") {
        cl.noCache = true;
      } else if (!arg.empty() && arg[0] == '-') {
        return usageError("inspect takes --png FILE, --json, --density D, --threads N, "
                          "--cache-dir DIR and --no-cache, not '" + arg + "'");
      } else if (cl.recipe.empty()) {
        cl.recipe = arg;
      } else {
        cl.inspectModels.push_back(arg);
      }
      continue;
    }
    if (arg == "-o" || arg == "--output") {
      if (!next(v))
        return usageError(arg + " needs a path");
      (cl.command == Command::Run ? cl.run.output : cl.outputFile) = v;
    } else if (cl.command == Command::Import && arg != "--model" && arg != "--set" &&
               !arg.empty() && arg[0] == '-' && arg != "-") {
      return usageError("import takes -o FILE and --model NAME=PATH, not '" + arg + "'");
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
    } else if (rt::RunOptionArity arity = rt::runOptionArity(arg);
               arity != rt::RunOptionArity::NotARunOption) {
      // The options `mergec run` shares with merge executables (one parser, one set of messages).
      std::optional<std::string> optionValue;
      if (arity == rt::RunOptionArity::Value ? next(v) : inlineValue)
        optionValue = arity == rt::RunOptionArity::Value ? v : value;
      if (std::string error = rt::applyRunOption(arg, optionValue, cl.run); !error.empty())
        return usageError(error);
    } else if (arg == "--cpu" && cl.command == Command::Compile) {
      if (!next(v) || v.empty())
        return usageError("--cpu needs an x86-64 CPU name such as x86-64-v3 (default: this one)");
      cl.cpu = v;
    } else if (arg == "--gpu-emulation" && cl.command == Command::Compile) {
      cl.gpuEmulation = true;
    } else if (arg == "--gpu-arch") {
      if (!next(v) || v.rfind("sm_", 0) != 0)
        return usageError("--gpu-arch needs an NVIDIA architecture such as sm_90");
      cl.gpuArch = v;
    } else if (arg == "--emit") {
      if (inlineValue && value.empty()) {
        std::cout << stageListing();
        return 0;
      }
      if (!next(v) || !parseEmit(v))
        return usageError("--emit must be one of: " + emitNames());
      cl.emit = *parseEmit(v);
      sawEmit = true;
    } else if (arg == "--cache-dir") {
      if (!next(v) || v.empty())
        return usageError("--cache-dir needs a directory");
      cl.cacheDir = v;
    } else if (arg == "--no-cache") {
      if (inlineValue)
        return usageError(arg + " takes no value");
      cl.noCache = true;
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      return usageError("unknown option '" + arg + "'");
    } else if (cl.recipe.empty()) {
      cl.recipe = arg;
    } else {
      return usageError("unexpected argument '" + arg + "'");
    }
  }
  cl.dtype = cl.run.dtype;
  cl.verbose = cl.run.verbose;
  if (cl.command == Command::Inspect && cl.inspectModels.empty())
    return usageError(cl.recipe.empty() ? "inspect needs a base model and at least one fine-tune"
                                        : "inspect needs at least one fine-tune besides the base "
                                          "model '" + cl.recipe + "'");
  if (cl.recipe.empty())
    return usageError(cl.command == Command::Import ? "no configuration given" : "no recipe given");
  if (cl.command == Command::Import && !cl.overrides.params.empty())
    return usageError("import takes no --set (a mergekit configuration has no params)");
  if (cl.command == Command::Run && cl.run.output.empty())
    return usageError("run needs -o OUT");
  if (cl.command != Command::Run && cl.run.emitLora.rank)
    return usageError("--emit-lora applies to run (and to merge executables)");
  if (std::string error = rt::checkRunOptions(cl.run); !error.empty())
    return usageError(error);
  if (cl.command == Command::Compile && !sawEmit)
    return usageError("compile needs --emit=STAGE");
  return std::nullopt;
}

namespace {
/// Every --emit stage: the command line's names, its error message, `--emit=`'s listing, the
/// driver's backend stage names and the Python module all read this table.
struct EmitStageName {
  Emit emit;
  const char *name;
  bool cuda; ///< a stage of the cuda target (listed after the cpu target's)
  const char *description;
};
const EmitStageName kEmitStages[] = {
    {Emit::AST, "ast", false, "the parsed recipe"},
    {Emit::Merge, "merge", false, "the merge dialect, one function per rule"},
    {Emit::Fused, "fused", false, "each rule fused into phases of kernels"},
    {Emit::Loops, "loops", false,
     "each rule lowered to loops over memrefs (per dtype signature; --dtype)"},
    {Emit::LLVMDialect, "llvm-dialect", false, "the loops in MLIR's LLVM dialect"},
    {Emit::LLVM, "llvm", false,
     "LLVM IR after -O3 for the host CPU, with mergec's packed entry points"},
    {Emit::Asm, "asm", false, "host assembly"},
    {Emit::Obj, "obj", false,
     "one object file: every rule and signature, the kernel table and the program\n"
     "description (C entry points in runtime/include/mergec/Runtime/KernelABI.h)"},
    {Emit::Exe, "exe", false,
     "a standalone merge executable: the object linked with mergec's runtime\n"
     "(with --device cuda: the PTX of every kernel too; it runs on either device)"},
    {Emit::GPU, "gpu", true, "each phase as a gpu.func kernel in one gpu.module"},
    {Emit::NVVM, "nvvm", true, "the kernels in the NVVM dialect"},
    {Emit::NVVMLLVM, "nvvm-llvm", true,
     "the kernels as LLVM IR for NVPTX (before libdevice and the NVPTX backend)"},
    {Emit::PTX, "ptx", true, "PTX assembly of every phase kernel of every rule"}};

/// `mergec compile --emit=` prints this: the stages in pipeline order, with what each is.
std::string stageListing() {
  std::string text = "stages of `mergec compile --emit=STAGE` (target cpu), in pipeline order:\n";
  bool cuda = false;
  for (const EmitStageName &stage : kEmitStages) {
    if (stage.cuda && !cuda) {
      text += "stages of the cuda target (after loops; --gpu-arch, default sm_90):\n";
      cuda = true;
    }
    std::string line = "  " + std::string(stage.name);
    line.resize(16, ' ');
    for (const char *d = stage.description; *d; ++d)
      line += *d == '\n' ? std::string("\n") + std::string(16, ' ') : std::string(1, *d);
    text += line + "\n";
  }
  return text;
}
} // namespace

std::optional<Emit> mergec::parseEmit(const std::string &name) {
  for (const EmitStageName &stage : kEmitStages)
    if (name == stage.name)
      return stage.emit;
  return std::nullopt;
}

const char *mergec::emitName(Emit emit) {
  for (const EmitStageName &stage : kEmitStages)
    if (stage.emit == emit)
      return stage.name;
  return "?";
}

std::string mergec::emitNames() {
  std::string names;
  for (const EmitStageName &stage : kEmitStages)
    names += (names.empty() ? "" : " ") + std::string(stage.name);
  return names;
}

bool mergec::emitsFile(Emit emit) { return emit == Emit::Obj || emit == Emit::Exe; }
