// RUN: merge-opt %s | merge-opt | FileCheck %s
// Every merge op prints in a form it parses back to.

// CHECK-LABEL: func.func @rule_0() -> !merge.tensor
func.func @rule_0() -> !merge.tensor {
  // CHECK: %[[B:.*]] = merge.input "base"
  %b = merge.input "base"
  // CHECK: %[[A:.*]] = merge.input "a" stored bf16
  %a = merge.input "a" stored bf16
  // CHECK: merge.layer
  %l = merge.layer
  // CHECK: merge.num_layers
  %n = merge.num_layers
  %c = arith.constant 5.000000e-01 : f32
  // CHECK: merge.ramp[%{{.*}}, %{{.*}}]
  %r = merge.ramp[%c, %l]
  // CHECK: %[[S:.*]] = merge.splat
  %s = merge.splat %r
  // CHECK: %[[D:.*]] = merge.sub %[[A]], %[[B]]
  %d = merge.sub %a, %b
  // CHECK: merge.mul %[[D]], %[[S]]
  %m = merge.mul %d, %s
  // CHECK: merge.div
  %q = merge.div %m, %s
  // CHECK: merge.neg
  %g = merge.neg %q
  // CHECK: merge.sum %[[B]], %{{.*}}, %{{.*}}
  %t = merge.sum %b, %g, %m
  // CHECK: merge.mean
  %u = merge.mean %t, %b
  // CHECK: merge.add
  %v = merge.add %u, %b
  return %v : !merge.tensor
}

// CHECK-LABEL: func.func @rule_1
func.func @rule_1() -> !merge.tensor {
  %b = merge.input "base"
  %a = merge.input "a"
  // CHECK: merge.kernel ins(%{{.*}}, %{{.*}}) {
  // CHECK: ^bb0(%{{.*}}: f32, %{{.*}}: f32):
  // CHECK: merge.yield %{{.*}} : f32
  %k = merge.kernel ins(%b, %a) {
  ^bb0(%x: f32, %y: f32):
    %z = arith.addf %x, %y : f32
    merge.yield %z : f32
  }
  return %k : !merge.tensor
}
