//===- ElementMath.h - one element of each merge op, in arith/math -*- C++ -*-===//
// The per-element meaning of every elementwise merge op, written once: MLIRGen uses it for
// scalar expressions and merge-fuse-elementwise for kernel bodies, so a scalar and a tensor
// computation of the same formula round identically.
#pragma once
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringRef.h"

namespace mergec::merge {

enum class ElementOp { Add, Sub, Mul, Div, Neg, Sum, Mean, Max, Min, Median, Abs, Sign, Sqrt, Exp,
                       Cmp, Select };

/// Builds `op` on f32 operands. `predicate` is for Cmp (lt, gt, le, ge, eq, ne).
mlir::Value buildElementOp(mlir::OpBuilder &b, mlir::Location loc, ElementOp op,
                           mlir::ValueRange operands, llvm::StringRef predicate = "");

} // namespace mergec::merge
