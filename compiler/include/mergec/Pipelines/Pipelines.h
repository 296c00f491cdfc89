//===- Pipelines.h - the pass pipelines of each --emit stage ----*- C++ -*-===//
// Kept in the library so mergec, merge-opt and the tests run exactly the same passes.
#pragma once
#include <string>

namespace mlir {
class OpPassManager;
}

namespace mergec {
/// MLIRGen output -> cleaned-up merge IR (--emit=merge): canonicalize, cse.
void buildCleanupPipeline(mlir::OpPassManager &pm);
/// merge IR -> one merge.kernel per rule (--emit=fused).
void buildFusionPipeline(mlir::OpPassManager &pm);
/// Specialized fused rules -> chunk loops over memrefs (--emit=loops).
void buildLowerToLoopsPipeline(mlir::OpPassManager &pm);
/// Chunk loops -> LLVM dialect, ready for translation and the JIT.
void buildLoopsToLLVMPipeline(mlir::OpPassManager &pm);
/// Chunk loops -> GPU kernels in one gpu.module (the CUDA target's --emit=gpu).
void buildLoopsToGPUPipeline(mlir::OpPassManager &pm);
/// GPU kernels -> the NVVM dialect for `chip` (sm_90, ...), math through libdevice (--emit=nvvm).
void buildGPUToNVVMPipeline(mlir::OpPassManager &pm, const std::string &chip);
/// NVVM -> PTX text in a gpu.binary (LLVM's NVPTX backend, libdevice linked) (--emit=ptx).
/// `toolkit` is the CUDA toolkit's directory (libdevice in nvvm/libdevice/).
void buildNVVMToPTXPipeline(mlir::OpPassManager &pm, const std::string &toolkit);
} // namespace mergec
