//===- SpecializeDTypes.cpp - storage dtypes for inputs and results -------===//
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"

namespace mergec::merge {
#define GEN_PASS_DEF_MERGESPECIALIZEDTYPES
#include "mergec/Dialect/Merge/Transforms/Passes.h.inc"
} // namespace mergec::merge

using namespace mlir;
using namespace mergec::merge;

Type mergec::merge::parseStorageType(MLIRContext *ctx, const std::string &name) {
  Builder b(ctx);
  if (name == "f32")
    return b.getF32Type();
  if (name == "f16")
    return b.getF16Type();
  if (name == "bf16")
    return b.getBF16Type();
  return {};
}

namespace {

struct SpecializeDTypesPass : mergec::merge::impl::MergeSpecializeDTypesBase<SpecializeDTypesPass> {
  using MergeSpecializeDTypesBase::MergeSpecializeDTypesBase;

  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    Type input = parseStorageType(ctx, inputDType);
    Type output = parseStorageType(ctx, outputDType);
    if (!input || !output) {
      getOperation().emitError("merge-specialize-dtypes: dtypes must be f32, f16 or bf16");
      return signalPassFailure();
    }
    getOperation().walk([&](InputOp op) {
      if (!op.getStorage())
        op.setStorageAttr(TypeAttr::get(input));
    });
    getOperation().walk([&](func::FuncOp func) {
      if (!func->hasAttr(kStoreAttr))
        func->setAttr(kStoreAttr, TypeAttr::get(output));
    });
  }
};

} // namespace
