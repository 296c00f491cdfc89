//===- PhaseLayout.h - a fused rule's phases and their scalar slots -*- C++ -*-===//
// The lowering (which reads earlier phases' results from the scalars array) and the JIT
// (which tells the runtime where to write them) must agree on the layout: both use this.
#pragma once
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Runtime/KernelABI.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mergec::merge {

struct PhaseLayout {
  /// The phases before the final merge.kernel, in program order.
  llvm::SmallVector<mlir::Operation *> phases;
  /// The first scalar slot of each phase; one more entry: the size of the scalars array.
  std::vector<int64_t> firstSlot;

  int64_t slotOf(mlir::Operation *phase, int64_t result = 0) const {
    return firstSlot[llvm::find(phases, phase) - phases.begin()] + result;
  }
};

/// Each phase takes as many slots as it says (PhaseOpInterface::getNumScalarResults): one per
/// reduction, four for a selection, none for a row phase (its result is a buffer).
inline PhaseLayout phaseLayout(mlir::func::FuncOp rule) {
  PhaseLayout layout;
  std::vector<int64_t> counts;
  for (mlir::Operation &op : rule.getBody().front()) {
    auto phase = mlir::dyn_cast<PhaseOpInterface>(op);
    if (!phase)
      continue;
    layout.phases.push_back(&op);
    counts.push_back(phase.getNumScalarResults());
  }
  layout.firstSlot = rt::abi::firstPhaseSlots(counts);
  return layout;
}

} // namespace mergec::merge
