//===- TargetBackend.h - what a code generation target provides -*- C++ -*-===//
// Everything above the loops (parsing, Sema, the merge dialect, fusion, the lowering to
// loops over memrefs) is shared; a backend owns what comes after: its ordered `--emit` stages
// and the serialized kernel it produces from a rule's lowered module. The CPU backend
// serializes object files (loaded by the JIT through the kernel cache, or linked into merge
// executables); a CUDA backend plugs in here with PTX. IREE's TargetBackend and Triton's
// per-backend stage table are the models.
#pragma once
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include <memory>
#include <string>

namespace mergec {

struct EmitStage {
  const char *name;
  const char *description;
};

class TargetBackend {
public:
  virtual ~TargetBackend() = default;
  virtual llvm::StringRef name() const = 0;
  /// The stages after the shared ones (ast, merge, fused, loops), in pipeline order.
  virtual llvm::ArrayRef<EmitStage> stages() const = 0;
  /// What makes this backend's output specific to the machine it compiles for (CPU name and
  /// features): part of every kernel cache key.
  virtual std::string identity() const = 0;
  /// Lowers `loops` (one rule specialized to a signature, lowered to loops; consumed) to
  /// `stage`. Kernel entry points are named `mergec_<function>__<tag>` (KernelABI.h). Returns
  /// text for the textual stages and bytes for binary ones.
  virtual std::string emit(mlir::ModuleOp loops, llvm::StringRef stage, const std::string &tag) = 0;
  /// The stage whose bytes the runtime loads (the CPU's object file).
  virtual llvm::StringRef binaryStage() const = 0;
};

/// The backend called `name` ("cpu"); nullptr for an unknown name.
std::unique_ptr<TargetBackend> createTargetBackend(llvm::StringRef name);
/// The names createTargetBackend knows, for messages.
std::string knownTargetBackends();

} // namespace mergec
