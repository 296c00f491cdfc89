//===- Options.h - mergec's command line ------------------------*- C++ -*-===//
#pragma once
#include "mergec/Frontend/Sema.h"
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/Executor.h"
#include <optional>
#include <string>

namespace mergec {

enum class Command { Run, Compile, Import, Version };
/// The stages of `mergec compile --emit=`, in pipeline order.
enum class Emit { AST, Merge, Fused, Loops, LLVMDialect, LLVM, Asm, Obj, Exe, GPU, NVVM, PTX };

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
  rt::RunOptions run;
};

/// Parses argv; returns an exit status when the program should stop (usage error: 2, --help: 0).
std::optional<int> parseCommandLine(int argc, char **argv, CommandLine &cl);

} // namespace mergec
