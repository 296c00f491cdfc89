// RUN: merge-opt %s -pass-pipeline='builtin.module(func.func(merge-fuse-sibling-reductions))' | FileCheck %s
// Reductions that do not wait for each other share one pass: |a|^2 and |b|^2 (depth 0) merge
// into one reduce_kernel over the union of their inputs, even though the scalar math and the
// deeper reduction between them come first in program order; a*b scaled by |a|^2 waits for
// that phase (depth 1) and stays a phase of its own; a model-scope reduction of depth 0 does
// not merge with tensor-scope ones (it runs over the whole model before the merge).

// CHECK-LABEL: func.func @rule_0
// CHECK:       %[[A:.*]] = merge.input "a"
// CHECK:       %[[B:.*]] = merge.input "b"
// CHECK:       %[[R:.*]]:2 = merge.reduce_kernel [sum, sum] ins(%[[A]], %[[B]]) : f32, f32 {
// CHECK-NEXT:  ^bb0(%[[X:.*]]: f32, %[[Y:.*]]: f32):
// CHECK-NEXT:    %[[XX:.*]] = arith.mulf %[[X]], %[[X]] : f32
// CHECK-NEXT:    %[[YY:.*]] = arith.mulf %[[Y]], %[[Y]] : f32
// CHECK-NEXT:    merge.yield %[[XX]], %[[YY]] : f32, f32
// CHECK:       %[[G:.*]] = merge.reduce_kernel [max] ins(%[[B]]) : f32 {
// CHECK:       } {model_scope}
// CHECK:       %[[D:.*]] = merge.reduce_kernel [sum] ins(%[[A]], %[[B]]) : f32 {
// CHECK:         arith.mulf %{{.*}}, %[[R]]#0 : f32
// CHECK:       arith.divf %[[D]], %[[R]]#1 : f32
// CHECK:       merge.kernel
func.func @rule_0() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  %na = merge.reduce_kernel [sum] ins(%a) : f32 {
  ^bb0(%x: f32):
    %sq = arith.mulf %x, %x : f32
    merge.yield %sq : f32
  }
  %d = merge.reduce_kernel [sum] ins(%a, %b) : f32 {
  ^bb0(%x: f32, %y: f32):
    %xy = arith.mulf %x, %y : f32
    %s = arith.mulf %xy, %na : f32
    merge.yield %s : f32
  }
  %nb = merge.reduce_kernel [sum] ins(%b) : f32 {
  ^bb0(%y: f32):
    %sq = arith.mulf %y, %y : f32
    merge.yield %sq : f32
  }
  %g = merge.reduce_kernel [max] ins(%b) : f32 {
  ^bb0(%y: f32):
    merge.yield %y : f32
  } {model_scope}
  %ratio = arith.divf %d, %nb : f32
  %scale = arith.addf %ratio, %g : f32
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f32):
    %y = arith.mulf %x, %scale : f32
    merge.yield %y : f32
  }
  return %k : !merge.tensor
}
