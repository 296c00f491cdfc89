//===- MergeDialect.td - the merge dialect ---------------------*- tablegen -*-===//
#ifndef MERGEC_MERGE_DIALECT
#define MERGEC_MERGE_DIALECT

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def Merge_Dialect : Dialect {
  let name = "merge";
  let cppNamespace = "::mergec::merge";
  let summary = "Per-tensor arithmetic of model-merging recipes";
  let description = [{
    A rule of a recipe becomes one `func.func` returning a `!merge.tensor`: the value of every
    element of the current output tensor. Tensors are flat and their length is known only at
    run time; `merge.input` reads the tensor of the same name from one model. Scalars are plain
    `f32` values (arith ops) that are the same for every element. The elementwise fusion pass
    turns each rule into a single `merge.kernel`, whose body computes one element in f32.
  }];
  let useDefaultTypePrinterParser = 1;
  // The kind attributes (MergeAttrs.td) print as `#merge.reduction<sum>` on their own and as
  // `<sum>` inside an op's assembly.
  let useDefaultAttributePrinterParser = 1;
}

class Merge_Type<string name, string typeMnemonic> : TypeDef<Merge_Dialect, name> {
  let mnemonic = typeMnemonic;
}

def Merge_TensorType : Merge_Type<"Tensor", "tensor"> {
  let summary = "the current tensor's values, computed in f32";
  let description = [{
    One value per element of the output tensor being produced. Its length and shape come from
    the checkpoint at run time; its storage dtype (bf16, f16, f32) is chosen when the rule is
    specialized, and it is always computed in f32.
  }];
}

def Merge_MatrixType : Merge_Type<"Matrix", "matrix"> {
  let summary = "a 2-D f32 matrix of any shape, known at run time";
  let description = [{
    A value of the linear algebra in a rule (`svd`'s factors, `a @ b`, ...): rows x cols f32,
    row-major, its shape known only when the rule runs on a tensor. `merge.to_matrix` views the
    current tensor as one (its last dimension the columns; a 1-D tensor is 1 x n) and
    `merge.to_tensor` turns one back, checking it has the tensor's shape. Matrix ops run in a
    `merge.matrix_phase`, once per tensor, on the host (BLAS and LAPACK).
  }];
}

class Merge_Op<string mnemonic, list<Trait> traits = []> : Op<Merge_Dialect, mnemonic, traits>;

#endif // MERGEC_MERGE_DIALECT
