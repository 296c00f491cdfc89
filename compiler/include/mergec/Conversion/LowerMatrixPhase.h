//===- LowerMatrixPhase.h - a matrix phase's program to host code ----*- C++ -*-===//
// Part of merge-lower-kernels: the function of a merge.matrix_phase is not a loop nest over
// chunks but a host program run once per tensor (BLAS and LAPACK calls through the runtime's
// mergec_la_* functions, loops for the rest). LowerKernels emits its signature and prelude and
// calls this for the rest of the body.
#pragma once
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"

namespace mergec {

struct MatrixPhaseArgs {
  mlir::Value begin, end; ///< [0, numel) of the current tensor
  mlir::Value scalars;    ///< the f64 scalars array (kColsSlot: the tensor's columns)
  mlir::Value result;     ///< f64: the phase's scalar results
  /// The buffers the phase's tensor results go to, in result order.
  llvm::SmallVector<mlir::Value> buffers;
  /// Loads one element of each input and computes the body at flat index i: the values of the
  /// program's matrices there.
  llvm::function_ref<llvm::SmallVector<mlir::Value>(mlir::OpBuilder &, mlir::Value)> elements;
};

/// Emits the rest of `fn` (whose entry block holds the prelude, `map` mapping the values the
/// program uses from above) for `phase`, ending in func.return; the insertion point is at the
/// end of the prelude.
mlir::LogicalResult lowerMatrixPhase(mlir::OpBuilder &b, mlir::func::FuncOp fn,
                                     merge::MatrixPhaseOp phase, mlir::IRMapping &map,
                                     const MatrixPhaseArgs &args);

} // namespace mergec
