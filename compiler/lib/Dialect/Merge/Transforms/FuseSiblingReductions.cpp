//===- FuseSiblingReductions.cpp - independent reductions share a pass ----===//
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"
#include <limits>

namespace mergec::merge {
#define GEN_PASS_DEF_MERGEFUSESIBLINGREDUCTIONS
#include "mergec/Dialect/Merge/Transforms/Passes.h.inc"
} // namespace mergec::merge

using namespace mlir;
using namespace mergec::merge;

namespace {

/// One reduce_kernel computing every reduction of `group` (same depth and scope, so none reads
/// another's result) over the union of their inputs, in program order.
void mergeGroup(ArrayRef<ReduceKernelOp> group) {
  ReduceKernelOp first = group.front();
  OpBuilder b(first);
  SetVector<Value> inputSet;
  SmallVector<ReductionKind> kinds;
  for (ReduceKernelOp k : group) {
    inputSet.insert(k.getInputs().begin(), k.getInputs().end());
    llvm::append_range(kinds, k.getKinds());
  }
  SmallVector<Value> inputs(inputSet.begin(), inputSet.end());
  llvm::sort(inputs, [](Value a, Value c) {
    return a.getDefiningOp()->isBeforeInBlock(c.getDefiningOp());
  });
  SmallVector<Type> types(kinds.size(), b.getF32Type());
  auto merged = ReduceKernelOp::create(b, first.getLoc(), types,
                                       ReductionKindArrayAttr::get(b.getContext(), kinds), inputs);
  if (first.getModelScope())
    merged.setModelScope(true);
  Block *body = b.createBlock(&merged.getBody());
  for (Value in : inputs)
    body->addArgument(b.getF32Type(), in.getLoc());
  b.setInsertionPointToStart(body);
  SmallVector<Value> yields;
  for (ReduceKernelOp k : group) {
    IRMapping map;
    Block &old = k.getBody().front();
    for (auto [arg, in] : llvm::zip(old.getArguments(), k.getInputs()))
      map.map(arg, body->getArgument(llvm::find(inputs, in) - inputs.begin()));
    for (Operation &op : old.without_terminator())
      b.clone(op, map);
    for (Value v : cast<YieldOp>(old.getTerminator()).getValues())
      yields.push_back(map.lookupOrDefault(v));
  }
  YieldOp::create(b, first.getLoc(), yields);
  size_t next = 0;
  for (ReduceKernelOp k : group) {
    for (Value r : k.getResults())
      r.replaceAllUsesWith(merged.getResult(next++));
    k.erase();
  }
}

struct FuseSiblingReductionsPass
    : mergec::merge::impl::MergeFuseSiblingReductionsBase<FuseSiblingReductionsPass> {
  void runOnOperation() override {
    Block &block = getOperation().getBody().front();
    // Depth of a value: how many phases it waits for. An op's operands (and, for kernels, the
    // scalars their bodies use from above) are ready at the deepest of theirs; a phase's results
    // are one deeper. Sorting by (depth, phase after non-phase) is a topological order.
    DenseMap<Value, unsigned> depth;
    SmallVector<std::pair<unsigned, Operation *>> order;
    for (Operation &op : block.without_terminator()) {
      unsigned ready = 0;
      auto see = [&](Value v) {
        if (auto it = depth.find(v); it != depth.end())
          ready = std::max(ready, it->second);
      };
      for (Value v : op.getOperands())
        see(v);
      if (op.getNumRegions()) {
        SetVector<Value> above;
        getUsedValuesDefinedAbove(op.getRegions(), above);
        for (Value v : above)
          see(v);
      }
      bool phase = isa<PhaseOpInterface>(op);
      for (Value r : op.getResults())
        depth[r] = ready + phase;
      // The map kernel runs after every phase, also one it does not read (a matrix phase
      // that only emits matrices: compress(...)).
      order.push_back({isa<KernelOp>(op) ? std::numeric_limits<unsigned>::max() : 2 * ready + phase,
                       &op});
    }
    std::stable_sort(order.begin(), order.end(),
                     [](auto &a, auto &b) { return a.first < b.first; });
    Operation *terminator = block.getTerminator();
    for (auto &[key, op] : order)
      op->moveBefore(terminator);

    // Reductions of one depth and scope, in program order.
    llvm::MapVector<unsigned, SmallVector<ReduceKernelOp>> groups;
    for (auto &[key, op] : order)
      if (auto r = dyn_cast<ReduceKernelOp>(op))
        groups[2 * key + r.getModelScope()].push_back(r);
    for (auto &[key, group] : groups)
      if (group.size() > 1)
        mergeGroup(group);
  }
};

} // namespace
