//===- Pipelines.h - the pass pipelines of each --emit stage ----*- C++ -*-===//
// Kept in the library so mergec, merge-opt and the tests run exactly the same passes.
#pragma once

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
} // namespace mergec
