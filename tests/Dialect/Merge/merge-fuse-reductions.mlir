// RUN: merge-opt %s -pass-pipeline='builtin.module(func.func(merge-fuse-elementwise))' | FileCheck %s
// A reduction's operand DAG is fused into a merge.reduce_kernel: a phase before the final
// kernel, whose scalar result the final kernel uses (here tv(a) * (|tv(b)| / |tv(a)|)).

// CHECK-LABEL: func.func @rule_0
// CHECK:       %[[NB:.*]] = merge.reduce_kernel [sum] ins(%[[BASE:.*]], %[[B:.*]]) : f32 {
// CHECK-NEXT:  ^bb0(%[[X:.*]]: f32, %[[Y:.*]]: f32):
// CHECK-NEXT:    %[[T:.*]] = arith.subf %[[Y]], %[[X]] : f32
// CHECK-NEXT:    %[[SQ:.*]] = arith.mulf %[[T]], %[[T]] : f32
// CHECK-NEXT:    merge.yield %[[SQ]] : f32
// CHECK:       %[[MAX:.*]] = merge.reduce_kernel [max] ins(%[[BASE]], %[[A:.*]]) : f32 {
// CHECK:         math.absf
// CHECK:       %[[RATIO:.*]] = arith.divf %[[NB]], %[[MAX]] : f32
// CHECK:       %[[K:.*]] = merge.kernel ins(%[[BASE]], %[[A]]) {
// CHECK:         arith.mulf %{{.*}}, %[[RATIO]] : f32
// CHECK:       return %[[K]]
// CHECK-NOT:   merge.reduce <
func.func @rule_0() -> !merge.tensor {
  %base = merge.input "base"
  %a = merge.input "a"
  %b = merge.input "b"
  %ta = merge.sub %a, %base
  %tb = merge.sub %b, %base
  %sq = merge.mul %tb, %tb
  %nb = merge.reduce <sum> %sq
  %abs = merge.abs %ta
  %max = merge.reduce <max> %abs
  %ratio = arith.divf %nb, %max : f32
  %s = merge.splat %ratio
  %r = merge.mul %ta, %s
  return %r : !merge.tensor
}
