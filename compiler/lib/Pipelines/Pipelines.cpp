//===- Pipelines.cpp - pass pipelines and the dialect/pass registry -------===//
// The one translation unit that includes the upstream conversion headers (they are slow to
// compile), so the pipelines and the registration of everything live together here.
#include "mergec/Pipelines/Pipelines.h"
#include "mergec/Conversion/Passes.h"
#include "mergec/Dialect/Merge/IR/MergeDialect.h"
#include "mergec/Dialect/Merge/Transforms/Passes.h"
#include "mergec/MergeInitAll.h"
#include "mergec/Runtime/KernelABI.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
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
  // The CPU's own step: a chunk's reduction in the order of the GPU's block (its lanes and
  // tree), which vectorizes (the GPU spreads the same loop over threads instead).
  pm.addPass(createMergeTileReductions(MergeTileReductionsOptions{mergec::rt::abi::kGpuBlock}));
  // Also the CPU's: per-row values read row by row instead of dividing per element.
  pm.addPass(createMergeSplitRowLoops());
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

void mergec::buildLoopsToGPUPipeline(OpPassManager &pm) {
  pm.addPass(createMergeConvertKernelsToGPU());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void mergec::buildGPUToNVVMPipeline(OpPassManager &pm, const std::string &chip) {
  GpuNVVMAttachTargetOptions target;
  target.chip = chip;
  // PTX ISA 8.0 (CUDA 12.0+): what sm_90 needs; any CUDA 12/13 driver JIT-compiles it.
  target.features = "+ptx80";
  target.optLevel = 3;
  // No fast-math and no flush-to-zero: the GPU rounds like the CPU (denormals kept, IEEE
  // division and square root), so deterministic methods match within an ulp.
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  kernels.addPass(createSCFToControlFlowPass());
  kernels.addPass(createConvertGpuOpsToNVVMOps());
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  kernels.addPass(createReconcileUnrealizedCastsPass());
}

void mergec::buildNVVMToPTXPipeline(OpPassManager &pm, const std::string &toolkit) {
  GpuModuleToBinaryPassOptions binary;
  binary.toolkitPath = toolkit;
  binary.compilationTarget = "isa"; // PTX text; the driver compiles it for the exact GPU
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

void mergec::registerAllDialects(DialectRegistry &registry) {
  registry.insert<merge::MergeDialect, func::FuncDialect, arith::ArithDialect, scf::SCFDialect,
                  memref::MemRefDialect, cf::ControlFlowDialect, LLVM::LLVMDialect,
                  math::MathDialect, gpu::GPUDialect, NVVM::NVVMDialect,
                  vector::VectorDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  // The CUDA target: convert-gpu-to-nvvm takes the patterns of every dialect in a kernel from
  // these interfaces, and gpu-module-to-binary serializes through the NVVM target attribute.
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertFuncToLLVMInterface(registry);
  index::registerConvertIndexToLLVMInterface(registry);
  registerConvertMathToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerGPUDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
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
  registerGpuNVVMAttachTarget();
  registerConvertGpuOpsToNVVMOpsPass();
  registerGpuModuleToBinaryPass();
  PassPipelineRegistration<>("merge-fuse-pipeline", "canonicalize, cse, fuse each rule into one kernel",
                             buildFusionPipeline);
  PassPipelineRegistration<>("merge-lower-to-llvm",
                             "lower specialized kernels to loops, then to the LLVM dialect",
                             [](OpPassManager &pm) {
                               buildLowerToLoopsPipeline(pm);
                               buildLoopsToLLVMPipeline(pm);
                             });
  PassPipelineRegistration<>("merge-lower-to-gpu",
                             "lower specialized kernels to loops, then to GPU kernels",
                             [](OpPassManager &pm) {
                               buildLowerToLoopsPipeline(pm);
                               buildLoopsToGPUPipeline(pm);
                             });
}
