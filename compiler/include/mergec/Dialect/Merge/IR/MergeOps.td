//===- MergeOps.td - merge dialect operations ------------------*- tablegen -*-===//
#ifndef MERGEC_MERGE_OPS
#define MERGEC_MERGE_OPS

include "mergec/Dialect/Merge/IR/MergeDialect.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"

//===----------------------------------------------------------------------===//
// Leaves: model tensors and per-tensor context
//===----------------------------------------------------------------------===//

def Merge_InputOp : Merge_Op<"input", [Pure]> {
  let summary = "the current tensor of one model";
  let description = [{
    The tensor with the current output tensor's name, read from model `model`. `stored` gives
    the dtype it is stored in once the rule is specialized; loads widen it to f32.

    ```mlir
    %a = merge.input "math" stored bf16
    ```
  }];
  let arguments = (ins StrAttr:$model, OptionalAttr<TypeAttr>:$storage);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$model (`stored` $storage^)? attr-dict";
  let hasVerifier = 1;
}

def Merge_LayerOp : Merge_Op<"layer", [Pure]> {
  let summary = "the layer index in the current tensor's name, or -1";
  let description = [{
    N for a tensor named `model.layers.N.*`, else -1.
    ```mlir
    %l = merge.layer
    ```
  }];
  let results = (outs F32:$result);
  let assemblyFormat = "attr-dict";
}

def Merge_NumLayersOp : Merge_Op<"num_layers", [Pure]> {
  let summary = "the base model's number of layers";
  let description = [{
    `num_hidden_layers` from config.json, else 1 + the largest layer index in tensor names.
    ```mlir
    %n = merge.num_layers
    ```
  }];
  let results = (outs F32:$result);
  let assemblyFormat = "attr-dict";
}

