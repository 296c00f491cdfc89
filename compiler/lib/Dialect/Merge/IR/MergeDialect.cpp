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

LogicalResult KernelOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("body has ") << body.getNumArguments() << " arguments for "
                                    << getInputs().size() << " inputs";
  for (BlockArgument arg : body.getArguments())
    if (!arg.getType().isF32())
      return emitOpError("body arguments must be f32 (one element of each input), got ")
             << arg.getType();
  if (body.empty() || !isa<YieldOp>(body.back()))
    return emitOpError("body must end with merge.yield");
  return success();
}
