//===- FuseElementwise.cpp - one merge.kernel per rule --------------------===//
#include "mergec/Dialect/Merge/IR/ElementMath.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/TypeSwitch.h"
#include <optional>

namespace mergec::merge {
#define GEN_PASS_DEF_MERGEFUSEELEMENTWISE
#include "mergec/Dialect/Merge/Transforms/Passes.h.inc"
} // namespace mergec::merge

using namespace mlir;
using namespace mergec::merge;

namespace {

bool isTensor(Value v) { return isa<mergec::merge::TensorType>(v.getType()); }

/// Collects the merge.input ops the DAG rooted at `root` reads, in program order.
SmallVector<InputOp> collectInputs(Value root) {
  SetVector<Operation *> seen;
  SmallVector<Value> work{root};
  SmallVector<InputOp> inputs;
  while (!work.empty()) {
    Value v = work.pop_back_val();
    Operation *def = v.getDefiningOp();
    if (!def || !seen.insert(def))
      continue;
    if (auto input = dyn_cast<InputOp>(def)) {
      inputs.push_back(input);
      continue;
    }
    for (Value operand : def->getOperands())
      if (isTensor(operand))
        work.push_back(operand);
  }
  llvm::sort(inputs, [](InputOp a, InputOp b) { return a->isBeforeInBlock(b); });
  return inputs;
}

/// The per-element meaning of an elementwise tensor op.
std::optional<ElementOp> elementOpOf(Operation *op) {
  return llvm::TypeSwitch<Operation *, std::optional<ElementOp>>(op)
      .Case<AddOp>([](auto) { return ElementOp::Add; })
      .Case<SubOp>([](auto) { return ElementOp::Sub; })
      .Case<MulOp>([](auto) { return ElementOp::Mul; })
      .Case<DivOp>([](auto) { return ElementOp::Div; })
      .Case<NegOp>([](auto) { return ElementOp::Neg; })
      .Case<SumOp>([](auto) { return ElementOp::Sum; })
      .Case<MeanOp>([](auto) { return ElementOp::Mean; })
      .Case<MaxOp>([](auto) { return ElementOp::Max; })
      .Case<MinOp>([](auto) { return ElementOp::Min; })
      .Case<MedianOp>([](auto) { return ElementOp::Median; })
      .Case<AbsOp>([](auto) { return ElementOp::Abs; })
      .Case<SignOp>([](auto) { return ElementOp::Sign; })
      .Case<SqrtOp>([](auto) { return ElementOp::Sqrt; })
      .Case<ExpOp>([](auto) { return ElementOp::Exp; })
      .Case<CmpOp>([](auto) { return ElementOp::Cmp; })
      .Case<SelectOp>([](auto) { return ElementOp::Select; })
      .Default([](Operation *) { return std::nullopt; });
}

/// Rebuilds the tensor DAG on one element inside the kernel body: each tensor op becomes the
/// arith op on f32 it means per element; scalars (defined above the kernel) are used as is.
class ElementBuilder {
public:
  ElementBuilder(OpBuilder &b, DenseMap<Value, Value> &map) : b_(b), map_(map) {}

  FailureOr<Value> get(Value tensor) {
    if (auto it = map_.find(tensor); it != map_.end())
      return it->second;
    Operation *def = tensor.getDefiningOp();
    Location loc = def->getLoc();
    SmallVector<Value> args;
    for (Value operand : def->getOperands()) {
      if (!isTensor(operand)) {
        args.push_back(operand);
        continue;
      }
      auto element = get(operand);
      if (failed(element))
        return failure();
      args.push_back(*element);
    }
    Value result;
    if (isa<SplatOp>(def)) {
      result = args[0];
    } else if (auto op = elementOpOf(def)) {
      auto cmp = dyn_cast<CmpOp>(def);
      result = buildElementOp(b_, loc, *op, args, cmp ? cmp.getPredicate() : "");
    } else {
      def->emitOpError("cannot be fused into an elementwise kernel");
      return failure();
    }
    return map_[tensor] = result;
  }

private:
  OpBuilder &b_;
  DenseMap<Value, Value> &map_;
};

/// Erases tensor ops left without users after fusion (inputs feed the kernel and stay).
void eraseDeadTensorOps(func::FuncOp func) {
  SmallVector<Operation *> ops;
  func.walk([&](Operation *op) {
    if (op->getDialect() && isa<MergeDialect>(op->getDialect()) &&
        !isa<KernelOp, ReduceKernelOp, YieldOp>(op) && op->getParentOp() == func)
      ops.push_back(op);
  });
  for (Operation *op : llvm::reverse(ops))
    if (op->use_empty())
      op->erase();
}

/// Builds the body of a kernel over `root`'s DAG: one f32 block argument per input, the DAG
/// on one element, merge.yield.
LogicalResult buildBody(OpBuilder &b, Region &region, Value root, ArrayRef<InputOp> inputs) {
  Block *body = b.createBlock(&region);
  DenseMap<Value, Value> map;
  for (InputOp in : inputs)
    map[in.getResult()] = body->addArgument(b.getF32Type(), in.getLoc());
  b.setInsertionPointToStart(body);
  ElementBuilder builder(b, map);
  auto element = builder.get(root);
  if (failed(element))
    return failure();
  YieldOp::create(b, root.getLoc(), *element);
  return success();
}

SmallVector<Value> inputValues(ArrayRef<InputOp> inputs) {
  SmallVector<Value> values;
  for (InputOp in : inputs)
    values.push_back(in.getResult());
  return values;
}

struct FuseElementwisePass : mergec::merge::impl::MergeFuseElementwiseBase<FuseElementwisePass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    // Reductions first, in program order: each becomes a phase of its own, and a later
    // reduction or the final kernel uses its scalar result.
    SmallVector<ReduceOp> reductions;
    func.walk([&](ReduceOp op) { reductions.push_back(op); });
    for (ReduceOp op : reductions)
      if (failed(fuseReduction(op)))
        return signalPassFailure();
    func.walk([&](func::ReturnOp ret) {
      for (OpOperand &operand : ret->getOpOperands()) {
        Value root = operand.get();
        if (!isTensor(root) || root.getDefiningOp<KernelOp>())
          continue;
        if (failed(fuse(ret, operand)))
          return signalPassFailure();
      }
    });
    eraseDeadTensorOps(func);
  }

  /// merge.reduce kind(DAG) => merge.reduce_kernel kind ins(inputs) { DAG on one element }
  LogicalResult fuseReduction(ReduceOp op) {
    Value root = op.getOperand();
    SmallVector<InputOp> inputs = collectInputs(root);
    OpBuilder b(op);
    auto kernel = ReduceKernelOp::create(b, op.getLoc(), b.getF32Type(), op.getKind(),
                                         inputValues(inputs));
    if (failed(buildBody(b, kernel.getBody(), root, inputs)))
      return failure();
    op.getResult().replaceAllUsesWith(kernel.getResult());
    op.erase();
    return success();
  }

  LogicalResult fuse(func::ReturnOp ret, OpOperand &operand) {
    Value root = operand.get();
    SmallVector<InputOp> inputs = collectInputs(root);
    OpBuilder b(ret);
    auto kernel = KernelOp::create(b, root.getLoc(), mergec::merge::TensorType::get(&getContext()),
                                   inputValues(inputs));
    if (failed(buildBody(b, kernel.getBody(), root, inputs)))
      return failure();
    operand.set(kernel.getResult());
    return success();
  }
};

} // namespace
