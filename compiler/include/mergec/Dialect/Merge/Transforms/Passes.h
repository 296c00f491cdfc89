//===- Passes.h - merge dialect transformations -----------------*- C++ -*-===//
#pragma once
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include <string>

namespace mergec::merge {

#define GEN_PASS_DECL
#include "mergec/Dialect/Merge/Transforms/Passes.h.inc"

/// The attribute on a rule's func.func naming the dtype its result is stored in.
inline constexpr const char *kStoreAttr = "merge.store";
/// On the module: the recipe's params in order (merge.param's `index` names one).
inline constexpr const char *kParamsAttr = "merge.params";

/// "bf16" -> the bf16 type; null for anything but f32, f16, bf16.
mlir::Type parseStorageType(mlir::MLIRContext *ctx, const std::string &name);

#define GEN_PASS_REGISTRATION
#include "mergec/Dialect/Merge/Transforms/Passes.h.inc"

} // namespace mergec::merge
