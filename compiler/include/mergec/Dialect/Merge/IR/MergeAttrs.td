//===- MergeAttrs.td - the kinds of reductions, phases and comparisons -*- tablegen -*-===//
// Each kind an op can take is an enum attribute: the parser and the verifier reject any other
// spelling, and the passes, the lowering and the JIT switch over the C++ enum (so -Wswitch
// names every place a new kind has to be handled) instead of comparing strings. In an op they
// print as `<sum>` (`merge.reduce <sum> %x`), on their own as `#merge.reduction<sum>`.
#ifndef MERGEC_MERGE_ATTRS
#define MERGEC_MERGE_ATTRS

include "mergec/Dialect/Merge/IR/MergeDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Merge_ReductionKind : I32Enum<"ReductionKind", "a reduction of many values to one", [
    I32EnumCase<"Sum", 0, "sum">,
    I32EnumCase<"Max", 1, "max">]> {
  let cppNamespace = "::mergec::merge";
}

def Merge_ReductionKindAttr : EnumAttr<Merge_Dialect, Merge_ReductionKind, "reduction"> {
  let assemblyFormat = "`<` $value `>`";
  let summary = "sum (in f64, rounded once) or max (NaN if any is NaN)";
  let description = [{
    How `merge.reduce`, `merge.row_reduce` and each result of `merge.reduce_kernel` reduce the
    values of a tensor (or a row, or the model): `sum` accumulates in f64 and rounds once,
    `max` takes the largest value and is NaN if any value is.
    ```mlir
    %s = merge.reduce <sum> %x
    ```
  }];
}

def Merge_ReductionKindArrayAttr
    : ArrayOfAttr<Merge_Dialect, "ReductionKindArray", "reductions", "ReductionKind"> {
  let summary = "the reductions of a merge.reduce_kernel, one per result";
  let description = [{
    ```mlir
    %n, %m = merge.reduce_kernel [sum, max] ins(%a) : f32, f32 { ... }
    ```
  }];
}

def Merge_RowKind : I32Enum<"RowKind", "what a row phase computes per row", [
    I32EnumCase<"Rank", 0, "rank">,
    I32EnumCase<"Sum", 1, "sum">,
    I32EnumCase<"Max", 2, "max">]> {
  let cppNamespace = "::mergec::merge";
}

def Merge_RowKindAttr : EnumAttr<Merge_Dialect, Merge_RowKind, "row"> {
  let assemblyFormat = "`<` $value `>`";
  let summary = "rank within the row, or the row's sum or maximum at every element";
  let description = [{
    The work of a `merge.row_kernel`: `rank` ranks the keys' magnitudes within each row
    (1..cols, ties by lowest index); `sum` and `max` give every element its row's sum (in
    f64, rounded once) or maximum.
    ```mlir
    %r = merge.row_kernel <rank> ins(%a) { ... }
    ```
  }];
}

def Merge_SelectKind : I32Enum<"SelectKind", "what a selection phase finds", [
    I32EnumCase<"TopK", 0, "topk">,
    I32EnumCase<"Quantile", 1, "quantile">]> {
  let cppNamespace = "::mergec::merge";
}

def Merge_SelectKindAttr : EnumAttr<Merge_Dialect, Merge_SelectKind, "select"> {
  let assemblyFormat = "`<` $value `>`";
  let summary = "the rank boundaries of a top-k, or a quantile";
  let description = [{
    The selection a `merge.select_kernel` makes from its keys: `topk` the two rank boundaries
    of `merge.topk_mask`, `quantile` the q-quantile (numpy's linear method).
    ```mlir
    %hb, %hi, %lb, %li = merge.select_kernel <topk> ins(%a) { ... } {...}
    ```
  }];
}

def Merge_CmpPredicate : I32Enum<"CmpPredicate", "an elementwise comparison", [
    I32EnumCase<"LT", 0, "lt">,
    I32EnumCase<"GT", 1, "gt">,
    I32EnumCase<"LE", 2, "le">,
    I32EnumCase<"GE", 3, "ge">,
    I32EnumCase<"EQ", 4, "eq">,
    I32EnumCase<"NE", 5, "ne">]> {
  let cppNamespace = "::mergec::merge";
}

def Merge_CmpPredicateAttr : EnumAttr<Merge_Dialect, Merge_CmpPredicate, "predicate"> {
  let assemblyFormat = "`<` $value `>`";
  let summary = "the comparison of merge.cmp";
  let description = [{
    Ordered comparisons (false with a NaN), except `ne`, which is true with a NaN: the
    language's `<`, `>`, `<=`, `>=`, `==` and `!=`.
    ```mlir
    %m = merge.cmp <gt> %a, %b
    ```
  }];
}

#endif // MERGEC_MERGE_ATTRS