def Merge_RampOp : Merge_Op<"ramp", [Pure]> {
  let summary = "piecewise-linear interpolation over the layers (mergekit's gradient)";
  let description = [{
    With t = layer / (num_layers - 1) (t = 0 for tensors outside the layers) and k + 1 anchors
    v0..vk evenly spaced over [0, 1], yields the linear interpolation at t.
    ```mlir
    %w = merge.ramp [%v0, %v1, %v2]
    ```
  }];
  let arguments = (ins Variadic<F32>:$anchors);
  let results = (outs F32:$result);
  let assemblyFormat = "`[` $anchors `]` attr-dict";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Elementwise tensor arithmetic (fused into kernels)
//===----------------------------------------------------------------------===//

def Merge_SplatOp : Merge_Op<"splat", [Pure]> {
  let summary = "a tensor with every element equal to a scalar";
  let description = [{
    Broadcasts a scalar where a tensor is expected: `base + 0.5` is
    ```mlir
    %h = arith.constant 5.000000e-01 : f32
    %s = merge.splat %h
    %r = merge.add %base, %s
    ```
  }];
  let arguments = (ins F32:$value);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$value attr-dict";
}

class Merge_BinaryOp<string mnemonic, string formula> : Merge_Op<mnemonic, [Pure]> {
  let summary = "elementwise " # formula;
  let description = [{
    Elementwise on two tensors of the current shape, in f32:
    ```mlir
    %r = merge.}] # mnemonic # [{ %a, %b
    ```
  }];
  let arguments = (ins Merge_TensorType:$lhs, Merge_TensorType:$rhs);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
}

def Merge_AddOp : Merge_BinaryOp<"add", "lhs + rhs">;
def Merge_SubOp : Merge_BinaryOp<"sub", "lhs - rhs">;
def Merge_MulOp : Merge_BinaryOp<"mul", "lhs * rhs">;
def Merge_DivOp : Merge_BinaryOp<"div", "lhs / rhs">;

def Merge_NegOp : Merge_Op<"neg", [Pure]> {
  let summary = "elementwise negation";
  let description = [{
    ```mlir
    %r = merge.neg %a
    ```
  }];
  let arguments = (ins Merge_TensorType:$operand);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$operand attr-dict";
}

class Merge_ListReductionOp<string mnemonic, string formula> : Merge_Op<mnemonic, [Pure]> {
  let summary = "elementwise " # formula # " across a list of tensors";
  let description = [{
    Per element, across the operands (the unrolled list), accumulated left to right in f32:
    ```mlir
    %r = merge.}] # mnemonic # [{ %ta, %tb, %tc
    ```
  }];
  let arguments = (ins Variadic<Merge_TensorType>:$operands);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$operands attr-dict";
  let hasVerifier = 1;
}

def Merge_SumOp : Merge_ListReductionOp<"sum", "sum">;
def Merge_MeanOp : Merge_ListReductionOp<"mean", "mean (sum / count)">;
def Merge_MaxOp : Merge_ListReductionOp<"max", "maximum (NaN if any is NaN)">;
def Merge_MinOp : Merge_ListReductionOp<"min", "minimum (NaN if any is NaN)">;
def Merge_MedianOp : Merge_ListReductionOp<"median",
    "median (the mean of the middle two for an even count, as numpy)">;

class Merge_UnaryOp<string mnemonic, string formula> : Merge_Op<mnemonic, [Pure]> {
  let summary = "elementwise " # formula;
  let description = [{
    ```mlir
    %r = merge.}] # mnemonic # [{ %a
    ```
  }];
  let arguments = (ins Merge_TensorType:$operand);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$operand attr-dict";
}

def Merge_AbsOp : Merge_UnaryOp<"abs", "|x|">;
def Merge_SignOp : Merge_UnaryOp<"sign", "sign: 1, -1, or x itself for zeros and NaN">;
def Merge_SqrtOp : Merge_UnaryOp<"sqrt", "square root">;
def Merge_ExpOp : Merge_UnaryOp<"exp", "e^x">;

def Merge_CmpOp : Merge_Op<"cmp", [Pure]> {
  let summary = "elementwise comparison: 1.0 where it holds, else 0.0";
  let description = [{
    A mask as numbers, so it multiplies and sums like any tensor. Predicates are ordered
    comparisons (false with a NaN), except `ne`, which is true with a NaN.
    ```mlir
    %m = merge.cmp "gt" %a, %b
    ```
  }];
  let arguments = (ins StrAttr:$predicate, Merge_TensorType:$lhs, Merge_TensorType:$rhs);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$predicate $lhs `,` $rhs attr-dict";
  let hasVerifier = 1;
}

def Merge_SelectOp : Merge_Op<"select", [Pure]> {
  let summary = "elementwise choice: `a` where the mask is non-zero, else `b`";
  let description = [{
    ```mlir
    %r = merge.select %mask, %a, %b
    ```
  }];
  let arguments = (ins Merge_TensorType:$mask, Merge_TensorType:$a, Merge_TensorType:$b);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$mask `,` $a `,` $b attr-dict";
}

//===----------------------------------------------------------------------===//
// Fused kernels
//===----------------------------------------------------------------------===//

def Merge_KernelOp : Merge_Op<"kernel", [
                                         RecursiveMemoryEffects]> {
  let summary = "one fused loop: reads each input element once, computes, stores once";
  let description = [{
    The body computes one output element in f32 from one element of each input (its block
    arguments, in the order of `ins`); scalars defined above are used directly. Produced by
    `merge-fuse-elementwise`; `merge-lower-kernels` turns it into a loop over a chunk of
    elements with the inputs' storage dtypes widened on load and the result rounded on store.
    ```mlir
    %k = merge.kernel ins(%base, %a) {
    ^bb0(%b: f32, %x: f32):
      %d = arith.subf %x, %b : f32
      %r = arith.addf %b, %d : f32
      merge.yield %r : f32
    }
    ```
  }];
  let arguments = (ins Variadic<Merge_TensorType>:$inputs);
  let results = (outs Merge_TensorType:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "`ins` `(` $inputs `)` $body attr-dict";
  let hasVerifier = 1;
}

def Merge_ReduceOp : Merge_Op<"reduce", [Pure]> {
  let summary = "a scalar from every element of the current tensor";
  let description = [{
    `sum` adds every element (accumulated in f64, chunk by chunk, the chunks combined in order,
    so the result does not depend on the thread count); `max` takes the largest (NaN if any is
    NaN). The fusion pass turns each into a `merge.reduce_kernel`, a phase that runs before the
    kernel that uses its result. `norm`, `dot`, `total` and `count` are built from these.
    ```mlir
    %sq = merge.mul %a, %a
    %s = merge.reduce "sum" %sq
    ```
  }];
  let arguments = (ins StrAttr:$kind, Merge_TensorType:$operand);
  let results = (outs F32:$result);
  let assemblyFormat = "$kind $operand attr-dict";
  let hasVerifier = 1;
}

def Merge_ReduceKernelOp : Merge_Op<"reduce_kernel", [RecursiveMemoryEffects]> {
  let summary = "one fused reduction phase: computes an element, reduces all of them";
  let description = [{
    Like `merge.kernel`, the body computes one element in f32 from one element of each input;
    the results of all elements are reduced (`sum` in f64, or `max`) to one f32 scalar. It is its
    own phase: the runtime runs it over the whole tensor before the phases that use its result.
    ```mlir
    %n = merge.reduce_kernel "sum" ins(%a) {
    ^bb0(%x: f32):
      %sq = arith.mulf %x, %x : f32
      merge.yield %sq : f32
    }
    ```
  }];
  let arguments = (ins StrAttr:$kind, Variadic<Merge_TensorType>:$inputs);
  let results = (outs F32:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$kind `ins` `(` $inputs `)` $body attr-dict";
  let hasVerifier = 1;
}

def Merge_YieldOp : Merge_Op<"yield", [Pure, Terminator,
                                       ParentOneOf<["KernelOp", "ReduceKernelOp"]>]> {
  let summary = "the value of one output element";
  let description = [{
    ```mlir
    merge.yield %r : f32
    ```
  }];
  let arguments = (ins F32:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

#endif // MERGEC_MERGE_OPS
