//===- MergeInitAll.h - every dialect and pass mergec uses ------*- C++ -*-===//
// The one place that lists them, so mergec and merge-opt cannot drift apart.
#pragma once

namespace mlir {
class DialectRegistry;
}

namespace mergec {
/// merge, func, arith, scf, memref, cf, LLVM, and the LLVM IR translation interfaces.
void registerAllDialects(mlir::DialectRegistry &registry);
/// The merge passes, the pipelines (merge-frontend, merge-lower-to-llvm) and the upstream
/// passes they use (canonicalize, cse, ...), under their command-line names.
void registerAllPasses();
} // namespace mergec
