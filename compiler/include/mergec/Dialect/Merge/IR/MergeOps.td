//===- MergeOps.td - merge dialect operations ------------------*- tablegen -*-===//
#ifndef MERGEC_MERGE_OPS
#define MERGEC_MERGE_OPS

include "mergec/Dialect/Merge/IR/MergeAttrs.td"
include "mergec/Dialect/Merge/IR/MergeDialect.td"
include "mergec/Dialect/Merge/IR/MergeInterfaces.td"
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

def Merge_NameHashOp : Merge_Op<"name_hash", [Pure]> {
  let summary = "the FNV-1a (32-bit) hash of the current tensor's name";
  let description = [{
    One of the keys of `merge.bernoulli`'s counter-based generator, so a tensor's random mask
    depends on its name, never on the order tensors are processed in.
    ```mlir
    %h = merge.name_hash
    ```
  }];
  let results = (outs I64:$result);
  let assemblyFormat = "attr-dict";
}

def Merge_ColsOp : Merge_Op<"cols", [Pure]> {
  let summary = "the length of the current tensor's last dimension (1 for a scalar tensor)";
  let description = [{
    The row length that `merge.row_rank` ranks within.
    ```mlir
    %c = merge.cols
    ```
  }];
  let results = (outs F32:$result);
  let assemblyFormat = "attr-dict";
}

