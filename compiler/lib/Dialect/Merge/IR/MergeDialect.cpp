//===- MergeDialect.cpp - merge dialect registration and verifiers --------===//
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mergec::merge;

#include "mergec/Dialect/Merge/IR/MergeDialect.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "mergec/Dialect/Merge/IR/MergeTypes.cpp.inc"

#define GET_OP_CLASSES
#include "mergec/Dialect/Merge/IR/MergeOps.cpp.inc"

void MergeDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "mergec/Dialect/Merge/IR/MergeTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "mergec/Dialect/Merge/IR/MergeOps.cpp.inc"
      >();
}

LogicalResult InputOp::verify() {
  if (getModel().empty())
    return emitOpError("needs a model name");
  if (auto storage = getStorage()) {
    Type t = *storage;
    if (!t.isF32() && !t.isF16() && !t.isBF16())
      return emitOpError("stored type must be f32, f16 or bf16, got ") << t;
  }
  return success();
}

LogicalResult RampOp::verify() {
  if (getAnchors().empty())
    return emitOpError("needs at least one anchor value");
  return success();
}

template <typename Op> static LogicalResult verifyListReduction(Op op) {
  if (op.getOperands().empty())
    return op.emitOpError("needs at least one operand");
  return success();
}
LogicalResult SumOp::verify() { return verifyListReduction(*this); }
LogicalResult MeanOp::verify() { return verifyListReduction(*this); }
LogicalResult MaxOp::verify() { return verifyListReduction(*this); }
LogicalResult MinOp::verify() { return verifyListReduction(*this); }
LogicalResult MedianOp::verify() { return verifyListReduction(*this); }

LogicalResult CmpOp::verify() {
  StringRef p = getPredicate();
  if (p != "lt" && p != "gt" && p != "le" && p != "ge" && p != "eq" && p != "ne")
    return emitOpError("predicate must be one of lt, gt, le, ge, eq, ne; got '") << p << "'";
  return success();
}

/// Kernels of both kinds: one f32 block argument per input, ending in merge.yield.
static LogicalResult verifyKernelBody(Operation *op, Region &region, size_t numInputs) {
  Block &body = region.front();
  if (body.getNumArguments() != numInputs)
    return op->emitOpError("body has ") << body.getNumArguments() << " arguments for "
                                        << numInputs << " inputs";
  for (BlockArgument arg : body.getArguments())
    if (!arg.getType().isF32())
      return op->emitOpError("body arguments must be f32 (one element of each input), got ")
             << arg.getType();
  if (body.empty() || !isa<YieldOp>(body.back()))
    return op->emitOpError("body must end with merge.yield");
  return success();
}

static LogicalResult verifyReduceKind(Operation *op, StringRef kind) {
  if (kind != "sum" && kind != "max")
    return op->emitOpError("kind must be 'sum' or 'max', got '") << kind << "'";
  return success();
}

LogicalResult KernelOp::verify() {
  return verifyKernelBody(*this, getBody(), getInputs().size());
}

LogicalResult ReduceKernelOp::verify() {
  if (failed(verifyReduceKind(*this, getKind())))
    return failure();
  return verifyKernelBody(*this, getBody(), getInputs().size());
}

LogicalResult ReduceOp::verify() { return verifyReduceKind(*this, getKind()); }
