// RUN: merge-opt %s | merge-opt | FileCheck %s
// The elementwise math ops print in a form they parse back to.

// CHECK-LABEL: func.func @rule_0
func.func @rule_0() -> !merge.tensor {
  %a = merge.input "a"
  %b = merge.input "b"
  // CHECK: merge.abs %{{.*}}
  %0 = merge.abs %a
  // CHECK: merge.sign %{{.*}}
  %1 = merge.sign %0
  // CHECK: merge.sqrt %{{.*}}
  %2 = merge.sqrt %1
  // CHECK: merge.exp %{{.*}}
  %3 = merge.exp %2
  // CHECK: merge.max %{{.*}}, %{{.*}}
  %4 = merge.max %3, %a
  // CHECK: merge.min %{{.*}}, %{{.*}}, %{{.*}}
  %5 = merge.min %4, %a, %b
  // CHECK: merge.median %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}
  %6 = merge.median %5, %a, %b, %4
  // CHECK: merge.cmp <ge> %{{.*}}, %{{.*}}
  %7 = merge.cmp <ge> %6, %a
  // CHECK: merge.select %{{.*}}, %{{.*}}, %{{.*}}
  %8 = merge.select %7, %a, %b
  // CHECK: merge.variance %{{.*}}, %{{.*}}, %{{.*}}
  %9 = merge.variance %8, %a, %b
  return %9 : !merge.tensor
}

// CHECK-LABEL: func.func @reductions
func.func @reductions() -> f32 {
  %a = merge.input "a"
  // CHECK: merge.reduce <sum> %{{.*}}
  %s = merge.reduce <sum> %a
  // CHECK: merge.reduce_kernel [max, sum] ins(%{{.*}}) : f32, f32 {
  // CHECK:   merge.yield %{{.*}}, %{{.*}} : f32, f32
  // CHECK: } {model_scope}
  %m, %q = merge.reduce_kernel [max, sum] ins(%a) : f32, f32 {
  ^bb0(%x: f32):
    %sq = arith.mulf %x, %x : f32
    merge.yield %x, %sq : f32, f32
  } {model_scope}
  %mq = arith.addf %m, %q : f32
  %r = arith.addf %s, %mq : f32
  return %r : f32
}
