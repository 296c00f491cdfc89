//===- MLIRGen.h - Sema's rule DAGs to the merge dialect --------*- C++ -*-===//
#pragma once
#include "mergec/Frontend/Sema.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace mlir {
class MLIRContext;
}

namespace mergec {

/// The attribute on a rule's func.func holding its glob patterns (absent for `_`).
inline constexpr const char *kPatternsAttr = "merge.patterns";

/// One `func.func @rule_N() -> !merge.tensor` per rule, in rule order, with scalar math in
/// arith and tensor math in the merge dialect; locations point into the recipe.
mlir::OwningOpRef<mlir::ModuleOp> generateMLIR(mlir::MLIRContext &ctx, const sema::Program &program);

/// "rule_3" -> 3.
std::string ruleFunctionName(size_t index);

} // namespace mergec
