// RUN: merge-opt %s -merge-lower-kernels | FileCheck %s
// Context ops become the function's layer arguments; ramp is computed once, before the loop.

// CHECK-LABEL: func.func @rule_0(
// CHECK-SAME:    %[[LAYER:[^:]*]]: f32, %[[NL:[^:]*]]: f32,
// CHECK-SAME:    %[[SCALARS:[^:]*]]: memref<?xf64>)
// t = layer / max(num_layers - 1, 1), 0 outside the layers
// CHECK:       %[[SPAN0:.*]] = arith.subf %[[NL]], %{{.*}} : f32
// CHECK:       %[[SPAN:.*]] = arith.maximumf %[[SPAN0]]
// CHECK:       %[[T:.*]] = arith.divf %[[LAYER]], %[[SPAN]] : f32
// CHECK:       arith.cmpf oge, %[[LAYER]]
// CHECK:       arith.select
// CHECK:       scf.for
// CHECK:         arith.mulf
// CHECK-NOT:   merge.ramp
func.func @rule_0() -> !merge.tensor attributes {merge.store = f32} {
  %v0 = arith.constant 0.2 : f32
  %v1 = arith.constant 0.8 : f32
  %v2 = arith.constant 0.5 : f32
  %r = merge.ramp[%v0, %v1, %v2]
  %a = merge.input "a" stored f32
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f32):
    %y = arith.mulf %x, %r : f32
    merge.yield %y : f32
  }
  return %k : !merge.tensor
}
