//===- MergeDialect.cpp - merge dialect registration and verifiers --------===//
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/TypeSwitch.h"
#include <cmath>

using namespace mlir;
using namespace mergec::merge;

#include "mergec/Dialect/Merge/IR/MergeDialect.cpp.inc"

#include "mergec/Dialect/Merge/IR/MergeEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "mergec/Dialect/Merge/IR/MergeAttrs.cpp.inc"

#include "mergec/Dialect/Merge/IR/MergeInterfaces.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "mergec/Dialect/Merge/IR/MergeTypes.cpp.inc"

#define GET_OP_CLASSES
#include "mergec/Dialect/Merge/IR/MergeOps.cpp.inc"

void MergeDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "mergec/Dialect/Merge/IR/MergeAttrs.cpp.inc"
      >();
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

/// Kernels of every kind: one f32 block argument per input, ending in merge.yield of
/// `numYields` values.
static LogicalResult verifyKernelBody(Operation *op, Region &region, size_t numInputs,
                                      size_t numYields = 1) {
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
  size_t yielded = cast<YieldOp>(body.back()).getValues().size();
  if (yielded != numYields)
    return op->emitOpError("body yields ") << yielded << " values, expected " << numYields;
  return success();
}

/// Kernel bodies are the final merge.kernel's and the phases'.
static bool isKernel(Operation *op) { return isa_and_nonnull<KernelOp, PhaseOpInterface>(op); }

LogicalResult KernelOp::verify() {
  return verifyKernelBody(*this, getBody(), getInputs().size());
}

LogicalResult ReduceKernelOp::verify() {
  if (getKinds().empty())
    return emitOpError("needs at least one reduction");
  if (getKinds().size() != getResults().size())
    return emitOpError("has ") << getKinds().size() << " kinds for " << getResults().size()
                               << " results";
  return verifyKernelBody(*this, getBody(), getInputs().size(), getKinds().size());
}

LogicalResult SelectKernelOp::verify() {
  return verifyKernelBody(*this, getBody(), getInputs().size());
}

LogicalResult RowKernelOp::verify() {
  return verifyKernelBody(*this, getBody(), getInputs().size());
}

LogicalResult YieldOp::verify() {
  if (!isKernel((*this)->getParentOp()) && !isa<MatrixMapOp>((*this)->getParentOp()))
    return emitOpError("must end the body of a merge.kernel, of a phase or of a merge.matrix_map");
  return success();
}

LogicalResult MatrixMapOp::verify() {
  if (getInputs().empty())
    return emitOpError("needs at least one matrix input");
  return verifyKernelBody(*this, getBody(), getInputs().size());
}

LogicalResult MatrixPhaseOp::verify() {
  Block &program = getProgram().front();
  // The body yields the value of each matrix the program starts from.
  if (failed(verifyKernelBody(*this, getBody(), getInputs().size(), program.getNumArguments())))
    return failure();
  for (BlockArgument arg : program.getArguments())
    if (!isa<MatrixType>(arg.getType()))
      return emitOpError("program arguments must be matrices, got ") << arg.getType();
  auto yield = dyn_cast<MatrixYieldOp>(program.empty() ? nullptr : &program.back());
  if (!yield)
    return emitOpError("program must end with merge.matrix_yield");
  unsigned scalars = getNumScalars();
  if (yield.getValues().size() != getNumResults())
    return emitOpError("program yields ") << yield.getValues().size() << " values for "
                                          << getNumResults() << " results";
  for (auto [i, v] : llvm::enumerate(yield.getValues())) {
    bool scalar = i < scalars;
    if (scalar != v.getType().isF32() || (!scalar && !isa<MatrixType>(v.getType())))
      return emitOpError("program yield ") << i << " must be "
                                           << (scalar ? "an f32 scalar" : "a matrix")
                                           << " (scalars first, then matrices), got "
                                           << v.getType();
  }
  for (Value r : getResults().drop_front(scalars))
    if (!isa<TensorType>(r.getType()))
      return emitOpError("results must be f32 scalars followed by tensors");
  return success();
}

OpFoldResult SelectOp::fold(FoldAdaptor) {
  auto splat = getMask().getDefiningOp<SplatOp>();
  if (!splat)
    return {};
  FloatAttr value;
  if (!matchPattern(splat.getValue(), m_Constant(&value)))
    return {};
  return value.getValue().isZero() ? getB() : getA();
}

LogicalResult TopKMaskOp::verify() {
  double d = getDensity().convertToDouble(), s = getSkip().convertToDouble();
  if (!(d >= 0) || !(s >= 0) || !std::isfinite(s))
    return emitOpError("density and skip must be non-negative numbers");
  if (getNonzero() && s != 0)
    return emitOpError("nonzero selection takes no skip");
  return success();
}

LogicalResult QuantileOp::verify() {
  double q = getQ().convertToDouble();
  if (!(q >= 0 && q <= 1))
    return emitOpError("q must be in [0, 1], got ") << q;
  return success();
}

LogicalResult ElementIndexOp::verify() {
  if (!isKernel((*this)->getParentOp()))
    return emitOpError("is only valid inside a kernel body");
  return success();
}
