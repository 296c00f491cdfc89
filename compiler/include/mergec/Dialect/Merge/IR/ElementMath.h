//===- ElementMath.h - one element of each merge op, in arith/math -*- C++ -*-===//
// The per-element meaning of every elementwise merge op, written once: MLIRGen uses it for
// scalar expressions and merge-fuse-elementwise for kernel bodies, so a scalar and a tensor
// computation of the same formula round identically.
#pragma once
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mlir/IR/Builders.h"
#include <optional>

namespace mergec::merge {

enum class ElementOp { Add, Sub, Mul, Div, Neg, Sum, Mean, Max, Min, Median, Variance, Abs, Sign,
                       Sqrt, Exp, Log, Sin, Cos, Acos, Floor, Cmp, Select };

/// Builds `op` on f32 operands. `predicate` is for Cmp.
mlir::Value buildElementOp(mlir::OpBuilder &b, mlir::Location loc, ElementOp op,
                           mlir::ValueRange operands,
                           std::optional<CmpPredicate> predicate = std::nullopt);

/// 1.0 where a Philox4x32-10 draw keyed by (seed, nameHash) at counter (index, stream) is
/// below `p` (f32), else 0.0. `nameHash` and `index` are i64.
mlir::Value buildBernoulli(mlir::OpBuilder &b, mlir::Location loc, mlir::Value p,
                           mlir::Value nameHash, mlir::Value index, uint64_t seed,
                           uint64_t stream);

/// 1.0 where |x|'s rank lies in a band found by a select phase (see merge.rank_band): the
/// boundaries are (bits, flat index) pairs in f64; `index` is the element's flat index (i64).
mlir::Value buildRankBand(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                          mlir::Value hiBits, mlir::Value hiIndex, mlir::Value loBits,
                          mlir::Value loIndex, mlir::Value index);

} // namespace mergec::merge
