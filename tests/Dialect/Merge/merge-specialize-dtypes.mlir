// RUN: merge-opt %s -merge-specialize-dtypes='input-dtype=bf16 output-dtype=f16' | FileCheck %s
// RUN: not merge-opt %s -merge-specialize-dtypes='input-dtype=i8' 2>&1 | FileCheck %s --check-prefix=BAD
// Inputs without a storage dtype get the given one; those with one keep it.

// CHECK-LABEL: func.func @rule_0() -> !merge.tensor attributes {merge.store = f16}
// CHECK: merge.input "base" stored bf16
// CHECK: merge.input "a" stored f32
// BAD: error: merge-specialize-dtypes: dtypes must be f32, f16 or bf16
func.func @rule_0() -> !merge.tensor {
  %base = merge.input "base"
  %a = merge.input "a" stored f32
  %k = merge.kernel ins(%base, %a) {
  ^bb0(%x: f32, %y: f32):
    %z = arith.addf %x, %y : f32
    merge.yield %z : f32
  }
  return %k : !merge.tensor
}
