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

#endif // MERGEC_CONVERSION_PASSES
