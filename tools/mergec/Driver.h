//===- Driver.h - mergec's commands as a library (the CLI, the Python module) -*- C++ -*-===//
// `mergec run`, `compile`, `import` and `inspect` as functions of a CommandLine, so the command
// line (mergec.cpp) and the Python module (python/) run the same code.
#pragma once
#include "Options.h"

#include "mergec/AST/AST.h"
#include "mergec/Frontend/Diagnostics.h"
#include "mergec/Frontend/Sema.h"
#include "mergec/Runtime/Distributed.h"
#include "mergec/Runtime/Executor.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mergec {

/// Everything the compiler stages produce for one recipe.
struct Compilation {
  std::string source;
  std::unique_ptr<DiagnosticEngine> diags;
  std::unique_ptr<ast::Recipe> recipe;
  std::vector<std::unique_ptr<ast::Recipe>> libraries;
  std::unique_ptr<sema::Program> program;
  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::optional<rt::DType> importedDType; ///< a mergekit configuration's out_dtype (or dtype)
};

/// The standard library's directory: cl.stdlib when set, else $MERGEC_STDLIB, else
/// ../share/mergec/stdlib beside the binary (an install), else the source tree's stdlib/ this
/// binary was built from.
std::filesystem::path stdlibDirectory(const CommandLine &cl);

/// Runs the stages up to `stop` (or all of them) on cl.recipe (or cl.recipeText). Returns the
/// exit status on failure: recipe errors are reported through `c.diags` (which keeps them);
/// a recipe or library that cannot be read throws rt::RuntimeError naming it.
std::optional<int> compile(const CommandLine &cl, Compilation &c, Emit stop);

/// mergec import CONFIG: prints (or writes -o FILE) the recipe `mergec run CONFIG` runs.
int runImport(const CommandLine &cl);

/// mergec compile: writes the stage cl.emit to stdout or -o FILE; with `text`, a text stage
/// goes there instead (the binary stages obj and exe still need -o FILE).
int runCompile(const CommandLine &cl, Compilation &c, std::string *text = nullptr);

/// mergec run. `startProcesses` (may be empty) is called once the recipe compiled: under
/// mpirun it returns the processes' Communicator. `stats` receives the run's totals.
int runMerge(const CommandLine &cl, Compilation &c,
             const std::function<std::unique_ptr<rt::Communicator>()> &startProcesses = {},
             rt::RunStats *stats = nullptr);

/// Runs `command` on a thread with a large stack. The compiler recurses over expressions up to
/// the depths in Frontend/Limits.h, sized for half of the default 8 MB stack in a release
/// build; 256 MiB (reserved, touched only as deep as a recipe goes) keeps the same limits safe
/// where frames are larger (sanitizers, debug builds). The thread inherits the caller's blocked
/// signals; an exception the command throws is rethrown here.
int onLargeStack(const std::function<int()> &command);

} // namespace mergec
