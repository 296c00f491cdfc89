//===- Options.h - mergec's command line ------------------------*- C++ -*-===//
#pragma once
#include "mergec/Frontend/Sema.h"
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/Executor.h"
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace mergec {

enum class Command { Run, Compile, Import, Inspect, Version };
/// The stages of `mergec compile --emit=`, in pipeline order.
enum class Emit { AST, Merge, Fused, Loops, LLVMDialect, LLVM, Asm, Obj, Exe, GPU, NVVM, NVVMLLVM, PTX };
/// The one table of --emit names (kEmitStages in Options.cpp): the command line, the driver's
/// backend stage names and the Python module all read it.
std::optional<Emit> parseEmit(const std::string &name);
const char *emitName(Emit emit);
/// Every name, space-separated, in pipeline order.
std::string emitNames();
/// Whether the stage is a binary file (obj, exe) rather than text.
bool emitsFile(Emit emit);

struct CommandLine {
  Command command = Command::Run;
  std::string recipe;
  Emit emit = Emit::Fused;
  std::string outputFile;     ///< compile -o
  sema::Overrides overrides;  ///< --set, --model
  std::optional<rt::DType> dtype;
  bool verbose = false;
  std::string cacheDir;       ///< --cache-dir; empty: $MERGEC_CACHE_DIR or the XDG default
  bool noCache = false;       ///< --no-cache
  std::string gpuArch;        ///< --gpu-arch; empty: the CUDA target's default (sm_90)
  std::string cpu;            ///< compile --cpu: the x86-64 CPU executables are built for
  /// compile --gpu-emulation (tests only, not in the usage): executables with --device cuda
  /// also carry host builds of the GPU kernels for the mock driver (GpuKernelEmulation.h).
  bool gpuEmulation = false;
  rt::RunOptions run;
  /// inspect: the fine-tuned models compared with the base (cl.recipe), and its outputs.
  std::vector<std::string> inspectModels;
  std::string pngFile; ///< inspect --png FILE
  bool inspectJson = false; ///< inspect --json: the JSON document on stdout, not the table
  double inspectDensity = 0.2; ///< inspect --density: the TIES top-k whose kept share it shows

  // Not on the command line: what a library caller (the Python module) sets.
  /// The standard library's directory; empty: stdlibDirectory()'s search.
  std::string stdlib;
  /// The recipe's text, when it is not read from the file cl.recipe (which then only names
  /// it in diagnostics; its relative model paths are relative to the working directory).
  std::optional<std::string> recipeText;
  /// Where recipe diagnostics are printed; null: std::cerr.
  std::ostream *diagnostics = nullptr;
};

/// Parses argv; returns an exit status when the program should stop (usage error: 2, --help: 0).
std::optional<int> parseCommandLine(int argc, char **argv, CommandLine &cl);

} // namespace mergec