def Merge_BundleRankOp : Merge_Op<"bundle_rank", [Pure]> {
  let summary = "the rank k of the current tensor's compressed-bundle factors";
  let description = [{
    `compress(...)` (the NeurIPS 2024 LLM-merging winner's bundle) keeps each member's
    residual at rank k; the runtime computes k per tensor from `rank =` or `rate =` (one rank
    rule, rt::bundleRank) and sets it in the scalars array before the phases run, so the
    formula lives in one place. 0 outside a bundle.
    ```mlir
    %k = merge.bundle_rank
    ```
  }];
  let results = (outs F32:$result);
  let assemblyFormat = "attr-dict";
}

def Merge_ParamOp : Merge_Op<"param", [Pure]> {
  let summary = "a recipe param's value, read when the kernel runs";
  let description = [{
    A `param` of the recipe whose value compiling did not depend on (one that only scales or
    shifts values): the kernels read it from the scalars array (after the phases' slots, at
    `index` in the module's `merge.params` list) instead of folding it in, so a merge executable
    can take another value with `--set` and a new value reuses cached kernels. Params that
    decide something while compiling (a density, an iteration count, a checked range) stay
    constants.
    ```mlir
    %lam = merge.param "lam" at 0
    ```
  }];
  let arguments = (ins StrAttr:$name, I64Attr:$index);
  let results = (outs F32:$result);
  let assemblyFormat = "$name `at` $index attr-dict";
}

def Merge_NumelOp : Merge_Op<"numel", [Pure]> {
  let summary = "the number of elements of the current tensor";
  let description = [{
    ```mlir
    %n = merge.numel
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

// An elementwise op with a formula on f32 scalars, `buildScalar`, defined in
// compiler/lib/Dialect/Merge/IR/ElementMath.cpp: its element computation in fused kernels
// (ElementwiseOpInterface's default) and MLIRGen's scalar arithmetic both call it.
class Merge_ElementwiseOp<string mnemonic>
    : Merge_Op<mnemonic, [Pure, Merge_ElementwiseOpInterface]> {
  let extraClassDeclaration = [{
    /// The op on f32 values: one element of each tensor operand, or scalars.
    static ::mlir::Value buildScalar(::mlir::OpBuilder &b, ::mlir::Location loc,
                                     ::mlir::ValueRange operands);
  }];
}

def Merge_SplatOp : Merge_Op<"splat", [Pure,
    DeclareOpInterfaceMethods<Merge_ElementwiseOpInterface, ["buildElement"]>]> {
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

class Merge_BinaryOp<string mnemonic, string formula> : Merge_ElementwiseOp<mnemonic> {
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

def Merge_NegOp : Merge_ElementwiseOp<"neg"> {
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

class Merge_ListReductionOp<string mnemonic, string formula> : Merge_ElementwiseOp<mnemonic> {
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
  // Written here once for every list reduction, so a new one needs no verifier of its own.
  let extraClassDefinition = [{
    ::mlir::LogicalResult $cppClass::verify() {
      if (getOperands().empty())
        return emitOpError("needs at least one operand");
      return ::mlir::success();
    }
  }];
}

def Merge_SumOp : Merge_ListReductionOp<"sum", "sum">;
def Merge_MeanOp : Merge_ListReductionOp<"mean", "mean (sum / count)">;
def Merge_MaxOp : Merge_ListReductionOp<"max", "maximum (NaN if any is NaN)">;
def Merge_MinOp : Merge_ListReductionOp<"min", "minimum (NaN if any is NaN)">;
def Merge_MedianOp : Merge_ListReductionOp<"median",
    "median (the mean of the middle two for an even count, as numpy)">;
def Merge_VarianceOp : Merge_ListReductionOp<"variance",
    "population variance (divisor the count), in f64"> {
  let description = [{
    Per element, the population variance of the operands (the unrolled list): Welford's update
    in f64, in operand order (`d = x - mean; mean += d / k; m2 += d * (x - mean)` for
    k = 1..n), then `m2 / n` rounded once to f32. That is how torch.var(xs, dim=0,
    unbiased=False) computes on the CPU, so the two agree bit for bit (mergekit's sce selects
    by it); an f32 two-pass variance differs in the last bit on ~40 % of elements.
    ```mlir
    %r = merge.variance %ta, %tb, %tc
    ```
  }];
}

class Merge_UnaryOp<string mnemonic, string formula> : Merge_ElementwiseOp<mnemonic> {
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

/// A unary op that is one op of MLIR's math dialect on each element: its buildScalar is
/// generated here, so adding one is this line and its tests.
class Merge_MathUnaryOp<string mnemonic, string formula, string mathOp>
    : Merge_UnaryOp<mnemonic, formula> {
  let extraClassDefinition = [{
    ::mlir::Value $cppClass::buildScalar(::mlir::OpBuilder &b, ::mlir::Location loc,
                                         ::mlir::ValueRange operands) {
      return ::mlir::math::}] # mathOp # [{::create(b, loc, operands[0]);
    }
  }];
}

def Merge_AbsOp : Merge_UnaryOp<"abs", "|x|">;
def Merge_SignOp : Merge_UnaryOp<"sign", "sign: 1, -1, or x itself for zeros and NaN">;
def Merge_SqrtOp : Merge_MathUnaryOp<"sqrt", "square root", "SqrtOp">;
def Merge_ExpOp : Merge_MathUnaryOp<"exp", "e^x", "ExpOp">;
def Merge_LogOp : Merge_MathUnaryOp<"log", "natural logarithm", "LogOp">;
def Merge_SinOp : Merge_MathUnaryOp<"sin", "sine (radians)", "SinOp">;
def Merge_CosOp : Merge_MathUnaryOp<"cos", "cosine (radians)", "CosOp">;
def Merge_AcosOp : Merge_MathUnaryOp<"acos", "arc cosine, in [0, pi]; NaN outside [-1, 1]",
                                     "AcosOp">;
def Merge_FloorOp : Merge_MathUnaryOp<"floor", "largest integer not above x", "FloorOp">;

def Merge_CmpOp : Merge_Op<"cmp", [Pure,
    DeclareOpInterfaceMethods<Merge_ElementwiseOpInterface, ["buildElement"]>]> {
  let summary = "elementwise comparison: 1.0 where it holds, else 0.0";
  let description = [{
    A mask as numbers, so it multiplies and sums like any tensor. Predicates are ordered
    comparisons (false with a NaN), except `ne`, which is true with a NaN.
    ```mlir
    %m = merge.cmp <gt> %a, %b
    ```
  }];
  let arguments = (ins Merge_CmpPredicateAttr:$predicate, Merge_TensorType:$lhs,
                       Merge_TensorType:$rhs);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$predicate $lhs `,` $rhs attr-dict";
  let extraClassDeclaration = [{
    /// The comparison on f32 values: 1.0 where it holds, else 0.0.
    static ::mlir::Value buildScalar(::mlir::OpBuilder &b, ::mlir::Location loc,
                                     CmpPredicate predicate, ::mlir::ValueRange operands);
  }];
}

def Merge_SelectOp : Merge_ElementwiseOp<"select"> {
  let summary = "elementwise choice: `a` where the mask is non-zero, else `b`";
  let description = [{
    ```mlir
    %r = merge.select %mask, %a, %b
    ```
  }];
  let arguments = (ins Merge_TensorType:$mask, Merge_TensorType:$a, Merge_TensorType:$b);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$mask `,` $a `,` $b attr-dict";
  // A mask known while compiling (a splat of a constant) picks its side, so the other side's
  // phases (reductions, selections) are never run.
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Selection, ranks and randomness
//===----------------------------------------------------------------------===//

def Merge_TopKMaskOp : Merge_Op<"topk_mask", [Pure]> {
  let summary = "1 for the elements of largest magnitude, else 0 (exact count, O(n) select)";
  let description = [{
    Orders the elements by |x| descending, ties by lowest flat index (NaN above inf), and keeps
    the ranks [s, s + k) with k = int(density * n) (`nonzero`: n = the non-zero elements) and
    s = int(skip * n), lowered to s = n - k when s + k > n. The fusion pass turns it into a
    `merge.select_kernel` phase (materialize |x|, radix-select the boundaries) and a
    `merge.rank_band` test in the phases after it. With `model_scope` the ranks run over every
    tensor the rule merges (in plan order, as one flattened vector): the runtime finds the
    boundaries in two extra streaming passes over the model.
    ```mlir
    %m = merge.topk_mask %tv {density = 2.000000e-01 : f64, skip = 0.0 : f64, nonzero = false}
    ```
  }];
  let arguments = (ins Merge_TensorType:$operand, F64Attr:$density, F64Attr:$skip,
                       BoolAttr:$nonzero, UnitAttr:$model_scope);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$operand attr-dict";
  let hasVerifier = 1;
}

def Merge_QuantileOp : Merge_Op<"quantile", [Pure]> {
  let summary = "the q-quantile of the tensor's elements (numpy's linear method)";
  let description = [{
    ```mlir
    %t = merge.quantile %x {q = 9.000000e-01 : f64}
    ```
  }];
  let arguments = (ins Merge_TensorType:$operand, F64Attr:$q);
  let results = (outs F32:$result);
  let assemblyFormat = "$operand attr-dict";
  let hasVerifier = 1;
}

def Merge_RowRankOp : Merge_Op<"row_rank", [Pure]> {
  let summary = "each element's rank 1..cols by |x| ascending within its row (last dimension)";
  let description = [{
    Ties by lowest index. A 1-D tensor is one row. The fusion pass turns it into a
    `merge.row_kernel` phase whose result the later phases read like an input.
    ```mlir
    %r = merge.row_rank %tv
    ```
  }];
  let arguments = (ins Merge_TensorType:$operand);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$operand attr-dict";
}

def Merge_RowReduceOp : Merge_Op<"row_reduce", [Pure]> {
  let summary = "each element replaced by the sum (or maximum) of its row";
  let description = [{
    Rows are the last dimension; a 1-D tensor is one row. `sum` accumulates in f64 and rounds
    once; `max` is NaN if the row holds a NaN. The per-row form of `merge.reduce`
    (`dot(x, y, scope = row)`); the fusion pass turns it into a `merge.row_kernel` phase.
    ```mlir
    %s = merge.row_reduce <sum> %sq
    ```
  }];
  let arguments = (ins Merge_ReductionKindAttr:$kind, Merge_TensorType:$operand);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$kind $operand attr-dict";
}

def Merge_BernoulliOp : Merge_Op<"bernoulli", [Pure,
    DeclareOpInterfaceMethods<Merge_ElementwiseOpInterface, ["buildElement"]>]> {
  let summary = "1 with probability p, else 0, from a counter-based generator (Philox4x32-10)";
  let description = [{
    Keyed by (seed, the tensor's name hash) with the counter (flat element index,
    `stream` div 4), taking output word `stream` mod 4, so the mask is the same for any thread
    count, chunking, tensor order or device, and the masks of streams 0-3 come from one
    Philox evaluation per element (identical rounds, merged by CSE). `stream` is the position
    in the list the mask was made for.
    ```mlir
    %m = merge.bernoulli %p, %h {seed = 0 : i64, stream = 1 : i64}
    ```
  }];
  let arguments = (ins Merge_TensorType:$probability, I64:$name_hash, I64Attr:$seed,
                       I64Attr:$stream);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$probability `,` $name_hash attr-dict";
}

def Merge_RankBandOp : Merge_Op<"rank_band", [Pure,
    DeclareOpInterfaceMethods<Merge_ElementwiseOpInterface, ["buildElement"]>]> {
  let summary = "1 where |x|'s rank lies between two boundaries found by a select phase";
  let description = [{
    A boundary (t, c) means "rank below m": |x|'s bits > t, or equal to t at a flat index
    <= c. The result is 1 where below `lo` and not below `hi`.
    ```mlir
    %m = merge.rank_band %tv, %hi_t, %hi_c, %lo_t, %lo_c
    ```
  }];
  let arguments = (ins Merge_TensorType:$operand, F64:$hi_bits, F64:$hi_index, F64:$lo_bits,
                       F64:$lo_index);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$operand `,` $hi_bits `,` $hi_index `,` $lo_bits `,` $lo_index attr-dict";
}

def Merge_ElementIndexOp : Merge_Op<"element_index", [Pure]> {
  let summary = "the flat index of the element a kernel body computes";
  let description = [{
    Only inside kernel bodies.
    ```mlir
    %i = merge.element_index
    ```
  }];
  let results = (outs I64:$result);
  let assemblyFormat = "attr-dict";
  let hasVerifier = 1;
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
    With `model_scope` the scalar covers every tensor the rule merges: the runtime sums (or
    maximizes) it over the whole model in a streaming pass before merging any tensor.
    ```mlir
    %sq = merge.mul %a, %a
    %s = merge.reduce <sum> %sq
    ```
  }];
  let arguments = (ins Merge_ReductionKindAttr:$kind, Merge_TensorType:$operand,
                       UnitAttr:$model_scope);
  let results = (outs F32:$result);
  let assemblyFormat = "$kind $operand attr-dict";
}

def Merge_ReduceKernelOp : Merge_Op<"reduce_kernel", [RecursiveMemoryEffects,
    DeclareOpInterfaceMethods<Merge_PhaseOpInterface>]> {
  let summary = "one fused reduction phase: computes values per element, reduces each of them";
  let description = [{
    Like `merge.kernel`, the body computes from one element of each input, but it yields one
    f32 value per entry of `kinds`; each is reduced over all elements (`sum` in f64, or `max`)
    to one scalar result. It is its own phase: the runtime runs it over the whole tensor before
    the phases that use its results. `merge-fuse-sibling-reductions` merges reductions that do
    not depend on each other into one such phase, so their inputs are read once.
    ```mlir
    %n, %d = merge.reduce_kernel [sum, sum] ins(%a, %b) : f32, f32 {
    ^bb0(%x: f32, %y: f32):
      %sq = arith.mulf %x, %x : f32
      %xy = arith.mulf %x, %y : f32
      merge.yield %sq, %xy : f32, f32
    }
    ```
  }];
  let arguments = (ins Merge_ReductionKindArrayAttr:$kinds, Variadic<Merge_TensorType>:$inputs,
                       UnitAttr:$model_scope);
  let results = (outs Variadic<F32>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$kinds `ins` `(` $inputs `)` `:` type($results) $body attr-dict";
  let hasVerifier = 1;
  // One scalar slot per reduction.
  let extraClassDefinition = [{
    unsigned $cppClass::getNumScalarResults() { return getNumResults(); }
  }];
}

def Merge_SelectKernelOp : Merge_Op<"select_kernel", [RecursiveMemoryEffects,
    DeclareOpInterfaceMethods<Merge_PhaseOpInterface>]> {
  let summary = "a selection phase: materializes one value per element, then selects";
  let description = [{
    The body computes one f32 key per element; the runtime writes them to a buffer and selects:
    `topk` finds the two rank boundaries of `merge.topk_mask` (results: hi bits, hi index,
    lo bits, lo index), `quantile` the q-quantile (result 0; the others are 0). Radix select:
    O(n), no sort.
    ```mlir
    %hb, %hi, %lb, %li = merge.select_kernel <topk> ins(%a) {
    ^bb0(%x: f32):
      merge.yield %x : f32
    } {density = 2.000000e-01 : f64, skip = 0.0 : f64, nonzero = false}
    ```
  }];
  let arguments = (ins Merge_SelectKindAttr:$kind, Variadic<Merge_TensorType>:$inputs,
                       F64Attr:$param, F64Attr:$skip, BoolAttr:$nonzero, UnitAttr:$model_scope);
  let results = (outs F64:$r0, F64:$r1, F64:$r2, F64:$r3);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$kind `ins` `(` $inputs `)` $body attr-dict";
  let hasVerifier = 1;
  // Four scalar slots, whatever the kind, so the layout does not depend on it.
  let extraClassDefinition = [{
    unsigned $cppClass::getNumScalarResults() { return 4; }
  }];
}

def Merge_RowKernelOp : Merge_Op<"row_kernel", [RecursiveMemoryEffects,
    DeclareOpInterfaceMethods<Merge_PhaseOpInterface, ["isModelScope", "getBufferResults"]>]> {
  let summary = "a per-row phase: materializes one key per element, then works row by row";
  let description = [{
    Rows are the last dimension (a 1-D tensor is one row). `rank`: the runtime ranks the keys'
    magnitudes within each row (1..cols, ties by lowest index); `sum` / `max`: every element
    gets its row's sum (in f64, rounded once) or maximum. The result is an f32 buffer that later
    phases read as one more input: a rank per element, a sum or maximum per row (element i
    reads row i / cols; `isPerRow`).
    ```mlir
    %r = merge.row_kernel <rank> ins(%a) {
    ^bb0(%x: f32):
      merge.yield %x : f32
    }
    ```
  }];
  let arguments = (ins Merge_RowKindAttr:$kind, Variadic<Merge_TensorType>:$inputs);
  let results = (outs Merge_TensorType:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$kind `ins` `(` $inputs `)` $body attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Whether its buffer holds one value per row (sum, max) rather than one per element
    /// (rank): the phases after it read element i's value at row i / cols.
    bool isPerRow() { return getKind() != ::mergec::merge::RowKind::Rank; }
  }];
  // No scalars: its result is a buffer, per tensor (rows never span tensors).
  let extraClassDefinition = [{
    unsigned $cppClass::getNumScalarResults() { return 0; }
    bool $cppClass::isModelScope() { return false; }
    ::llvm::SmallVector<::mlir::Value> $cppClass::getBufferResults() { return {getResult()}; }
  }];
}

//===----------------------------------------------------------------------===//
// Matrices: linear algebra on whole tensors (run in a merge.matrix_phase)
//===----------------------------------------------------------------------===//

def Merge_ToMatrixOp : Merge_Op<"to_matrix", [Pure]> {
  let summary = "the current tensor's values as a matrix (its last dimension the columns)";
  let description = [{
    A 1-D tensor of n is 1 x n, a scalar tensor 1 x 1, a tensor of more dimensions
    (numel / cols) x cols. The fusion pass computes the operand per element into the matrix at
    the start of the `merge.matrix_phase` that uses it.
    ```mlir
    %m = merge.to_matrix %delta
    ```
  }];
  let arguments = (ins Merge_TensorType:$operand);
  let results = (outs Merge_MatrixType:$result);
  let assemblyFormat = "$operand attr-dict";
}

def Merge_ToTensorOp : Merge_Op<"to_tensor", [Pure]> {
  let summary = "a matrix as the current tensor's values (its shape checked when it runs)";
  let description = [{
    The matrix must have the current tensor's matrix shape (as `merge.to_matrix` gives it);
    otherwise the merge stops with an error naming the tensor and both shapes.
    ```mlir
    %t = merge.to_tensor %m
    ```
  }];
  let arguments = (ins Merge_MatrixType:$operand);
  let results = (outs Merge_TensorType:$result);
  let assemblyFormat = "$operand attr-dict";
}

class Merge_MatrixUnaryOp<string mnemonic, string what> : Merge_Op<mnemonic, [Pure]> {
  let summary = what;
  let description = [{
    ```mlir
    %r = merge.}] # mnemonic # [{ %x
    ```
  }];
  let arguments = (ins Merge_MatrixType:$operand);
  let results = (outs Merge_MatrixType:$result);
  let assemblyFormat = "$operand attr-dict";
}
def Merge_TransposeOp : Merge_MatrixUnaryOp<"transpose", "the transpose (cols x rows)">;
def Merge_DiagOp : Merge_MatrixUnaryOp<"diag",
    "the k x k matrix with the k values of a vector (1 x k or k x 1) on its diagonal">;
def Merge_CumSumOp : Merge_MatrixUnaryOp<"cumsum",
    "each row's running sum (in f64, each value rounded once)">;
def Merge_OrthOp : Merge_MatrixUnaryOp<"orth",
    "the polar factor u @ vt of the thin SVD (the closest matrix with orthonormal rows or columns)">;

def Merge_MatMulOp : Merge_Op<"matmul", [Pure]> {
  let summary = "the matrix product (SGEMM)";
  let description = [{
    `lhs` m x k times `rhs` k x n; a different k is an error naming the tensor and both shapes.
    ```mlir
    %c = merge.matmul %a, %b
    ```
  }];
  let arguments = (ins Merge_MatrixType:$lhs, Merge_MatrixType:$rhs);
  let results = (outs Merge_MatrixType:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
}

class Merge_ConcatOp<string mnemonic, string what> : Merge_Op<mnemonic, [Pure]> {
  let summary = what;
  let description = [{
    ```mlir
    %r = merge.}] # mnemonic # [{ %a, %b, %c
    ```
  }];
  let arguments = (ins Variadic<Merge_MatrixType>:$operands);
  let results = (outs Merge_MatrixType:$result);
  let assemblyFormat = "$operands attr-dict";
  let hasVerifier = 1;
  let extraClassDefinition = [{
    ::mlir::LogicalResult $cppClass::verify() {
      if (getOperands().empty())
        return emitOpError("needs at least one operand");
      return ::mlir::success();
    }
  }];
}
def Merge_HCatOp : Merge_ConcatOp<"hcat", "side by side (the same number of rows)">;
def Merge_VCatOp : Merge_ConcatOp<"vcat", "one above the other (the same number of columns)">;

class Merge_MatrixCountOp<string mnemonic, string what> : Merge_Op<mnemonic, [Pure]> {
  let summary = what;
  let description = [{
    The count is floor(k) clamped to [1, the rows or columns there are].
    ```mlir
    %r = merge.}] # mnemonic # [{ %x, %k
    ```
  }];
  let arguments = (ins Merge_MatrixType:$operand, F32:$count);
  let results = (outs Merge_MatrixType:$result);
  let assemblyFormat = "$operand `,` $count attr-dict";
}
def Merge_TakeRowsOp : Merge_MatrixCountOp<"take_rows", "the first k rows">;
def Merge_TakeColsOp : Merge_MatrixCountOp<"take_cols", "the first k columns">;
def Merge_LowRankOp : Merge_MatrixCountOp<"lowrank",
    "the best rank-k approximation u_k @ diag(s_k) @ vt_k (Eckart-Young)">;

class Merge_SpectralOp<string mnemonic, string what, string keeps>
    : Merge_Op<mnemonic, [Pure]> {
  let summary = what;
  let description = [{
    FR-Merging's frequency filter (Zheng & Wang, "FREE-Merging: Fourier Transform for Efficient
    Model Merging", ICCV 2025, https://arxiv.org/abs/2411.16815): with F = fft2(x) (H x W),
    keeps F[u, v] where }] # keeps # [{ ratio * min(H, W), d = sqrt((u - H//2)^2 + (v - W//2)^2)
    measured on the unshifted spectrum as the reference code does, zeroes the rest, and returns
    the real part of ifft2. A matrix of one row (a 1-D tensor) is returned unchanged; ratio
    outside (0, 1] is an error naming the tensor. kissfft in f32, through
    mergec_la_spectral_filter; the result has x's shape.
    ```mlir
    %r = merge.}] # mnemonic # [{ %x, %ratio
    ```
  }];
  let arguments = (ins Merge_MatrixType:$operand, F32:$ratio);
  let results = (outs Merge_MatrixType:$result);
  let assemblyFormat = "$operand `,` $ratio attr-dict";
}
def Merge_HighpassOp : Merge_SpectralOp<"highpass",
    "FR-Merging's high pass: the frequencies within ratio * min(H, W) of the spectrum's centre",
    "d <=">;
def Merge_LowpassOp : Merge_SpectralOp<"lowpass",
    "the complement of merge.highpass: the frequencies farther than ratio * min(H, W)",
    "d >">;

def Merge_SvdOp : Merge_Op<"svd", [Pure]> {
  let summary = "the thin singular value decomposition, truncated to the rank largest";
  let description = [{
    x (m x n) = u @ diag(s) @ vt with u m x k, s 1 x k (descending), vt k x n; k is floor(rank)
    clamped to [1, min(m, n)], all of them without `rank`. LAPACK's sgesdd; each pair of
    singular vectors is signed so that the largest-magnitude entry of u's column is positive.
    ```mlir
    %u, %s, %vt = merge.svd %x rank %k
    ```
  }];
  let arguments = (ins Merge_MatrixType:$operand, Optional<F32>:$rank);
  let results = (outs Merge_MatrixType:$u, Merge_MatrixType:$s, Merge_MatrixType:$vt);
  let assemblyFormat = "$operand (`rank` $rank^)? attr-dict";
}

def Merge_RsvdOp : Merge_Op<"rsvd", [Pure]> {
  let summary = "a randomised truncated SVD (Halko, Martinsson and Tropp 2011)";
  let description = [{
    Like `merge.svd` with a rank, from a Gaussian sketch of rank + oversample columns refined by
    `iters` power iterations; the sketch is drawn with Philox4x32-10 keyed by (seed, the
    tensor's name hash), so it is reproducible like `merge.bernoulli`.
    ```mlir
    %u, %s, %vt = merge.rsvd %x, %k, %h {oversample = 8 : i64, iters = 2 : i64, seed = 0 : i64}
    ```
  }];
  let arguments = (ins Merge_MatrixType:$operand, F32:$rank, I64:$name_hash, I64Attr:$oversample,
                       I64Attr:$iters, I64Attr:$seed);
  let results = (outs Merge_MatrixType:$u, Merge_MatrixType:$s, Merge_MatrixType:$vt);
  let assemblyFormat = "$operand `,` $rank `,` $name_hash attr-dict";
}

def Merge_RankOfOp : Merge_Op<"rank_of", [Pure]> {
  let summary = "min(rows, cols): the most singular values a matrix has";
  let description = [{
    ```mlir
    %r = merge.rank_of %x
    ```
  }];
  let arguments = (ins Merge_MatrixType:$operand);
  let results = (outs F32:$result);
  let assemblyFormat = "$operand attr-dict";
}

def Merge_MatrixMapOp : Merge_Op<"matrix_map", [RecursiveMemoryEffects]> {
  let summary = "elementwise arithmetic on matrices of one shape";
  let description = [{
    The body computes one element in f32 from one element of each input (its block arguments);
    scalars defined above are used directly. Inputs of different shapes are an error naming
    the tensor and both shapes. MLIRGen builds the body with the same formulas
    (`buildScalar`) as tensor kernels.
    ```mlir
    %r = merge.matrix_map ins(%s) {
    ^bb0(%x: f32):
      %y = arith.mulf %x, %two : f32
      merge.yield %y : f32
    }
    ```
  }];
  let arguments = (ins Variadic<Merge_MatrixType>:$inputs);
  let results = (outs Merge_MatrixType:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "`ins` `(` $inputs `)` $body attr-dict";
  let hasVerifier = 1;
}

def Merge_MatrixReduceOp : Merge_Op<"matrix_reduce", [Pure]> {
  let summary = "a scalar from every element of a matrix";
  let description = [{
    `sum` in f64, rounded once; `max` the largest (NaN if any is NaN).
    ```mlir
    %t = merge.matrix_reduce <sum> %s
    ```
  }];
  let arguments = (ins Merge_ReductionKindAttr:$kind, Merge_MatrixType:$operand);
  let results = (outs F32:$result);
  let assemblyFormat = "$kind $operand attr-dict";
}

def Merge_MatrixPhaseOp : Merge_Op<"matrix_phase", [RecursiveMemoryEffects,
    DeclareOpInterfaceMethods<Merge_PhaseOpInterface, ["isModelScope", "getBufferResults"]>]> {
  let summary = "a phase of linear algebra, run once per tensor on the host";
  let description = [{
    Made by `merge-fuse-elementwise` from a rule's matrix ops. `body` computes, per element of
    the current tensor, the value of each `merge.to_matrix` operand (one yield each) from its
    inputs, like any phase; `program` receives those as matrices (its block arguments) and runs
    the matrix ops in order (BLAS and LAPACK calls, loops for the rest), ending in
    `merge.matrix_yield` of the scalar results, then the matrices that become tensors. The
    phase's results are those scalars (f32, in slots of `scalars`), then one buffer of the
    tensor's size per matrix (checked to have the tensor's shape), which later phases read as
    inputs.
    ```mlir
    %mean, %t = merge.matrix_phase ins(%a, %b) : f32, !merge.tensor {
    ^bb0(%x: f32, %y: f32):
      %d = arith.subf %x, %y : f32
      merge.yield %d : f32
    } program {
    ^bb0(%m: !merge.matrix):
      %u, %s, %vt = merge.svd %m
      ...
      merge.matrix_yield %mean, %uvt : f32, !merge.matrix
    }
    ```
  }];
  let arguments = (ins Variadic<Merge_TensorType>:$inputs);
  let results = (outs Variadic<AnyTypeOf<[F32, Merge_TensorType]>>:$results);
  let regions = (region SizedRegion<1>:$body, SizedRegion<1>:$program);
  // The result types are optional: a phase that only emits (compress(...)) has none.
  let assemblyFormat =
      "`ins` `(` $inputs `)` (`:` type($results)^)? $body `program` $program attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The scalar results: the first ones, until the first tensor.
    unsigned getNumScalars();
  }];
  let extraClassDefinition = [{
    unsigned $cppClass::getNumScalars() {
      unsigned n = 0;
      while (n < getNumResults() && getResult(n).getType().isF32())
        ++n;
      return n;
    }
    unsigned $cppClass::getNumScalarResults() { return getNumScalars(); }
    bool $cppClass::isModelScope() { return false; }
    ::llvm::SmallVector<::mlir::Value> $cppClass::getBufferResults() {
      return ::llvm::SmallVector<::mlir::Value>(getResults().drop_front(getNumScalars()));
    }
  }];
}

def Merge_EmitMatrixOp : Merge_Op<"emit_matrix", [MemoryEffects<[MemWrite]>]> {
  let summary = "hands a named matrix (or a scalar, as 1 x 1) to the runtime";
  let description = [{
    How results of their own shape leave a matrix phase: `compress(...)` emits each member's
    factors (`U.0` = u diag(s), `V.0` = vt) and its scale (`scale.0`, a scalar). Lowered to a
    call of `mergec_matrix_emit` (KernelABI.h) with the name, rows, columns and the f32 data;
    the runtime checks the shape against its plan for the tensor (an error naming the tensor
    otherwise) and writes it. Only inside a `merge.matrix_phase` once fused.
    ```mlir
    merge.emit_matrix "U.0", %us : !merge.matrix
    merge.emit_matrix "scale.0", %n : f32
    ```
  }];
  let arguments = (ins StrAttr:$name, AnyTypeOf<[F32, Merge_MatrixType]>:$value);
  let assemblyFormat = "$name `,` $value attr-dict `:` type($value)";
  let hasVerifier = 1;
  let extraClassDefinition = [{
    ::mlir::LogicalResult $cppClass::verify() {
      if (getName().empty())
        return emitOpError("needs a non-empty name");
      return ::mlir::success();
    }
  }];
}

def Merge_MatrixYieldOp : Merge_Op<"matrix_yield", [Pure, Terminator,
    HasParent<"MatrixPhaseOp">]> {
  let summary = "the results of a matrix phase's program: scalars, then matrices";
  let description = [{
    ```mlir
    merge.matrix_yield %mean, %uvt : f32, !merge.matrix
    ```
  }];
  let arguments = (ins Variadic<AnyTypeOf<[F32, Merge_MatrixType]>>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
}

def Merge_YieldOp : Merge_Op<"yield", [Pure, Terminator]> {
  let summary = "the value of one output element (one per reduction of a reduce_kernel)";
  let description = [{
    Ends the body of a `merge.kernel` or of a phase (an op with the PhaseOpInterface).
    ```mlir
    merge.yield %r : f32
    ```
  }];
  let arguments = (ins Variadic<F32>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
  let hasVerifier = 1;
}

#endif // MERGEC_MERGE_OPS
