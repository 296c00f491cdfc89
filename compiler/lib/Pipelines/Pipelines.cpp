//===- Pipelines.cpp - pass pipelines and the dialect/pass registry -------===//
// The one translation unit that includes the upstream conversion headers (they are slow to
// compile), so the pipelines and the registration of everything live together here.
#include "mergec/Pipelines/Pipelines.h"
#include "mergec/Conversion/Passes.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mergec/MergeInitAll.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mergec::buildCleanupPipeline(OpPassManager &pm) {
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void mergec::buildFusionPipeline(OpPassManager &pm) {
  buildCleanupPipeline(pm);
  pm.addNestedPass<func::FuncOp>(merge::createMergeFuseElementwise());
  pm.addNestedPass<func::FuncOp>(merge::createMergeFuseSiblingReductions());
  buildCleanupPipeline(pm);
}

void mergec::buildLowerToLoopsPipeline(OpPassManager &pm) {
  pm.addPass(createMergeLowerKernels());
  // Folds constant scalar math (params, ramp anchors) and hoists what the loop does not need.
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createLoopInvariantCodeMotionPass());
}

void mergec::buildLoopsToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  // What LLVM has no intrinsic for (acos) becomes a call into libm, resolved in the process.
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void mergec::registerAllDialects(DialectRegistry &registry) {
  registry.insert<merge::MergeDialect, func::FuncDialect, arith::ArithDialect, scf::SCFDialect,
                  memref::MemRefDialect, cf::ControlFlowDialect, LLVM::LLVMDialect,
                  math::MathDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
}

void mergec::registerAllPasses() {
  merge::registerMergePasses();
  registerMergeConversionPasses();
  registerCanonicalizerPass();
  registerCSEPass();
  registerLoopInvariantCodeMotionPass();
  memref::registerExpandStridedMetadataPass();
  registerSCFToControlFlowPass();
  registerFinalizeMemRefToLLVMConversionPass();
  registerConvertMathToLLVMPass();
  registerArithToLLVMConversionPass();
  registerConvertControlFlowToLLVMPass();
  registerConvertFuncToLLVMPass();
  registerReconcileUnrealizedCastsPass();
  PassPipelineRegistration<>("merge-fuse-pipeline", "canonicalize, cse, fuse each rule into one kernel",
                             buildFusionPipeline);
  PassPipelineRegistration<>("merge-lower-to-llvm",
                             "lower specialized kernels to loops, then to the LLVM dialect",
                             [](OpPassManager &pm) {
                               buildLowerToLoopsPipeline(pm);
                               buildLoopsToLLVMPipeline(pm);
                             });
}
