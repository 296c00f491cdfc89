//===- MergeInterfaces.td - what passes ask the merge ops -------*- tablegen -*-===//
// Passes ask an op through these interfaces (as Toy's shape inference does) instead of
// keeping their own lists of op names: a new elementwise op or phase answers for itself.
#ifndef MERGEC_MERGE_INTERFACES
#define MERGEC_MERGE_INTERFACES

include "mlir/IR/OpBase.td"

def Merge_ElementwiseOpInterface : OpInterface<"ElementwiseOpInterface"> {
  let cppNamespace = "::mergec::merge";
  let description = [{
    An op on tensors that computes each element from the same element of its tensor operands
    (and from scalars): `merge-fuse-elementwise` rebuilds a rule's DAG on one element inside a
    kernel body by asking each op for its element computation.

    Most such ops have a formula on f32 scalars, `static Value buildScalar(OpBuilder &,
    Location, ValueRange)` (compiler/lib/Dialect/Merge/IR/ElementMath.cpp), which the default
    `buildElement` calls; MLIRGen uses the same function for scalar expressions, so a scalar
    and a tensor computation of one formula round identically.
  }];
  let methods = [
    InterfaceMethod<[{
        Builds the op's value for one element at the builder's insertion point. `operands`
        are the op's operands in order, each tensor replaced by its element (f32) and each
        scalar as it is; `elementIndex` returns the element's flat index (i64), made on
        first use, for ops that depend on where the element is.
      }],
      "::mlir::Value", "buildElement",
      (ins "::mlir::OpBuilder &":$builder, "::mlir::ValueRange":$operands,
           "::llvm::function_ref<::mlir::Value()>":$elementIndex),
      /*methodBody=*/"",
      /*defaultImplementation=*/[{
        return ConcreteOp::buildScalar(builder, $_op.getLoc(), operands);
      }]>,
  ];
}

def Merge_PhaseOpInterface : OpInterface<"PhaseOpInterface"> {
  let cppNamespace = "::mergec::merge";
  let description = [{
    A phase of a fused rule: a kernel whose body computes values from one element of each of
    its inputs, which the runtime runs over the whole tensor (or, at model scope, the whole
    model) before the phases that use its results. Its first `getNumScalarResults()` results
    are scalars the runtime writes to consecutive slots of the `scalars` array (f64; an f32
    result is that slot rounded); a phase may instead materialize a buffer that later phases
    read as more inputs (`getBufferResults()`).
  }];
  let methods = [
    InterfaceMethod<"The tensors whose elements the body reads, in block argument order.",
      "::mlir::OperandRange", "getPhaseInputs", (ins), "",
      [{ return $_op.getInputs(); }]>,
    InterfaceMethod<"The body: one element of each input in, merge.yield of its values out.",
      "::mlir::Region &", "getPhaseBody", (ins), "",
      [{ return $_op.getBody(); }]>,
    InterfaceMethod<[{
        How many scalar slots the phase's results take: its first that many results, in
        slot order.
      }],
      "unsigned", "getNumScalarResults">,
    InterfaceMethod<[{
        Whether the phase covers every tensor the rule merges (the runtime accumulates it
        over the model in analysis rounds before merging any tensor).
      }],
      "bool", "isModelScope", (ins), "",
      [{ return $_op.getModelScope(); }]>,
    InterfaceMethod<[{
        The tensors the phase materializes for later phases to read per element (a row
        phase's one buffer, a matrix phase's results), empty when its results are scalars
        only.
      }],
      "::llvm::SmallVector<::mlir::Value>", "getBufferResults", (ins), "",
      [{ return {}; }]>,
  ];
}

#endif // MERGEC_MERGE_INTERFACES
