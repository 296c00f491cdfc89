// RUN: merge-opt %s -merge-lower-kernels -canonicalize | FileCheck %s
// A reduction phase becomes its own function: an f64 accumulator carried through the chunk's
// loop, stored into result[0] (the runtime combines chunks in order). Later phases read the
// result back from the scalars array (f64; phase 0's slot is 4, after the tensor's context).

// CHECK-LABEL: func.func @rule_0_phase0(
// CHECK-SAME:    %[[A:[^:]*]]: memref<?xf32>, %[[RES:[^:]*]]: memref<?xf64>,
// CHECK-SAME:    merge.reduce = "sum"
// CHECK:       %[[ACC:.*]] = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[P:.*]] = %{{.*}}) -> (f64) {
// CHECK:         %[[SQ:.*]] = arith.mulf
// CHECK-NEXT:    %[[W:.*]] = arith.extf %[[SQ]] : f32 to f64
// CHECK-NEXT:    %[[N:.*]] = arith.addf %[[P]], %[[W]] : f64
// CHECK-NEXT:    scf.yield %[[N]] : f64
// CHECK:       memref.store %[[ACC]], %[[RES]][%{{.*}}] : memref<?xf64>

// CHECK-LABEL: func.func @rule_0(
// CHECK-SAME:    %[[SC:[^:]*]]: memref<?xf64>)
// CHECK-SAME:    merge.phases = 2 : i64
// CHECK:       %[[C4:.*]] = arith.constant 4 : index
// CHECK:       %[[W:.*]] = memref.load %[[SC]][%[[C4]]] : memref<?xf64>
// CHECK:       %[[S:.*]] = arith.truncf %[[W]] : f64 to f32
// CHECK:       %[[R:.*]] = math.sqrt %[[S]] : f32
// CHECK:       scf.for
// CHECK:         arith.mulf %{{.*}}, %[[R]] : f32
func.func @rule_0() -> !merge.tensor attributes {merge.store = f32} {
  %a = merge.input "a" stored f32
  %n = merge.reduce_kernel "sum" ins(%a) {
  ^bb0(%x: f32):
    %sq = arith.mulf %x, %x : f32
    merge.yield %sq : f32
  }
  %r = math.sqrt %n : f32
  %k = merge.kernel ins(%a) {
  ^bb0(%x: f32):
    %y = arith.mulf %x, %r : f32
    merge.yield %y : f32
  }
  return %k : !merge.tensor
}
