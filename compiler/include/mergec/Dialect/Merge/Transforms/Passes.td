//===- Passes.td - merge dialect transformations ---------------*- tablegen -*-===//
#ifndef MERGEC_MERGE_PASSES
#define MERGEC_MERGE_PASSES

include "mlir/Pass/PassBase.td"

def MergeFuseElementwise : Pass<"merge-fuse-elementwise", "mlir::func::FuncOp"> {
  let summary = "Fuse a rule's elementwise tensor ops into one merge.kernel";
  let description = [{
    Every tensor value a rule returns is a DAG of elementwise ops over `merge.input` leaves.
    This pass replaces the whole DAG with one `merge.kernel` whose inputs are the distinct
    `merge.input`s (in program order) and whose body is the DAG on one element:

      `merge.add(a, merge.splat(s))  =>  kernel ins(a) { ^bb0(x): yield arith.addf(x, s) }`
      `merge.sum(a, b, c)            =>  arith.addf(arith.addf(a, b), c)`
      `merge.mean(a, b)              =>  arith.divf(arith.addf(a, b), 2)`

    so each input element is read once and the result is stored once, whatever the depth of
    the expression. A rule that returns a model's tensor unchanged gets an identity kernel
    (it still converts dtypes when the output dtype differs).
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect"];
}

def MergeFuseSiblingReductions : Pass<"merge-fuse-sibling-reductions", "mlir::func::FuncOp"> {
  let summary = "Merge reduction phases that do not depend on each other into one pass";
  let description = [{
    After `merge-fuse-elementwise` every reduction is a `merge.reduce_kernel` phase, and each
    phase is a pass over the tensor. Reductions whose values do not depend on each other (the
    norms and dots of a Gram matrix, the mean squares of every task vector) can share one pass:

      `%n = reduce_kernel ["sum"] ins(%a) {..}`            `%n, %d = reduce_kernel ["sum", "sum"]`
      `%d = reduce_kernel ["sum"] ins(%a, %b) {..}`   =>           `ins(%a, %b) {.. yield %sq, %xy}`

    The pass first orders the rule by phase depth (how many phases a value waits for: a
    phase's results are one deeper than anything it reads, directly or through scalars), a
    topological order that keeps program order within a depth, then merges the reductions of
    each depth (and scope) into one kernel whose inputs are the union of theirs, read once.
  }];
}

def MergeSpecializeDTypes : Pass<"merge-specialize-dtypes", "mlir::ModuleOp"> {
  let summary = "Give every merge.input a storage dtype and every rule an output dtype";
  let description = [{
    Kernels are compiled per (rule, dtype signature). The runtime specializes each rule with
    the dtypes of the tensors it meets; this pass does the same with one dtype for all inputs
    and one for the output, for `mergec compile` and tests:

      `merge.input "a"  =>  merge.input "a" stored bf16`,  func gets `merge.store = bf16`.

    Inputs that already carry a storage dtype keep it.
  }];
  let options = [
    Option<"inputDType", "input-dtype", "std::string", /*default=*/"\"f32\"",
           "storage dtype of the inputs: f32, f16 or bf16">,
    Option<"outputDType", "output-dtype", "std::string", /*default=*/"\"f32\"",
           "dtype the result is rounded to: f32, f16 or bf16">,
  ];
}

#endif // MERGEC_MERGE_PASSES
