//===- Passes.td - lowering the merge dialect ------------------*- tablegen -*-===//
#ifndef MERGEC_CONVERSION_PASSES
#define MERGEC_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def MergeLowerKernels : Pass<"merge-lower-kernels", "mlir::ModuleOp"> {
  let summary = "Lower each fused rule to a chunk function: a loop over memrefs";
  let description = [{
    A specialized rule (its inputs and result have storage dtypes) becomes

      `func @rule(%in0: memref<?xS0>, ..., %out: memref<?xSo>, %begin: index, %end: index,
                  %layer: f32, %num_layers: f32)`

    whose body computes the scalars once and then runs `scf.for %i = %begin to %end` over the
    kernel body: `load(in_k[i])` widened to f32 (bf16 as `bitcast(zext(bits) << 16)`),
    the kernel's arith ops, and a store rounded to So (bf16: round to nearest even on the
    bits, NaN kept quiet). The runtime calls it on chunks from its thread pool. bf16 storage is
    carried as i16 memrefs so the rounding is explicit integer code that vectorizes, not a
    libcall. The func keeps `merge.inputs`, the model of each memref argument.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect", "mlir::func::FuncDialect"];
}

def MergeConvertKernelsToGPU : Pass<"merge-convert-kernels-to-gpu", "mlir::ModuleOp"> {
  let summary = "Turn each lowered phase function into a GPU kernel in one gpu.module";
  let description = [{
    The CUDA target's first step after the shared lowering (merge-lower-kernels): every
    `func.func` phase of the module becomes a `gpu.func ... kernel` with the same arguments
    (so the runtime passes the same flattened descriptors as to the CPU's packed functions)
    inside `gpu.module @mergec_kernels`, with a known block size of abi::kGpuBlock threads.
    Its loop over [begin, end) is redistributed over the threads:

    - a loop without results (map, select and row-key phases) becomes a grid-stride loop:
      thread t of block b starts at begin + b * blockDim + t and steps by gridDim * blockDim, so
      any grid computes every element once;
    - a reduction loop (f64 accumulators) runs one block per Device::kChunk elements: each
      thread accumulates its elements of the block's chunk in order, the block combines the
      threads' partials in a fixed tree in workgroup memory (no atomics: the same bits every
      run), and thread 0 writes the chunk's partial j at result[block * m + j]; the runtime
      combines the chunks in chunk order exactly as for the CPU.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::arith::ArithDialect",
                           "mlir::scf::SCFDialect", "mlir::memref::MemRefDialect"];
}

#endif // MERGEC_CONVERSION_PASSES
